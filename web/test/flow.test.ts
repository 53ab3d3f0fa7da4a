// Client flow control: the input window, resend after attach, overrun, output acks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InputFlow, OutputFlow, INPUT_FRAME_MAX, concat } from '../src/flow.js';

const bytes = (n: number, fill = 0x61) => new Uint8Array(n).fill(fill);
const total = (fs: Uint8Array[]) => fs.reduce((a, f) => a + f.length, 0);
const seq = (n: number) => Uint8Array.from({ length: n }, (_, i) => i % 251);

test('nothing is sent before opened; type-ahead waits in order', () => {
  const f = new InputFlow();
  f.enqueue(bytes(10));
  assert.equal(total(f.take()), 0);
  f.opened(100);
  assert.equal(total(f.take()), 10);
  assert.equal(f.inFlight, 10);
});

test('never beyond the window; acks release the queue', () => {
  const f = new InputFlow();
  f.opened(100_000);
  f.enqueue(bytes(200_000));
  const first = f.take();
  assert.equal(total(first), 100_000);
  assert.ok(first.every((x) => x.length <= INPUT_FRAME_MAX));
  assert.equal(f.inFlight, 100_000);
  assert.equal(f.queued, 100_000);
  assert.equal(total(f.take()), 0);
  f.ack(30_000);
  assert.equal(total(f.take()), 30_000);
  assert.equal(f.inFlight, 100_000);
  f.ack(100_000);
  assert.equal(total(f.take()), 70_000);
  assert.equal(f.queued, 0);
});

test('an ack larger than what is in flight is clamped', () => {
  const f = new InputFlow();
  f.opened(10);
  f.enqueue(bytes(5));
  f.take();
  f.ack(50);
  assert.equal(f.inFlight, 0);
  assert.equal(f.acked, 5);
});

test('after attach, input beyond input_received is resent first, pending stays in flight', () => {
  const f = new InputFlow();
  f.opened(1000);
  const data = seq(900);
  f.enqueue(data);
  f.take(); // sent 900
  f.ack(100); // program consumed 100
  f.enqueue(bytes(50, 0x7a)); // typed while the window was... queued behind
  f.take(); // sent 950 now
  f.detached();
  f.enqueue(bytes(5, 0x78)); // typed while reconnecting
  assert.equal(total(f.take()), 0);
  // The gateway got 600 bytes; the program consumed 400 of them.
  f.attached(1000, 200, 600);
  assert.equal(f.acked, 400);
  assert.equal(f.sent, 600);
  assert.equal(f.inFlight, 200);
  const out = concat(f.take());
  // 350 resent bytes (600..950) then the 5 typed while away.
  assert.equal(out.length, 355);
  assert.deepEqual([...out.subarray(0, 300)], [...data.subarray(600, 900)]);
  assert.deepEqual([...out.subarray(300, 350)], [...bytes(50, 0x7a)]);
  assert.deepEqual([...out.subarray(350)], [...bytes(5, 0x78)]);
  assert.equal(f.sent, 955);
});

test('attach with counts from another writer takes the gateway numbers', () => {
  const f = new InputFlow();
  f.opened(100);
  f.enqueue(bytes(10));
  f.take();
  f.detached();
  f.attached(100, 3, 40); // 40 received in total: more than we ever sent
  assert.equal(f.inFlight, 3);
  assert.equal(total(f.take()), 0);
});

test('overrun pauses until input_resumed, then counts pending', () => {
  const f = new InputFlow();
  f.opened(100);
  f.enqueue(bytes(100));
  f.take();
  f.overrun();
  f.enqueue(bytes(10));
  assert.equal(total(f.take()), 0);
  f.resumed(40);
  assert.equal(f.inFlight, 40);
  assert.equal(total(f.take()), 10);
  assert.equal(f.synced, false);
});

test('snapshot and restore keep unacknowledged and queued input across a reload', () => {
  const f = new InputFlow();
  f.opened(10);
  f.enqueue(seq(25));
  f.take();
  f.ack(4);
  const s = f.snapshot();
  const g = new InputFlow();
  g.restore(s.sent, s.acked, s.unacked, s.queued);
  assert.equal(total(g.take()), 0, 'paused until attached');
  g.attached(10, 6, 10); // everything sent arrived; 6 not consumed
  const out = concat(g.take());
  assert.deepEqual([...out], [...seq(25).subarray(10, 14)]);
});

test('output acks count only the current attachment', () => {
  const o = new OutputFlow();
  o.attached(0);
  const g1 = o.arrived(100);
  o.rendered(g1, 60);
  assert.equal(o.takeAck(), 60);
  o.attached(100); // reattached: late callbacks of the old one do not count
  o.rendered(g1, 40);
  assert.equal(o.takeAck(), 0);
  const g2 = o.arrived(10);
  o.rendered(g2, 10);
  assert.equal(o.takeAck(), 10);
  assert.equal(o.received, 110);
});
