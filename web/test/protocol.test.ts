// The codec against every frame in protocol/vectors/: decode, re-encode byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  decodeClient,
  decodeData,
  decodeServer,
  encodeClient,
  encodeData,
  encodeServer,
  FrameError,
} from '../src/protocol.js';

const VECTORS = join(process.cwd(), '..', 'protocol', 'vectors');
type Vector = { name: string; json?: string; ch?: number; payload_hex?: string; frame_hex?: string };
const load = (f: string): Vector[] => JSON.parse(readFileSync(join(VECTORS, f), 'utf8'));
const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('client control frames round-trip', () => {
  const vs = load('client.json');
  assert.ok(vs.length >= 10);
  for (const v of vs) assert.equal(encodeClient(decodeClient(v.json!)), v.json, v.name);
});

test('server control frames round-trip', () => {
  const vs = load('server.json');
  assert.ok(vs.length >= 7);
  for (const v of vs) assert.equal(encodeServer(decodeServer(v.json!)), v.json, v.name);
});

test('data frames round-trip', () => {
  const vs = load('data.json');
  assert.ok(vs.length >= 4);
  for (const v of vs) {
    const payload = hex(v.payload_hex!);
    assert.equal(toHex(encodeData(v.ch!, payload)), v.frame_hex, v.name);
    const d = decodeData(hex(v.frame_hex!));
    assert.equal(d.ch, v.ch, v.name);
    assert.equal(toHex(d.payload), v.payload_hex, v.name);
  }
});

test('invalid frames are refused', () => {
  const vs = load('invalid.json');
  assert.ok(vs.length >= 8);
  for (const v of vs) {
    if (v.json !== undefined) assert.throws(() => decodeClient(v.json!), FrameError, v.name);
    else assert.throws(() => decodeData(hex(v.frame_hex!)), FrameError, v.name);
  }
});

test('server frames that break the types are refused', () => {
  for (const bad of [
    '{"type":"opened","ch":1}',
    '{"type":"hostkey","ch":1,"algorithm":"a","fingerprint":"f","status":"maybe"}',
    '{"type":"exit","ch":1,"code":2147483648}',
    '{"type":"input_ack","ch":1,"bytes":-1}',
    '{"type":"nope","ch":1}',
    '[]',
  ]) {
    assert.throws(() => decodeServer(bad), FrameError, bad);
  }
});

test('data frame payload is a view at the right offset', () => {
  const frame = encodeData(0xfffffffe, new Uint8Array([1, 2, 3]));
  const sub = new Uint8Array(frame.length + 3);
  sub.set(frame, 3);
  const d = decodeData(sub.subarray(3));
  assert.equal(d.ch, 0xfffffffe);
  assert.deepEqual([...d.payload], [1, 2, 3]);
});
