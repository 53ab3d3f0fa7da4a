// One terminal pane: an xterm.js Terminal bound to one channel. Output is acknowledged
// from xterm's write callback (after it processed the bytes), so a fast source is held
// back by the gateway's window instead of flooding the tab. Input goes through the
// channel's input window (a large paste waits, never drops).

import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { WebLinksAddon } from '@xterm/addon-web-links';
import { Unicode11Addon } from '@xterm/addon-unicode11';
import { SearchAddon } from '@xterm/addon-search';
import type { Channel, ChannelState, Connection } from '../connection';
import type { OpenTarget } from '../protocol';
import { h, clear } from './dom';
import { OutputLog, toLatin1 } from './outlog';
import { fontSize, terminalTheme } from './theme';
import { hostkeyDialog } from './hostkey';

export interface TermSpec {
  kind: 'ssh' | 'pty';
  title: string;
  sessionId?: string;
  program?: string;
  /** host:port, for the host-key dialog. */
  where?: string;
}

export interface SavedTerm {
  key: string;
  spec: TermSpec;
  channelId?: string;
  received: number;
  exited?: { code?: number; signal?: string };
  input?: { sent: number; acked: number; unacked: string; queued: string };
}

export type ViewState = ChannelState | 'failed';

const STATE_TEXT: Record<ViewState, string> = {
  opening: 'connecting…',
  live: 'live',
  detached: 'detached',
  attaching: 'reconnecting…',
  exited: 'exited',
  moved: 'in another tab',
  closed: 'closed',
  failed: 'failed',
};

const encoder = new TextEncoder();
const latin1 = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);

export interface TermHost {
  conn: Connection;
  changed(view: TermView): void;
  focused(view: TermView): void;
  openKnownHosts(): void;
}

export class TermView {
  readonly key: string;
  readonly el: HTMLElement;
  readonly term: Terminal;
  readonly log = new OutputLog();
  state: ViewState = 'opening';
  channel?: Channel;
  exitInfo?: { code?: number; signal?: string };
  private fit = new FitAddon();
  private search = new SearchAddon();
  private screen: HTMLElement;
  private badge: HTMLElement;
  private banner: HTMLElement;
  private findBar?: HTMLElement;
  private resizeRaf = 0;
  private opened = false;
  /** Which channel's events this view still listens to (a reconnect starts a new one). */
  private gen = 0;
  private observer: ResizeObserver;

  constructor(
    private host: TermHost,
    public spec: TermSpec,
    key?: string,
  ) {
    this.key = key ?? crypto.randomUUID();
    this.term = new Terminal({
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", "Cascadia Mono", Menlo, Consolas, monospace',
      fontSize: fontSize(),
      scrollback: 10_000,
      theme: terminalTheme(),
      allowProposedApi: true,
      cursorBlink: false,
      drawBoldTextInBrightColors: false,
    });
    this.term.loadAddon(this.fit);
    this.term.loadAddon(this.search);
    this.term.loadAddon(new WebLinksAddon());
    const unicode = new Unicode11Addon();
    this.term.loadAddon(unicode);
    this.term.unicode.activeVersion = '11';

    this.badge = h('span', { class: 'term-state', 'aria-live': 'polite' });
    this.banner = h('div', { class: 'term-banner', hidden: true });
    this.screen = h('div', { class: 'term-screen' });
    this.el = h(
      'section',
      { class: 'pane', 'aria-label': `Terminal ${spec.title}`, dataset: { key: this.key } },
      h('header', { class: 'pane-head' }, h('span', { class: 'pane-title' }, spec.title), this.badge),
      this.screen,
      this.banner,
    );
    this.el.addEventListener('focusin', () => this.host.focused(this));
    this.term.onData((s) => this.channel?.write(encoder.encode(s)));
    this.term.onBinary((s) => this.channel?.write(latin1(s)));
    this.term.onResize(({ cols, rows }) => this.channel?.resize(cols, rows));
    this.term.attachCustomKeyEventHandler((ev) => this.key_(ev));
    this.term.onSelectionChange(() => {
      if (localStorage.getItem('opsgate.copyOnSelect') === '1' && this.term.hasSelection()) {
        void navigator.clipboard?.writeText(this.term.getSelection()).catch(() => undefined);
      }
    });
    this.observer = new ResizeObserver(() => this.scheduleFit());
    this.observer.observe(this.screen);
    this.setState('opening');
  }

  /** Terminal-local keys; the app's shortcuts are taken before xterm sees them. */
  private key_(ev: KeyboardEvent): boolean {
    if (ev.type !== 'keydown') return true;
    if (ev.ctrlKey && ev.shiftKey && ev.code === 'KeyC') {
      const sel = this.term.getSelection();
      if (sel) void navigator.clipboard?.writeText(sel).catch(() => undefined);
      ev.preventDefault();
      return false;
    }
    // Ctrl+Shift+V: let the browser paste into xterm's textarea (bracketed by xterm
    // when the program asked for it) instead of sending ^V.
    if (ev.ctrlKey && ev.shiftKey && ev.code === 'KeyV') return false;
    return true;
  }

