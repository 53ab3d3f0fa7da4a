import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appActions, fmtLeft, fmtLoad, fmtUptime, JobOutput, secondsLeft } from '../src/appsmodel.js';

test('uptime, load and countdown read at a glance', () => {
  assert.equal(fmtUptime(undefined), '—');
  assert.equal(fmtUptime(45), '45s');
  assert.equal(fmtUptime(125), '2m 5s');
  assert.equal(fmtUptime(7500), '2h 5m');
  assert.equal(fmtUptime(3 * 86400 + 4 * 3600 + 5), '3d 4h');
  assert.equal(fmtLoad([0.1, 0.25, 1]), '0.10 0.25 1.00');
  assert.equal(fmtLoad(null), '—');
  assert.equal(fmtLeft(9), '0:09');
  assert.equal(fmtLeft(245), '4:05');
  assert.equal(fmtLeft(3723), '1:02:03');
  assert.equal(fmtLeft(-5), '0:00');
  assert.equal(secondsLeft(1000, 990_000), 10);
  assert.equal(secondsLeft(1000, 2_000_000), 0);
  assert.equal(secondsLeft(null, 0), undefined);
});

test('actions follow the state machine', () => {
  assert.deepEqual(appActions('stopped', 30), { start: true, stop: false, extend: false, edit: true, remove: true });
  assert.deepEqual(appActions('running', 30), { start: false, stop: true, extend: true, edit: true, remove: false });
  assert.equal(appActions('running', 0).extend, false);
  assert.deepEqual(appActions('starting', 30), { start: false, stop: false, extend: false, edit: false, remove: false });
  assert.deepEqual(appActions('failed', 30), { start: true, stop: true, extend: false, edit: true, remove: true });
});

test('job output: snapshot first, live events past it, replays skipped', () => {
  const o = new JobOutput();
  assert.equal(o.take({ event: 'target', state: 'running' }), '');
  assert.equal(o.take({ event: 'output', snapshot: true, data: 'abc', end: 3 }), 'abc');
  assert.equal(o.take({ event: 'output', offset: 0, data: 'abc' }), '', 'already in the snapshot');
  assert.equal(o.take({ event: 'output', offset: 3, data: 'dé' }), 'dé');
  assert.equal(o.end, 6);
  assert.equal(o.take({ event: 'output', offset: 3, data: 'dé' }), '', 'a replay after attach');
  assert.equal(o.take({ event: 'output', offset: 6, data: 'x' }), 'x');
});
