// One WebSocket per browser tab (subprotocol opsgate.v1), multiplexing every terminal.
// The socket may drop at any time; channels belong to the login, so on reconnect every
// channel is re-attached at the byte offset it received (nothing missed, nothing twice),
// and input that died with the old socket is resent (PROTOCOL.md §6).
//
// Reconnects back off exponentially (0.5 s doubling to 15 s) with jitter, so a gateway
// restart is not met by every tab at the same instant.

import { InputFlow, OutputFlow } from './flow';
import {
  ClientFrame,
  OpenTarget,
  ServerFrame,
  SUBPROTOCOL,
  decodeData,
  decodeServer,
  encodeClient,
  encodeData,
} from './protocol';
import { url } from './api';

export type SocketState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Error codes that end the socket for good (§1): no reconnect, back to sign-in. */
const FINAL = new Set([
  'logged_out',
  'user_deleted',
  'password_changed',
  'role_changed',
  'session_expired',
  'shutting_down',
]);

export type ChannelState =
  | 'opening' // open sent, waiting for `opened` (maybe a host-key question)
  | 'live'
  | 'detached' // socket down; re-attached when it is back
  | 'attaching'
  | 'exited' // the program ended; output may still be arriving
  | 'moved' // another tab attached it
  | 'closed'; // gone from the gateway

export interface ChannelEvents {
  state(s: ChannelState): void;
  data(payload: Uint8Array, generation: number): void;
  opened(id: string, lost: number): void;
  hostkey(algorithm: string, fingerprint: string, status: 'unknown' | 'changed'): void;
  exit(code?: number, signal?: string): void;
  error(code: string, message: string): void;
  closed(reason?: string): void;
  /** A `progress` frame (tool, job and stats channels); terminals ignore it. */
  progress?(event: Record<string, unknown>): void;
}

export class Channel {
  id?: string;
  ch = 0;
  state: ChannelState = 'opening';
  input = new InputFlow();
  output = new OutputFlow();
  size?: { cols: number; rows: number };
  /** Sent `open` (or `attach`) on the current socket. */
  private announced = false;

  constructor(
    private conn: Connection,
    public target: OpenTarget | null,
    public events: ChannelEvents,
  ) {}

  setState(s: ChannelState): void {
    this.state = s;
    this.events.state(s);
  }

  /** Terminal input (keystrokes, pastes): queued, sent under the input window. */
  write(bytes: Uint8Array): void {
    if (this.state === 'closed' || this.state === 'exited') return;
    this.input.enqueue(bytes);
    this.conn.pump(this);
  }

  /** xterm.js processed `n` bytes of `generation`'s output: acknowledge them (batched). */
  rendered(generation: number, n: number): void {
    this.output.rendered(generation, n);
    this.conn.scheduleAck(this);
  }

  resize(cols: number, rows: number): void {
    if (this.size && this.size.cols === cols && this.size.rows === rows) return;
    this.size = { cols, rows };
    if (this.live()) this.conn.send({ type: 'resize', ch: this.ch, cols, rows });
  }

  answerHostkey(accept: boolean): void {
    this.conn.send({ type: accept ? 'hostkey_accept' : 'hostkey_reject', ch: this.ch });
  }

  close(): void {
    if (this.announced && this.state !== 'closed' && this.state !== 'moved') {
      this.conn.send({ type: 'close', ch: this.ch });
    }
    if (this.state === 'moved' || !this.announced) this.conn.forget(this);
  }

  /** Take a channel back from another tab (after `moved`). */
  takeBack(): void {
    if (this.state === 'moved' && this.id) this.conn.reattach(this);
  }

  live(): boolean {
    return this.announced && (this.state === 'live' || this.state === 'exited');
  }

  /** Called by the connection when a socket is up: open or attach. */
  announce(send: (f: ClientFrame) => void): void {
    this.announced = true;
    if (this.id) {
      this.setState('attaching');
      send({ type: 'attach', ch: this.ch, id: this.id, offset: this.output.received });
    } else if (this.target) {
      const t = { ...this.target } as OpenTarget;
      if ((t.kind === 'ssh' || t.kind === 'pty') && this.size) {
        t.cols = this.size.cols;
        t.rows = this.size.rows;
      }
      this.setState('opening');
      send({ type: 'open', ch: this.ch, ...t } as ClientFrame);
    }
  }

