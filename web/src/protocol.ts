// The opsgate.v1 wire protocol: JSON control frames and binary data frames.
// Mirrors protocol/src/lib.rs (the normative text is protocol/PROTOCOL.md). Decoding is
// as strict as the Rust side (unknown `type`/`kind`, missing or out-of-range fields are
// errors; unknown fields are ignored); encoding writes fields in the Rust declaration
// order, so every frame in protocol/vectors/ re-encodes byte for byte.

export const SUBPROTOCOL = 'opsgate.v1';
export const FRAME_DATA = 0x01;
export const DATA_HEADER_LEN = 5;

export type OpenTarget =
  | {
      kind: 'ssh';
      session_id?: string;
      host?: string;
      port?: number;
      username?: string;
      credential_id?: string;
      cols: number;
      rows: number;
    }
  | { kind: 'pty'; program: string; cols: number; rows: number }
  | { kind: 'tool'; tool?: string; params?: unknown; execution_id?: string }
  | { kind: 'job'; job_id: string }
  | { kind: 'stats'; interval_ms: number };

export type ClientFrame =
  | ({ type: 'open'; ch: number } & OpenTarget)
  | { type: 'resize'; ch: number; cols: number; rows: number }
  | { type: 'ack'; ch: number; bytes: number }
  | { type: 'close'; ch: number }
  | { type: 'attach'; ch: number; id: string; offset: number }
  | { type: 'hostkey_accept'; ch: number }
  | { type: 'hostkey_reject'; ch: number }
  | { type: 'input_resume'; ch: number };

export type ServerFrame =
  | {
      type: 'opened';
      ch: number;
      id: string;
      offset?: number;
      lost?: number;
      input_window?: number;
      input_pending?: number;
      input_received?: number;
    }
  | { type: 'input_ack'; ch: number; bytes: number }
  | { type: 'input_resumed'; ch: number; pending: number }
  | {
      type: 'hostkey';
      ch: number;
      algorithm: string;
      fingerprint: string;
      status: 'unknown' | 'changed';
    }
  | { type: 'progress'; ch: number; event: Record<string, unknown> }
  | { type: 'exit'; ch: number; code?: number; signal?: string }
  | { type: 'error'; ch?: number; code: string; message: string }
  | { type: 'closed'; ch: number; reason?: string };

export class FrameError extends Error {}

type Obj = Record<string, unknown>;

// Field readers: each throws FrameError naming the field, like serde's messages.
function field(o: Obj, k: string): unknown {
  if (!(k in o) || o[k] === undefined) throw new FrameError(`missing field \`${k}\``);
  return o[k];
}
function uint(v: unknown, k: string, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new FrameError(`invalid value for \`${k}\`: expected an integer 0..=${max}`);
  }
  return v;
}
function str(v: unknown, k: string): string {
  if (typeof v !== 'string') throw new FrameError(`invalid type for \`${k}\`: expected a string`);
  return v;
}
const U16 = 0xffff;
const U32 = 0xffffffff;
// u64 in JSON numbers: exact up to 2^53, which byte counts never reach.
const U64 = Number.MAX_SAFE_INTEGER;
const I32_MIN = -0x80000000;
const I32_MAX = 0x7fffffff;

const req = {
  u16: (o: Obj, k: string) => uint(field(o, k), k, U16),
  u32: (o: Obj, k: string) => uint(field(o, k), k, U32),
  u64: (o: Obj, k: string) => uint(field(o, k), k, U64),
  str: (o: Obj, k: string) => str(field(o, k), k),
};
// Optional fields: absent or null mean "none", as serde's Option does.
function opt<T>(o: Obj, k: string, read: (v: unknown, k: string) => T): T | undefined {
  const v = o[k];
  return v === undefined || v === null ? undefined : read(v, k);
}
const optU16 = (o: Obj, k: string) => opt(o, k, (v) => uint(v, k, U16));
const optU64 = (o: Obj, k: string) => opt(o, k, (v) => uint(v, k, U64));
const optStr = (o: Obj, k: string) => opt(o, k, str);

