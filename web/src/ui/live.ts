// Shared pieces of the tools, jobs, configs and dashboard screens: a channel that is not
// a terminal (tool output, job and stats progress), state chips, progress bars, a
// table for a structured result, and a device picker over the saved sessions.

import type { Folder, SavedSession } from '../api';
import { Channel, Connection } from '../connection';
import type { OpenTarget } from '../protocol';
import { h, clear } from './dom';

/** What a non-terminal channel reports to its view. */
export interface StreamEvents {
  text?(s: string): void;
  progress?(e: Record<string, unknown>): void;
  exit?(code?: number): void;
  error?(code: string, message: string): void;
  closed?(reason?: string): void;
}

/**
 * A `tool`, `job` or `stats` channel on the page's one socket. Output is acknowledged
 * once it is in the DOM (the same rule as terminals: ack what was rendered), so a fast
 * tool cannot flood the tab; it re-attaches after a socket drop like any channel.
 */
export class Stream {
  readonly channel: Channel;
  private decoder = new TextDecoder();
  constructor(conn: Connection, target: OpenTarget, ev: StreamEvents) {
    const ch: Channel = conn.open(target, {
      state: () => {},
      data: (payload, gen) => {
        ev.text?.(this.decoder.decode(payload, { stream: true }));
        ch.rendered(gen, payload.length);
      },
      opened: () => {},
      hostkey: () => {},
      exit: (code) => ev.exit?.(code),
      error: (code, message) => ev.error?.(code, message),
      closed: (reason) => ev.closed?.(reason),
      progress: (e) => ev.progress?.(e),
    });
    this.channel = ch;
  }

  close(): void {
    this.channel.close();
  }
}

/** Terminal-like output in a <pre>, bounded: past `limit` characters the oldest go. */
export class OutputBox {
  readonly el: HTMLPreElement;
  private len = 0;
  private trimmed = false;
  constructor(
    label: string,
    private limit = 512 * 1024,
  ) {
    this.el = h('pre', { class: 'output', tabindex: 0, 'aria-label': label, role: 'log' });
  }
  append(s: string): void {
    // eslint-disable-next-line no-control-regex
    const clean = s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r(?!\n)/g, '');
    const stick = this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - 4;
    this.el.appendChild(document.createTextNode(clean));
    this.len += clean.length;
    if (this.len > this.limit) {
      const all = (this.el.textContent ?? '').slice(-Math.floor(this.limit * 0.75));
      this.trimmed = true;
      this.el.textContent = '[earlier output trimmed]\n' + all;
      this.len = all.length;
    }
    if (stick) this.el.scrollTop = this.el.scrollHeight;
  }
  reset(): void {
    this.el.textContent = '';
    this.len = 0;
    this.trimmed = false;
  }
  get text(): string {
    return this.el.textContent ?? '';
  }
  get wasTrimmed(): boolean {
    return this.trimmed;
  }
}

/** A state word as a coloured chip (queued, running, retrying, succeeded, …). */
export function chip(state: string): HTMLElement {
  return h('span', { class: `chip s-${state}` }, state.replace(/_/g, ' '));
}

/** A progress bar with an accessible name; `value` undefined = indeterminate. */
export function bar(label: string, value: number | undefined, max = 1, state = ''): HTMLElement {
  const p = h('progress', { class: `bar s-${state}`, max, 'aria-label': label });
  if (value !== undefined) p.value = value;
  return p;
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/**
 * A tool's structured result as tables: scalars as name/value rows, an array of
 * objects as a table with one column per key, nested objects as their own section.
 */
export function resultTable(result: unknown, caption = 'Result'): HTMLElement {
  if (result === null || typeof result !== 'object') return h('p', {}, cell(result));
  const entries = Object.entries(result as Record<string, unknown>);
  const scalars = entries.filter(([, v]) => v === null || typeof v !== 'object');
  const nested = entries.filter(([, v]) => v !== null && typeof v === 'object');
  const out = h('div', { class: 'result' });
  if (scalars.length > 0) {
    out.appendChild(
      h(
        'table',
        { class: 'grid kvtable' },
        h('caption', {}, caption),
        h('tbody', {}, ...scalars.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, cell(v))))),
      ),
    );
  }
  for (const [k, v] of nested) {
    if (Array.isArray(v) && v.every((x) => x && typeof x === 'object' && !Array.isArray(x))) {
      const cols = [...new Set(v.flatMap((x) => Object.keys(x as object)))];
      out.appendChild(
        h(
          'table',
          { class: 'grid' },
          h('caption', {}, `${k} (${v.length})`),
          h('thead', {}, h('tr', {}, ...cols.map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, ...v.map((row) => h('tr', {}, ...cols.map((c) => h('td', {}, cell((row as Record<string, unknown>)[c])))))),
        ),
      );
    } else if (Array.isArray(v)) {
      out.appendChild(h('table', { class: 'grid kvtable' }, h('caption', {}, k), h('tbody', {}, ...v.map((x, i) => h('tr', {}, h('th', { scope: 'row' }, String(i + 1)), h('td', {}, cell(x)))))));
    } else {
      out.appendChild(resultTable(v, k));
    }
  }
  return out;
}