  /** xterm measures its font when opened, so it is opened once the pane is in the page. */
  ensureOpen(): void {
    if (this.opened || !this.el.isConnected) return;
    this.opened = true;
    this.term.open(this.screen);
    this.fitNow();
  }

  get size(): { cols: number; rows: number } {
    return { cols: this.term.cols, rows: this.term.rows };
  }

  focus(): void {
    this.term.focus();
  }

  scheduleFit(): void {
    if (this.resizeRaf) return;
    this.resizeRaf = requestAnimationFrame(() => {
      this.resizeRaf = 0;
      if (this.screen.offsetWidth === 0 || this.screen.offsetHeight === 0) return;
      try {
        this.fit.fit();
      } catch {
        /* not rendered yet */
      }
    });
  }

  setFontSize(n: number): void {
    this.term.options.fontSize = n;
    this.scheduleFit();
  }

  applyTheme(): void {
    this.term.options.theme = terminalTheme();
  }

  private setState(s: ViewState): void {
    this.state = s;
    this.badge.textContent = STATE_TEXT[s];
    this.badge.dataset.state = s;
    this.el.dataset.state = s;
    this.host.changed(this);
  }

  /** Opens a new channel for the spec. */
  start(): void {
    this.fitNow();
    const { cols, rows } = this.size;
    const target: OpenTarget =
      this.spec.kind === 'ssh'
        ? { kind: 'ssh', session_id: this.spec.sessionId, cols, rows }
        : { kind: 'pty', program: this.spec.program ?? '', cols, rows };
    this.hideBanner();
    this.exitInfo = undefined;
    this.channel = this.host.conn.open(target, this.events());
  }

  /** Re-attaches a channel this page had before a reload (or found in the listing). */
  resume(saved: SavedTerm, log?: Uint8Array): void {
    if (log && log.length > 0) {
      this.log.append(log);
      this.term.write(log);
    }
    if (!saved.channelId) {
      this.setState('closed');
      this.showBanner('This terminal had ended.', true);
      return;
    }
    this.fitNow();
    this.channel = this.host.conn.adopt(saved.channelId, saved.received, this.events());
    this.channel.size = this.size;
    if (saved.input) {
      this.channel.input.restore(
        saved.input.sent,
        saved.input.acked,
        OutputLog.decode(saved.input.unacked),
        OutputLog.decode(saved.input.queued),
      );
    }
  }

  private fitNow(): void {
    try {
      this.fit.fit();
    } catch {
      /* hidden */
    }
  }

  private events() {
    const gen = ++this.gen;
    // Events of a channel this view has replaced (Reconnect) or let go (closed pane)
    // are ignored: its late `closed` must not paint over the new channel.
    const mine = <A extends unknown[]>(f: (...a: A) => void) => (...a: A) => {
      if (gen === this.gen) f(...a);
    };
    return {
      state: mine((s: ChannelState) => {
        this.setState(s);
        if (s === 'live') this.hideBanner();
      }),
      data: mine((payload: Uint8Array, outGen: number) => {
        this.log.append(payload);
        const n = payload.length;
        const ch = this.channel;
        // Acknowledge only once xterm has processed these bytes.
        this.term.write(payload, () => ch?.rendered(outGen, n));
      }),
      opened: mine((_id: string, lost: number) => {
        if (lost > 0) {
          this.term.write(`\r\n\x1b[2m[${lost} bytes of earlier output are no longer buffered]\x1b[0m\r\n`);
        }
      }),
      hostkey: mine((algorithm: string, fingerprint: string, status: 'unknown' | 'changed') => {
        if (status === 'unknown') {
          hostkeyDialog(this.spec.where ?? this.spec.title, algorithm, fingerprint, (yes) =>
            this.channel?.answerHostkey(yes),
          );
        }
      }),
      exit: mine((code?: number, signal?: string) => {
        this.exitInfo = { code, signal };
        const how = signal ? `was ended by ${signal}` : `exited with code ${code ?? '?'}`;
        this.showBanner(`The ${this.spec.kind === 'ssh' ? 'remote shell' : 'process'} ${how}.`, true);
      }),
      error: mine((code: string, message: string) => this.error(code, message)),
      closed: mine((reason?: string) => {
        if (reason === 'attached_elsewhere') {
          this.showBanner('This terminal is now open in another browser tab.', false, [
            ['Take it back', () => this.channel?.takeBack()],
          ]);
        } else if (!this.exitInfo && this.banner.hidden) {
          this.showBanner(reason ? `The terminal closed (${reason}).` : 'The terminal closed.', true);
        }
      }),
    };
  }

