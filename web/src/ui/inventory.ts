// Inventory: saved sessions and folders, credentials (secrets write-only), known hosts,
// YAML import (a dry run shows what will change and every bad row first) and export.
import { api, ApiError, Credential, currentWorkspace, Folder, KnownHost, url } from '../api';
import { confirmDialog, formDialog, Values } from './dialog';
import { clear, fmtTime, h, toast } from './dom';
import { deleteFolder, deleteSession, editSession, moveSession, newFolder, renameFolder } from './sessions';

export type InventoryTab = 'sessions' | 'credentials' | 'known-hosts' | 'import';

const TABS: [InventoryTab, string][] = [
  ['sessions', 'Sessions'],
  ['credentials', 'Credentials'],
  ['known-hosts', 'Known hosts'],
  ['import', 'Import / export'],
];

export class InventoryPage {
  readonly el: HTMLElement;
  private body: HTMLElement;
  private nav: HTMLElement;
  private tab: InventoryTab = 'sessions';

  constructor(private changed: () => void) {
    this.nav = h('div', { class: 'subnav', role: 'tablist', 'aria-label': 'Inventory sections' });
    this.body = h('div', { class: 'page-body' });
    this.el = h('section', { class: 'page', 'aria-label': 'Inventory' }, h('h1', {}, 'Inventory'), this.nav, this.body);
  }

  show(tab: InventoryTab = this.tab): void {
    this.tab = tab;
    clear(
      this.nav,
      ...TABS.map(([k, label]) =>
        h('button', { type: 'button', role: 'tab', 'aria-selected': String(k === tab), onclick: () => this.show(k) }, label),
      ),
    );
    const load = { sessions: () => this.sessions(), credentials: () => this.credentials(), 'known-hosts': () => this.knownHosts(), import: () => this.importExport() }[tab];
    clear(this.body, h('p', { class: 'muted' }, 'Loading…'));
    load().catch((e) => clear(this.body, h('p', { class: 'form-error', role: 'alert' }, (e as Error).message)));
  }

  private refresh = () => {
    this.changed();
    this.show();
  };

  private async sessions(): Promise<void> {
    const { folders } = await api.get<{ folders: Folder[] }>('api/sessions');
    clear(
      this.body,
      h(
        'div',
        { class: 'toolbar' },
        h('button', { type: 'button', class: 'primary write', onclick: () => void editSession(undefined, folders, this.refresh) }, 'New session'),
        h('button', { type: 'button', class: 'write', onclick: () => newFolder(this.refresh) }, 'New folder'),
      ),
      ...folders.map((f) =>
        h(
          'div',
          { class: 'group' },
          h(
            'h2',
            { class: 'group-head' },
            f.name,
            h('span', { class: 'muted' }, ` ${f.sessions.length} session(s)`),
            h('button', { type: 'button', class: 'small write', 'aria-label': `Rename folder ${f.name}`, onclick: () => renameFolder(f.name, this.refresh) }, 'Rename'),
            h('button', { type: 'button', class: 'small write', 'aria-label': `Delete folder ${f.name}`, onclick: () => void deleteFolder(f, this.refresh) }, 'Delete'),
          ),
          f.sessions.length === 0
            ? h('p', { class: 'muted' }, 'Empty.')
            : h(
                'table',
                { class: 'grid' },
                h('thead', {}, h('tr', {}, ...['Name', 'Host', 'User', 'Type', 'Tags', ''].map((c) => h('th', { scope: 'col' }, c)))),
                h(
                  'tbody',
                  {},
                  ...f.sessions.map((s) =>
                    h(
                      'tr',
                      {},
                      h('td', {}, s.display_name),
                      h('td', {}, `${s.host}:${s.port}`),
                      h('td', {}, s.username),
                      h('td', {}, s.device_type),
                      h('td', {}, s.tags.join(', ')),
                      h(
                        'td',
                        { class: 'row-actions' },
                        h('button', { type: 'button', class: 'small write', 'aria-label': `Edit ${s.display_name}`, onclick: () => void editSession(s, folders, this.refresh) }, 'Edit'),
                        h('button', { type: 'button', class: 'small write', 'aria-label': `Move ${s.display_name}`, onclick: () => moveSession(s, folders, this.refresh) }, 'Move'),
                        h('button', { type: 'button', class: 'small write', 'aria-label': `Delete ${s.display_name}`, onclick: () => void deleteSession(s, this.refresh) }, 'Delete'),
                      ),
                    ),
                  ),
                ),
              ),
        ),
      ),
    );
  }

