import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkParam, paramOfError, ParamSchema } from '../src/toolform.js';
import { sideBySide, hunkHeader, stepHunk, Hunk } from '../src/diffview.js';

const host: ParamSchema = { type: 'string', format: 'host', maxLength: 253 };
const count: ParamSchema = { type: 'integer', minimum: 1, maximum: 20, default: 4 };

const err = (c: ReturnType<typeof checkParam>) => ('error' in c ? c.error : undefined);

test('hosts are checked as the gateway checks them', () => {
  assert.deepEqual(checkParam(host, '127.0.0.1', true), { value: '127.0.0.1' });
  assert.deepEqual(checkParam(host, 'core-sw1.example.net', true), { value: 'core-sw1.example.net' });
  assert.deepEqual(checkParam(host, '::1', true), { value: '::1' });
  assert.equal(err(checkParam(host, '', true)), 'is required');
  assert.equal(err(checkParam(host, '-oProxyCommand=x', true)), "may not start with '-'");
  assert.match(err(checkParam(host, 'a b', true))!, /printable ASCII/);
  assert.match(err(checkParam(host, '1.2.3.999', true))!, /last label must hold a letter/);
  assert.match(err(checkParam(host, 'a_b.com', true))!, /letters, digits and '-' only/);
  assert.match(err(checkParam(host, 'a;b', true))!, /letters, digits/);
});

test('integers, ranges, defaults, choices, port lists and CIDRs', () => {
  assert.deepEqual(checkParam(count, '3', false), { value: 3 });
  assert.deepEqual(checkParam(count, '', false), { empty: true });
  assert.equal(err(checkParam(count, '21', false)), 'must be 1-20');
  assert.equal(err(checkParam(count, '2.5', false)), 'must be an integer');
  const kind: ParamSchema = { type: 'string', enum: ['A', 'MX'] };
  assert.equal(err(checkParam(kind, 'TXT', false)), 'must be one of ["A","MX"]');
  const ports: ParamSchema = { type: 'string', format: 'port-list' };
  assert.deepEqual(checkParam(ports, '22,80,8000-8010', false), { value: '22,80,8000-8010' });
  for (const b of ['0', '65536', '10-5', '1-65535', '22,,80', '+22', '0x16']) assert.ok(err(checkParam(ports, b, false)), b);
  const scan: ParamSchema = { type: 'string', format: 'cidr' };
  assert.deepEqual(checkParam(scan, '192.0.2.7/24', true, 24), { value: '192.0.2.7/24' });
  assert.equal(err(checkParam(scan, '10.0.0.0/8', true, 24)), 'a /8 is wider than the allowed /24 for scans');
  assert.ok(err(checkParam(scan, '10.0.0.1-50', true, 24)));
});

test('the gateway message names the field', () => {
  assert.deepEqual(paramOfError('invalid parameters: parameter "count": must be 1-20'), { param: 'count', reason: 'must be 1-20' });
  assert.equal(paramOfError('viewers cannot run tools'), undefined);
});

test('side by side pairs a changed line across and pads the rest', () => {
  const h: Hunk = {
    old_start: 8,
    old_lines: 4,
    new_start: 8,
    new_lines: 5,
    lines: [
      { tag: 'equal', old_line: 9, new_line: 9, text: '!' },
      { tag: 'delete', old_line: 10, text: 'vlan 321' },
      { tag: 'insert', new_line: 10, text: 'vlan 322' },
      { tag: 'insert', new_line: 11, text: ' name lab' },
      { tag: 'equal', old_line: 11, new_line: 12, text: '!' },
    ],
  };
  const rows = sideBySide(h);
  assert.equal(rows.length, 4);
  assert.deepEqual(rows[1], { left: { line: 10, text: 'vlan 321', tag: 'delete' }, right: { line: 10, text: 'vlan 322', tag: 'insert' } });
  assert.deepEqual(rows[2], { left: undefined, right: { line: 11, text: ' name lab', tag: 'insert' } });
  assert.equal(hunkHeader(h), '@@ -9,4 +9,5 @@');
  assert.equal(stepHunk(-1, 1, 3), 0);
  assert.equal(stepHunk(2, 1, 3), 2);
  assert.equal(stepHunk(-1, -1, 3), 2);
  assert.equal(stepHunk(0, 1, 0), -1);
});

test('word-level: only the differing middle of a changed line is marked', async () => {
  const { changedSpan, counterparts } = await import('../src/diffview.js');
  assert.deepEqual(changedSpan(' name users', ' name staff'), [6, 11, 11]);
  assert.deepEqual(changedSpan('vlan 321', 'vlan 3210'), [8, 8, 9]);
  assert.deepEqual(changedSpan('same', 'same'), [4, 4, 4]);
  const m = counterparts({
    old_start: 0,
    old_lines: 2,
    new_start: 0,
    new_lines: 1,
    lines: [
      { tag: 'delete', old_line: 1, text: 'a 1' },
      { tag: 'delete', old_line: 2, text: 'b' },
      { tag: 'insert', new_line: 1, text: 'a 2' },
    ],
  });
  assert.equal(m.get(0), 'a 2');
  assert.equal(m.get(2), 'a 1');
  assert.equal(m.has(1), false);
});
