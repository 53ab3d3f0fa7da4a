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
