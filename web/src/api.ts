// The REST client. Every error the gateway sends is {"error":{"code","message"}}; it
// becomes an ApiError with the status and, for 429, the Retry-After seconds.
// Every call carries the selected workspace (X-Opsgate-Workspace) unless it is the
// personal one or the path names one itself.

import { PERSONAL, workspaceHeader } from './wsselect';

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public retryAfter?: number,
  ) {
    super(message);
  }
}

/** URL of a path under the page's base (the page lives at `{base}/`). */
export function url(path: string): string {
  return new URL(path.replace(/^\//, ''), document.baseURI).toString();
}

let selectedWorkspace = PERSONAL;

/** Selects the workspace every following REST call works in (`personal` or a team id). */
export function setWorkspace(id: string): void {
  selectedWorkspace = id || PERSONAL;
}

/** The workspace REST calls currently work in. */
export function currentWorkspace(): string {
  return selectedWorkspace;
}

async function request<T>(method: string, path: string, body?: unknown, raw?: string): Promise<T> {
  const headers: Record<string, string> = { 'X-Requested-With': 'opsgate' };
  const ws = workspaceHeader(selectedWorkspace, path);
  if (ws) headers['X-Opsgate-Workspace'] = ws;
  let payload: string | undefined;
  if (raw !== undefined) {
    headers['Content-Type'] = 'application/yaml';
    payload = raw;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let resp: Response;
  try {
    resp = await fetch(url(path), { method, headers, body: payload, credentials: 'same-origin' });
  } catch {
    throw new ApiError(0, 'network', 'The gateway cannot be reached. Check the connection and try again.');
  }
  if (resp.status === 204) return undefined as T;
  const text = await resp.text();
  if (!resp.ok) {
    let code = 'http_' + resp.status;
    let message = resp.statusText || 'request failed';
    try {
      const e = JSON.parse(text).error;
      if (e && typeof e.code === 'string') code = e.code;
      if (e && typeof e.message === 'string') message = e.message;
    } catch {
      /* not JSON: keep the status text */
    }
    const ra = Number(resp.headers.get('Retry-After'));
    throw new ApiError(resp.status, code, message, Number.isFinite(ra) && ra > 0 ? ra : undefined);
  }
  const type = resp.headers.get('Content-Type') ?? '';
  return (type.startsWith('application/json') ? JSON.parse(text) : text) as T;
}

export const api = {
  get: <T>(p: string) => request<T>('GET', p),
  post: <T>(p: string, b?: unknown) => request<T>('POST', p, b ?? {}),
  put: <T>(p: string, b: unknown) => request<T>('PUT', p, b),
  del: (p: string) => request<void>('DELETE', p),
  postYaml: <T>(p: string, text: string) => request<T>('POST', p, undefined, text),
};

export type Role = 'admin' | 'operator' | 'viewer';
export interface Me {
  username: string;
  role: Role;
  expires_at?: number;
}
export interface SavedSession {
  id: string;
  folder: string;
  display_name: string;
  host: string;
  port: number;
  username: string;
  device_type: string;
  credential_id?: string | null;
  tags: string[];
}
export interface Folder {
  name: string;
  sessions: SavedSession[];
}
export interface Credential {
  id: string;
  name: string;
  kind: 'password' | 'private_key';
  username?: string | null;
  has_passphrase: boolean;
  has_enable_secret: boolean;
}
export interface KnownHost {
  id: string;
  host: string;
  port: number;
  algorithm: string;
  fingerprint: string;
  added_at: number;
}
export interface LiveChannel {
  id: string;
  kind: string;
  target: string;
  attached: boolean;
  bytes_out: number;
  exited: boolean;
  exit_code?: number;
}
export interface User {
  username: string;
  role: Role;
  created_at: number;
}
export interface AuditEvent {
  seq: number;
  at: number;
  actor: string;
  action: string;
  target?: string;
  ip?: string;
  detail?: string;
}

export const DEVICE_TYPES = [
  'cisco_ios',
  'cisco_xe',
  'cisco_nxos',
  'arista_eos',
  'fortinet',
  'juniper_junos',
  'aruba_os',
  'hp_comware',
  'hp_procurve',
  'linux',
];