  private async credentials(): Promise<void> {
    const list = await api.get<Credential[]>('api/credentials');
    clear(
      this.body,
      h('p', { class: 'muted' }, 'Secrets are sealed on the gateway and never shown again. Leave a secret empty when editing to keep it.'),
      h('div', { class: 'toolbar' }, h('button', { type: 'button', class: 'primary write', onclick: () => this.editCredential() }, 'New credential')),
      list.length === 0
        ? h('p', { class: 'muted' }, 'No credentials yet.')
        : h(
            'table',
            { class: 'grid' },
            h('thead', {}, h('tr', {}, ...['Name', 'Kind', 'Username', 'Passphrase', 'Enable secret', ''].map((c) => h('th', { scope: 'col' }, c)))),
            h(
              'tbody',
              {},
              ...list.map((c) =>
                h(
                  'tr',
                  {},
                  h('td', {}, c.name),
                  h('td', {}, c.kind === 'password' ? 'password' : 'private key'),
                  h('td', {}, c.username ?? ''),
                  h('td', {}, c.has_passphrase ? 'set' : '—'),
                  h('td', {}, c.has_enable_secret ? 'set' : '—'),
                  h(
                    'td',
                    { class: 'row-actions' },
                    h('button', { type: 'button', class: 'small write', 'aria-label': `Edit ${c.name}`, onclick: () => this.editCredential(c) }, 'Edit'),
                    h(
                      'button',
                      {
                        type: 'button',
                        class: 'small',
                        'aria-label': `Delete ${c.name}`,
                        onclick: async () => {
                          if (!(await confirmDialog(`Delete ${c.name}?`, 'The credential and its sealed secret will be removed.', 'Delete'))) return;
                          try {
                            await api.del(`api/credentials/${encodeURIComponent(c.id)}`);
                            this.refresh();
                          } catch (e) {
                            toast((e as Error).message, 'error');
                          }
                        },
                      },
                      'Delete',
                    ),
                  ),
                ),
              ),
            ),
          ),
    );
  }

  private editCredential(c?: Credential): void {
    const keep = c ? ' (empty: unchanged)' : '';
    formDialog(
      c ? `Edit ${c.name}` : 'New credential',
      [
        { name: 'name', label: 'Name', value: c?.name, required: true },
        { name: 'kind', label: 'Kind', type: 'select', value: c?.kind ?? 'password', options: [['password', 'Password'], ['private_key', 'Private key']] },
        { name: 'username', label: 'Username', value: c?.username ?? '' },
        { name: 'password', label: `Password${keep}`, type: 'password', autocomplete: 'new-password', help: 'For kind Password.' },
        { name: 'key', label: `Private key${keep}`, type: 'textarea', placeholder: '-----BEGIN OPENSSH PRIVATE KEY-----', help: 'For kind Private key (ed25519, ecdsa, rsa).' },
        { name: 'passphrase', label: `Key passphrase${keep}`, type: 'password', autocomplete: 'new-password' },
        { name: 'enable_secret', label: `Enable secret${keep}`, type: 'password', autocomplete: 'new-password', help: 'For devices with an enable mode.' },
      ],
      c ? 'Save' : 'Create',
      async (v: Values) => {
        const secret = v.kind === 'password' ? v.password : v.key;
        const b = {
          name: v.name.trim(),
          kind: v.kind,
          username: v.username.trim() || undefined,
          secret: secret || undefined,
          passphrase: v.passphrase || undefined,
          enable_secret: v.enable_secret || undefined,
        };
        if (c) await api.put(`api/credentials/${encodeURIComponent(c.id)}`, b);
        else await api.post('api/credentials', b);
        this.refresh();
      },
    );
  }

  private async knownHosts(): Promise<void> {
    const list = await api.get<KnownHost[]>('api/known-hosts');
    clear(
      this.body,
      h('p', { class: 'muted' }, 'Host keys you trusted. Remove an entry when a device was replaced or re-keyed; the next connection asks again.'),
      list.length === 0
        ? h('p', { class: 'muted' }, 'No trusted host keys yet.')
        : h(
            'table',
            { class: 'grid' },
            h('thead', {}, h('tr', {}, ...['Host', 'Algorithm', 'Fingerprint', 'Trusted', ''].map((c) => h('th', { scope: 'col' }, c)))),
            h(
              'tbody',
              {},
              ...list.map((k) =>
                h(
                  'tr',
                  {},
                  h('td', {}, `${k.host}:${k.port}`),
                  h('td', {}, k.algorithm),
                  h('td', {}, h('code', {}, k.fingerprint)),
                  h('td', {}, fmtTime(k.added_at)),
                  h(
                    'td',
                    { class: 'row-actions' },
                    h(
                      'button',
                      {
                        type: 'button',
                        class: 'small',
                        'aria-label': `Remove the key of ${k.host}:${k.port}`,
                        onclick: async () => {
                          if (!(await confirmDialog(`Remove the key of ${k.host}:${k.port}?`, `The next connection to ${k.host}:${k.port} will ask you to trust its key again.`, 'Remove'))) return;
                          await api.del(`api/known-hosts/${encodeURIComponent(k.id)}`).catch((e) => toast((e as Error).message, 'error'));
                          this.refresh();
                        },
                      },
                      'Remove',
                    ),
                  ),
                ),
              ),
            ),
          ),
    );
  }

