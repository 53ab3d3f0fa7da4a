// Servers & Apps: the workspace's Linux servers with their last status (and Check now),
// projects with their apps, the app form, Start/Stop with the command's live output on
// the job's `job` channel, the countdown to auto-stop and Extend.

import { api, Folder } from '../api';
import { appActions, AppStatus, fmtLeft, fmtLoad, fmtUptime, JobOutput, secondsLeft } from '../appsmodel';
import { Connection } from '../connection';
import { confirmDialog, formDialog, Values } from './dialog';
import { clear, fmtTime, h, toast } from './dom';
import { chip, OutputBox, Stream } from './live';

interface CheckError {
  code: string;
  message: string;
}
interface Server {
  id: string;
  display_name: string;
  folder: string;
  host: string;
  port: number;
  status: 'online' | 'offline' | 'unknown';
  running_containers?: number | null;
  uptime?: number | null;
  load?: number[] | null;
  last_checked?: number | null;
  error?: CheckError | null;
}
interface Project {
  id: string;
  name: string;
  description?: string;
  app_count: number;
}
interface App {
  id: string;
  name: string;
  project_id: string;
  server_id: string;
  cd_path: string;
  app_url?: string | null;
  auto_stop_minutes: number;
  kind: 'compose' | 'systemd';
  unit?: string | null;
  status: AppStatus;
  last_error?: string | null;
  auto_stop_at?: number | null;
  job_id?: string | null;
  started_by?: string | null;
}

export class AppsPage {
  readonly el: HTMLElement;
  role: string;
  private serversBox = h('div', { class: 'apps-servers' });
  private projectsBox = h('div', { class: 'apps-projects' });
  private outTitle = h('h2', {}, 'Output');
  private outState = h('span', { class: 'muted', role: 'status' });
  private out = new OutputBox('App command output', 256 * 1024);
  private outPanel: HTMLElement;
  private stream?: Stream;
  private servers: Server[] = [];
  private projects: Project[] = [];
  private apps: App[] = [];
  private timer?: number;

  constructor(
    private conn: Connection,
    role: string,
    private folders: () => Folder[],
  ) {
    this.role = role;
    this.outPanel = h(
      'section',
      { class: 'apps-output', 'aria-label': 'App output', hidden: true },
      h('div', { class: 'toolbar' }, this.outTitle, this.outState, h('span', { class: 'spacer' }), h('button', { type: 'button', class: 'small', onclick: () => this.closeOutput() }, 'Close output')),
      this.out.el,
    );
    this.el = h(
      'section',
      { class: 'page', 'aria-label': 'Servers & Apps' },
      h('h1', {}, 'Servers & Apps'),
      h('div', { class: 'page-body apps-body' }, h('h2', {}, 'Servers'), this.serversBox, this.projectsBox, this.outPanel),
    );
  }

  private get canWrite(): boolean {
    return this.role !== 'viewer';
  }

  /** Shown: load everything and tick the countdowns every second. */
  async show(): Promise<void> {
    if (this.timer === undefined) this.timer = window.setInterval(() => this.tick(), 1000);
    await this.load();
  }

  /** Hidden (another screen, or a workspace switch): stop ticking and following. */
  hide(): void {
    if (this.timer !== undefined) window.clearInterval(this.timer);
    this.timer = undefined;
  }

  /** A workspace switch: the output shown belongs to the other workspace. */
  reset(): void {
    this.closeOutput();
    this.servers = [];
    this.projects = [];
    this.apps = [];
  }

  private async load(): Promise<void> {
    try {
      const [s, p, a] = await Promise.all([
        api.get<{ servers: Server[] }>('api/servers'),
        api.get<{ projects: Project[] }>('api/projects'),
        api.get<{ apps: App[] }>('api/apps'),
      ]);
      this.servers = s.servers;
      this.projects = p.projects;
      this.apps = a.apps;
    } catch (e) {
      clear(this.serversBox, h('p', { class: 'form-error', role: 'alert' }, (e as Error).message));
      clear(this.projectsBox);
      return;
    }
    this.renderServers();
    this.renderProjects();
  }

