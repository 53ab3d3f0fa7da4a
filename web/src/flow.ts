// Per-channel flow control on the client, as plain state the connection drives
// (PROTOCOL.md §4 and §6). No I/O here, so every rule is unit-tested.

/** Largest input data frame we send; well under the gateway's frame limit. */
export const INPUT_FRAME_MAX = 32 * 1024;

/**
 * Input flow (§4.2): `inFlight = sent − Σ input_ack` never exceeds the window the
 * gateway announced in `opened`; the rest waits in `queue`, in order. Bytes sent and
 * not yet acknowledged are kept (`unacked`), because input sent on a socket that died
 * may never have arrived: after `attach`, `opened` says how much the channel received
 * and we resend the rest (§6).
 *
 * Absolute counts (`acked`, `sent`) are in the channel's input stream as the gateway
 * counts it; `synced` is false when we cannot know that (after an overrun), and the
 * next `attach` takes the gateway's numbers as they are.
 */
export class InputFlow {
  window = 0;
  acked = 0;
  sent = 0;
  /** No sending until `opened` (and while an overrun is being resolved). */
  paused = true;
  synced = true;
  private unacked: Uint8Array[] = [];
  private queue: Uint8Array[] = [];
  private queuedBytes = 0;

  get inFlight(): number {
    return this.sent - this.acked;
  }
  get queued(): number {
    return this.queuedBytes;
  }

  /** Input typed or pasted: it waits until the window allows. */
  enqueue(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.queue.push(bytes);
    this.queuedBytes += bytes.length;
  }

  /** `opened` for a fresh channel. */
  opened(window: number | undefined): void {
    this.window = window ?? Number.MAX_SAFE_INTEGER; // an older gateway has no window
    this.acked = 0;
    this.sent = 0;
    this.unacked = [];
    this.paused = false;
    this.synced = true;
  }

  /**
   * `opened` after `attach`: the channel has `received` input bytes in total, of which
   * `pending` are not consumed yet. What we sent beyond `received` died with the old
   * socket: it goes back to the front of the queue.
   */
  attached(window: number | undefined, pending: number, received: number): void {
    this.window = window ?? Number.MAX_SAFE_INTEGER;
    const consumed = received - pending;
    if (this.synced && received <= this.sent && consumed >= this.acked) {
      this.drop(consumed - this.acked);
      const resend = this.takeTail(this.sent - received);
      if (resend.length > 0) {
        this.queue.unshift(resend);
        this.queuedBytes += resend.length;
      }
    } else {
      // Someone else's input is in the count (another tab) or ours is unknown.
      this.unacked = [];
    }
    this.acked = consumed;
    this.sent = received;
    this.paused = false;
    this.synced = true;
  }

  /** `input_ack {bytes}`. */
  ack(bytes: number): void {
    const n = Math.min(bytes, this.inFlight);
    this.drop(n);
    this.acked += n;
  }

  /** The socket is gone: hold everything until the channel is attached again. */
  detached(): void {
    this.paused = true;
  }

  /** `error input_overrun`: the gateway drops input until `input_resume`. */
  overrun(): void {
    this.paused = true;
    this.synced = false;
  }

  /**
   * `input_resumed {pending}`: `pending` bytes still count against the window. Which of
   * the bytes sent after the overrun were dropped is not known exactly, so the count is
   * rebased and the kept copies are let go (the overrun itself is reported to the user).
   */
  resumed(pending: number): void {
    this.acked = this.sent - pending;
    this.unacked = [];
    this.paused = false;
  }

  /** The next frames to send now, within the window; counts them as sent. */
  take(): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (this.paused) return out;
    while (this.queue.length > 0) {
      const room = Math.min(this.window - this.inFlight, INPUT_FRAME_MAX);
      if (room <= 0) break;
      let head = this.queue[0];
      if (head.length > room) {
        this.queue[0] = head.subarray(room);
        head = head.subarray(0, room);
      } else {
        this.queue.shift();
      }
      this.queuedBytes -= head.length;
      this.sent += head.length;
      this.unacked.push(head);
      out.push(head);
    }
    return out;
  }

  /** Everything not yet acknowledged, in order (kept across a reload). */
  pendingBytes(): Uint8Array {
    return concat([...this.unacked, ...this.queue]);
  }

  /** Restores state saved by a page before a reload: nothing is known to be sent yet. */
  restore(sent: number, acked: number, unacked: Uint8Array, queued: Uint8Array): void {
    this.sent = sent;
    this.acked = acked;
    this.unacked = unacked.length > 0 ? [unacked] : [];
    this.queue = queued.length > 0 ? [queued] : [];
    this.queuedBytes = queued.length;
    this.paused = true;
    this.synced = sent - acked === unacked.length;
  }

  /** Unacknowledged bytes (already sent) and queued bytes, for saving. */
  snapshot(): { sent: number; acked: number; unacked: Uint8Array; queued: Uint8Array } {
    return {
      sent: this.sent,
      acked: this.acked,
      unacked: concat(this.unacked),
      queued: concat(this.queue),
    };
  }

  private drop(n: number): void {
    while (n > 0 && this.unacked.length > 0) {
      const head = this.unacked[0];
      if (head.length <= n) {
        this.unacked.shift();
        n -= head.length;
      } else {
        this.unacked[0] = head.subarray(n);
        n = 0;
      }
    }
  }

  /** Removes and returns the last `n` unacknowledged bytes. */
  private takeTail(n: number): Uint8Array {
    const parts: Uint8Array[] = [];
    while (n > 0 && this.unacked.length > 0) {
      const last = this.unacked[this.unacked.length - 1];
      if (last.length <= n) {
        this.unacked.pop();
        parts.unshift(last);
        n -= last.length;
      } else {
        parts.unshift(last.subarray(last.length - n));
        this.unacked[this.unacked.length - 1] = last.subarray(0, last.length - n);
        n = 0;
      }
    }
    return concat(parts);
  }
}

/**
 * Output position of one channel: `received` is the offset just past the last byte
 * that arrived (what `attach` asks for); acks are counted per attachment, since an
 * `attach` resets the gateway's acknowledged position and a late ack must not count
 * for the new one.
 */
export class OutputFlow {
  received = 0;
  /** Which attachment the bytes in flight to the terminal belong to. */
  generation = 0;
  private pendingAck = 0;

  /** A new attachment whose data starts at `offset`. */
  attached(offset: number): void {
    this.received = offset;
    this.generation++;
    this.pendingAck = 0;
  }

  /** Data arrived; returns the generation to hand back in `rendered`. */
  arrived(n: number): number {
    this.received += n;
    return this.generation;
  }

  /** The terminal has processed `n` bytes of attachment `generation`. */
  rendered(generation: number, n: number): void {
    if (generation === this.generation) this.pendingAck += n;
  }

  /** Bytes to acknowledge now (and forget). */
  takeAck(): number {
    const n = this.pendingAck;
    this.pendingAck = 0;
    return n;
  }
}

export function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
