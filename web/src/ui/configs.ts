// Configs: the stored versions of each device (newest first, with size change), one
// version's text with line numbers, a diff between two versions (unified or side by
// side, added/removed lines highlighted, line numbers, next/previous hunk with n/p or
// j/k), and a search over every device's latest config.

import { api, Folder } from '../api';
import { changedSpan, counterparts, Diff, hunkHeader, sideBySide, stepHunk } from '../diffview';
import { clear, fmtBytes, fmtTime, h } from './dom';
import { deviceName } from './live';

/** A changed line with the part that differs from its counterpart in a <mark>. */
function marked(text: string, other: string | undefined, removed: boolean): (string | HTMLElement)[] {
  if (other === undefined) return [text];
  const [start, endA, endB] = removed ? changedSpan(text, other) : changedSpan(other, text);
  const end = removed ? endA : endB;
  // Nothing in common: the whole line is the change, the row colour says it already.
  if (end <= start || (start === 0 && end === text.length)) return [text];
  return [text.slice(0, start), h('mark', { class: 'w' }, text.slice(start, end)), text.slice(end)];
}

interface VersionMeta {
  id: string;
  session_id: string;
  created_at: number;
  bytes: number;
  last_checked: number;
  job_id?: string | null;
}

interface Version extends VersionMeta {
  text: string;
}

interface SearchResult {
  session_id: string;
  config_id: string;
  created_at: number;
  matches: { line: number; text: string }[];
}

export class ConfigsPage {
  readonly el: HTMLElement;
  private nav: HTMLElement;
  private body: HTMLElement;
  private tab: 'versions' | 'search' = 'versions';
  private device = h('select', { id: 'cfg-device' });
  private versionsBox = h('div', { class: 'versions' });
  private viewer = h('section', { class: 'cfg-viewer', 'aria-label': 'Config' });
  private versions: VersionMeta[] = [];
  private sessionId?: string;
  private mode: 'unified' | 'split' = (localStorage.getItem('opsgate.diffMode') as 'unified' | 'split') ?? 'unified';
  private searchBox = h('div', { class: 'search-results' });
  private q = h('input', { id: 'cfg-q', type: 'search', placeholder: 'e.g. vlan 321', spellcheck: 'false' });
  private regex = h('input', { id: 'cfg-regex', type: 'checkbox' });
  private icase = h('input', { id: 'cfg-icase', type: 'checkbox', checked: true });

