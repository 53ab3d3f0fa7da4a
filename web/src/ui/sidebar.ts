// The device tree: folders of saved sessions with instant search (name, host, tag),
// local programs, and terminals of this login that no tab of this page shows.
// Each device is a button named by its display name: Enter or click opens it; the
// context menu (right click, the ⋯ button, or Shift+F10) edits, moves, deletes.

import { api, Folder, LiveChannel, SavedSession } from '../api';
import { h, clear, toast } from './dom';
import { showMenu, MenuItem } from './menu';
import { deleteFolder, deleteSession, editSession, moveSession, newFolder, renameFolder } from './sessions';
import type { TermSpec } from './term';

export interface SidebarHost {
  canOpen: boolean;
  open(spec: TermSpec, where?: 'tab' | 'right' | 'down'): void;
  adopt(ch: LiveChannel, title: string): void;
  shownChannelIds(): Set<string>;
  /** Starts a config backup of a device (the Jobs screen, device preselected). */
  backup?(s: SavedSession): void;
  /** Shows a device's stored config versions. */
  configs?(s: SavedSession): void;
}

export function sessionSpec(s: SavedSession): TermSpec {
  return { kind: 'ssh', title: s.display_name, sessionId: s.id, where: `${s.host}:${s.port}` };
}

/** Only terminals are adopted or listed: tool, job and stats channels belong to their
 * screens (a reload simply opens them again). */
function terminalsOnly(live: LiveChannel[]): LiveChannel[] {
  return live.filter((c) => c.kind === 'ssh' || c.kind === 'pty');
}

export class Sidebar {
  readonly el: HTMLElement;
  readonly search: HTMLInputElement;
  folders: Folder[] = [];
  programs: string[] = [];
  private live: LiveChannel[] = [];
  private tree: HTMLElement;
  private sideTools: HTMLElement;
  private collapsed = new Set<string>(JSON.parse(localStorage.getItem('opsgate.collapsed') ?? '[]'));

  constructor(private host: SidebarHost) {
    this.search = h('input', {
      type: 'search',
      class: 'tree-search',
      placeholder: 'Search name, host, tag',
      'aria-label': 'Search devices (Ctrl+Shift+F)',
      spellcheck: 'false',
    });
    this.search.addEventListener('input', () => this.render());
    this.search.addEventListener('keydown', (ev) => {
      if (ev.key === 'ArrowDown' || ev.key === 'Enter') {
        const firstDev = this.tree.querySelector<HTMLElement>('.dev');
        if (firstDev) {
          ev.preventDefault();
          if (ev.key === 'Enter' && this.host.canOpen) firstDev.click();
          else firstDev.focus();
        }
      }
    });
    this.tree = h('nav', { class: 'tree', 'aria-label': 'Devices' });
    this.tree.addEventListener('keydown', (ev) => this.treeKeys(ev));
    const tools = h(
      'div',
      { class: 'side-tools' },
      h('button', { type: 'button', title: 'New saved session', onclick: () => void editSession(undefined, this.folders, () => void this.reload()) }, '+ Session'),
      h('button', { type: 'button', title: 'New folder', onclick: () => newFolder(() => void this.reload()) }, '+ Folder'),
    );
    this.sideTools = tools;
    this.el = h('aside', { class: 'sidebar', 'aria-label': 'Sidebar' }, this.search, tools, this.tree);
  }

  /** Follows the role in the selected workspace: a viewer opens nothing and gets no
   * add buttons (the gateway would refuse with 403 anyway). */
  setWritable(writable: boolean): void {
    this.host.canOpen = writable;
    this.sideTools.hidden = !writable;
    this.render();
  }

  async reload(): Promise<void> {
    try {
      const [sess, programs, live] = await Promise.all([
        api.get<{ folders: Folder[] }>('api/sessions'),
        api.get<string[]>('api/programs').catch(() => [] as string[]),
        api.get<LiveChannel[]>('api/channels').catch(() => [] as LiveChannel[]),
      ]);
      this.folders = sess.folders;
      this.programs = programs;
      this.live = terminalsOnly(live);
    } catch (e) {
      toast(`Could not load the device list: ${(e as Error).message}`, 'error');
    }
    this.render();
  }

