// The pure parts of the Servers & Apps screen: formatting of uptime, load and the time
// left before auto-stop, which actions an app's state allows, and the merge of an app
// job's output events (snapshot, then live events past it). Unit-tested without a DOM.

export type AppStatus = 'stopped' | 'starting' | 'running' | 'stopping' | 'failed';

/** "3d 4h", "2h 5m", "45s": a server's uptime at a glance. */
export function fmtUptime(secs: number | null | undefined): string {
  if (secs === null || secs === undefined || !Number.isFinite(secs) || secs < 0) return '—';
  const s = Math.floor(secs);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${hh}h`;
  if (hh > 0) return `${hh}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/** The 1/5/15-minute load averages, two decimals. */
export function fmtLoad(load: number[] | null | undefined): string {
  if (!load || load.length === 0) return '—';
  return load.map((x) => (Number.isFinite(x) ? x.toFixed(2) : '?')).join(' ');
}

/** Time left before auto-stop as a countdown: "1:02:03", "4:05", "0:09". */
export function fmtLeft(secs: number): string {
  const s = Math.max(0, Math.floor(secs));
  const hh = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** Seconds left until `deadline` (unix seconds) at `nowMs`; undefined without one. */
export function secondsLeft(deadline: number | null | undefined, nowMs: number): number | undefined {
  if (deadline === null || deadline === undefined) return undefined;
  return Math.max(0, Math.round(deadline - nowMs / 1000));
}

/** What an app in `status` may do (the gateway's state machine: start from stopped or
 * failed, stop from running or failed, extend while running). */
export function appActions(status: AppStatus, autoStopMinutes: number): { start: boolean; stop: boolean; extend: boolean; edit: boolean; remove: boolean } {
  return {
    start: status === 'stopped' || status === 'failed',
    stop: status === 'running' || status === 'failed',
    extend: status === 'running' && autoStopMinutes > 0,
    edit: status !== 'starting' && status !== 'stopping',
    remove: status === 'stopped' || status === 'failed',
  };
}

/**
 * The output of an app job as its `job` channel tells it: a snapshot first (`end` = the
 * offset just past it), then live events by `offset`. A live event below what is already
 * shown is skipped (it is in the snapshot, or a replay after a re-attach).
 */
export class JobOutput {
  /** Offset just past the last byte shown. */
  end = 0;
  /** Returns the text to append for one `progress` event, or '' if nothing new. */
  take(e: Record<string, unknown>): string {
    if (e.event !== 'output' || typeof e.data !== 'string') return '';
    if (e.snapshot === true) {
      this.end = typeof e.end === 'number' ? e.end : this.end + e.data.length;
      return e.data;
    }
    const off = typeof e.offset === 'number' ? e.offset : this.end;
    if (off < this.end) return '';
    this.end = off + new TextEncoder().encode(e.data).length;
    return e.data;
  }
}
