// Client-side checks of tool parameters, mirroring src/tools/validate.rs so a form
// shows the same reason the gateway would give before anything is sent. The gateway
// stays the judge: its 400 `invalid_params` message is shown next to the field it names.

/** One property of a tool's `params` schema as `GET /api/tools` describes it. */
export interface ParamSchema {
  type: 'string' | 'integer' | 'boolean';
  description?: string;
  format?: string;
  enum?: string[];
  minimum?: number;
  maximum?: number;
  maxLength?: number;
  default?: unknown;
}

export const MAX_STRING = 253;
export const MAX_PORTS = 4096;

/** The outcome of one field: a value to send, nothing (left empty), or why not. */
export type Checked = { value: unknown } | { empty: true } | { error: string };

/** Checks the text (or checkbox state) typed for one parameter. */
export function checkParam(schema: ParamSchema, raw: string | boolean, required: boolean, maxPrefix = 24): Checked {
  if (schema.type === 'boolean') return { value: raw === true || raw === 'true' };
  const s = String(raw).trim();
  if (s === '') {
    if (required && schema.default === undefined) return { error: 'is required' };
    return { empty: true };
  }
  if (schema.type === 'integer') {
    if (!/^-?\d+$/.test(s)) return { error: 'must be an integer' };
    const n = Number(s);
    if (schema.minimum !== undefined && schema.maximum !== undefined && (n < schema.minimum || n > schema.maximum)) {
      return { error: `must be ${schema.minimum}-${schema.maximum}` };
    }
    return { value: n };
  }
  const max = schema.maxLength ?? MAX_STRING;
  if (s.length > max) return { error: `must be 1-${max} characters` };
  if (!/^[\x21-\x7e]+$/.test(s)) return { error: 'may hold printable ASCII only (no spaces, control or non-ASCII characters)' };
  if (s.startsWith('-')) return { error: "may not start with '-'" };
  if (schema.enum) {
    return schema.enum.includes(s) ? { value: s } : { error: `must be one of ${JSON.stringify(schema.enum)}` };
  }
  const r = checkFormat(schema.format, s, maxPrefix);
  return r === null ? { value: s } : { error: r };
}

function checkFormat(format: string | undefined, s: string, maxPrefix: number): string | null {
  switch (format) {
    case 'host':
      return isIp(s) ? null : labels(s, false);
    case 'dns-name':
      return isIp(s) ? null : labels(s, true);
    case 'ip':
      return isIp(s) ? null : 'must be an IPv4 or IPv6 address';
    case 'cidr':
      return scanTarget(s, maxPrefix);
    case 'port-list':
      return portList(s);
    default:
      return null; // unknown to this client: the gateway decides
  }
}

export function isIpv4(s: string): boolean {
  const p = s.split('.');
  return p.length === 4 && p.every((x) => /^\d{1,3}$/.test(x) && Number(x) <= 255 && !(x.length > 1 && x.startsWith('0')));
}

function isIpv6(s: string): boolean {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || !s.includes(':')) return false;
  try {
    // The URL parser is a complete IPv6 parser.
    new URL(`http://[${s}]/`);
    return true;
  } catch {
    return false;
  }
}

export function isIp(s: string): boolean {
  return isIpv4(s) || isIpv6(s);
}

function labels(s: string, underscore: boolean): string | null {
  const name = s.endsWith('.') ? s.slice(0, -1) : s;
  if (name === '' || name.length > 253) return 'must be an IP address or a hostname of at most 253 characters';
  const parts = name.split('.');
  const ok = underscore ? /^[A-Za-z0-9_-]+$/ : /^[A-Za-z0-9-]+$/;
  for (const l of parts) {
    if (l.length === 0 || l.length > 63) return 'hostname labels must be 1-63 characters';
    if (!ok.test(l)) return `hostname labels may hold letters, digits and '-'${underscore ? ", '_'" : ''} only`;
    if (l.startsWith('-') || l.endsWith('-')) return "hostname labels may not start or end with '-'";
  }
  if (!/[A-Za-z]/.test(parts[parts.length - 1])) return "not a valid IP address, and a hostname's last label must hold a letter";
  return null;
}

function scanTarget(s: string, maxPrefix: number): string | null {
  if (!s.includes('/')) return isIp(s) ? null : labels(s, false);
  const [addr, len, extra] = s.split('/');
  const v4 = isIpv4(addr);
  if (extra !== undefined || !(v4 || isIpv6(addr)) || !/^\d{1,3}$/.test(len) || Number(len) > (v4 ? 32 : 128)) {
    return 'must be a host, an IP address or a CIDR like 192.0.2.0/28';
  }
  const min = Math.min(maxPrefix, 32) + (v4 ? 0 : 96);
  const prefix = Number(len);
  return prefix < min ? `a /${prefix} is wider than the allowed /${min} for scans` : null;
}

function port(s: string): number | string {
  if (s === '' || s.length > 5 || !/^\d+$/.test(s)) return `${JSON.stringify(s)} is not a port number`;
  const n = Number(s);
  return n > 0 && n <= 65535 ? n : `${s} is not a port 1-65535`;
}

function portList(s: string): string | null {
  let total = 0;
  for (const item of s.split(',')) {
    const dash = item.indexOf('-');
    const lo = port(dash < 0 ? item : item.slice(0, dash));
    const hi = dash < 0 ? lo : port(item.slice(dash + 1));
    if (typeof lo === 'string') return lo;
    if (typeof hi === 'string') return hi;
    if (lo > hi) return `range ${lo}-${hi} is not ascending`;
    total += hi - lo + 1;
    if (total > MAX_PORTS) return `names more than ${MAX_PORTS} ports`;
  }
  return null;
}

/** The parameter a gateway `invalid_params` message names (`parameter "host": …`). */
export function paramOfError(message: string): { param: string; reason: string } | undefined {
  const m = /parameter "([^"]+)": (.*)$/s.exec(message);
  return m ? { param: m[1], reason: m[2] } : undefined;
}
