// Schedules: recurring jobs on a 5-field cron (the gateway checks it and says why it
// refuses), with next and last run, create/edit/delete and run-now.

import { api, Folder, Role } from '../api';
import { confirmDialog } from './dialog';
import { clear, fmtTime, h, toast } from './dom';
import { chip, deviceName, DevicePicker } from './live';

interface Schedule {
  id: string;
  name: string;
  cron: string;
  timezone?: string;
  job: { type: string; targets: string[]; commands?: string[] | null; concurrency?: number | null };
  enabled: boolean;
  owner: string;
  last_run?: number | null;
  last_job_id?: string | null;
  last_error?: string;
  next_run?: number | null;
}

export class SchedulesView {
  readonly el = h('div', { class: 'schedules' });

  constructor(
    public role: Role,
    private folders: () => Folder[],
    private openJob: (id: string) => void,
  ) {}

  async load(): Promise<void> {
    let list: Schedule[];
    try {
      list = await api.get<Schedule[]>('api/schedules');
    } catch (e) {
      clear(this.el, h('p', { class: 'form-error', role: 'alert' }, (e as Error).message));
      return;
    }
    const canEdit = this.role !== 'viewer';
    clear(
      this.el,
      canEdit ? h('div', { class: 'toolbar' }, h('button', { type: 'button', class: 'primary', onclick: () => this.edit() }, 'New schedule')) : null,
      h(
        'table',
        { class: 'grid', 'aria-label': 'Schedules' },
        h('thead', {}, h('tr', {}, ...['Name', 'Cron', 'Job', 'Targets', 'Next run', 'Last run', ''].map((c) => h('th', { scope: 'col' }, c)))),
        h(
          'tbody',
          {},
          ...list.map((s) =>
            h(
              'tr',
              {},
              h('th', { scope: 'row' }, s.name, s.enabled ? null : h('span', { class: 'muted' }, ' (paused)')),
              h('td', { class: 'mono nowrap' }, s.cron, s.timezone ? ` ${s.timezone}` : ''),
              h('td', {}, s.job.type.replace('_', ' ')),
              h('td', {}, s.job.targets.map((t) => deviceName(this.folders(), t)).join(', ')),
              h('td', { class: 'nowrap' }, s.next_run ? fmtTime(s.next_run) : '—'),
              h(
                'td',
                {},
                s.last_run ? fmtTime(s.last_run) : 'never',
                s.last_job_id ? h('button', { type: 'button', class: 'small link', onclick: () => this.openJob(s.last_job_id!) }, 'job') : null,
                s.last_error ? h('div', { class: 'target-error' }, chip('failed'), ' ', s.last_error) : null,
              ),
              h(
                'td',
                { class: 'row-actions' },
                canEdit ? h('button', { type: 'button', class: 'small', 'aria-label': `Run ${s.name} now`, onclick: () => void this.runNow(s) }, 'Run now') : null,
                canEdit ? h('button', { type: 'button', class: 'small', 'aria-label': `Edit ${s.name}`, onclick: () => this.edit(s) }, 'Edit') : null,
                canEdit ? h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete ${s.name}`, onclick: () => void this.remove(s) }, 'Delete') : null,
              ),
            ),
          ),
          list.length === 0 ? h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No schedules yet.')) : null,
        ),
      ),
    );
  }

  private async runNow(s: Schedule): Promise<void> {
    try {
      const r = await api.post<{ id: string }>(`api/schedules/${encodeURIComponent(s.id)}/run-now`);
      this.openJob(r.id);
    } catch (e) {
      toast((e as Error).message, 'error');
    }
  }

  private async remove(s: Schedule): Promise<void> {
    if (!(await confirmDialog(`Delete schedule ${s.name}?`, 'Its jobs already run stay in the jobs list.', 'Delete'))) return;
    try {
      await api.del(`api/schedules/${encodeURIComponent(s.id)}`);
    } catch (e) {
      toast((e as Error).message, 'error');
    }
    void this.load();
  }

  /** The create/edit dialog; keeps what was typed when the gateway refuses it. */
  edit(s?: Schedule): void {
    const title = s ? `Edit schedule ${s.name}` : 'New schedule';
    const uid = Math.random().toString(36).slice(2, 8);
    const name = h('input', { id: `sc-name-${uid}`, value: s?.name ?? '', required: true, autocomplete: 'off' });
    const cron = h('input', { id: `sc-cron-${uid}`, value: s?.cron ?? '0 2 * * *', spellcheck: 'false', autocomplete: 'off', 'aria-describedby': `sc-cron-err-${uid}` });
    const cronErr = h('span', { class: 'field-error', id: `sc-cron-err-${uid}`, 'aria-live': 'polite' });
    const tz = h('input', { id: `sc-tz-${uid}`, value: s?.timezone ?? '', placeholder: 'UTC, +02:00', autocomplete: 'off' });
    const type = h('select', { id: `sc-type-${uid}` }, h('option', { value: 'config_backup' }, 'Config backup'), h('option', { value: 'command' }, 'Command'));
    type.value = s?.job.type ?? 'config_backup';
    const cmds = h('textarea', { id: `sc-cmds-${uid}`, rows: 3, spellcheck: 'false' });
    cmds.value = (s?.job.commands ?? []).join('\n');
    const cmdField = h('div', { class: 'field' }, h('label', { for: cmds.id }, 'Commands (one per line)'), cmds);
    cmdField.hidden = type.value !== 'command';
    type.addEventListener('change', () => (cmdField.hidden = type.value !== 'command'));
    const enabled = h('input', { id: `sc-en-${uid}`, type: 'checkbox', checked: s?.enabled ?? true });
    const picker = new DevicePicker(this.folders, undefined, 'Targets');
    picker.set(s?.job.targets ?? []);
    const error = h('p', { class: 'form-error', role: 'alert' });
    const save = h('button', { type: 'submit', class: 'primary' }, s ? 'Save' : 'Create');
    const form = h(
      'form',
      { method: 'dialog' },
      h('h2', {}, title),
      h('div', { class: 'field' }, h('label', { for: name.id }, 'Name'), name),
      h(
        'div',
        { class: 'row' },
        h('div', { class: 'field' }, h('label', { for: cron.id }, 'Cron (minute hour day month weekday)'), cron, cronErr),
        h('div', { class: 'field narrow' }, h('label', { for: tz.id }, 'Time zone'), tz),
      ),
      h('div', { class: 'row' }, h('div', { class: 'field' }, h('label', { for: type.id }, 'Job'), type), h('label', { class: 'check' }, enabled, ' Enabled')),
      cmdField,
      picker.el,
      error,
      h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => dlg.close() }, 'Cancel'), save),
    );
    const dlg = h('dialog', { class: 'dialog wide', 'aria-label': title }, form);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.textContent = '';
      cronErr.textContent = '';
      const body = {
        name: name.value.trim(),
        cron: cron.value.trim(),
        timezone: tz.value.trim() || undefined,
        enabled: enabled.checked,
        job: {
          type: type.value,
          targets: [...picker.selected],
          commands: type.value === 'command' ? cmds.value.split('\n').map((c) => c.trim()).filter(Boolean) : undefined,
        },
      };
      save.disabled = true;
      try {
        if (s) await api.put(`api/schedules/${encodeURIComponent(s.id)}`, body);
        else await api.post('api/schedules', body);
        dlg.close();
        void this.load();
      } catch (e) {
        const m = (e as Error).message;
        // The gateway's cron message goes next to the cron field.
        if (/cron/i.test(m)) {
          cronErr.textContent = m;
          cron.setAttribute('aria-invalid', 'true');
          cron.focus();
        } else error.textContent = m;
      } finally {
        save.disabled = false;
      }
    });
    dlg.addEventListener('close', () => dlg.remove());
    document.body.appendChild(dlg);
    dlg.showModal();
  }
}
