// NetBox import: the workspace's connection (URL, write-only token, verify TLS) with the
// gateway's test result; a device search with NetBox's filters and paging; a dry run
// (created / updated / refused with reasons) and then the import as a `netbox_import`
// job followed on its `job` channel.

import { api, ApiError } from '../api';
import { Connection } from '../connection';
import { confirmDialog } from './dialog';
import { clear, h, toast } from './dom';
import { bar, chip, Stream } from './live';

interface Settings {
  url?: string | null;
  configured: boolean;
  verify_tls: boolean;
  netbox_version?: string | null;
}
interface Named {
  id: number;
  name: string;
  slug: string;
}
interface Device {
  id: number;
  name?: string | null;
  site?: string | null;
  platform?: string | null;
  role?: string | null;
  status?: string | null;
  primary_ip?: string | null;
  tags: string[];
  importable: boolean;
  reason?: string;
}
interface DeviceList {
  count: number;
  next_offset?: number | null;
  results: Device[];
}
interface Outcome {
  netbox_id: number;
  name?: string | null;
  session_id?: string | null;
  reason?: string | null;
}
/** The import report: each list holds the devices with that outcome. */
interface DryRun {
  created: Outcome[];
  updated: Outcome[];
  refused: Outcome[];
}

/** A count that the gateway may send as a number or as the list itself. */
function count(x: unknown): number {
  return Array.isArray(x) ? x.length : Number(x ?? 0);
}

const PAGE = 50;
const STATUSES = ['active', 'planned', 'staged', 'failed', 'offline', 'inventory', 'decommissioning'];

function errText(e: unknown): string {
  return e instanceof ApiError ? `${e.code}: ${e.message}` : String(e);
}

export class NetboxPage {
  readonly el: HTMLElement;
  role: string;
  private settingsBox = h('div', { class: 'nb-settings' });
  private searchBox = h('div', { class: 'nb-search' });
  private resultBox = h('div', { class: 'nb-results' });
  private importBox = h('div', { class: 'nb-import' });
  private settings?: Settings;
  private selected = new Set<number>();
  private offset = 0;
  private filters: Record<string, HTMLInputElement | HTMLSelectElement> = {};
  private stream?: Stream;

  constructor(
    private conn: Connection,
    role: string,
    private imported: () => void,
  ) {
    this.role = role;
    this.el = h(
      'section',
      { class: 'page', 'aria-label': 'NetBox import' },
      h('h1', {}, 'NetBox import'),
      h('div', { class: 'page-body nb-body' }, this.settingsBox, this.searchBox, this.resultBox, this.importBox),
    );
  }

  private get canWrite(): boolean {
    return this.role !== 'viewer';
  }

  /** A workspace switch: the connection and the selection belong to the other one. */
  reset(): void {
    this.stream?.close();
    this.stream = undefined;
    this.selected.clear();
    this.offset = 0;
    clear(this.resultBox);
    clear(this.importBox);
  }

  async show(): Promise<void> {
    try {
      this.settings = await api.get<Settings>('api/netbox');
    } catch (e) {
      clear(this.settingsBox, h('p', { class: 'form-error', role: 'alert' }, errText(e)));
      return;
    }
    this.renderSettings();
    await this.renderSearch();
  }

