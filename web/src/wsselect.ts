// Which workspace the console works in: the personal one or one of the user's teams
// (GET /api/workspaces). Pure functions, so the choice and its fallback are unit-tested.

/** Global and membership roles, as the gateway names them. */
export type WsRole = 'admin' | 'operator' | 'viewer';

/** One entry of `GET /api/workspaces`. */
export interface WorkspaceInfo {
  /** `personal` or a team id: the value of the `X-Opsgate-Workspace` header. */
  id: string;
  kind: 'personal' | 'team';
  name: string;
  role: WsRole;
}

export const PERSONAL = 'personal';

/** The localStorage key remembering a user's choice (per user: two logins in one
 * browser profile keep their own). */
export function storageKey(username: string): string {
  return `opsgate.workspace.${username}`;
}

/** The workspace to use: the remembered one if the user still has it, else the
 * personal one (the team was deleted or the user left it), else the first listed. */
export function pickWorkspace(list: WorkspaceInfo[], remembered: string | null | undefined): WorkspaceInfo | undefined {
  return (
    (remembered ? list.find((w) => w.id === remembered) : undefined) ??
    list.find((w) => w.kind === 'personal' || w.id === PERSONAL) ??
    list[0]
  );
}

/** The header value for a workspace id: none for the personal one (clients that send
 * nothing get it anyway), and none when the path already names a workspace in its
 * query (the gateway refuses a header and a query that differ). */
export function workspaceHeader(id: string, path: string): string | undefined {
  if (!id || id === PERSONAL) return undefined;
  if (/[?&]workspace=/.test(path)) return undefined;
  return id;
}

/** Whether a role may change things (viewers only read). */
export function canWrite(role: WsRole): boolean {
  return role !== 'viewer';
}

/** The label of a workspace in the switcher. */
export function workspaceLabel(w: WorkspaceInfo): string {
  return w.kind === 'personal' ? `Personal (${w.role})` : `${w.name} (${w.role})`;
}