  private async importExport(): Promise<void> {
    const text = h('textarea', { id: 'import-text', rows: 8, spellcheck: 'false', placeholder: '- folder_name: Core\n  sessions:\n    - display_name: core-sw1\n      host: 10.0.0.1\n      port: \'22\'\n      DeviceType: cisco_ios\n      username: admin' });
    const file = h('input', { type: 'file', id: 'import-file', accept: '.yaml,.yml,text/yaml' });
    file.addEventListener('change', async () => {
      const f = file.files?.[0];
      if (f) text.value = await f.text();
    });
    const mode = h('select', { id: 'import-mode' }, h('option', { value: 'merge' }, 'Merge: update same names, add the rest'), h('option', { value: 'replace' }, 'Replace: remove every saved session first'));
    const result = h('div', { class: 'import-result', 'aria-live': 'polite' });
    const apply = h('button', { type: 'button', class: 'primary write', disabled: true }, 'Import');
    let previewed = '';
    const preview = async () => {
      apply.disabled = true;
      try {
        const r = await api.postYaml<{ valid: boolean; created: number; updated: number; removed: number; errors: { folder: string; row: number; display_name?: string; message: string }[] }>(
          `api/sessions/import?mode=${mode.value}&dry_run=true`,
          text.value,
        );
        if (r.valid) {
          previewed = mode.value + '\n' + text.value;
          apply.disabled = false;
          clear(
            result,
            h('p', { role: 'status' }, `This import will create ${r.created}, update ${r.updated}` + (mode.value === 'replace' ? ` and first remove all ${r.removed} existing saved session(s).` : '.')),
          );
        } else {
          clear(
            result,
            h('p', { class: 'form-error', role: 'alert' }, `Nothing can be imported: ${r.errors.length} bad row(s). Fix them and preview again.`),
            h(
              'table',
              { class: 'grid' },
              h('thead', {}, h('tr', {}, ...['Folder', 'Row', 'Name', 'Problem'].map((c) => h('th', { scope: 'col' }, c)))),
              h('tbody', {}, ...r.errors.map((e) => h('tr', {}, h('td', {}, e.folder), h('td', {}, e.row ? String(e.row) : '—'), h('td', {}, e.display_name ?? ''), h('td', {}, e.message)))),
            ),
          );
        }
      } catch (e) {
        clear(result, h('p', { class: 'form-error', role: 'alert' }, e instanceof ApiError ? e.message : String(e)));
      }
    };
    text.addEventListener('input', () => (apply.disabled = true));
    mode.addEventListener('change', () => (apply.disabled = true));
    apply.addEventListener('click', async () => {
      if (previewed !== mode.value + '\n' + text.value) return;
      if (mode.value === 'replace' && !(await confirmDialog('Replace every saved session?', 'All your saved sessions and folders are removed, then the import is applied.', 'Replace'))) return;
      try {
        const r = await api.postYaml<{ created: number; updated: number; removed: number }>(`api/sessions/import?mode=${mode.value}`, text.value);
        clear(result, h('p', { role: 'status' }, `Imported: ${r.created} created, ${r.updated} updated, ${r.removed} removed.`));
        apply.disabled = true;
        this.changed();
      } catch (e) {
        clear(result, h('p', { class: 'form-error', role: 'alert' }, (e as Error).message));
      }
    });
    clear(
      this.body,
      h('h2', {}, 'Export'),
      h('p', {}, h('a', { href: url(exportPath()), download: 'opsgate-sessions.yaml', class: 'button' }, 'Download YAML')),
      h('h2', {}, 'Import'),
      h(
        'div',
        { class: 'import-row' },
        h('div', { class: 'field' }, h('label', { for: 'import-file' }, 'YAML file'), file),
        h('div', { class: 'field' }, h('label', { for: 'import-mode' }, 'Mode'), mode),
      ),
      h('div', { class: 'field' }, h('label', { for: 'import-text' }, 'or paste YAML'), text),
      h('div', { class: 'toolbar' }, h('button', { type: 'button', class: 'write', onclick: () => void preview() }, 'Preview'), apply),
      result,
    );
  }
}

/** The export link: a plain download carries no header, so it names the workspace. */
function exportPath(): string {
  const ws = currentWorkspace();
  return ws === 'personal' ? 'api/sessions/export' : `api/sessions/export?workspace=${encodeURIComponent(ws)}`;
}