  private renderServers(): void {
    if (this.servers.length === 0) {
      clear(this.serversBox, h('p', { class: 'muted' }, 'No servers: a server is a saved session of device type linux (Inventory).'));
      return;
    }
    clear(
      this.serversBox,
      h(
        'table',
        { class: 'grid', 'aria-label': 'Servers' },
        h('thead', {}, h('tr', {}, ...['Status', 'Server', 'Containers', 'Uptime', 'Load', 'Last checked', 'Error', ''].map((t) => h('th', {}, t)))),
        h(
          'tbody',
          {},
          ...this.servers.map((s) =>
            h(
              'tr',
              { dataset: { server: s.id } },
              h('td', {}, h('span', { class: `srv-status s-${s.status}` }, h('span', { class: 'dot', 'aria-hidden': 'true' }), s.status)),
              h('td', {}, h('strong', {}, s.display_name), h('span', { class: 'muted' }, ` ${s.host}:${s.port}`)),
              h('td', {}, s.running_containers ?? '—'),
              h('td', {}, fmtUptime(s.uptime)),
              h('td', {}, fmtLoad(s.load)),
              h('td', {}, s.last_checked ? fmtTime(s.last_checked) : 'never'),
              h('td', { class: 'srv-error' }, s.error ? `${s.error.code}: ${s.error.message}` : ''),
              h('td', {}, h('button', { type: 'button', class: 'small', 'aria-label': `Check ${s.display_name} now`, onclick: (ev: Event) => void this.check(s, ev.currentTarget as HTMLButtonElement) }, 'Check now')),
            ),
          ),
        ),
      ),
    );
  }

  private async check(s: Server, btn: HTMLButtonElement): Promise<void> {
    btn.disabled = true;
    btn.textContent = 'Checking…';
    try {
      const st = await api.get<Omit<Server, 'id' | 'display_name' | 'folder' | 'host' | 'port'>>(`api/servers/${encodeURIComponent(s.id)}/status`);
      Object.assign(s, st);
    } catch (e) {
      toast(`Check of ${s.display_name} failed: ${(e as Error).message}`, 'error');
    }
    this.renderServers();
    this.serversBox.querySelector<HTMLButtonElement>(`tr[data-server="${CSS.escape(s.id)}"] button`)?.focus();
  }

  private serverName(id: string): string {
    return this.servers.find((s) => s.id === id)?.display_name ?? id;
  }

  private renderProjects(): void {
    const w = this.canWrite;
    const head = h(
      'div',
      { class: 'toolbar' },
      h('h2', {}, 'Projects and apps'),
      h('span', { class: 'spacer' }),
      w ? h('button', { type: 'button', class: 'primary', onclick: () => this.editProject() }, 'New project') : null,
      w && this.projects.length > 0 ? h('button', { type: 'button', onclick: () => this.editApp() }, 'New app') : null,
    );
    if (this.projects.length === 0) {
      clear(this.projectsBox, head, h('p', { class: 'muted' }, w ? 'No projects yet. Start with New project.' : 'No projects in this workspace.'));
      return;
    }
    clear(
      this.projectsBox,
      head,
      ...this.projects.map((p) => {
        const apps = this.apps.filter((a) => a.project_id === p.id);
        return h(
          'section',
          { class: 'project', 'aria-label': `Project ${p.name}` },
          h(
            'div',
            { class: 'toolbar' },
            h('h3', {}, p.name),
            p.description ? h('span', { class: 'muted' }, p.description) : null,
            h('span', { class: 'spacer' }),
            w ? h('button', { type: 'button', class: 'small', 'aria-label': `Edit project ${p.name}`, onclick: () => this.editProject(p) }, 'Edit') : null,
            w ? h('button', { type: 'button', class: 'small', 'aria-label': `Delete project ${p.name}`, onclick: () => void this.deleteProject(p) }, 'Delete') : null,
          ),
          apps.length === 0
            ? h('p', { class: 'muted' }, 'No apps in this project.')
            : h(
                'table',
                { class: 'grid', 'aria-label': `Apps of ${p.name}` },
                h('thead', {}, h('tr', {}, ...['App', 'Server', 'Status', 'Auto-stop in', 'Last error', ''].map((t) => h('th', {}, t)))),
                h('tbody', {}, ...apps.map((a) => this.appRow(a))),
              ),
        );
      }),
    );
  }