  /** Refreshes only the list of live channels (cheap; after tabs change). */
  async reloadLive(): Promise<void> {
    try {
      this.live = terminalsOnly(await api.get<LiveChannel[]>('api/channels'));
      this.render();
    } catch {
      /* keep the old list */
    }
  }

  liveChannels(): LiveChannel[] {
    return this.live;
  }

  /** The display name a live channel's target refers to. */
  titleOf(c: LiveChannel): string {
    const m = /^saved session (.+)$/.exec(c.target);
    if (m) {
      for (const f of this.folders) for (const s of f.sessions) if (s.id === m[1]) return s.display_name;
      return 'saved session';
    }
    const p = /^program (.+)$/.exec(c.target);
    return p ? p[1] : c.target;
  }

  specOf(c: LiveChannel): TermSpec {
    const m = /^saved session (.+)$/.exec(c.target);
    if (m) {
      for (const f of this.folders)
        for (const s of f.sessions) if (s.id === m[1]) return sessionSpec(s);
      return { kind: 'ssh', title: 'saved session', sessionId: m[1] };
    }
    const p = /^program (.+)$/.exec(c.target);
    if (p) return { kind: 'pty', title: p[1], program: p[1] };
    return { kind: 'ssh', title: c.target };
  }

  private matches(s: SavedSession, q: string): boolean {
    if (!q) return true;
    return (
      s.display_name.toLowerCase().includes(q) ||
      s.host.toLowerCase().includes(q) ||
      s.tags.some((t) => t.toLowerCase().includes(q))
    );
  }

  render(): void {
    const q = this.search.value.trim().toLowerCase();
    const groups = this.folders
      .map((f) => ({ f, list: f.sessions.filter((s) => this.matches(s, q)) }))
      .filter((g) => !q || g.list.length > 0);
    const shown = this.host.shownChannelIds();
    const elsewhere = this.live.filter((c) => !shown.has(c.id));
    const programs = this.programs.filter((p) => !q || p.toLowerCase().includes(q));
    clear(
      this.tree,
      groups.length === 0
        ? h('p', { class: 'muted pad' }, q ? `No device matches “${q}”.` : this.host.canOpen ? 'No saved sessions yet. Add one with + Session.' : 'No saved sessions in this workspace.')
        : null,
      ...groups.map(({ f, list }) => this.folderEl(f, list, !!q)),
      programs.length > 0 && this.host.canOpen
        ? h(
            'div',
            { class: 'folder' },
            h('div', { class: 'folder-head static' }, 'Local programs'),
            h(
              'ul',
              { role: 'list' },
              ...programs.map((p) =>
                h(
                  'li',
                  {},
                  h(
                    'button',
                    {
                      type: 'button',
                      class: 'dev',
                      'aria-label': p,
                      onclick: () => this.host.open({ kind: 'pty', title: p, program: p }),
                    },
                    h('span', { class: 'dev-name' }, p),
                    h('span', { class: 'dev-host' }, 'local'),
                  ),
                ),
              ),
            ),
          )
        : null,
      elsewhere.length > 0
        ? h(
            'div',
            { class: 'folder' },
            h('div', { class: 'folder-head static' }, 'Running terminals not shown here'),
            h(
              'ul',
              { role: 'list' },
              ...elsewhere.map((c) => {
                const title = this.titleOf(c);
                const state = c.exited ? `exited ${c.exit_code ?? ''}` : c.attached ? 'in another tab' : 'detached';
                return h(
                  'li',
                  {},
                  h(
                    'button',
                    {
                      type: 'button',
                      class: 'dev',
                      'aria-label': `${title} (${state})`,
                      title: `Attach ${title} here`,
                      onclick: () => this.host.adopt(c, title),
                    },
                    h('span', { class: 'dev-name' }, title),
                    h('span', { class: 'dev-host' }, state),
                  ),
                );
              }),
            ),
          )
        : null,
    );
  }

