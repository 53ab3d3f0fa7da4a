// Jobs: start a config backup or a command job over devices picked from the saved
// sessions; the jobs list with state/type filters; a job view attached to the job's
// `job` channel (overall and per-target progress, state chips, errors, command output),
// Cancel and Retry. Schedules live here too (schedules.ts).

import { api, ApiError, Folder, Role } from '../api';
import type { Connection } from '../connection';
import { clear, fmtTime, h, toast } from './dom';
import { bar, chip, deviceName, DevicePicker, fmtDuration, Stream } from './live';
import { SchedulesView } from './schedules';

export interface Summary {
  total: number;
  queued: number;
  running: number;
  retrying: number;
  succeeded: number;
  failed: number;
  cancelled: number;
}

interface JobRow {
  id: string;
  type: string;
  state: string;
  created_at: number;
  finished_at?: number | null;
  concurrency: number;
  summary: Summary;
  schedule_id?: string | null;
}

interface Target {
  session_id: string;
  state: string;
  attempts: number;
  error?: { code: string; message: string } | null;
  duration_ms?: number | null;
  output?: { command: string; output: string }[] | null;
  config_id?: string | null;
  changed?: boolean | null;
}

interface JobDetail extends JobRow {
  commands: string[];
  owner: string;
  targets: Target[];
}

const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];
const DONE_TARGET = new Set(['succeeded', 'failed', 'cancelled']);

/** Time only for today, date and time before (the list is narrow). */
function fmtShort(unix: number): string {
  const d = new Date(unix * 1000);
  return d.toDateString() === new Date().toDateString()
    ? d.toLocaleTimeString(undefined, { timeStyle: 'medium' })
    : fmtTime(unix);
}

export function doneCount(s: Summary): number {
  return s.succeeded + s.failed + s.cancelled;
}

export interface JobsHost {
  folders(): Folder[];
  /** Opens the Configs screen on a device (and a version, if given). */
  openConfig(sessionId: string, configId?: string, diffPrevious?: boolean): void;
}

export class JobsPage {
  readonly el: HTMLElement;
  private nav: HTMLElement;
  private body: HTMLElement;
  private tab: 'jobs' | 'schedules' = 'jobs';
  private picker: DevicePicker;
  private newForm: HTMLElement;
  private listBox = h('div', {});
  private view = h('section', { class: 'job-view', 'aria-label': 'Job' });
  private stream?: Stream;
  private stateFilter: HTMLSelectElement;
  private typeFilter: HTMLSelectElement;
  private schedules: SchedulesView;
  private shownJob?: string;

  constructor(
    private conn: Connection,
    private role: Role,
    private host: JobsHost,
  ) {
    this.nav = h('div', { class: 'subnav', role: 'tablist', 'aria-label': 'Jobs sections' });
    this.body = h('div', { class: 'page-body' });
    this.el = h('section', { class: 'page', 'aria-label': 'Jobs' }, h('h1', {}, 'Jobs'), this.nav, this.body);
    this.picker = new DevicePicker(() => this.host.folders(), undefined, 'Targets');
    this.newForm = this.buildForm();
    this.stateFilter = h('select', { id: 'job-state-filter' }, h('option', { value: '' }, 'any'), ...JOB_STATES.map((s) => h('option', { value: s }, s)));
    this.typeFilter = h('select', { id: 'job-type-filter' }, h('option', { value: '' }, 'any'), h('option', { value: 'config_backup' }, 'config backup'), h('option', { value: 'command' }, 'command'), h('option', { value: 'netbox_import' }, 'NetBox import'), h('option', { value: 'app_start' }, 'app start'), h('option', { value: 'app_stop' }, 'app stop'));
    this.stateFilter.addEventListener('change', () => void this.loadList());
    this.typeFilter.addEventListener('change', () => void this.loadList());
    this.view.hidden = true;
    this.schedules = new SchedulesView(role, host.folders, (id) => {
      this.show('jobs');
      this.open(id);
    });
  }