function parseObject(text: string): Obj {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new FrameError(`malformed control frame: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new FrameError('malformed control frame: expected a JSON object');
  }
  return v as Obj;
}

function openTarget(o: Obj): OpenTarget {
  const kind = req.str(o, 'kind');
  switch (kind) {
    case 'ssh':
      return {
        kind,
        session_id: optStr(o, 'session_id'),
        host: optStr(o, 'host'),
        port: optU16(o, 'port'),
        username: optStr(o, 'username'),
        credential_id: optStr(o, 'credential_id'),
        cols: req.u16(o, 'cols'),
        rows: req.u16(o, 'rows'),
      };
    case 'pty':
      return { kind, program: req.str(o, 'program'), cols: req.u16(o, 'cols'), rows: req.u16(o, 'rows') };
    case 'tool':
      // Either `tool` (+ `params`) to start a run or `execution_id` to follow one (§3.1).
      return {
        kind,
        tool: o.tool === undefined ? undefined : req.str(o, 'tool'),
        params: o.params ?? undefined,
        execution_id: optStr(o, 'execution_id'),
      };
    case 'job':
      return { kind, job_id: req.str(o, 'job_id') };
    case 'stats':
      return { kind, interval_ms: req.u64(o, 'interval_ms') };
    default:
      throw new FrameError(`unknown variant \`${kind}\` for \`kind\``);
  }
}

/** Decodes a control frame sent by a client (the gateway's side; used by tests). */
export function decodeClient(text: string): ClientFrame {
  const o = parseObject(text);
  const type = req.str(o, 'type');
  switch (type) {
    case 'open':
      return { type, ch: req.u32(o, 'ch'), ...openTarget(o) };
    case 'resize':
      return { type, ch: req.u32(o, 'ch'), cols: req.u16(o, 'cols'), rows: req.u16(o, 'rows') };
    case 'ack':
      return { type, ch: req.u32(o, 'ch'), bytes: req.u64(o, 'bytes') };
    case 'attach':
      return { type, ch: req.u32(o, 'ch'), id: req.str(o, 'id'), offset: req.u64(o, 'offset') };
    case 'close':
    case 'hostkey_accept':
    case 'hostkey_reject':
    case 'input_resume':
      return { type, ch: req.u32(o, 'ch') };
    default:
      throw new FrameError(`unknown variant \`${type}\` for \`type\``);
  }
}

/** Decodes a control frame from the gateway. */
export function decodeServer(text: string): ServerFrame {
  const o = parseObject(text);
  const type = req.str(o, 'type');
  switch (type) {
    case 'opened':
      return {
        type,
        ch: req.u32(o, 'ch'),
        id: req.str(o, 'id'),
        offset: optU64(o, 'offset'),
        lost: optU64(o, 'lost'),
        input_window: optU64(o, 'input_window'),
        input_pending: optU64(o, 'input_pending'),
        input_received: optU64(o, 'input_received'),
      };
    case 'input_ack':
      return { type, ch: req.u32(o, 'ch'), bytes: req.u64(o, 'bytes') };
    case 'input_resumed':
      return { type, ch: req.u32(o, 'ch'), pending: req.u64(o, 'pending') };
    case 'hostkey': {
      const status = req.str(o, 'status');
      if (status !== 'unknown' && status !== 'changed') {
        throw new FrameError(`unknown variant \`${status}\` for \`status\``);
      }
      return {
        type,
        ch: req.u32(o, 'ch'),
        algorithm: req.str(o, 'algorithm'),
        fingerprint: req.str(o, 'fingerprint'),
        status,
      };
    }
    case 'progress': {
      const ch = req.u32(o, 'ch');
      const event: Obj = {};
      for (const [k, v] of Object.entries(o)) if (k !== 'type' && k !== 'ch') event[k] = v;
      return { type, ch, event };
    }
    case 'exit': {
      const code = opt(o, 'code', (v, k) => {
        if (typeof v !== 'number' || !Number.isInteger(v) || v < I32_MIN || v > I32_MAX) {
          throw new FrameError(`invalid value for \`${k}\`: expected an i32`);
        }
        return v;
      });
      return { type, ch: req.u32(o, 'ch'), code, signal: optStr(o, 'signal') };
    }
    case 'error':
      return {
        type,
        ch: opt(o, 'ch', (v, k) => uint(v, k, U32)),
        code: req.str(o, 'code'),
        message: req.str(o, 'message'),
      };
    case 'closed':
      return { type, ch: req.u32(o, 'ch'), reason: optStr(o, 'reason') };
    default:
      throw new FrameError(`unknown variant \`${type}\` for \`type\``);
  }
}

