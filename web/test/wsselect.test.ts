import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canWrite, pickWorkspace, storageKey, workspaceHeader, workspaceLabel, WorkspaceInfo } from '../src/wsselect.js';

const list: WorkspaceInfo[] = [
  { id: 'personal', kind: 'personal', name: 'alice', role: 'operator' },
  { id: 't1', kind: 'team', name: 'Core', role: 'viewer' },
  { id: 't2', kind: 'team', name: 'Edge', role: 'admin' },
];

test('the remembered team is picked while the user still has it', () => {
  assert.equal(pickWorkspace(list, 't2')?.id, 't2');
  assert.equal(pickWorkspace(list, 'personal')?.id, 'personal');
});

test('a gone team, nothing remembered or junk falls back to personal', () => {
  assert.equal(pickWorkspace(list, 'deleted-team')?.id, 'personal');
  assert.equal(pickWorkspace(list, null)?.id, 'personal');
  assert.equal(pickWorkspace(list, '')?.id, 'personal');
  assert.equal(pickWorkspace([], 't1'), undefined);
});

test('the header is sent only for a team and never beside a query selector', () => {
  assert.equal(workspaceHeader('personal', 'api/sessions'), undefined);
  assert.equal(workspaceHeader('', 'api/sessions'), undefined);
  assert.equal(workspaceHeader('t1', 'api/sessions'), 't1');
  assert.equal(workspaceHeader('t1', 'api/audit?workspace=t2'), undefined);
  assert.equal(workspaceHeader('t1', 'api/audit?limit=5&workspace=t2'), undefined);
  assert.equal(workspaceHeader('t1', 'api/jobs?state=running'), 't1');
});

test('roles and labels', () => {
  assert.equal(canWrite('viewer'), false);
  assert.equal(canWrite('operator'), true);
  assert.equal(canWrite('admin'), true);
  assert.equal(workspaceLabel(list[0]), 'Personal (operator)');
  assert.equal(workspaceLabel(list[1]), 'Core (viewer)');
  assert.equal(storageKey('bob'), 'opsgate.workspace.bob');
});
