// Saved sessions and folders: the create/edit/move/delete actions, shared by the
// sidebar's context menu and the inventory page.
import { api, Credential, DEVICE_TYPES, Folder, SavedSession } from '../api';
import { confirmDialog, formDialog, Values } from './dialog';
import { toast } from './dom';

function tagsOf(v: string): string[] {
  return v
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
}

function body(v: Values) {
  return {
    folder: v.folder.trim() || undefined,
    display_name: v.display_name.trim(),
    host: v.host.trim(),
    port: Number(v.port || 22),
    username: v.username.trim(),
    device_type: v.device_type,
    credential_id: v.credential_id || undefined,
    tags: tagsOf(v.tags),
  };
}

export async function editSession(
  s: Partial<SavedSession> | undefined,
  folders: Folder[],
  done: () => void,
  copy = false,
): Promise<void> {
  let creds: Credential[] = [];
  try {
    creds = await api.get<Credential[]>('api/credentials');
  } catch {
    /* the form still works without the list */
  }
  const editing = s?.id && !copy;
  formDialog(
    editing ? `Edit ${s?.display_name}` : copy ? `Duplicate ${s?.display_name}` : 'New saved session',
    [
      { name: 'display_name', label: 'Name', value: copy ? `${s?.display_name} copy` : s?.display_name, required: true },
      { name: 'host', label: 'Host', value: s?.host, required: true, placeholder: '10.0.0.1 or core-sw1.example.net' },
      { name: 'port', label: 'Port', type: 'number', value: String(s?.port ?? 22) },
      { name: 'username', label: 'Username', value: s?.username, required: true },
      {
        name: 'device_type',
        label: 'Device type',
        type: 'select',
        value: s?.device_type ?? 'linux',
        options: DEVICE_TYPES.map((d) => [d, d]),
      },
      {
        name: 'credential_id',
        label: 'Credential',
        type: 'select',
        value: s?.credential_id ?? '',
        options: [['', '(none)'], ...creds.map((c): [string, string] => [c.id, `${c.name} (${c.kind})`])],
      },
      {
        name: 'folder',
        label: 'Folder',
        value: s?.folder ?? folders[0]?.name ?? 'Default',
        help: folders.length ? `Existing: ${folders.map((f) => f.name).join(', ')}` : undefined,
      },
      { name: 'tags', label: 'Tags', value: (s?.tags ?? []).join(', '), help: 'Comma-separated' },
    ],
    editing ? 'Save' : 'Create',
    async (v) => {
      if (editing) await api.put(`api/sessions/${encodeURIComponent(s!.id!)}`, body(v));
      else await api.post('api/sessions', body(v));
      toast(editing ? 'Saved.' : `Created ${v.display_name}.`);
      done();
    },
  );
}

export function moveSession(s: SavedSession, folders: Folder[], done: () => void): void {
  formDialog(
    `Move ${s.display_name}`,
    [
      {
        name: 'folder',
        label: 'To folder',
        value: s.folder,
        required: true,
        help: `Existing: ${folders.map((f) => f.name).join(', ')}`,
      },
    ],
    'Move',
    async (v) => {
      const { id: _id, ...rest } = s;
      void _id;
      await api.put(`api/sessions/${encodeURIComponent(s.id)}`, {
        folder: v.folder.trim(),
        display_name: rest.display_name,
        host: rest.host,
        port: rest.port,
        username: rest.username,
        device_type: rest.device_type,
        credential_id: rest.credential_id ?? undefined,
        tags: rest.tags,
      });
      toast(`Moved ${s.display_name} to ${v.folder.trim()}.`);
      done();
    },
  );
}

export async function deleteSession(s: SavedSession, done: () => void): Promise<void> {
  if (!(await confirmDialog(`Delete ${s.display_name}?`, `The saved session ${s.display_name} (${s.host}:${s.port}) will be removed. Open terminals keep running.`, 'Delete'))) return;
  try {
    await api.del(`api/sessions/${encodeURIComponent(s.id)}`);
    toast(`Deleted ${s.display_name}.`);
    done();
  } catch (e) {
    toast((e as Error).message, 'error');
  }
}

export function newFolder(done: () => void): void {
  formDialog('New folder', [{ name: 'name', label: 'Folder name', required: true }], 'Create', async (v) => {
    await api.post('api/folders', { name: v.name.trim() });
    done();
  });
}

export function renameFolder(name: string, done: () => void): void {
  formDialog(`Rename ${name}`, [{ name: 'name', label: 'New name', value: name, required: true }], 'Rename', async (v) => {
    await api.put(`api/folders/${encodeURIComponent(name)}`, { name: v.name.trim() });
    done();
  });
}

export async function deleteFolder(f: Folder, done: () => void): Promise<void> {
  if (f.sessions.length > 0) {
    toast(`${f.name} still holds ${f.sessions.length} session(s): move or delete them first.`, 'error');
    return;
  }
  if (!(await confirmDialog(`Delete folder ${f.name}?`, `The empty folder ${f.name} will be removed.`, 'Delete'))) return;
  try {
    await api.del(`api/folders/${encodeURIComponent(f.name)}`);
    done();
  } catch (e) {
    toast((e as Error).message, 'error');
  }
}
