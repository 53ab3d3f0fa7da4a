// Dashboard: the workspace's figures (GET /api/statistics) as cards, and the gateway
// host's live CPU, memory and network as sparklines fed by a `stats` channel (opened
// while the dashboard shows, closed when it hides: nobody pays for an unseen sampler).

import { api } from '../api';
import type { Connection } from '../connection';
import { Series, sparkline } from './chart';
import { clear, fmtBytes, h } from './dom';
import { chip, Stream } from './live';

interface Statistics {
  devices: { total: number; by_type: Record<string, number>; by_folder: Record<string, number> };
  backups: { last_24h: { succeeded: number; failed: number }; last_7d: { succeeded: number; failed: number } };
  failed_devices: { session_id: string; display_name: string }[];
  stale_devices: { session_id: string; display_name: string; last_backup?: number | null }[];
  stale_after_hours: number;
  configs_changed_24h: number;
  storage: { config_versions: number; config_bytes: number };
  jobs_by_state: Record<string, number>;
}

const INTERVAL_MS = 1000;

function entries(m: Record<string, number> | [string, number][] | undefined): [string, number][] {
  if (!m) return [];
  return Array.isArray(m) ? m : Object.entries(m);
}

export class DashboardPage {
  readonly el: HTMLElement;
  private cards = h('div', { class: 'cards' });
  private live = h('div', { class: 'cards live' });
  private stream?: Stream;
  private cpu = new Series();
  private mem = new Series();
  private rx = new Series();
  private tx = new Series();
  private gw = h('p', { class: 'muted' });

  constructor(
    private conn: Connection,
    private openDevice: (sessionId: string) => void,
  ) {
    this.el = h(
      'section',
      { class: 'page', 'aria-label': 'Dashboard' },
      h('h1', {}, 'Dashboard'),
      this.cards,
      h('h2', {}, 'Gateway host, live'),
      this.live,
      this.gw,
    );
  }

  async show(): Promise<void> {
    this.stream ??= new Stream(this.conn, { kind: 'stats', interval_ms: INTERVAL_MS }, {
      progress: (e) => this.sample(e),
      error: (code, message) => (this.gw.textContent = `Live stats unavailable: ${code}: ${message}`),
      closed: () => (this.stream = undefined),
    });
    this.drawLive();
    try {
      this.render(await api.get<Statistics>('api/statistics'));
    } catch (e) {
      clear(this.cards, h('p', { class: 'form-error', role: 'alert' }, (e as Error).message));
    }
  }

  hide(): void {
    this.stream?.close();
    this.stream = undefined;
  }

  private card(title: string, value: string | number, ...rest: (Node | string | null)[]): HTMLElement {
    return h('section', { class: 'card', 'aria-label': title }, h('h3', {}, title), h('div', { class: 'big' }, String(value)), ...rest);
  }

  private list(m: [string, number][]): HTMLElement {
    return h('ul', { class: 'mini' }, ...m.sort((a, b) => b[1] - a[1]).slice(0, 6).map(([k, n]) => h('li', {}, h('span', {}, k || '—'), h('span', { class: 'num' }, String(n)))));
  }