  private folderEl(f: Folder, list: SavedSession[], searching: boolean): HTMLElement {
    const open = searching || !this.collapsed.has(f.name);
    const head = h(
      'button',
      {
        type: 'button',
        class: 'folder-head',
        'aria-expanded': String(open),
        onclick: () => {
          if (this.collapsed.has(f.name)) this.collapsed.delete(f.name);
          else this.collapsed.add(f.name);
          localStorage.setItem('opsgate.collapsed', JSON.stringify([...this.collapsed]));
          this.render();
          (this.tree.querySelector(`[data-folder="${CSS.escape(f.name)}"]`) as HTMLElement | null)?.focus();
        },
        oncontextmenu: (ev: MouseEvent) => {
          ev.preventDefault();
          this.folderMenu(f, { x: ev.clientX, y: ev.clientY }, head);
        },
        dataset: { folder: f.name },
      },
      h('span', { class: 'chev', 'aria-hidden': 'true' }, open ? '▾' : '▸'),
      f.name,
      h('span', { class: 'count' }, String(f.sessions.length)),
    );
    return h(
      'div',
      { class: 'folder' },
      head,
      open ? h('ul', { role: 'list' }, ...list.map((s) => this.deviceEl(s))) : null,
    );
  }

  private deviceEl(s: SavedSession): HTMLElement {
    const btn = h(
      'button',
      {
        type: 'button',
        class: 'dev',
        'aria-label': s.display_name,
        title: `${s.username}@${s.host}:${s.port} · ${s.device_type}${s.tags.length ? ' · ' + s.tags.join(', ') : ''}`,
        onclick: () => {
          if (this.host.canOpen) this.host.open(sessionSpec(s));
          else toast('Viewers cannot open terminals.', 'error');
        },
        oncontextmenu: (ev: MouseEvent) => {
          ev.preventDefault();
          this.deviceMenu(s, { x: ev.clientX, y: ev.clientY }, btn);
        },
        onkeydown: (ev: KeyboardEvent) => {
          if ((ev.shiftKey && ev.key === 'F10') || ev.key === 'ContextMenu') {
            ev.preventDefault();
            const r = btn.getBoundingClientRect();
            this.deviceMenu(s, { x: r.left + 20, y: r.bottom }, btn);
          }
        },
      },
      h('span', { class: 'dev-name' }, s.display_name),
      h('span', { class: 'dev-host' }, s.host),
    );
    const more = h(
      'button',
      {
        type: 'button',
        class: 'more',
        'aria-label': `Actions for ${s.display_name}`,
        tabindex: -1,
        onclick: () => {
          const r = more.getBoundingClientRect();
          this.deviceMenu(s, { x: r.left, y: r.bottom }, btn);
        },
      },
      '⋯',
    );
    return h('li', { class: 'dev-row' }, btn, more);
  }

  private deviceMenu(s: SavedSession, at: { x: number; y: number }, back: HTMLElement): void {
    const done = () => void this.reload();
    const items: MenuItem[] = [];
    if (this.host.canOpen) {
      items.push(['Open in new tab', () => this.host.open(sessionSpec(s))]);
      items.push(['Open to the right', () => this.host.open(sessionSpec(s), 'right')]);
      items.push(['Open below', () => this.host.open(sessionSpec(s), 'down')]);
    }
    if (this.host.backup && this.host.canOpen) items.push(['Back up config…', () => this.host.backup?.(s)]);
    if (this.host.configs) items.push(['Config versions', () => this.host.configs?.(s)]);
    items.push(['Edit…', () => void editSession(s, this.folders, done)]);
    items.push(['Duplicate…', () => void editSession(s, this.folders, done, true)]);
    items.push(['Move to folder…', () => moveSession(s, this.folders, done)]);
    items.push(['Delete…', () => void deleteSession(s, done), true]);
    showMenu(items, at, back);
  }

  private folderMenu(f: Folder, at: { x: number; y: number }, back: HTMLElement): void {
    const done = () => void this.reload();
    showMenu(
      [
        ['Rename…', () => renameFolder(f.name, done)],
        ['Delete…', () => void deleteFolder(f, done), true],
      ],
      at,
      back,
    );
  }

  /** Up/Down move between the tree's buttons. */
  private treeKeys(ev: KeyboardEvent): void {
    if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
    const items = [...this.tree.querySelectorAll<HTMLElement>('.folder-head:not(.static), .dev')];
    const i = items.indexOf(document.activeElement as HTMLElement);
    if (i < 0) return;
    const next = items[i + (ev.key === 'ArrowDown' ? 1 : -1)];
    if (next) {
      next.focus();
      ev.preventDefault();
    } else if (ev.key === 'ArrowUp') {
      this.search.focus();
      ev.preventDefault();
    }
  }
}
