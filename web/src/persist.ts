// What survives a reload of this browser tab (sessionStorage: per tab, gone when the
// tab closes): the tabs and panes, each terminal's channel id, byte offset, unsent or
// unacknowledged input, and the tail of its output. Written when the page is hidden or
// unloaded and every few seconds meanwhile; a crash loses at most those seconds, and
// `attach` reports anything the gateway no longer holds.

import type { SavedTerm } from './ui/term';
import type { SavedLayout } from './ui/workspace';
import { LOG_MAX } from './ui/outlog';

const KEY = 'opsgate.console.v1';
const LOG_PREFIX = 'opsgate.log.';
/** All terminal logs together, in characters (sessionStorage holds ~5 M). */
const LOG_BUDGET = 3 * 1024 * 1024;

export interface SavedConsole {
  username: string;
  layout: SavedLayout;
  terms: SavedTerm[];
}

export interface LogSource {
  key: string;
  dirty: boolean;
  encode(limit: number): string;
}

export function saveConsole(state: SavedConsole, logs: LogSource[]): void {
  try {
    sessionStorage.setItem(KEY, JSON.stringify(state));
  } catch {
    return;
  }
  const per = Math.min(LOG_MAX, Math.floor(LOG_BUDGET / Math.max(1, logs.length)));
  const keep = new Set(logs.map((l) => LOG_PREFIX + l.key));
  for (let i = sessionStorage.length - 1; i >= 0; i--) {
    const k = sessionStorage.key(i);
    if (k?.startsWith(LOG_PREFIX) && !keep.has(k)) sessionStorage.removeItem(k);
  }
  for (const l of logs) {
    if (!l.dirty && sessionStorage.getItem(LOG_PREFIX + l.key) !== null) continue;
    let limit = per;
    for (;;) {
      try {
        sessionStorage.setItem(LOG_PREFIX + l.key, l.encode(limit));
        l.dirty = false;
        break;
      } catch {
        // Over the quota: keep less of this log rather than none.
        if (limit < 4096) break;
        limit = Math.floor(limit / 2);
      }
    }
  }
}

export function loadConsole(username: string): SavedConsole | undefined {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (!raw) return undefined;
    const s = JSON.parse(raw) as SavedConsole;
    return s.username === username && Array.isArray(s.terms) ? s : undefined;
  } catch {
    return undefined;
  }
}

export function loadLog(key: string): string {
  return sessionStorage.getItem(LOG_PREFIX + key) ?? '';
}

export function clearConsole(): void {
  for (let i = sessionStorage.length - 1; i >= 0; i--) {
    const k = sessionStorage.key(i);
    if (k === KEY || k?.startsWith(LOG_PREFIX)) sessionStorage.removeItem(k);
  }
}