  /** The role in the selected workspace changed (workspace switch). */
  setRole(role: Role): void {
    this.role = role;
    this.schedules.role = role;
    this.stream?.close();
    this.stream = undefined;
    this.shownJob = undefined;
    this.view.hidden = true;
  }

  show(tab = this.tab): void {
    this.tab = tab;
    clear(
      this.nav,
      h('button', { type: 'button', role: 'tab', 'aria-selected': String(tab === 'jobs'), onclick: () => this.show('jobs') }, 'Jobs'),
      h('button', { type: 'button', role: 'tab', 'aria-selected': String(tab === 'schedules'), onclick: () => this.show('schedules') }, 'Schedules'),
    );
    if (tab === 'schedules') {
      clear(this.body, this.schedules.el);
      void this.schedules.load();
      return;
    }
    this.picker.render();
    clear(
      this.body,
      h(
        'div',
        { class: 'jobs-layout' },
        h(
          'div',
          { class: 'jobs-left' },
          this.role !== 'viewer' ? this.newForm : null,
          h(
            'div',
            { class: 'list-head' },
            h('h2', {}, 'Recent jobs'),
            h('label', { for: 'job-state-filter' }, 'State'),
            this.stateFilter,
            h('label', { for: 'job-type-filter' }, 'Type'),
            this.typeFilter,
          ),
          this.listBox,
        ),
        this.view,
      ),
    );
    void this.loadList();
  }

  /** Preselects devices (from the sidebar's menu) and the job type. */
  prepare(type: 'config_backup' | 'command', sessionIds: string[]): void {
    this.picker.set(sessionIds);
    const sel = this.newForm.querySelector<HTMLSelectElement>('#job-type');
    if (sel) {
      sel.value = type;
      sel.dispatchEvent(new Event('change'));
    }
    this.show('jobs');
  }

