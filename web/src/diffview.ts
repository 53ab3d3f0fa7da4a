// The config diff as rows to draw: the gateway sends hunks of tagged lines
// (`GET /api/configs/diff`); this turns them into unified rows or side-by-side pairs.
// Pure, so the pairing is unit-tested without a browser.

/** A line of a hunk as the gateway sends it. */
export interface DiffLine {
  tag: 'equal' | 'insert' | 'delete';
  old_line?: number;
  new_line?: number;
  text: string;
}

export interface Hunk {
  old_start: number;
  old_lines: number;
  new_start: number;
  new_lines: number;
  lines: DiffLine[];
}

/** `GET /api/configs/diff`'s answer. */
export interface Diff {
  from: string;
  to: string;
  unified: string;
  hunks: Hunk[];
  stats: { added: number; removed: number };
}

/** One side of a side-by-side row; `undefined` leaves that side blank. */
export interface Cell {
  line: number;
  text: string;
  tag: 'equal' | 'insert' | 'delete';
}

export interface SideRow {
  left?: Cell;
  right?: Cell;
}

/** The `@@ -a,b +c,d @@` header of a hunk (1-based starts, as `diff -u` prints). */
export function hunkHeader(h: Hunk): string {
  const side = (start: number, n: number) => `${n === 0 ? start : start + 1},${n}`;
  return `@@ -${side(h.old_start, h.old_lines)} +${side(h.new_start, h.new_lines)} @@`;
}

/**
 * Pairs a hunk's lines for side by side: equal lines on both sides; a run of deletions
 * followed by a run of insertions is laid out line against line (a changed line reads
 * across), the longer run's rest against blanks.
 */
export function sideBySide(h: Hunk): SideRow[] {
  const rows: SideRow[] = [];
  const lines = h.lines;
  let i = 0;
  while (i < lines.length) {
    const l = lines[i];
    if (l.tag === 'equal') {
      rows.push({ left: { line: l.old_line ?? 0, text: l.text, tag: 'equal' }, right: { line: l.new_line ?? 0, text: l.text, tag: 'equal' } });
      i++;
      continue;
    }
    const del: DiffLine[] = [];
    const ins: DiffLine[] = [];
    while (i < lines.length && lines[i].tag === 'delete') del.push(lines[i++]);
    while (i < lines.length && lines[i].tag === 'insert') ins.push(lines[i++]);
    for (let k = 0; k < Math.max(del.length, ins.length); k++) {
      const d = del[k];
      const n = ins[k];
      rows.push({
        left: d && { line: d.old_line ?? 0, text: d.text, tag: 'delete' },
        right: n && { line: n.new_line ?? 0, text: n.text, tag: 'insert' },
      });
    }
  }
  return rows;
}

/** Where `i` (a hunk index) moves with next (+1) / previous (-1), clamped. */
export function stepHunk(current: number, dir: 1 | -1, count: number): number {
  if (count === 0) return -1;
  if (current < 0) return dir === 1 ? 0 : count - 1;
  return Math.max(0, Math.min(count - 1, current + dir));
}

/**
 * The part of a changed line that differs from its counterpart: the common prefix and
 * suffix are left plain, the middle is highlighted (GitHub's word-level view, by
 * characters). `[start, endA, endB]`: `a.slice(start, endA)` and `b.slice(start, endB)`
 * differ. Identical lines give an empty middle.
 */
export function changedSpan(a: string, b: string): [number, number, number] {
  let start = 0;
  const max = Math.min(a.length, b.length);
  while (start < max && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  return [start, endA, endB];
}

/** For each changed line of a hunk (by index), the text of the line it pairs with. */
export function counterparts(h: Hunk): Map<number, string> {
  const out = new Map<number, string>();
  const lines = h.lines;
  let i = 0;
  while (i < lines.length) {
    if (lines[i].tag === 'equal') {
      i++;
      continue;
    }
    const del: number[] = [];
    const ins: number[] = [];
    while (i < lines.length && lines[i].tag === 'delete') del.push(i++);
    while (i < lines.length && lines[i].tag === 'insert') ins.push(i++);
    for (let k = 0; k < Math.min(del.length, ins.length); k++) {
      out.set(del[k], lines[ins[k]].text);
      out.set(ins[k], lines[del[k]].text);
    }
  }
  return out;
}