  private render(s: Statistics): void {
    const jobs = entries(s.jobs_by_state);
    clear(
      this.cards,
      this.card('Devices', s.devices.total, h('div', { class: 'two' }, h('div', {}, h('h4', {}, 'by type'), this.list(entries(s.devices.by_type))), h('div', {}, h('h4', {}, 'by folder'), this.list(entries(s.devices.by_folder))))),
      this.card(
        'Backups, 24 h',
        s.backups.last_24h.succeeded,
        h('p', {}, h('span', { class: s.backups.last_24h.failed ? 'bad' : 'muted' }, `${s.backups.last_24h.failed} failed`), h('span', { class: 'muted' }, ` · ${s.configs_changed_24h} configs changed`)),
        h('p', { class: 'muted' }, `7 days: ${s.backups.last_7d.succeeded} succeeded, ${s.backups.last_7d.failed} failed`),
      ),
      this.card(
        'Failed devices',
        s.failed_devices.length,
        h('ul', { class: 'mini' }, ...s.failed_devices.slice(0, 6).map((d) => h('li', {}, h('button', { type: 'button', class: 'link', onclick: () => this.openDevice(d.session_id) }, d.display_name)))),
      ),
      this.card(
        'Stale devices',
        s.stale_devices.length,
        h('p', { class: 'muted' }, `no good backup in ${s.stale_after_hours} h`),
        h('ul', { class: 'mini' }, ...s.stale_devices.slice(0, 5).map((d) => h('li', {}, h('button', { type: 'button', class: 'link', onclick: () => this.openDevice(d.session_id) }, d.display_name)))),
      ),
      this.card('Jobs', jobs.reduce((a, [, n]) => a + n, 0), h('div', { class: 'chips' }, ...jobs.map(([k, n]) => h('span', {}, chip(k), ` ${n}`)))),
      this.card('Config storage', fmtBytes(s.storage.config_bytes), h('p', { class: 'muted' }, `${s.storage.config_versions} versions`)),
    );
  }

  private sample(e: Record<string, unknown>): void {
    const cpu = e.cpu as { total_pct?: number } | undefined;
    const mem = e.memory as { total?: number; used?: number } | undefined;
    const net = (e.network as { rx_bytes_per_sec?: number; tx_bytes_per_sec?: number }[] | undefined) ?? [];
    this.cpu.push(cpu?.total_pct ?? 0);
    this.mem.push(mem?.total ? ((mem.used ?? 0) / mem.total) * 100 : 0);
    this.rx.push(net.reduce((a, n) => a + (n.rx_bytes_per_sec ?? 0), 0));
    this.tx.push(net.reduce((a, n) => a + (n.tx_bytes_per_sec ?? 0), 0));
    this.drawLive(mem);
    const g = e.gateway as { rss_bytes?: number; sockets?: number; channels?: Record<string, number> | number } | undefined;
    const load = e.load as { one?: number } | null | undefined;
    if (g) {
      const ch = typeof g.channels === 'number' ? g.channels : entries(g.channels as Record<string, number>).reduce((a, [, n]) => a + n, 0);
      this.gw.textContent = `gateway: ${fmtBytes(g.rss_bytes ?? 0)} resident · ${g.sockets ?? 0} sockets · ${ch} channels${load?.one !== undefined ? ` · load ${load.one.toFixed(2)}` : ''}`;
    }
  }

  private drawLive(mem?: { total?: number; used?: number }): void {
    const rate = (n?: number) => (n === undefined ? '–' : `${fmtBytes(Math.round(n))}/s`);
    clear(
      this.live,
      h('section', { class: 'card' }, h('h3', {}, 'CPU'), h('div', { class: 'big' }, this.cpu.last === undefined ? '–' : `${this.cpu.last.toFixed(0)} %`), sparkline('CPU use, last 2 minutes', [this.cpu], 100)),
      h(
        'section',
        { class: 'card' },
        h('h3', {}, 'Memory'),
        h('div', { class: 'big' }, this.mem.last === undefined ? '–' : `${this.mem.last.toFixed(0)} %`),
        mem?.total ? h('span', { class: 'muted' }, `${fmtBytes(mem.used ?? 0)} of ${fmtBytes(mem.total)}`) : null,
        sparkline('Memory use, last 2 minutes', [this.mem], 100),
      ),
      h(
        'section',
        { class: 'card' },
        h('h3', {}, 'Network'),
        h('div', { class: 'big' }, h('span', { class: 'rx' }, `↓ ${rate(this.rx.last)}`), ' ', h('span', { class: 'tx' }, `↑ ${rate(this.tx.last)}`)),
        sparkline('Network receive and send rate, last 2 minutes', [this.rx, this.tx]),
      ),
    );
  }
}