  private buildForm(): HTMLElement {
    const type = h('select', { id: 'job-type' }, h('option', { value: 'config_backup' }, 'Config backup'), h('option', { value: 'command' }, 'Command'));
    const commands = h('textarea', { id: 'job-commands', rows: 3, placeholder: 'show version\nshow ip interface brief', spellcheck: 'false' });
    const cmdField = h('div', { class: 'field' }, h('label', { for: 'job-commands' }, 'Commands (one per line)'), commands);
    cmdField.hidden = true;
    type.addEventListener('change', () => (cmdField.hidden = type.value !== 'command'));
    const conc = h('input', { id: 'job-concurrency', type: 'number', min: 1, value: '4', style: undefined });
    const error = h('p', { class: 'form-error', role: 'alert' });
    const start = h('button', { type: 'submit', class: 'primary' }, 'Start job');
    const form = h(
      'form',
      { class: 'job-form', 'aria-label': 'New job' },
      h('h2', {}, 'New job'),
      h(
        'div',
        { class: 'row' },
        h('div', { class: 'field' }, h('label', { for: 'job-type' }, 'Job type'), type),
        h('div', { class: 'field narrow' }, h('label', { for: 'job-concurrency' }, 'Concurrency'), conc),
      ),
      cmdField,
      this.picker.el,
      h('div', { class: 'toolbar' }, start),
      error,
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.textContent = '';
      if (this.picker.selected.size === 0) {
        error.textContent = 'Pick at least one device.';
        return;
      }
      const body: Record<string, unknown> = { type: type.value, targets: [...this.picker.selected] };
      if (conc.value.trim()) body.concurrency = Number(conc.value);
      if (type.value === 'command') body.commands = commands.value.split('\n').map((c) => c.trim()).filter(Boolean);
      start.disabled = true;
      try {
        const r = await api.post<{ id: string }>('api/jobs', body);
        this.open(r.id);
        void this.loadList();
      } catch (e) {
        error.textContent = (e as Error).message;
      } finally {
        start.disabled = false;
      }
    });
    return form;
  }

  async loadList(): Promise<void> {
    const q = new URLSearchParams({ limit: '30' });
    if (this.stateFilter.value) q.set('state', this.stateFilter.value);
    if (this.typeFilter.value) q.set('type', this.typeFilter.value);
    let r: { jobs: JobRow[]; total: number };
    try {
      r = await api.get(`api/jobs?${q}`);
    } catch (e) {
      clear(this.listBox, h('p', { class: 'form-error', role: 'alert' }, (e as Error).message));
      return;
    }
    clear(
      this.listBox,
      h(
        'table',
        { class: 'grid jobs', 'aria-label': 'Jobs' },
        h('thead', {}, h('tr', {}, ...['Started', 'Type', 'State', 'Progress', ''].map((c) => h('th', { scope: 'col' }, c)))),
        h(
          'tbody',
          {},
          ...r.jobs.map((j) =>
            h(
              'tr',
              { 'aria-current': j.id === this.shownJob ? 'true' : undefined },
              h('td', { class: 'nowrap', title: fmtTime(j.created_at) }, fmtShort(j.created_at)),
              h('td', { class: 'nowrap' }, j.type === 'config_backup' ? 'backup' : j.type),
              h('td', {}, chip(j.state)),
              h('td', { class: 'nowrap' }, bar(`Job ${j.id} progress`, doneCount(j.summary), j.summary.total || 1, j.state), ` ${doneCount(j.summary)}/${j.summary.total}`),
              h('td', { class: 'row-actions' }, h('button', { type: 'button', class: 'small', 'aria-label': `Open job ${j.id}`, onclick: () => this.open(j.id) }, 'Open')),
            ),
          ),
          r.jobs.length === 0 ? h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No jobs match.')) : null,
        ),
      ),
      r.total > r.jobs.length ? h('p', { class: 'muted' }, `${r.jobs.length} of ${r.total} shown`) : null,
    );
  }

  /** Opens job `id`: details by REST, then live state from its `job` channel. */
  open(id: string): void {
    this.stream?.close();
    this.shownJob = id;
    this.view.hidden = false;
    this.view.dataset.job = id;
    const folders = this.host.folders();
    const targets = new Map<string, Target>();
    let detail: JobDetail | undefined;
    let summary: Summary | undefined;
    let jobState = 'queued';
    const head = h('div', { class: 'job-head' });
    const overall = h('div', { class: 'job-overall' });
    const rows = h('tbody', {});
    const msg = h('p', { class: 'form-error', role: 'alert' });
    const render = () => {
      const s = summary;
      const done = s ? doneCount(s) : 0;
      const total = s?.total ?? targets.size;
      const pct = total ? Math.round((done / total) * 100) : 0;
      const canRetry = !!s && (s.failed > 0 || s.cancelled > 0) && ['succeeded', 'failed', 'cancelled'].includes(jobState);
      clear(
        head,
        h('h2', { title: `job ${id}` }, `${(detail?.type ?? 'job').replace('_', ' ')} `, h('span', { class: 'muted mono' }, id.slice(0, 8))),
        chip(jobState),
        h('span', { class: 'spacer' }),
        this.role !== 'viewer' && !['succeeded', 'failed', 'cancelled'].includes(jobState)
          ? h('button', { type: 'button', class: 'danger small', onclick: () => void this.cancel(id, msg) }, 'Cancel')
          : null,
        this.role !== 'viewer' && canRetry ? h('button', { type: 'button', class: 'small', onclick: () => void this.retry(id, msg) }, 'Retry failed') : null,
        h('button', { type: 'button', class: 'small', onclick: () => this.closeView() }, 'Close'),
      );
      clear(
        overall,
        bar('Overall progress', done, total || 1, jobState),
        h('span', { class: 'pct', 'data-pct': String(pct) }, `${pct} %`),
        s
          ? h(
              'span',
              { class: 'muted' },
              `${s.succeeded} succeeded · ${s.failed} failed · ${s.cancelled} cancelled · ${s.running + s.retrying} running · ${s.queued} queued`,
            )
          : null,
      );
      clear(
        rows,
        ...[...targets.values()].map((t) => {
          const name = deviceName(folders, t.session_id);
          const value = DONE_TARGET.has(t.state) ? 1 : t.state === 'queued' ? 0 : undefined;
          const out = t.output?.length
            ? h(
                'details',
                {},
                h('summary', {}, `Output (${t.output.length} command${t.output.length > 1 ? 's' : ''})`),
                ...t.output.map((o) => h('div', {}, h('div', { class: 'mono muted' }, `# ${o.command}`), h('pre', { class: 'output small' }, o.output))),
              )
            : null;
          // Command output gets a row of its own under the target, the table's full width.
          return [
            h(
              'tr',
              { 'data-target': t.session_id },
              h('th', { scope: 'row' }, name),
              h('td', {}, chip(t.state)),
              h('td', {}, bar(`${name} progress`, value, 1, t.state)),
              h('td', { class: 'nowrap' }, t.attempts ? String(t.attempts) : ''),
              h('td', { class: 'nowrap' }, fmtDuration(t.duration_ms)),
              h(
                'td',
                {},
                t.error ? h('div', { class: 'target-error' }, h('code', {}, t.error.code), ' ', t.error.message) : null,
                t.config_id
                  ? h(
                      'span',
                      {},
                      t.changed ? 'new version ' : 'unchanged ',
                      h('button', { type: 'button', class: 'small', onclick: () => this.host.openConfig(t.session_id, t.config_id ?? undefined, !!t.changed) }, t.changed ? 'Diff' : 'View'),
                    )
                  : null,
              ),
            ),
            out ? h('tr', { class: 'out-row', 'aria-label': `${name} output` }, h('td', { colspan: 6 }, out)) : null,
          ];
        }),
      );
    };
    clear(
      this.view,
      head,
      overall,
      msg,
      h(
        'table',
        { class: 'grid targets', 'aria-label': 'Targets' },
        h('thead', {}, h('tr', {}, ...['Device', 'State', 'Progress', 'Tries', 'Took', 'Detail'].map((c) => h('th', { scope: 'col' }, c)))),
        rows,
      ),
    );
    const fetchDetail = async () => {
      try {
        detail = await api.get<JobDetail>(`api/jobs/${encodeURIComponent(id)}`);
        for (const t of detail.targets) targets.set(t.session_id, { ...targets.get(t.session_id), ...t });
        summary = detail.summary;
        jobState = detail.state;
        render();
      } catch (e) {
        msg.textContent = (e as Error).message;
      }
    };
    void fetchDetail();
    render();
    this.stream = new Stream(this.conn, { kind: 'job', job_id: id }, {
      progress: (e) => {
        if (this.shownJob !== id) return;
        if (e.event === 'target' && typeof e.session_id === 'string') {
          const prev = targets.get(e.session_id);
          targets.set(e.session_id, { ...prev, ...(e as unknown as Target), output: prev?.output });
        } else if (e.event === 'job') {
          summary = e.summary as Summary;
          jobState = String(e.state);
        }
        render();
      },
      // The job ended: fetch once more for what frames do not carry (command output),
      // and the list, whose row still says running.
      exit: () => {
        void fetchDetail();
        void this.loadList();
      },
      error: (code, message) => (msg.textContent = `${code}: ${message}`),
    });
  }

  private closeView(): void {
    this.stream?.close();
    this.stream = undefined;
    this.shownJob = undefined;
    this.view.hidden = true;
  }

  private async cancel(id: string, msg: HTMLElement): Promise<void> {
    try {
      await api.post(`api/jobs/${encodeURIComponent(id)}/cancel`);
    } catch (e) {
      msg.textContent = (e as Error).message;
    }
  }

  /** A new job over the targets that failed or were cancelled (POST …/retry). */
  private async retry(id: string, msg: HTMLElement): Promise<void> {
    try {
      const r = await api.post<{ id: string }>(`api/jobs/${encodeURIComponent(id)}/retry`);
      toast('Retry started.');
      this.open(r.id);
      void this.loadList();
    } catch (e) {
      // A gateway without the retry route answers 404 too: its message says which.
      msg.textContent = `Retry failed${e instanceof ApiError && e.status ? ` (${e.status})` : ''}: ${(e as Error).message}`;
    }
  }
}