  private error(code: string, message: string): void {
    if (code === 'input_overrun') {
      this.term.write('\r\n\x1b[33m[some input was refused by the gateway and not delivered]\x1b[0m\r\n');
      return;
    }
    if (code === 'hostkey_changed') {
      this.setState('failed');
      const fps = message.match(/SHA256:[A-Za-z0-9+/=]+/g) ?? [];
      this.showWarning(
        `The host key of ${this.spec.title} changed`,
        [
          fps.length >= 2 ? `Now: ${fps[0]}` : message,
          fps.length >= 2 ? `Trusted: ${fps[1]}` : '',
          'Someone may be intercepting the connection. If you expected this change (the device was replaced or re-keyed), remove the old key in Inventory → Known hosts, then reconnect.',
        ].filter(Boolean),
      );
      return;
    }
    const text = ERROR_TEXT[code]?.(this.spec.title) ?? message;
    this.showBanner(text, true, undefined, code);
  }

  private hideBanner(): void {
    this.banner.hidden = true;
    clear(this.banner);
  }

  private showBanner(
    text: string,
    reconnect: boolean,
    extra: [string, () => void][] = [],
    code?: string,
  ): void {
    const actions: [string, () => void][] = [...extra];
    if (reconnect) actions.push(['Reconnect', () => this.reconnect()]);
    this.banner.hidden = false;
    this.banner.className = 'term-banner';
    clear(
      this.banner,
      h('span', { role: 'status' }, text, code ? h('code', {}, ` ${code}`) : null),
      ...actions.map(([label, fn]) => h('button', { type: 'button', onclick: fn }, label)),
    );
  }

  private showWarning(title: string, lines: string[]): void {
    this.banner.hidden = false;
    this.banner.className = 'term-banner warning';
    clear(
      this.banner,
      h('div', { role: 'alert' }, h('strong', {}, `⚠ ${title}`), ...lines.map((l) => h('div', {}, l))),
      h('button', { type: 'button', onclick: () => this.host.openKnownHosts() }, 'Open Known hosts'),
      h('button', { type: 'button', onclick: () => this.reconnect() }, 'Reconnect'),
    );
  }

  /** Opens a fresh channel for the same target in this pane, keeping the scrollback. */
  reconnect(): void {
    this.channel?.close();
    this.term.write('\r\n\x1b[2m── reconnecting ──\x1b[0m\r\n');
    this.start();
  }

  /** Ends the channel (kills the program) and frees the pane. */
  dispose(): void {
    this.gen++;
    this.channel?.close();
    this.observer.disconnect();
    this.term.dispose();
    this.el.remove();
  }

  toggleFind(): void {
    if (this.findBar) {
      this.findBar.remove();
      this.findBar = undefined;
      this.search.clearDecorations();
      this.focus();
      return;
    }
    const input = h('input', { type: 'search', 'aria-label': 'Find in terminal', placeholder: 'Find…' });
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') {
        if (ev.shiftKey) this.search.findPrevious(input.value);
        else this.search.findNext(input.value);
      } else if (ev.key === 'Escape') {
        this.toggleFind();
      }
    });
    this.findBar = h('div', { class: 'find-bar' }, input);
    this.el.appendChild(this.findBar);
    input.focus();
  }

  /** State to keep across a reload. */
  save(): SavedTerm {
    const c = this.channel;
    const gone = !c || c.state === 'closed';
    let input: SavedTerm['input'];
    if (c && !gone) {
      const s = c.input.snapshot();
      input = {
        sent: s.sent,
        acked: s.acked,
        unacked: toLatin1(s.unacked),
        queued: toLatin1(s.queued),
      };
    }
    return {
      key: this.key,
      spec: this.spec,
      channelId: gone ? undefined : c?.id,
      received: c?.output.received ?? 0,
      exited: this.exitInfo,
      input,
    };
  }

  /** The visible buffer as text lines (the e2e tests read it). */
  text(): string {
    const b = this.term.buffer.active;
    const out: string[] = [];
    for (let i = 0; i < b.length; i++) {
      const line = b.getLine(i);
      if (!line) continue;
      if (line.isWrapped && out.length > 0) out[out.length - 1] += line.translateToString(true);
      else out.push(line.translateToString(true));
    }
    return out.join('\n');
  }
}

const ERROR_TEXT: Record<string, (t: string) => string> = {
  auth_failed: (t) => `Authentication to ${t} failed. Check the username and credential of the saved session.`,
  connect_refused: (t) => `${t} refused the connection. Is SSH running on that port?`,
  connect_timeout: (t) => `${t} did not answer in time. Check the address and the network path.`,
  dns_failed: (t) => `The name of ${t} could not be resolved.`,
  hostkey_rejected: (t) => `You rejected the host key of ${t}; nothing was stored.`,
  remote_closed: (t) => `The connection to ${t} dropped.`,
  channel_gone: () => 'This terminal ended while the page was away.',
  program_not_allowed: (t) => `${t} is not on the gateway's allow-list of programs.`,
  forbidden: () => 'Your role cannot open terminals.',
  limit_reached: () => 'Too many terminals are open. Close some and try again.',
  connection_lost: () => 'The connection dropped while the terminal was opening.',
};