  private appRow(a: App): HTMLElement {
    const can = appActions(a.status, a.auto_stop_minutes);
    const w = this.canWrite;
    const left = h('span', { class: 'countdown', dataset: { deadline: a.auto_stop_at ? String(a.auto_stop_at) : '' } });
    this.renderLeft(left, a);
    const btn = (label: string, on: () => void, cls = 'small') => h('button', { type: 'button', class: cls, 'aria-label': `${label} ${a.name}`, onclick: on }, label);
    return h(
      'tr',
      { dataset: { app: a.id } },
      h(
        'td',
        {},
        h('strong', {}, a.name),
        h('div', { class: 'muted small-text' }, a.kind === 'systemd' ? `systemd ${a.unit ?? ''}` : `compose ${a.cd_path}`),
        a.app_url && /^https?:\/\//.test(a.app_url) ? h('a', { href: a.app_url, target: '_blank', rel: 'noopener noreferrer' }, a.app_url) : null,
      ),
      h('td', {}, this.serverName(a.server_id)),
      h('td', {}, chip(a.status)),
      h('td', {}, left),
      h('td', { class: 'srv-error' }, a.last_error ? h('pre', { class: 'last-error' }, a.last_error) : ''),
      h(
        'td',
        { class: 'actions-cell' },
        w && can.start ? btn('Start', () => void this.run(a, 'start'), 'small primary') : null,
        w && can.stop ? btn('Stop', () => void this.run(a, 'stop')) : null,
        w && can.extend ? btn('Extend', () => this.extend(a)) : null,
        a.job_id ? btn('Output', () => this.follow(a, a.job_id as string, 'last run')) : null,
        w && can.edit ? btn('Edit', () => this.editApp(a)) : null,
        w && can.remove ? btn('Delete', () => void this.deleteApp(a)) : null,
      ),
    );
  }

  private renderLeft(el: HTMLElement, a: { auto_stop_minutes: number; status: AppStatus }): void {
    const left = secondsLeft(el.dataset.deadline ? Number(el.dataset.deadline) : undefined, Date.now());
    if (left !== undefined) el.textContent = fmtLeft(left);
    else el.textContent = a.auto_stop_minutes > 0 ? `${a.auto_stop_minutes} min after start` : 'never';
  }

  private tick(): void {
    for (const el of this.projectsBox.querySelectorAll<HTMLElement>('.countdown')) {
      if (!el.dataset.deadline) continue;
      const left = secondsLeft(Number(el.dataset.deadline), Date.now());
      if (left !== undefined) el.textContent = fmtLeft(left);
    }
  }

  private async run(a: App, what: 'start' | 'stop'): Promise<void> {
    try {
      const r = await api.post<{ job_id: string; app: App }>(`api/apps/${encodeURIComponent(a.id)}/${what}`);
      const i = this.apps.findIndex((x) => x.id === a.id);
      if (i >= 0) this.apps[i] = r.app;
      this.renderProjects();
      this.follow(r.app, r.job_id, what);
    } catch (e) {
      toast(`${what === 'start' ? 'Start' : 'Stop'} of ${a.name} refused: ${(e as Error).message}`, 'error');
      void this.load();
    }
  }

  /** Shows an app job's output live from its `job` channel; when it ends, reloads. */
  private follow(a: App, jobId: string, what: string): void {
    this.stream?.close();
    this.out.reset();
    this.outPanel.hidden = false;
    this.outTitle.textContent = `Output of ${a.name} (${what})`;
    this.outState.textContent = 'running…';
    const merged = new JobOutput();
    this.stream = new Stream(this.conn, { kind: 'job', job_id: jobId }, {
      progress: (e) => {
        const t = merged.take(e);
        if (t) this.out.append(t);
        if (e.event === 'target' && typeof e.state === 'string') {
          const err = e.error as CheckError | undefined;
          this.outState.textContent = err ? `${e.state} · ${err.code}: ${err.message}` : String(e.state);
        }
        if (e.event === 'job' && typeof e.state === 'string' && !this.outState.textContent?.includes(':')) this.outState.textContent = String(e.state);
      },
      exit: () => void this.load(),
      error: (code, message) => (this.outState.textContent = `${code}: ${message}`),
    });
  }

  private closeOutput(): void {
    this.stream?.close();
    this.stream = undefined;
    this.outPanel.hidden = true;
  }

