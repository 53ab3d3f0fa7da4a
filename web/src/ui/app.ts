// The console: header (pages, user, sign out), the device sidebar, the terminal
// workspace or an inventory/admin page, and a status bar with the socket's state.

import { api, LiveChannel, Me, Role, setWorkspace } from '../api';
import { canWrite, pickWorkspace, storageKey, WorkspaceInfo, workspaceLabel, PERSONAL } from '../wsselect';
import { Connection, SocketState } from '../connection';
import { clearConsole, loadConsole, loadLog, saveConsole } from '../persist';
import { AdminPage } from './admin';
import { AppsPage } from './apps';
import { NetboxPage } from './netbox';
import { ConfigsPage } from './configs';
import { DashboardPage } from './dashboard';
import { JobsPage } from './jobs';
import { ToolsPage } from './tools';
import { h, clear, toast } from './dom';
import { InventoryPage, InventoryTab } from './inventory';
import { quickOpen } from './palette';
import { installShortcuts, showHelp } from './shortcuts';
import { Sidebar } from './sidebar';
import { SavedTerm, TermSpec, TermView } from './term';
import { fontSize, onThemeChange, setFontSize } from './theme';
import { OutputLog } from './outlog';
import { Workspace } from './workspace';

type Page = 'terminals' | 'dashboard' | 'tools' | 'jobs' | 'configs' | 'apps' | 'netbox' | 'inventory' | 'admin';

const FINAL_TEXT: Record<string, string> = {
  logged_out: 'You were signed out.',
  session_expired: 'Your sign-in expired. Sign in again; your terminals ended with it.',
  password_changed: 'Your password was changed. Sign in again.',
  role_changed: 'Your role was changed. Sign in again.',
  user_deleted: 'Your account was removed.',
};

export class ConsoleApp {
  readonly conn: Connection;
  readonly ws: Workspace;
  readonly sidebar: Sidebar;
  private inventory: InventoryPage;
  private admin?: AdminPage;
  private tools: ToolsPage;
  private jobs: JobsPage;
  private configs: ConfigsPage;
  private dashboard: DashboardPage;
  private apps: AppsPage;
  private netbox: NetboxPage;
  private page: Page = 'terminals';
  private main: HTMLElement;
  private nav: HTMLElement;
  private statusSocket: HTMLElement;
  private statusCount: HTMLElement;
  private retryAt?: number;
  private dirty = false;
  private timers: number[] = [];
  private ended = false;
  private signingOut = false;
  /** Removes every window/document listener of this login when it ends, so a next
   * login in the same page starts clean (no shortcut reaching a dead workspace). */
  private listeners = new AbortController();
  private who: HTMLElement;
  private wsBox: HTMLElement;
  private wsSelect: HTMLSelectElement;
  private workspaces: WorkspaceInfo[] = [];
  /** The selected workspace (personal until `start` loads the list). */
  workspace: WorkspaceInfo;