/** Serialises with the given key order, leaving out undefined (serde's skip_serializing_if). */
function ordered(pairs: [string, unknown][]): string {
  const o: Obj = {};
  for (const [k, v] of pairs) if (v !== undefined) o[k] = v;
  return JSON.stringify(o);
}

function targetPairs(t: OpenTarget): [string, unknown][] {
  switch (t.kind) {
    case 'ssh':
      return [
        ['kind', t.kind],
        ['session_id', t.session_id],
        ['host', t.host],
        ['port', t.port],
        ['username', t.username],
        ['credential_id', t.credential_id],
        ['cols', t.cols],
        ['rows', t.rows],
      ];
    case 'pty':
      return [['kind', t.kind], ['program', t.program], ['cols', t.cols], ['rows', t.rows]];
    case 'tool':
      // As serde writes it: an empty tool and null params are left out.
      return [
        ['kind', t.kind],
        ['tool', t.tool || undefined],
        ['params', t.params ?? undefined],
        ['execution_id', t.execution_id],
      ];
    case 'job':
      return [['kind', t.kind], ['job_id', t.job_id]];
    case 'stats':
      return [['kind', t.kind], ['interval_ms', t.interval_ms]];
  }
}

/** Encodes a client control frame. */
export function encodeClient(f: ClientFrame): string {
  switch (f.type) {
    case 'open':
      return ordered([['type', f.type], ['ch', f.ch], ...targetPairs(f)]);
    case 'resize':
      return ordered([['type', f.type], ['ch', f.ch], ['cols', f.cols], ['rows', f.rows]]);
    case 'ack':
      return ordered([['type', f.type], ['ch', f.ch], ['bytes', f.bytes]]);
    case 'attach':
      return ordered([['type', f.type], ['ch', f.ch], ['id', f.id], ['offset', f.offset]]);
    case 'close':
    case 'hostkey_accept':
    case 'hostkey_reject':
    case 'input_resume':
      return ordered([['type', f.type], ['ch', f.ch]]);
  }
}

/** Encodes a server control frame (the gateway's side; used by tests). */
export function encodeServer(f: ServerFrame): string {
  switch (f.type) {
    case 'opened':
      return ordered([
        ['type', f.type],
        ['ch', f.ch],
        ['id', f.id],
        ['offset', f.offset],
        ['lost', f.lost],
        ['input_window', f.input_window],
        ['input_pending', f.input_pending],
        ['input_received', f.input_received],
      ]);
    case 'input_ack':
      return ordered([['type', f.type], ['ch', f.ch], ['bytes', f.bytes]]);
    case 'input_resumed':
      return ordered([['type', f.type], ['ch', f.ch], ['pending', f.pending]]);
    case 'hostkey':
      return ordered([
        ['type', f.type],
        ['ch', f.ch],
        ['algorithm', f.algorithm],
        ['fingerprint', f.fingerprint],
        ['status', f.status],
      ]);
    case 'progress':
      return ordered([['type', f.type], ['ch', f.ch], ...Object.entries(f.event)]);
    case 'exit':
      return ordered([['type', f.type], ['ch', f.ch], ['code', f.code], ['signal', f.signal]]);
    case 'error':
      return ordered([['type', f.type], ['ch', f.ch], ['code', f.code], ['message', f.message]]);
    case 'closed':
      return ordered([['type', f.type], ['ch', f.ch], ['reason', f.reason]]);
  }
}

/** Builds a data frame: kind 0x01, channel (u32 big endian), payload. */
export function encodeData(ch: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(DATA_HEADER_LEN + payload.length);
  out[0] = FRAME_DATA;
  new DataView(out.buffer).setUint32(1, ch >>> 0, false);
  out.set(payload, DATA_HEADER_LEN);
  return out;
}

/** Splits a data frame into channel and payload (a view, not a copy). */
export function decodeData(frame: Uint8Array): { ch: number; payload: Uint8Array } {
  if (frame.length < DATA_HEADER_LEN) {
    throw new FrameError(`data frame shorter than its 5-byte header (${frame.length} bytes)`);
  }
  if (frame[0] !== FRAME_DATA) {
    throw new FrameError(`unknown binary frame kind 0x${frame[0].toString(16).padStart(2, '0')}`);
  }
  const ch = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(1, false);
  return { ch, payload: frame.subarray(DATA_HEADER_LEN) };
}