  /** The socket went away. */
  dropped(): void {
    this.announced = false;
    this.input.detached();
    if (this.state === 'opening' && !this.id) {
      // The gateway may have started it, but without its id we cannot attach it: it
      // ends by itself after the grace period.
      this.setState('closed');
      this.events.error('connection_lost', 'The connection dropped while the terminal was opening.');
      this.events.closed('connection_lost');
    } else if (this.state !== 'closed' && this.state !== 'moved') {
      this.setState('detached');
    }
  }

  /** `closed` arrived or it was released. */
  ended(): void {
    this.announced = false;
  }
}

export interface ConnectionEvents {
  state(s: SocketState, detail: { retryAt?: number; rtt?: number }): void;
  /** The login ended (logout elsewhere, expiry, role change): back to sign-in. */
  final(code: string, message: string): void;
}

export class Connection {
  state: SocketState = 'connecting';
  rtt?: number;
  private ws?: WebSocket;
  private channels = new Map<number, Channel>();
  private nextCh = 1;
  private attempt = 0;
  private retryTimer?: number;
  private ackTimer?: number;
  private acksDue = new Set<Channel>();
  private finalCode?: string;
  private stopped = false;
  private rttTimer?: number;
  private listeners = new AbortController();

  constructor(private events: ConnectionEvents) {}

  start(): void {
    this.connect();
    window.addEventListener('online', () => this.retryNow(), { signal: this.listeners.signal });
    this.rttTimer = window.setInterval(() => void this.measureRtt(), 10_000);
  }