  constructor(
    root: HTMLElement,
    readonly me: Me,
    private signedOut: (notice?: string) => void,
  ) {
    const canOpen = me.role !== 'viewer';
    this.workspace = { id: PERSONAL, kind: 'personal', name: me.username, role: me.role };
    this.conn = new Connection({
      state: (s, d) => this.socketState(s, d.retryAt, d.rtt),
      final: (code, message) => this.end(this.signingOut ? 'Signed out.' : (FINAL_TEXT[code] ?? message)),
    });
    this.ws = new Workspace(
      {
        conn: this.conn,
        changed: () => this.touch(),
        focused: (v) => this.ws.focused(v),
        openKnownHosts: () => this.show('inventory', 'known-hosts'),
      },
      () => this.touch(),
    );
    this.sidebar = new Sidebar({
      canOpen,
      open: (spec, where) => this.open(spec, where),
      adopt: (c, title) => this.adopt(c, title),
      shownChannelIds: () => new Set(this.ws.all().map((v) => v.channel?.id).filter((x): x is string => !!x)),
      backup: (s) => {
        this.show('jobs');
        this.jobs.prepare('config_backup', [s.id]);
      },
      configs: (s) => this.openConfig(s.id),
    });
    const folders = () => this.sidebar.folders;
    this.tools = new ToolsPage(this.conn, me.role);
    this.jobs = new JobsPage(this.conn, me.role, { folders, openConfig: (id, cfg, diff) => this.openConfig(id, cfg, diff) });
    this.configs = new ConfigsPage(folders);
    this.apps = new AppsPage(this.conn, me.role, folders);
    this.netbox = new NetboxPage(this.conn, me.role, () => void this.sidebar.reload());
    this.dashboard = new DashboardPage(this.conn, (id) => this.openConfig(id));
    this.inventory = new InventoryPage(() => void this.sidebar.reload());
    if (me.role === 'admin') this.admin = new AdminPage(me.username);

    this.nav = h('nav', { class: 'pages', 'aria-label': 'Pages' });
    this.who = h('span', { class: 'who' }, `${me.username} · ${me.role}`);
    this.wsSelect = h('select', { id: 'ws-select', 'aria-label': 'Workspace' });
    this.wsSelect.addEventListener('change', () => void this.switchWorkspace(this.wsSelect.value));
    this.wsBox = h('span', { class: 'ws-switch', hidden: true }, h('label', { for: 'ws-select' }, 'Workspace'), this.wsSelect);
    this.main = h('main', { class: 'content', id: 'content' });
    this.statusSocket = h('span', { class: 'socket', role: 'status', 'aria-live': 'polite' });
    this.statusCount = h('span', { class: 'count' }, '0 terminal(s)');
    const header = h(
      'header',
      { class: 'topbar' },
      h('span', { class: 'brand' }, 'opsgate'),
      this.nav,
      h('span', { class: 'spacer' }),
      this.wsBox,
      this.who,
      h('button', { type: 'button', class: 'ghost', onclick: () => void this.signOut() }, 'Sign out'),
    );
    const status = h(
      'footer',
      { class: 'statusbar' },
      this.statusSocket,
      this.statusCount,
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'ghost', onclick: () => showHelp(), 'aria-label': 'Keyboard shortcuts' }, '? Shortcuts'),
    );
    root.replaceChildren(h('div', { class: 'shell' }, header, h('div', { class: 'body' }, this.sidebar.el, this.main), status));
    this.show('terminals');

    const signal = this.listeners.signal;
    installShortcuts(signal, {
      newTab: () => this.pick('tab'),
      split: (d) => this.pick(d),
      closePane: () => this.ws.closeFocused(),
      move: (d) => this.ws.move(d),
      tab: (i) => this.ws.selectIndex(i),
      cycle: (d) => this.ws.cycle(d),
      font: (d) => {
        const n = setFontSize(d === 0 ? 13 : fontSize() + d);
        for (const v of this.ws.all()) v.setFontSize(n);
      },
      find: () => this.ws.active?.focused.toggleFind(),
      searchTree: () => this.sidebar.search.focus(),
      help: () => showHelp(),
    });
    onThemeChange(signal, () => {
      for (const v of this.ws.all()) v.applyTheme();
    });
    window.addEventListener('resize', () => this.ws.fitAll(), { signal });
    window.addEventListener('pagehide', () => this.save(), { signal });
    document.addEventListener(
      'visibilitychange',
      () => {
        if (document.hidden) this.save();
      },
      { signal },
    );
    this.timers.push(window.setInterval(() => this.dirty && this.save(), 2000));
    this.timers.push(window.setInterval(() => this.renderSocket(), 1000));
    this.timers.push(window.setInterval(() => void this.sidebar.reloadLive(), 15000));
  }

  /** Loads the lists, brings back the terminals of this tab (or of this login), connects. */
  async start(): Promise<void> {
    await this.loadWorkspaces();
    await this.sidebar.reload();
    const saved = loadConsole(this.me.username);
    if (saved && saved.terms.length > 0) {
      const byKey = new Map(saved.terms.map((t) => [t.key, t]));
      const made: [TermView, SavedTerm][] = [];
      this.ws.restore(saved.layout, (key) => {
        const st = byKey.get(key);
        if (!st) return undefined;
        const v = this.ws.makeView(st);
        made.push([v, st]);
        return v;
      });
      for (const [v, st] of made) v.resume(st, OutputLog.decode(loadLog(st.key)));
    } else if (this.me.role !== 'viewer') {
      // Storage was cleared (or a new tab): take back this login's detached terminals.
      // Right after a reload the old page's socket may not have closed yet, so its
      // channels still look attached: look once more a moment later.
      this.adoptDetached();
      window.setTimeout(() => void this.sidebar.reloadLive().then(() => this.adoptDetached()), 1500);
    }
    this.conn.start();
    this.sidebar.render();
  }

  /** Lists the user's workspaces and selects the remembered one (personal if that team
   * is gone). The switcher shows only when there is a team to switch to. */
  private async loadWorkspaces(): Promise<void> {
    try {
      this.workspaces = (await api.get<{ workspaces: WorkspaceInfo[] }>('api/workspaces')).workspaces;
    } catch {
      this.workspaces = [];
    }
    const picked = pickWorkspace(this.workspaces, localStorage.getItem(storageKey(this.me.username)));
    this.applyWorkspace(picked ?? this.workspace);
  }

  private applyWorkspace(w: WorkspaceInfo): void {
    this.workspace = w;
    setWorkspace(w.id);
    if (w.id === PERSONAL) localStorage.removeItem(storageKey(this.me.username));
    else localStorage.setItem(storageKey(this.me.username), w.id);
    clear(this.wsSelect, ...this.workspaces.map((x) => h('option', { value: x.id }, workspaceLabel(x))));
    this.wsSelect.value = w.id;
    this.wsBox.hidden = this.workspaces.length < 2;
    this.who.textContent = `${this.me.username} · ${w.kind === 'team' ? `${w.role} in ${w.name}` : this.me.role}`;
    this.who.dataset.role = w.role;
    const role: Role = w.role;
    this.sidebar.setWritable(canWrite(role));
    this.tools.role = role;
    this.jobs.setRole(role);
    this.apps.role = role;
    this.netbox.role = role;
    document.body.dataset.wsRole = role;
  }

  /** Switches workspace: the tree and the screen shown reload from the new one. Open
   * terminals keep running (they belong to the login, not to a workspace). */
  async switchWorkspace(id: string): Promise<void> {
    // The list may be stale (a team deleted meanwhile): read it again, then fall back.
    try {
      this.workspaces = (await api.get<{ workspaces: WorkspaceInfo[] }>('api/workspaces')).workspaces;
    } catch {
      /* keep the old list */
    }
    const w = pickWorkspace(this.workspaces, id) ?? this.workspace;
    if (w.id !== id) toast('That workspace is no longer available; back to your personal one.', 'error');
    this.applyWorkspace(w);
    this.configs.reset();
    this.apps.reset();
    this.netbox.reset();
    await this.sidebar.reload();
    this.show(this.page);
    this.wsSelect.focus();
  }

  private open(spec: TermSpec, where: 'tab' | 'right' | 'down' = 'tab'): void {
    this.show('terminals');
    this.ws.open(spec, where);
    window.setTimeout(() => this.sidebar.render(), 500);
  }

  private adoptDetached(): void {
    const shown = new Set(this.ws.all().map((v) => v.channel?.id));
    for (const c of this.sidebar.liveChannels()) {
      if (!c.attached && !c.exited && !shown.has(c.id)) this.adopt(c, this.sidebar.titleOf(c));
    }
  }

  private adopt(c: LiveChannel, title: string): void {
    this.show('terminals');
    const spec = this.sidebar.specOf(c);
    spec.title = title;
    this.ws.open(spec, 'tab', { key: crypto.randomUUID(), spec, channelId: c.id, received: 0 });
    this.sidebar.render();
  }

  private pick(where: 'tab' | 'right' | 'down'): void {
    if (this.me.role === 'viewer') return;
    const title = where === 'tab' ? 'Open in a new tab' : where === 'right' ? 'Open to the right' : 'Open below';
    quickOpen(title, this.sidebar.folders, this.sidebar.programs, (spec) => this.open(spec, this.ws.active ? where : 'tab'));
  }

  /** Opens the Configs screen on a device (a version, or its diff with the one before). */
  openConfig(sessionId: string, configId?: string, diffPrevious = false): void {
    this.show('configs');
    void this.configs.openDevice(sessionId, configId, diffPrevious);
  }

  // Pages swap what `main` shows; the terminal workspace is only detached from the DOM,
  // so its channels keep running (and acking) and come back as they were.
  show(page: Page, sub?: InventoryTab): void {
    if (this.page === 'dashboard' && page !== 'dashboard') this.dashboard.hide();
    if (this.page === 'apps' && page !== 'apps') this.apps.hide();
    this.page = page;
    const pages: [Page, string][] = [
      ['terminals', 'Terminals'],
      ['dashboard', 'Dashboard'],
      ['tools', 'Tools'],
      ['jobs', 'Jobs'],
      ['configs', 'Configs'],
      ['apps', 'Servers & Apps'],
      ['netbox', 'NetBox'],
      ['inventory', 'Inventory'],
    ];
    if (this.admin) pages.push(['admin', 'Admin']);
    clear(
      this.nav,
      ...pages.map(([p, label]) =>
        h('button', { type: 'button', class: 'ghost', 'aria-current': p === page ? 'page' : undefined, onclick: () => this.show(p) }, label),
      ),
    );
    const el = {
      terminals: this.ws.el,
      dashboard: this.dashboard.el,
      tools: this.tools.el,
      jobs: this.jobs.el,
      configs: this.configs.el,
      apps: this.apps.el,
      netbox: this.netbox.el,
      inventory: this.inventory.el,
      admin: this.admin?.el ?? this.ws.el,
    }[page];
    if (this.main.firstChild !== el) clear(this.main, el);
    if (page === 'inventory') this.inventory.show(sub);
    if (page === 'dashboard') void this.dashboard.show();
    if (page === 'tools') void this.tools.show();
    if (page === 'jobs') this.jobs.show();
    if (page === 'configs') this.configs.show();
    if (page === 'apps') void this.apps.show();
    if (page === 'netbox') void this.netbox.show();
    if (page === 'admin') this.admin?.show();
    if (page === 'terminals') {
      this.ws.fitAll();
      this.ws.active?.focused.focus();
    }
  }

  private touch(): void {
    this.dirty = true;
    this.ws.refreshTitles();
    this.statusCount.textContent = `${this.ws.all().length} terminal(s)`;
  }

  private save(): void {
    if (this.ended) return;
    this.dirty = false;
    const views = this.ws.all();
    saveConsole(
      { username: this.me.username, layout: this.ws.save(), terms: views.map((v) => v.save()) },
      views.map((v) => ({
        key: v.key,
        get dirty() {
          return v.log.dirty;
        },
        set dirty(d: boolean) {
          v.log.dirty = d;
        },
        encode: (limit: number) => v.log.encode(limit),
      })),
    );
  }

  private socketState(s: SocketState, retryAt?: number, rtt?: number): void {
    this.retryAt = retryAt;
    this.statusSocket.dataset.state = s;
    this.statusSocket.dataset.rtt = rtt === undefined ? '' : String(rtt);
    this.renderSocket();
  }

  private renderSocket(): void {
    const s = this.statusSocket.dataset.state as SocketState | undefined;
    const rtt = this.statusSocket.dataset.rtt;
    let text = 'connecting…';
    if (s === 'open') text = `connected${rtt ? ` · ${rtt} ms` : ''}`;
    else if (s === 'reconnecting') {
      const secs = this.retryAt ? Math.max(0, Math.ceil((this.retryAt - Date.now()) / 1000)) : 0;
      text = secs > 0 ? `reconnecting in ${secs} s` : 'reconnecting…';
    } else if (s === 'closed') text = 'offline';
    this.statusSocket.textContent = text;
    this.statusSocket.title = 'WebSocket to the gateway; round-trip time measured every 10 s';
  }

  private end(notice?: string): void {
    if (this.ended) return;
    this.ended = true;
    for (const t of this.timers) window.clearInterval(t);
    this.listeners.abort();
    this.conn.stop();
    clearConsole();
    this.signedOut(notice);
  }

  async signOut(): Promise<void> {
    // The gateway ends this login's sockets (error `logged_out`) before the request
    // returns; either way the page says the same thing.
    this.signingOut = true;
    try {
      await api.post('api/auth/logout');
    } catch {
      /* signed out locally anyway */
    }
    this.end('Signed out.');
  }
}