/** Checkboxes over the saved sessions, grouped by folder, with a filter. */
export class DevicePicker {
  readonly el: HTMLElement;
  readonly selected = new Set<string>();
  private list: HTMLElement;
  private filter: HTMLInputElement;
  private count: HTMLElement;
  constructor(
    private folders: () => Folder[],
    private onChange: () => void = () => {},
    label = 'Devices',
  ) {
    const id = `picker-${Math.random().toString(36).slice(2, 8)}`;
    this.filter = h('input', { type: 'search', id, placeholder: 'Filter name, host, type, tag', spellcheck: 'false' });
    this.filter.addEventListener('input', () => this.render());
    this.count = h('span', { class: 'muted', 'aria-live': 'polite' });
    this.list = h('div', { class: 'picker-list', role: 'group', 'aria-label': label });
    this.el = h(
      'fieldset',
      { class: 'picker' },
      h('legend', {}, label, ' ', this.count),
      h(
        'div',
        { class: 'picker-head' },
        h('label', { for: id, class: 'visually-hidden' }, 'Filter devices'),
        this.filter,
        h('button', { type: 'button', class: 'small', onclick: () => this.all(true) }, 'Select shown'),
        h('button', { type: 'button', class: 'small', onclick: () => this.all(false) }, 'Clear'),
      ),
      this.list,
    );
  }

  private matches(s: SavedSession): boolean {
    const q = this.filter.value.trim().toLowerCase();
    if (!q) return true;
    return [s.display_name, s.host, s.device_type, s.folder, ...s.tags].some((x) => x.toLowerCase().includes(q));
  }

  private shown(): SavedSession[] {
    return this.folders().flatMap((f) => f.sessions.filter((s) => this.matches(s)));
  }

  private all(on: boolean): void {
    for (const s of on ? this.shown() : this.folders().flatMap((f) => f.sessions)) {
      if (on) this.selected.add(s.id);
      else this.selected.delete(s.id);
    }
    this.render();
    this.onChange();
  }

  set(ids: string[]): void {
    this.selected.clear();
    for (const i of ids) this.selected.add(i);
    this.render();
  }

  render(): void {
    const groups = this.folders()
      .map((f) => ({ f, items: f.sessions.filter((s) => this.matches(s)) }))
      .filter((g) => g.items.length > 0);
    clear(
      this.list,
      ...groups.map(({ f, items }) =>
        h(
          'div',
          { class: 'picker-group' },
          h('div', { class: 'picker-folder' }, f.name || 'No folder'),
          ...items.map((s) => {
            const box = h('input', { type: 'checkbox', value: s.id, checked: this.selected.has(s.id) });
            box.addEventListener('change', () => {
              if (box.checked) this.selected.add(s.id);
              else this.selected.delete(s.id);
              this.count.textContent = `${this.selected.size} selected`;
              this.onChange();
            });
            return h('label', { class: 'picker-item' }, box, h('span', {}, s.display_name), h('span', { class: 'muted' }, `${s.host} · ${s.device_type}`));
          }),
        ),
      ),
    );
    if (groups.length === 0) this.list.appendChild(h('p', { class: 'muted' }, 'No saved sessions match.'));
    this.count.textContent = `${this.selected.size} selected`;
  }
}

/** Display name of a saved session id, from the sidebar's folders. */
export function deviceName(folders: Folder[], id: string): string {
  for (const f of folders) for (const s of f.sessions) if (s.id === id) return s.display_name;
  return id;
}

export function fmtDuration(ms?: number | null): string {
  if (ms === undefined || ms === null) return '';
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}