  private renderSettings(result?: HTMLElement): void {
    const s = this.settings ?? { configured: false, verify_tls: true };
    const url = h('input', { id: 'nb-url', type: 'url', placeholder: 'https://netbox.example.net', spellcheck: 'false', autocomplete: 'off' });
    url.value = s.url ?? '';
    const token = h('input', { id: 'nb-token', type: 'password', autocomplete: 'off', placeholder: s.configured ? 'stored; type it again to change the connection' : '40-hex or nbt_…' });
    const verify = h('input', { id: 'nb-verify', type: 'checkbox' });
    verify.checked = s.verify_tls;
    const msg = result ?? h('p', { role: 'status', class: 'muted' }, s.configured ? `Connected to NetBox ${s.netbox_version ?? ''} at ${s.url}.` : 'No NetBox connection in this workspace yet.');
    const form = h(
      'form',
      { class: 'nb-form', 'aria-label': 'NetBox connection' },
      h('h2', {}, 'Connection'),
      h(
        'div',
        { class: 'import-row' },
        h('div', { class: 'field grow' }, h('label', { for: 'nb-url' }, 'NetBox URL'), url),
        h('div', { class: 'field' }, h('label', { for: 'nb-token' }, 'API token'), token),
      ),
      h('label', { class: 'check' }, verify, ' Verify TLS certificate'),
      this.canWrite
        ? h(
            'div',
            { class: 'toolbar' },
            h('button', { type: 'submit', class: 'primary' }, 'Save and test'),
            s.configured ? h('button', { type: 'button', onclick: () => void this.remove() }, 'Remove connection') : null,
          )
        : null,
      msg,
    );
    if (!this.canWrite) for (const i of [url, token, verify]) i.disabled = true;
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const btn = form.querySelector<HTMLButtonElement>('button[type=submit]');
      if (btn) btn.disabled = true;
      const status = h('p', { role: 'status', class: 'muted' }, 'Testing the connection…');
      msg.replaceWith(status);
      try {
        this.settings = await api.put<Settings>('api/netbox', { url: url.value.trim(), token: token.value, verify_tls: verify.checked });
        this.renderSettings(h('p', { role: 'status', class: 'ok-text' }, `Connection works: NetBox ${this.settings.netbox_version ?? ''} at ${this.settings.url}. Saved.`));
        await this.renderSearch();
      } catch (e) {
        status.replaceWith(h('p', { class: 'form-error', role: 'alert' }, `The connection was not saved. ${errText(e)}`));
        if (btn) btn.disabled = false;
      }
    });
    clear(this.settingsBox, form);
  }

  private async remove(): Promise<void> {
    if (!(await confirmDialog('Remove the NetBox connection?', 'The URL and token of this workspace go; imported sessions stay.', 'Remove'))) return;
    try {
      await api.del('api/netbox');
    } catch (e) {
      toast(errText(e), 'error');
    }
    this.reset();
    await this.show();
  }

  private async renderSearch(): Promise<void> {
    if (!this.settings?.configured) {
      clear(this.searchBox);
      clear(this.resultBox);
      clear(this.importBox);
      return;
    }
    let sites: Named[] = [];
    let platforms: Named[] = [];
    try {
      [sites, platforms] = await Promise.all([
        api.get<{ results: Named[] }>('api/netbox/sites').then((r) => r.results),
        api.get<{ results: Named[] }>('api/netbox/platforms').then((r) => r.results),
      ]);
    } catch (e) {
      clear(this.searchBox, h('p', { class: 'form-error', role: 'alert' }, errText(e)));
      return;
    }
    const sel = (id: string, label: string, opts: [string, string][]) => {
      const s = h('select', { id }, h('option', { value: '' }, 'any'), ...opts.map(([v, l]) => h('option', { value: v }, l)));
      return [s, h('div', { class: 'field' }, h('label', { for: id }, label), s)] as const;
    };
    const txt = (id: string, label: string, ph = '') => {
      const i = h('input', { id, type: 'search', placeholder: ph, spellcheck: 'false' });
      return [i, h('div', { class: 'field' }, h('label', { for: id }, label), i)] as const;
    };
    const [q, qf] = txt('nb-q', 'Search', 'name, serial, …');
    const [site, sf] = sel('nb-site', 'Site', sites.map((s) => [s.slug, s.name]));
    const [platform, pf] = sel('nb-platform', 'Platform', platforms.map((p) => [p.slug, p.name]));
    const [status, stf] = sel('nb-status', 'Status', STATUSES.map((s) => [s, s]));
    const [role, rf] = txt('nb-role', 'Role', 'slug');
    const [tag, tf] = txt('nb-tag', 'Tag', 'slug');
    this.filters = { q, site, platform, status, role, tag };
    const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'NetBox devices' }, qf, sf, pf, stf, rf, tf, h('button', { type: 'submit', class: 'primary' }, 'Search devices'));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.offset = 0;
      void this.search();
    });
    clear(this.searchBox, h('h2', {}, 'Devices'), form);
    await this.search();
  }

  private filterValues(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, el] of Object.entries(this.filters)) if (el.value.trim()) out[k] = el.value.trim();
    return out;
  }

  private async search(): Promise<void> {
    const params = new URLSearchParams({ ...this.filterValues(), limit: String(PAGE), offset: String(this.offset) });
    let list: DeviceList;
    try {
      list = await api.get<DeviceList>(`api/netbox/devices?${params}`);
    } catch (e) {
      clear(this.resultBox, h('p', { class: 'form-error', role: 'alert' }, errText(e)));
      return;
    }
    const from = list.count === 0 ? 0 : this.offset + 1;
    const to = this.offset + list.results.length;
    const pager = h(
      'div',
      { class: 'toolbar' },
      h('span', { role: 'status' }, `${from}–${to} of ${list.count} device(s) · ${this.selected.size} selected`),
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'small', disabled: this.offset === 0, onclick: () => ((this.offset = Math.max(0, this.offset - PAGE)), void this.search()) }, 'Previous page'),
      h('button', { type: 'button', class: 'small', disabled: list.next_offset == null, onclick: () => ((this.offset = list.next_offset ?? this.offset), void this.search()) }, 'Next page'),
    );
    const all = h('input', { type: 'checkbox', 'aria-label': 'Select every importable device of this page' });
    const importable = list.results.filter((d) => d.importable);
    all.checked = importable.length > 0 && importable.every((d) => this.selected.has(d.id));
    all.addEventListener('change', () => {
      for (const d of importable) (all.checked ? this.selected.add(d.id) : this.selected.delete(d.id));
      void this.search();
    });
    clear(
      this.resultBox,
      pager,
      h(
        'table',
        { class: 'grid', 'aria-label': 'NetBox devices' },
        h('thead', {}, h('tr', {}, h('th', {}, all), ...['Name', 'Site', 'Platform', 'Role', 'Status', 'Primary IP', 'Tags', 'Note'].map((t) => h('th', {}, t)))),
        h(
          'tbody',
          {},
          ...list.results.map((d) => {
            const box = h('input', { type: 'checkbox', 'aria-label': `Select ${d.name ?? `#${d.id}`}`, disabled: !d.importable });
            box.checked = this.selected.has(d.id);
            box.addEventListener('change', () => {
              if (box.checked) this.selected.add(d.id);
              else this.selected.delete(d.id);
              pager.querySelector('[role=status]')!.textContent = `${from}–${to} of ${list.count} device(s) · ${this.selected.size} selected`;
              this.renderImport();
            });
            return h(
              'tr',
              {},
              h('td', {}, box),
              h('td', {}, d.name ?? `#${d.id}`),
              h('td', {}, d.site ?? ''),
              h('td', {}, d.platform ?? ''),
              h('td', {}, d.role ?? ''),
              h('td', {}, d.status ?? ''),
              h('td', {}, d.primary_ip ?? ''),
              h('td', {}, d.tags.join(', ')),
              h('td', { class: d.importable ? 'muted' : 'srv-error' }, d.reason ?? ''),
            );
          }),
        ),
      ),
    );
    this.renderImport();
  }

  private renderImport(): void {
    if (!this.canWrite) {
      clear(this.importBox);
      return;
    }
    const n = this.selected.size;
    const which = h('select', { id: 'nb-which' }, h('option', { value: 'selected' }, `The ${n} selected device(s)`), h('option', { value: 'filters' }, 'Every device matching the filters'));
    if (n === 0) which.value = 'filters';
    const folderBy = h('select', { id: 'nb-folder-by' }, h('option', { value: 'site' }, 'One folder per site'), h('option', { value: 'none' }, 'One folder for all'));
    const folder = h('input', { id: 'nb-folder', placeholder: 'NetBox', spellcheck: 'false' });
    const byName = h('input', { type: 'checkbox', id: 'nb-byname' });
    const preview = h('div', { class: 'nb-preview' });
    const importBtn = h('button', { type: 'button', class: 'primary', disabled: true }, 'Import');
    const body = () => {
      const b: Record<string, unknown> = { folder_by: folderBy.value, use_name_as_host: byName.checked };
      if (folder.value.trim()) b.folder = folder.value.trim();
      if (which.value === 'selected') b.device_ids = [...this.selected];
      else b.filters = this.filterValues();
      return b;
    };
    const invalidate = () => {
      importBtn.disabled = true;
      clear(preview);
    };
    for (const el of [which, folderBy, folder, byName]) el.addEventListener('change', invalidate);
    const previewBtn = h('button', { type: 'button', onclick: () => void run() }, 'Preview (dry run)');
    const run = async () => {
      previewBtn.disabled = true;
      clear(preview, h('p', { role: 'status', class: 'muted' }, 'Fetching from NetBox…'));
      try {
        const b = body();
        const r = await api.post<DryRun>('api/netbox/import', { ...b, dry_run: true });
        clear(
          preview,
          h('p', { role: 'status' }, `This import will create ${r.created.length}, update ${r.updated.length} and refuse ${r.refused.length} device(s).`),
          r.refused.length > 0
            ? h(
                'table',
                { class: 'grid', 'aria-label': 'Refused devices' },
                h('thead', {}, h('tr', {}, h('th', {}, 'Device'), h('th', {}, 'Reason'))),
                h('tbody', {}, ...r.refused.map((x) => h('tr', {}, h('td', {}, x.name ?? `#${x.netbox_id}`), h('td', { class: 'srv-error' }, x.reason ?? '')))),
              )
            : null,
          r.created.length + r.updated.length > 0
            ? h(
                'details',
                {},
                h('summary', {}, `Show the ${r.created.length + r.updated.length} device(s) to create or update`),
                h(
                  'table',
                  { class: 'grid', 'aria-label': 'Devices to import' },
                  h('thead', {}, h('tr', {}, h('th', {}, 'Device'), h('th', {}, 'Outcome'))),
                  h(
                    'tbody',
                    {},
                    ...r.created.map((x) => h('tr', {}, h('td', {}, x.name ?? `#${x.netbox_id}`), h('td', {}, 'create'))),
                    ...r.updated.map((x) => h('tr', {}, h('td', {}, x.name ?? `#${x.netbox_id}`), h('td', {}, 'update'))),
                  ),
                ),
              )
            : null,
        );
        importBtn.disabled = r.created.length + r.updated.length === 0;
        preview.scrollIntoView({ block: 'nearest' });
      } catch (e) {
        clear(preview, h('p', { class: 'form-error', role: 'alert' }, errText(e)));
      } finally {
        previewBtn.disabled = false;
      }
    };
    importBtn.addEventListener('click', () => void this.startImport(body(), preview, importBtn));
    clear(
      this.importBox,
      h('h2', {}, 'Import'),
      h(
        'div',
        { class: 'import-row' },
        h('div', { class: 'field' }, h('label', { for: 'nb-which' }, 'Import which devices'), which),
        h('div', { class: 'field' }, h('label', { for: 'nb-folder-by' }, 'Folders'), folderBy),
        h('div', { class: 'field' }, h('label', { for: 'nb-folder' }, 'Folder (one for all)'), folder),
      ),
      h('label', { class: 'check' }, byName, ' Use the device name as host when it has no primary IP'),
      h('div', { class: 'toolbar' }, previewBtn, importBtn),
      preview,
    );
  }

  private async startImport(b: Record<string, unknown>, box: HTMLElement, btn: HTMLButtonElement): Promise<void> {
    btn.disabled = true;
    let id: string;
    try {
      id = (await api.post<{ id: string }>('api/netbox/import', { ...b, dry_run: false })).id;
    } catch (e) {
      box.appendChild(h('p', { class: 'form-error', role: 'alert' }, errText(e)));
      btn.disabled = false;
      return;
    }
    const phase = h('p', { role: 'status' }, 'Import queued…');
    const progress = bar('Import progress', undefined) as HTMLProgressElement;
    const state = h('span', {}, chip('queued'));
    clear(box, h('div', { class: 'toolbar' }, h('strong', {}, 'Import job'), state), progress, phase);
    this.stream?.close();
    // A small import can finish before the job channel opens: the channel then replays
    // the job's and target's state but not the import's own progress events, so the
    // counts are read from the stored job instead.
    let finalSeen = false;
    const showStored = async (): Promise<void> => {
      try {
        const job = await api.get<{ targets?: { output?: { output: string }[] }[] }>(`api/jobs/${encodeURIComponent(id)}`);
        const out = job.targets?.[0]?.output?.[0]?.output;
        if (finalSeen || !out) return;
        const r = JSON.parse(out) as Record<string, unknown>;
        progress.max = 1;
        progress.value = 1;
        phase.textContent = `Imported: ${count(r.created)} created, ${count(r.updated)} updated, ${count(r.refused)} refused.`;
      } catch {
        /* the state chip still shows how the job ended */
      }
    };
    this.stream = new Stream(this.conn, { kind: 'job', job_id: id }, {
      progress: (e) => {
        if (e.event === 'netbox_import') {
          const p = String(e.phase);
          if (p === 'done' || p === 'failed') finalSeen = true;
          if (p === 'fetching') {
            const done = Number(e.pages_done ?? 0);
            const total = Number(e.pages_total ?? 0);
            if (total > 0) {
              progress.max = total;
              progress.value = done;
            }
            phase.textContent = `Fetching from NetBox: page ${done} of ${total || '?'}`;
          } else if (p === 'applying') phase.textContent = `Writing ${e.devices} saved session(s)…`;
          else if (p === 'done') {
            progress.max = 1;
            progress.value = 1;
            phase.textContent = `Imported: ${count(e.created)} created, ${count(e.updated)} updated, ${count(e.refused)} refused.`;
            this.imported();
          } else if (p === 'failed') phase.textContent = `Import failed: ${e.code}: ${e.message}`;
          else phase.textContent = p === 'queued' ? 'Waiting for a free import slot…' : p;
        } else if (e.event === 'target' && typeof e.state === 'string') {
          clear(state, chip(e.state));
          const err = e.error as { code: string; message: string } | undefined;
          if (err) {
            finalSeen = true;
            phase.textContent = `Import failed: ${err.code}: ${err.message}`;
          }
        } else if (e.event === 'job' && typeof e.state === 'string') clear(state, chip(e.state));
      },
      exit: () => {
        if (!finalSeen) void showStored();
        this.imported();
      },
      error: (code, message) => (phase.textContent = `${code}: ${message}`),
    });
  }
}