  private editProject(p?: Project): void {
    formDialog(
      p ? `Edit project ${p.name}` : 'New project',
      [
        { name: 'name', label: 'Name', value: p?.name, required: true },
        { name: 'description', label: 'Description', value: p?.description ?? '' },
      ],
      p ? 'Save' : 'Create',
      async (v) => {
        const body = { name: v.name.trim(), description: v.description.trim() || undefined };
        if (p) await api.put(`api/projects/${encodeURIComponent(p.id)}`, body);
        else await api.post('api/projects', body);
        await this.load();
      },
    );
  }

  private async deleteProject(p: Project): Promise<void> {
    const n = this.apps.filter((a) => a.project_id === p.id).length;
    const sure = await confirmDialog(`Delete project ${p.name}?`, n > 0 ? `Its ${n} app(s) are deleted with it (refused while one is running).` : 'The project is empty.', 'Delete');
    if (!sure) return;
    try {
      await api.del(`api/projects/${encodeURIComponent(p.id)}${n > 0 ? '?cascade=true' : ''}`);
    } catch (e) {
      toast((e as Error).message, 'error');
    }
    await this.load();
  }

  private async deleteApp(a: App): Promise<void> {
    if (!(await confirmDialog(`Delete app ${a.name}?`, 'The app goes; the server and its files stay as they are.', 'Delete'))) return;
    try {
      await api.del(`api/apps/${encodeURIComponent(a.id)}`);
    } catch (e) {
      toast((e as Error).message, 'error');
    }
    await this.load();
  }

  private extend(a: App): void {
    formDialog(
      `Extend ${a.name}`,
      [{ name: 'minutes', label: 'Minutes to add', type: 'number', value: '30', required: true }],
      'Extend',
      async (v) => {
        await api.post(`api/apps/${encodeURIComponent(a.id)}/extend`, { minutes: Number(v.minutes) });
        toast(`${a.name} runs ${v.minutes} minutes longer.`);
        await this.load();
      },
    );
  }

  /** The app form. Servers are the workspace's linux saved sessions; the gateway checks
   * the rest (cd_path, unit, url) and its message shows in the form. */
  private editApp(a?: App): void {
    const linux = this.servers.length > 0 ? this.servers.map((s) => [s.id, `${s.display_name} (${s.host})`] as [string, string]) : this.folders().flatMap((f) => f.sessions.filter((s) => s.device_type === 'linux').map((s) => [s.id, s.display_name] as [string, string]));
    formDialog(
      a ? `Edit app ${a.name}` : 'New app',
      [
        { name: 'name', label: 'Name', value: a?.name, required: true },
        { name: 'project_id', label: 'Project', type: 'select', value: a?.project_id, options: this.projects.map((p) => [p.id, p.name]) },
        { name: 'server_id', label: 'Server', type: 'select', value: a?.server_id, options: linux, help: 'A saved session of device type linux.' },
        { name: 'kind', label: 'Kind', type: 'select', value: a?.kind ?? 'compose', options: [['compose', 'docker compose'], ['systemd', 'systemd unit']] },
        { name: 'cd_path', label: 'Directory (cd_path)', value: a?.cd_path ?? '', placeholder: '/srv/app', help: 'Absolute path holding the compose file (optional for systemd).' },
        { name: 'unit', label: 'Unit (systemd)', value: a?.unit ?? '', placeholder: 'myapp.service' },
        { name: 'app_url', label: 'App URL', value: a?.app_url ?? '', placeholder: 'https://staging.example.net' },
        { name: 'auto_stop_minutes', label: 'Auto-stop after (minutes, 0 = never)', type: 'number', value: String(a?.auto_stop_minutes ?? 60) },
      ],
      a ? 'Save' : 'Create',
      async (v: Values) => {
        const body = {
          name: v.name.trim(),
          project_id: v.project_id,
          server_id: v.server_id,
          kind: v.kind,
          cd_path: v.cd_path.trim() || undefined,
          unit: v.kind === 'systemd' ? v.unit.trim() || undefined : undefined,
          app_url: v.app_url.trim() || undefined,
          auto_stop_minutes: Number(v.auto_stop_minutes || '0'),
        };
        if (a) await api.put(`api/apps/${encodeURIComponent(a.id)}`, body);
        else await api.post('api/apps', body);
        await this.load();
      },
    );
  }
}
