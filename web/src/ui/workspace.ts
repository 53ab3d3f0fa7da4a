// Terminals in tabs, each tab a tree of split panes. Keyboard: Alt+T new tab, Alt+\
// split right, Alt+- split down, Alt+W close pane, Alt+arrows move between panes,
// Alt+1…9 / Alt+PageUp/PageDown switch tabs (see shortcuts.ts).

import { h, clear } from './dom';
import { TermView, TermSpec, TermHost, SavedTerm } from './term';

type Node = { leaf: TermView } | { dir: 'row' | 'column'; children: Node[] };

interface Tab {
  key: string;
  root: Node;
  focused: TermView;
  panel: HTMLElement;
  button?: HTMLElement;
}

export interface SavedNode {
  leaf?: string;
  dir?: 'row' | 'column';
  children?: SavedNode[];
}
export interface SavedLayout {
  tabs: { key: string; root: SavedNode; focused: string }[];
  active?: string;
}

export class Workspace {
  readonly el: HTMLElement;
  private strip: HTMLElement;
  private area: HTMLElement;
  private empty: HTMLElement;
  tabs: Tab[] = [];
  active?: Tab;

  constructor(
    private host: TermHost,
    private changed: () => void,
  ) {
    this.strip = h('div', { class: 'tabstrip', role: 'tablist', 'aria-label': 'Terminals' });
    this.empty = h(
      'div',
      { class: 'empty' },
      h('p', {}, 'No terminal open.'),
      h('p', { class: 'muted' }, 'Pick a device in the list and press Enter, or press ', h('kbd', {}, 'Alt+T'), '. ', h('kbd', {}, '?'), ' lists every shortcut.'),
    );
    this.area = h('div', { class: 'tab-area' }, this.empty);
    this.el = h('div', { class: 'workspace' }, this.strip, this.area);
  }

  all(): TermView[] {
    const out: TermView[] = [];
    for (const t of this.tabs) collect(t.root, out);
    return out;
  }

  /** Opens a terminal in a new tab, or beside the focused pane. */
  open(spec: TermSpec, where: 'tab' | 'right' | 'down' = 'tab', saved?: SavedTerm, log?: Uint8Array): TermView {
    const view = new TermView(this.host, spec, saved?.key);
    if (where === 'tab' || !this.active) {
      this.addTab({ leaf: view }, view);
    } else {
      const tab = this.active;
      tab.root = split(tab.root, tab.focused, view, where === 'right' ? 'row' : 'column');
      tab.focused = view;
      this.render(tab);
    }
    if (saved) view.resume(saved, log);
    else requestAnimationFrame(() => view.start());
    view.focus();
    this.changed();
    return view;
  }

  private addTab(root: Node, focused: TermView, key: string = crypto.randomUUID()): Tab {
    const panel = h('div', { class: 'tab-panel', role: 'tabpanel', id: `panel-${key}`, hidden: true });
    const tab: Tab = { key, root, focused, panel };
    this.tabs.push(tab);
    this.area.appendChild(panel);
    // Visible while its panes are built: xterm measures its font when opened.
    for (const t of this.tabs) t.panel.hidden = t !== tab;
    this.empty.hidden = true;
    this.render(tab);
    this.select(tab);
    return tab;
  }

  select(tab: Tab): void {
    this.active = tab;
    for (const t of this.tabs) t.panel.hidden = t !== tab;
    this.empty.hidden = this.tabs.length > 0;
    this.renderStrip();
    for (const v of this.all()) if (tabOf(this.tabs, v) === tab) v.scheduleFit();
    tab.focused.focus();
  }

  selectIndex(i: number): void {
    const t = this.tabs[i];
    if (t) this.select(t);
  }

  cycle(delta: number): void {
    if (!this.active || this.tabs.length === 0) return;
    const i = this.tabs.indexOf(this.active);
    this.select(this.tabs[(i + delta + this.tabs.length) % this.tabs.length]);
  }

  /** A pane got focus (click or keyboard). */
  focused(view: TermView): void {
    const tab = tabOf(this.tabs, view);
    if (!tab) return;
    tab.focused = view;
    for (const v of this.all()) v.el.classList.toggle('focused', v === view);
    if (tab !== this.active) this.select(tab);
    else this.renderStrip();
  }

  /** Closes a pane: its channel ends (the program is killed). */
  close(view: TermView): void {
    const tab = tabOf(this.tabs, view);
    if (!tab) return;
    const root = remove(tab.root, view);
    view.dispose();
    if (!root) {
      const i = this.tabs.indexOf(tab);
      this.tabs.splice(i, 1);
      tab.panel.remove();
      const next = this.tabs[Math.min(i, this.tabs.length - 1)];
      if (next) this.select(next);
      else {
        this.active = undefined;
        this.empty.hidden = false;
        this.renderStrip();
      }
    } else {
      tab.root = root;
      tab.focused = first(root);
      this.render(tab);
      tab.focused.focus();
    }
    this.changed();
  }

  closeFocused(): void {
    if (this.active) this.close(this.active.focused);
  }

  /** Moves focus to the nearest pane in a direction. */
  move(dir: 'left' | 'right' | 'up' | 'down'): void {
    const tab = this.active;
    if (!tab) return;
    const panes: TermView[] = [];
    collect(tab.root, panes);
    const from = tab.focused.el.getBoundingClientRect();
    const cx = from.left + from.width / 2;
    const cy = from.top + from.height / 2;
    let best: TermView | undefined;
    let bestD = Infinity;
    for (const p of panes) {
      if (p === tab.focused) continue;
      const r = p.el.getBoundingClientRect();
      const x = r.left + r.width / 2;
      const y = r.top + r.height / 2;
      const ok =
        (dir === 'left' && x < cx - 1) ||
        (dir === 'right' && x > cx + 1) ||
        (dir === 'up' && y < cy - 1) ||
        (dir === 'down' && y > cy + 1);
      const d = Math.hypot(x - cx, y - cy);
      if (ok && d < bestD) {
        best = p;
        bestD = d;
      }
    }
    best?.focus();
  }