  /** Sign-out: close the socket and stop reconnecting. */
  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.retryTimer);
    window.clearInterval(this.rttTimer);
    this.listeners.abort();
    this.ws?.close(1000, 'signed out');
    this.setState('closed');
  }

  /** Drops the socket as a network blip would (tests): channels detach, then resume. */
  drop(): void {
    this.ws?.close(4000, 'dropped');
  }

  /** Opens a new channel. */
  open(target: OpenTarget, events: ChannelEvents): Channel {
    const c = new Channel(this, target, events);
    if (target.kind === 'ssh' || target.kind === 'pty') c.size = { cols: target.cols, rows: target.rows };
    this.register(c);
    return c;
  }

  /** Attaches an existing channel by id (after a reload, or found in /api/channels). */
  adopt(id: string, offset: number, events: ChannelEvents, target: OpenTarget | null = null): Channel {
    const c = new Channel(this, target, events);
    c.id = id;
    c.output.received = offset;
    c.state = 'detached';
    this.register(c);
    return c;
  }

  reattach(c: Channel): void {
    this.channels.delete(c.ch);
    this.register(c);
  }

  forget(c: Channel): void {
    if (this.channels.get(c.ch) === c) this.channels.delete(c.ch);
  }

  channelCount(): number {
    return this.channels.size;
  }

  send(f: ClientFrame): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(encodeClient(f));
    return true;
  }

  /** Sends what the input window allows. */
  pump(c: Channel): void {
    if (!c.live() || this.ws?.readyState !== WebSocket.OPEN) return;
    for (const chunk of c.input.take()) this.ws.send(encodeData(c.ch, chunk));
  }

  scheduleAck(c: Channel): void {
    this.acksDue.add(c);
    if (this.ackTimer === undefined) {
      // One ack per channel per task: xterm calls back per written chunk.
      this.ackTimer = window.setTimeout(() => this.flushAcks(), 0);
    }
  }

  private flushAcks(): void {
    this.ackTimer = undefined;
    for (const c of this.acksDue) {
      const n = c.output.takeAck();
      if (n > 0 && c.live()) this.send({ type: 'ack', ch: c.ch, bytes: n });
    }
    this.acksDue.clear();
  }

  private register(c: Channel): void {
    c.ch = this.nextCh++;
    this.channels.set(c.ch, c);
    if (this.ws?.readyState === WebSocket.OPEN) c.announce((f) => this.send(f));
  }

  private setState(s: SocketState, retryAt?: number): void {
    this.state = s;
    this.events.state(s, { retryAt, rtt: this.rtt });
  }

  private connect(): void {
    if (this.stopped) return;
    this.setState(this.attempt === 0 ? 'connecting' : 'reconnecting');
    const wsUrl = url('ws').replace(/^http/, 'ws');
    let ws: WebSocket;
    try {
      ws = new WebSocket(wsUrl, SUBPROTOCOL);
    } catch {
      this.scheduleRetry();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.setState('open');
      void this.measureRtt();
      for (const c of this.channels.values()) {
        if (c.state !== 'closed' && c.state !== 'moved') c.announce((f) => this.send(f));
      }
    };
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      for (const c of this.channels.values()) c.dropped();
      if (this.stopped) return;
      if (this.finalCode) {
        this.setState('closed');
        return;
      }
      this.scheduleRetry();
    };
  }

  private scheduleRetry(): void {
    const base = Math.min(15_000, 500 * 2 ** this.attempt);
    // Equal jitter: at least half the backoff, at most all of it.
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt++;
    const at = Date.now() + delay;
    this.setState('reconnecting', at);
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => void this.retry(), delay);
  }

  private retryNow(): void {
    if (this.state === 'reconnecting') {
      window.clearTimeout(this.retryTimer);
      void this.retry();
    }
  }

  private async retry(): Promise<void> {
    if (this.attempt > 1) {
      // A socket refused repeatedly may mean the login is gone (401 before upgrade is
      // invisible to WebSocket): ask the REST side.
      try {
        const r = await fetch(url('api/auth/status'), { credentials: 'same-origin' });
        if (r.status === 401) {
          this.finalCode = 'session_expired';
          this.stopped = true;
          this.setState('closed');
          this.events.final('session_expired', 'Your sign-in has ended.');
          return;
        }
      } catch {
        /* offline: keep trying */
      }
    }
    this.connect();
  }

  private async measureRtt(): Promise<void> {
    // The protocol has no application-level ping; a HEAD-like GET of /healthz over the
    // same origin is the honest stand-in.
    if (this.state !== 'open' || document.hidden) return;
    const t0 = performance.now();
    try {
      await fetch(url('healthz'), { cache: 'no-store' });
      this.rtt = Math.round(performance.now() - t0);
      this.setState('open');
    } catch {
      /* the socket will notice */
    }
  }

  private receive(data: unknown): void {
    if (data instanceof ArrayBuffer) {
      let frame;
      try {
        frame = decodeData(new Uint8Array(data));
      } catch {
        return;
      }
      const c = this.channels.get(frame.ch);
      if (!c) return;
      const gen = c.output.arrived(frame.payload.length);
      c.events.data(frame.payload, gen);
      return;
    }
    if (typeof data !== 'string') return;
    let f: ServerFrame;
    try {
      f = decodeServer(data);
    } catch (e) {
      console.warn('opsgate: undecodable frame', e);
      return;
    }
    this.control(f);
  }

  private control(f: ServerFrame): void {
    if (f.type === 'error' && f.ch === undefined) {
      if (FINAL.has(f.code)) {
        this.finalCode = f.code;
        this.stopped = f.code !== 'shutting_down';
        if (this.stopped) this.events.final(f.code, f.message);
      } else {
        console.warn('opsgate:', f.code, f.message);
      }
      return;
    }
    const c = f.ch === undefined ? undefined : this.channels.get(f.ch);
    if (!c) return;
    switch (f.type) {
      case 'opened': {
        c.id = f.id;
        if (f.offset !== undefined) {
          c.output.attached(f.offset);
          c.input.attached(f.input_window, f.input_pending ?? 0, f.input_received ?? c.input.sent);
        } else {
          c.output.attached(0);
          c.input.opened(f.input_window);
        }
        c.setState('live');
        c.events.opened(f.id, f.lost ?? 0);
        if (c.size) this.send({ type: 'resize', ch: c.ch, cols: c.size.cols, rows: c.size.rows });
        this.pump(c);
        break;
      }
      case 'input_ack':
        c.input.ack(f.bytes);
        this.pump(c);
        break;
      case 'input_resumed':
        c.input.resumed(f.pending);
        this.pump(c);
        break;
      case 'hostkey':
        c.events.hostkey(f.algorithm, f.fingerprint, f.status);
        break;
      case 'exit':
        c.setState('exited');
        c.events.exit(f.code, f.signal);
        break;
      case 'error':
        if (f.code === 'input_overrun') {
          c.input.overrun();
          this.send({ type: 'input_resume', ch: c.ch });
        }
        if (f.code === 'output_lost') break; // reported through `opened.lost`
        c.events.error(f.code, f.message);
        if (c.state === 'attaching' && (f.code === 'channel_gone' || f.code === 'attach_refused')) {
          // No `closed` follows these: the number was never bound.
          c.ended();
          this.channels.delete(c.ch);
          c.setState('closed');
          c.events.closed(f.code);
        }
        break;
      case 'closed':
        c.ended();
        this.channels.delete(c.ch);
        if (f.reason === 'attached_elsewhere') {
          c.setState('moved');
        } else {
          c.setState('closed');
        }
        c.events.closed(f.reason);
        break;
      case 'progress':
        c.events.progress?.(f.event);
        break;
    }
  }
}