  constructor(private folders: () => Folder[]) {
    this.nav = h('div', { class: 'subnav', role: 'tablist', 'aria-label': 'Configs sections' });
    this.body = h('div', { class: 'page-body' });
    this.el = h('section', { class: 'page', 'aria-label': 'Configs' }, h('h1', {}, 'Configs'), this.nav, this.body);
    this.device.addEventListener('change', () => void this.loadVersions(this.device.value));
    const search = h('form', { class: 'filters', role: 'search' });
    search.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.search();
    });
    this.searchForm = search;
  }
  private searchForm: HTMLFormElement;

  /** Forgets the device shown (a workspace switch: it belongs to the other one). */
  reset(): void {
    this.sessionId = undefined;
    this.versions = [];
    clear(this.versionsBox);
    clear(this.viewer);
  }

  show(tab = this.tab): void {
    this.tab = tab;
    clear(
      this.nav,
      h('button', { type: 'button', role: 'tab', 'aria-selected': String(tab === 'versions'), onclick: () => this.show('versions') }, 'Versions'),
      h('button', { type: 'button', role: 'tab', 'aria-selected': String(tab === 'search'), onclick: () => this.show('search') }, 'Search'),
    );
    if (tab === 'search') {
      clear(
        this.searchForm,
        h('div', { class: 'field grow' }, h('label', { for: 'cfg-q' }, 'Find in the latest config of every device'), this.q),
        h('label', { class: 'check' }, this.regex, ' Regular expression'),
        h('label', { class: 'check' }, this.icase, ' Ignore case'),
        h('button', { type: 'submit', class: 'primary' }, 'Search'),
      );
      clear(this.body, this.searchForm, this.searchBox);
      this.q.focus();
      return;
    }
    const all = this.folders().flatMap((f) => f.sessions);
    clear(this.device, h('option', { value: '' }, 'Pick a device…'), ...all.map((s) => h('option', { value: s.id }, `${s.display_name} (${s.host})`)));
    if (this.sessionId) this.device.value = this.sessionId;
    clear(
      this.body,
      h(
        'div',
        { class: 'cfg-layout' },
        h('div', { class: 'cfg-left' }, h('div', { class: 'field' }, h('label', { for: 'cfg-device' }, 'Device'), this.device), this.versionsBox),
        this.viewer,
      ),
    );
    if (this.sessionId) void this.loadVersions(this.sessionId);
  }

  /** Opens a device's versions; with `configId`, that version (or its diff with the one before). */
  async openDevice(sessionId: string, configId?: string, diffPrevious = false): Promise<void> {
    this.sessionId = sessionId;
    this.show('versions');
    await this.loadVersions(sessionId);
    const i = configId ? this.versions.findIndex((v) => v.id === configId) : 0;
    if (i < 0 || !this.versions[i]) return;
    if (diffPrevious && this.versions[i + 1]) await this.showDiff(this.versions[i + 1].id, this.versions[i].id);
    else await this.showVersion(this.versions[i].id);
  }

  private async loadVersions(sessionId: string): Promise<void> {
    this.sessionId = sessionId || undefined;
    if (!sessionId) {
      clear(this.versionsBox);
      return;
    }
    try {
      this.versions = await api.get<VersionMeta[]>(`api/configs?session_id=${encodeURIComponent(sessionId)}`);
    } catch (e) {
      clear(this.versionsBox, h('p', { class: 'form-error', role: 'alert' }, (e as Error).message));
      return;
    }
    const from = h('select', { id: 'cfg-from', 'aria-label': 'Compare from' });
    const to = h('select', { id: 'cfg-to', 'aria-label': 'Compare to' });
    for (const v of this.versions) {
      from.appendChild(h('option', { value: v.id }, fmtTime(v.created_at)));
      to.appendChild(h('option', { value: v.id }, fmtTime(v.created_at)));
    }
    if (this.versions[1]) from.value = this.versions[1].id;
    clear(
      this.versionsBox,
      h('h2', {}, `Versions (${this.versions.length})`),
      this.versions.length === 0 ? h('p', { class: 'muted' }, 'No backups yet: start a config backup job for this device.') : null,
      h(
        'ol',
        { class: 'version-list', 'aria-label': 'Versions' },
        ...this.versions.map((v, i) => {
          const prev = this.versions[i + 1];
          const delta = prev ? v.bytes - prev.bytes : 0;
          return h(
            'li',
            { 'data-id': v.id },
            h('button', { type: 'button', class: 'ghost ver', 'aria-label': `View version of ${fmtTime(v.created_at)}`, onclick: () => void this.showVersion(v.id) }, fmtTime(v.created_at)),
            h('span', { class: 'muted' }, fmtBytes(v.bytes), prev ? h('span', { class: delta > 0 ? 'plus' : delta < 0 ? 'minus' : '' }, ` ${delta >= 0 ? '+' : '−'}${Math.abs(delta)} B`) : null),
            prev ? h('button', { type: 'button', class: 'small', 'aria-label': `Diff ${fmtTime(v.created_at)} with the version before`, onclick: () => void this.showDiff(prev.id, v.id) }, 'Diff') : null,
          );
        }),
      ),
      this.versions.length > 1
        ? h(
            'div',
            { class: 'compare' },
            h('label', { for: 'cfg-from' }, 'From'),
            from,
            h('label', { for: 'cfg-to' }, 'To'),
            to,
            h('span', {}),
            h('button', { type: 'button', onclick: () => void this.showDiff(from.value, to.value) }, 'Compare'),
          )
        : null,
    );
  }

  private async showVersion(id: string, focusLine?: number): Promise<void> {
    let v: Version;
    try {
      v = await api.get<Version>(`api/configs/${encodeURIComponent(id)}`);
    } catch (e) {
      clear(this.viewer, h('p', { class: 'form-error', role: 'alert' }, (e as Error).message));
      return;
    }
    // A final newline ends the last line; it does not start an empty one.
    const lines = v.text.replace(/\n$/, '').split('\n');
    this.versionsBox.querySelectorAll('li').forEach((li) => (li.dataset.id === id ? li.setAttribute('aria-current', 'true') : li.removeAttribute('aria-current')));
    const code = h(
      'div',
      { class: 'code', tabindex: 0, role: 'region', 'aria-label': 'Config text' },
      ...lines.map((l, i) => h('div', { class: `ln${focusLine === i + 1 ? ' hit' : ''}`, id: `cl-${i + 1}` }, h('span', { class: 'num', 'aria-hidden': 'true' }, String(i + 1)), h('span', { class: 'txt' }, l))),
    );
    clear(
      this.viewer,
      h('div', { class: 'viewer-head' }, h('h2', {}, `${deviceName(this.folders(), v.session_id)} · ${fmtTime(v.created_at)}`), h('span', { class: 'muted' }, `${lines.length} lines · ${fmtBytes(v.bytes)} · last checked ${fmtTime(v.last_checked)}`)),
      code,
    );
    if (focusLine) code.querySelector(`#cl-${focusLine}`)?.scrollIntoView({ block: 'center' });
  }

  private async showDiff(from: string, to: string): Promise<void> {
    let d: Diff;
    try {
      d = await api.get<Diff>(`api/configs/diff?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
    } catch (e) {
      clear(this.viewer, h('p', { class: 'form-error', role: 'alert' }, (e as Error).message));
      return;
    }
    const meta = (id: string) => this.versions.find((v) => v.id === id);
    let current = -1;
    const body = h('div', { class: 'diff', tabindex: 0, role: 'region', 'aria-label': 'Diff (n / p: next / previous change)' });
    const pos = h('span', { class: 'muted', 'aria-live': 'polite' });
    const go = (dir: 1 | -1) => {
      current = stepHunk(current, dir, d.hunks.length);
      const el = body.querySelector<HTMLElement>(`[data-hunk="${current}"]`);
      body.querySelectorAll('.hunk.current').forEach((x) => x.classList.remove('current'));
      if (el) {
        el.classList.add('current');
        el.scrollIntoView({ block: 'start' });
      }
      pos.textContent = d.hunks.length ? `change ${current + 1} of ${d.hunks.length}` : '';
    };
    const draw = () => {
      localStorage.setItem('opsgate.diffMode', this.mode);
      body.dataset.mode = this.mode;
      clear(
        body,
        d.hunks.length === 0 ? h('p', { class: 'muted pad' }, 'The two versions are identical.') : null,
        ...d.hunks.map((hk, i) => {
          const pair = counterparts(hk);
          return h(
            'table',
            { class: `hunk${i === current ? ' current' : ''}`, 'data-hunk': String(i) },
            h('caption', { class: 'hunk-head' }, hunkHeader(hk)),
            this.mode === 'unified'
              ? h(
                  'tbody',
                  {},
                  ...hk.lines.map((l, k) =>
                    h(
                      'tr',
                      { class: `d-${l.tag}` },
                      h('td', { class: 'num' }, l.old_line ?? ''),
                      h('td', { class: 'num' }, l.new_line ?? ''),
                      h('td', { class: 'sign', 'aria-label': l.tag === 'insert' ? 'added' : l.tag === 'delete' ? 'removed' : undefined }, l.tag === 'insert' ? '+' : l.tag === 'delete' ? '−' : ' '),
                      h('td', { class: 'txt' }, l.tag === 'equal' ? l.text : marked(l.text, pair.get(k), l.tag === 'delete')),
                    ),
                  ),
                )
              : h(
                  'tbody',
                  {},
                  ...sideBySide(hk).map((r) =>
                    h(
                      'tr',
                      {},
                      h('td', { class: `num d-${r.left?.tag ?? 'none'}` }, r.left?.line ?? ''),
                      h('td', { class: `txt d-${r.left?.tag ?? 'none'}`, 'aria-label': r.left?.tag === 'delete' ? `removed: ${r.left.text}` : undefined }, r.left?.tag === 'delete' ? marked(r.left.text, r.right?.text, true) : (r.left?.text ?? '')),
                      h('td', { class: `num d-${r.right?.tag ?? 'none'}` }, r.right?.line ?? ''),
                      h('td', { class: `txt d-${r.right?.tag ?? 'none'}`, 'aria-label': r.right?.tag === 'insert' ? `added: ${r.right.text}` : undefined }, r.right?.tag === 'insert' ? marked(r.right.text, r.left?.text, false) : (r.right?.text ?? '')),
                    ),
                  ),
                ),
          );
        }),
      );
    };
    body.addEventListener('keydown', (ev) => {
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      if (ev.key === 'n' || ev.key === 'j') go(1);
      else if (ev.key === 'p' || ev.key === 'k') go(-1);
      else return;
      ev.preventDefault();
    });
    const modeBtn = (m: 'unified' | 'split', label: string) =>
      h('button', { type: 'button', class: 'small', 'aria-pressed': String(this.mode === m), onclick: (ev: Event) => {
        this.mode = m;
        (ev.currentTarget as HTMLElement).parentElement?.querySelectorAll('button[aria-pressed]').forEach((b) => b.setAttribute('aria-pressed', String(b === ev.currentTarget)));
        draw();
      } }, label);
    const a = meta(from);
    const b = meta(to);
    clear(
      this.viewer,
      h(
        'div',
        { class: 'viewer-head' },
        h('h2', {}, `${deviceName(this.folders(), a?.session_id ?? this.sessionId ?? '')}: ${a ? fmtTime(a.created_at) : from} → ${b ? fmtTime(b.created_at) : to}`),
        h('span', { class: 'diffstat' }, h('span', { class: 'plus' }, `+${d.stats.added}`), ' ', h('span', { class: 'minus' }, `−${d.stats.removed}`), h('span', { class: 'muted' }, ` in ${d.hunks.length} change${d.hunks.length === 1 ? '' : 's'}`)),
      ),
      h(
        'div',
        { class: 'toolbar' },
        h('span', { class: 'seg', role: 'group', 'aria-label': 'Diff layout' }, modeBtn('unified', 'Unified'), modeBtn('split', 'Side by side')),
        h('button', { type: 'button', class: 'small', 'aria-keyshortcuts': 'p k', onclick: () => go(-1) }, '↑ Previous change'),
        h('button', { type: 'button', class: 'small', 'aria-keyshortcuts': 'n j', onclick: () => go(1) }, '↓ Next change'),
        pos,
        h('span', { class: 'muted' }, 'keys: n / p in the diff'),
      ),
      body,
    );
    draw();
  }

  private async search(): Promise<void> {
    const q = this.q.value;
    if (!q.trim()) return;
    const params = new URLSearchParams({ q });
    if (this.regex.checked) params.set('regex', 'true');
    if (this.icase.checked) params.set('ignore_case', 'true');
    let r: { results: SearchResult[]; truncated?: boolean };
    try {
      r = await api.get(`api/configs/search?${params}`);
    } catch (e) {
      clear(this.searchBox, h('p', { class: 'form-error', role: 'alert' }, (e as Error).message));
      return;
    }
    const n = r.results.reduce((a, x) => a + x.matches.length, 0);
    clear(
      this.searchBox,
      h(
        'p',
        { class: 'muted', role: 'status' },
        `${n} matching line${n === 1 ? '' : 's'} in ${r.results.length} device${r.results.length === 1 ? '' : 's'}` +
          (r.truncated ? ' (more matched than one answer shows: narrow the search)' : ''),
      ),
      ...r.results.map((res) => {
        const name = deviceName(this.folders(), res.session_id);
        return h(
          'section',
          { class: 'search-hit', 'aria-label': name },
          h('h3', {}, h('button', { type: 'button', class: 'link', onclick: () => void this.openAt(res.session_id, res.config_id) }, name), h('span', { class: 'muted' }, ` · ${fmtTime(res.created_at)}`)),
          h(
            'div',
            { class: 'code' },
            ...res.matches.map((m) =>
              h(
                'button',
                { type: 'button', class: 'ln match', 'aria-label': `${name} line ${m.line}: ${m.text}`, onclick: () => void this.openAt(res.session_id, res.config_id, m.line) },
                h('span', { class: 'num' }, String(m.line)),
                h('span', { class: 'txt' }, m.text),
              ),
            ),
          ),
        );
      }),
    );
  }

  private async openAt(sessionId: string, configId: string, line?: number): Promise<void> {
    this.sessionId = sessionId;
    this.show('versions');
    await this.showVersion(configId, line);
  }
}
