// The raw output of a terminal, its last LOG_MAX bytes, ending exactly at the byte
// offset the channel received. Saved in sessionStorage when the page goes away, so a
// reload writes it back into a fresh xterm and then attaches at that offset: the
// scrollback comes back whole and the rest follows, with no byte missing or doubled.

export const LOG_MAX = 512 * 1024;

export class OutputLog {
  private chunks: Uint8Array[] = [];
  private size = 0;
  dirty = false;

  append(b: Uint8Array): void {
    if (b.length === 0) return;
    this.chunks.push(b.slice());
    this.size += b.length;
    this.dirty = true;
    while (this.size - this.chunks[0].length >= LOG_MAX) {
      this.size -= this.chunks[0].length;
      this.chunks.shift();
    }
  }

  /** The kept bytes as a latin1 string (one char per byte), for sessionStorage. */
  encode(limit = LOG_MAX): string {
    const all = this.bytes();
    let from = Math.max(0, all.length - limit);
    // Start on a line boundary so a cut escape sequence does not garble the first line.
    if (from > 0) {
      const nl = all.indexOf(0x0a, from);
      from = nl < 0 ? all.length : nl + 1;
    }
    return toLatin1(all.subarray(from));
  }

  static decode(s: string): Uint8Array {
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
    return out;
  }

  bytes(): Uint8Array {
    if (this.chunks.length !== 1) {
      const out = new Uint8Array(this.size);
      let at = 0;
      for (const c of this.chunks) {
        out.set(c, at);
        at += c.length;
      }
      this.chunks = this.size > 0 ? [out] : [];
    }
    return this.chunks[0] ?? new Uint8Array(0);
  }
}

/** Bytes as a string of one char per byte (storable in sessionStorage). */
export function toLatin1(b: Uint8Array): string {
  let s = '';
  const CHUNK = 0x8000;
  for (let i = 0; i < b.length; i += CHUNK) {
    s += String.fromCharCode.apply(null, Array.from(b.subarray(i, Math.min(b.length, i + CHUNK))));
  }
  return s;
}