  fitAll(): void {
    for (const v of this.all()) v.scheduleFit();
  }

  refreshTitles(): void {
    this.renderStrip();
  }

  private render(tab: Tab): void {
    clear(tab.panel, build(tab.root));
    for (const v of this.all()) {
      v.ensureOpen();
      v.scheduleFit();
    }
  }

  private renderStrip(): void {
    clear(
      this.strip,
      ...this.tabs.map((t, i) => {
        const v = t.focused;
        const count = countLeaves(t.root);
        const selected = t === this.active;
        const label = v.spec.title + (count > 1 ? ` +${count - 1}` : '');
        const btn = h(
          'button',
          {
            type: 'button',
            role: 'tab',
            class: 'tab',
            'aria-selected': String(selected),
            'aria-controls': t.panel.id,
            tabindex: selected ? 0 : -1,
            title: `${label} (Alt+${i + 1})`,
            dataset: { state: v.state },
            onclick: () => this.select(t),
          },
          h('span', { class: 'dot', 'aria-hidden': 'true' }),
          h('span', { class: 'tab-label' }, label),
          h('span', { class: 'visually-hidden' }, `, ${v.state}`),
        );
        const close = h(
          'button',
          {
            type: 'button',
            class: 'tab-close',
            'aria-label': `Close ${label}`,
            title: 'Close (Alt+W)',
            tabindex: selected ? 0 : -1,
            onclick: () => {
              const panes: TermView[] = [];
              collect(t.root, panes);
              for (const p of panes) this.close(p);
            },
          },
          '×',
        );
        btn.addEventListener('keydown', (ev) => {
          if (ev.key === 'ArrowRight' || ev.key === 'ArrowLeft') {
            this.cycle(ev.key === 'ArrowRight' ? 1 : -1);
            (this.strip.querySelector('[aria-selected="true"]') as HTMLElement | null)?.focus();
            ev.preventDefault();
          }
        });
        t.button = btn;
        return h('div', { class: 'tab-wrap' + (selected ? ' selected' : '') }, btn, close);
      }),
    );
  }

  save(): SavedLayout {
    return {
      tabs: this.tabs.map((t) => ({ key: t.key, root: saveNode(t.root), focused: t.focused.key })),
      active: this.active?.key,
    };
  }

  /** Rebuilds tabs after a reload; `make` creates (and resumes) the view for a key. */
  restore(layout: SavedLayout, make: (key: string) => TermView | undefined): void {
    for (const st of layout.tabs) {
      const root = loadNode(st.root, make);
      if (!root) continue;
      const panes: TermView[] = [];
      collect(root, panes);
      const focused = panes.find((p) => p.key === st.focused) ?? panes[0];
      this.addTab(root, focused, st.key);
    }
    const active = this.tabs.find((t) => t.key === layout.active) ?? this.tabs[0];
    if (active) this.select(active);
    this.changed();
  }

  /** A view for `restore`, not yet placed in any tab. */
  makeView(saved: SavedTerm): TermView {
    return new TermView(this.host, saved.spec, saved.key);
  }
}

function collect(n: Node, out: TermView[]): void {
  if ('leaf' in n) out.push(n.leaf);
  else for (const c of n.children) collect(c, out);
}
function countLeaves(n: Node): number {
  return 'leaf' in n ? 1 : n.children.reduce((a, c) => a + countLeaves(c), 0);
}
function first(n: Node): TermView {
  return 'leaf' in n ? n.leaf : first(n.children[0]);
}
function tabOf(tabs: Tab[], v: TermView): Tab | undefined {
  return tabs.find((t) => {
    const out: TermView[] = [];
    collect(t.root, out);
    return out.includes(v);
  });
}
function split(n: Node, at: TermView, add: TermView, dir: 'row' | 'column'): Node {
  if ('leaf' in n) {
    return n.leaf === at ? { dir, children: [n, { leaf: add }] } : n;
  }
  const i = n.children.findIndex((c) => 'leaf' in c && c.leaf === at);
  if (i >= 0 && n.dir === dir) {
    n.children.splice(i + 1, 0, { leaf: add });
    return n;
  }
  return { dir: n.dir, children: n.children.map((c) => split(c, at, add, dir)) };
}
function remove(n: Node, v: TermView): Node | undefined {
  if ('leaf' in n) return n.leaf === v ? undefined : n;
  const kids = n.children.map((c) => remove(c, v)).filter((c): c is Node => !!c);
  if (kids.length === 0) return undefined;
  if (kids.length === 1) return kids[0];
  return { dir: n.dir, children: kids };
}
function build(n: Node): HTMLElement {
  if ('leaf' in n) return n.leaf.el;
  return h('div', { class: `split ${n.dir}` }, ...n.children.map(build));
}
function saveNode(n: Node): SavedNode {
  return 'leaf' in n ? { leaf: n.leaf.key } : { dir: n.dir, children: n.children.map(saveNode) };
}
function loadNode(s: SavedNode, make: (key: string) => TermView | undefined): Node | undefined {
  if (s.leaf) {
    const v = make(s.leaf);
    return v ? { leaf: v } : undefined;
  }
  const kids = (s.children ?? []).map((c) => loadNode(c, make)).filter((c): c is Node => !!c);
  if (kids.length === 0) return undefined;
  if (kids.length === 1) return kids[0];
  return { dir: s.dir ?? 'row', children: kids };
}
