// Real things for the end-to-end suite: an OpenSSH sshd on a free loopback port with a
// throwaway user (as tests/sshd/mod.rs and load-tests/lib.sh do), the real gateway
// binary with its own data directory, and Debian's Chromium driven by playwright-core.
// Everything started here is stopped by stopAll(), in its own process group.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync, readFileSync, existsSync, symlinkSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(new URL('../..', import.meta.url).pathname);
export const SSH_USER = 'opsgate-test';
export const SSH_PASSWORD = 'opsgate-test-pw-1';
export const ADMIN_PASSWORD = 'e2e-admin-password-1';
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const children = [];
export const TMP = mkdtempSync(join(tmpdir(), 'opsgate-e2e-'));

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on('error', rej);
  });
}

export async function waitPort(port, ms = 30_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise((r) => {
      const c = connect(port, '127.0.0.1', () => (c.destroy(), r(true)));
      c.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`port ${port} did not open`);
}

function start(name, cmd, args, env = {}) {
  const log = join(TMP, `${name}.log`);
  writeFileSync(log, '');
  const out = spawn('sh', ['-c', `exec "$0" "$@" >>${log} 2>&1`, cmd, ...args], {
    detached: true,
    stdio: 'ignore',
    env: { ...process.env, ...env },
  });
  children.push(out);
  out.logFile = log;
  return out;
}

function ensureUser() {
  try {
    execFileSync('id', [SSH_USER], { stdio: 'ignore' });
  } catch {
    try {
      execFileSync('useradd', ['-m', '-s', '/bin/sh', SSH_USER], { stdio: 'ignore' });
    } catch {
      execFileSync('id', [SSH_USER], { stdio: 'ignore' }); // created meanwhile by another run
    }
  }
  execFileSync('chpasswd', { input: `${SSH_USER}:${SSH_PASSWORD}\n` });
  mkdirSync('/run/sshd', { recursive: true });
}

// A fake network device (tests/fixtures/fake_device.py, Cisco IOS flavour) as the login
// shell of a throwaway account, as tests/jobs.rs sets it up; its own copy and account
// name so a cargo test run on the same machine does not race this one.
export const DEVICE_USER = 'ogw-ios';
export const DEVICE_ENABLE = 'en-secret-1';
const DEVICE_SHELL_DIR = '/usr/local/lib/opsgate-web-e2e';

function ensureDevice() {
  mkdirSync(DEVICE_SHELL_DIR, { recursive: true });
  const shell = join(DEVICE_SHELL_DIR, 'fake_device.py');
  writeFileSync(shell, readFileSync(join(ROOT, 'tests/fixtures/fake_device.py')));
  execFileSync('chmod', ['755', DEVICE_SHELL_DIR, shell]);
  try {
    execFileSync('id', [DEVICE_USER], { stdio: 'ignore' });
  } catch {
    try {
      execFileSync('useradd', ['-m', '-s', shell, DEVICE_USER], { stdio: 'ignore' });
    } catch {
      execFileSync('id', [DEVICE_USER], { stdio: 'ignore' });
    }
  }
  execFileSync('usermod', ['-s', shell, DEVICE_USER]);
  execFileSync('chpasswd', { input: `${DEVICE_USER}:${SSH_PASSWORD}\n` });
  mkdirSync('/tmp/opsgate-fake', { recursive: true });
  execFileSync('chmod', ['1777', '/tmp/opsgate-fake']);
}

// An account whose login shell puts stand-in `docker`, `docker-compose` and `systemctl`
// (tests/fixtures/apps_standin.py) first on PATH, as tests/apps.rs sets it up: a "server"
// for the Servers & Apps screen. Its own account name and copy, as for the device.
export const APPS_USER = 'ogw-apps';

function ensureApps() {
  const bin = join(DEVICE_SHELL_DIR, 'apps-bin');
  mkdirSync(bin, { recursive: true });
  const standin = join(bin, 'standin.py');
  writeFileSync(standin, readFileSync(join(ROOT, 'tests/fixtures/apps_standin.py')));
  execFileSync('chmod', ['755', DEVICE_SHELL_DIR, bin, standin]);
  for (const name of ['docker', 'docker-compose', 'systemctl']) {
    rmSync(join(bin, name), { force: true });
    symlinkSync(standin, join(bin, name));
  }
  const shell = join(DEVICE_SHELL_DIR, 'apps_shell.sh');
  writeFileSync(shell, `#!/bin/sh\nPATH=${bin}:/usr/local/bin:/usr/bin:/bin\nexport PATH\nexec /bin/sh "$@"\n`);
  execFileSync('chmod', ['755', shell]);
  try {
    execFileSync('id', [APPS_USER], { stdio: 'ignore' });
  } catch {
    try {
      execFileSync('useradd', ['-m', '-s', shell, APPS_USER], { stdio: 'ignore' });
    } catch {
      execFileSync('id', [APPS_USER], { stdio: 'ignore' });
    }
  }
  execFileSync('usermod', ['-s', shell, APPS_USER]);
  execFileSync('chpasswd', { input: `${APPS_USER}:${SSH_PASSWORD}\n` });
  mkdirSync('/tmp/opsgate-apps', { recursive: true });
  execFileSync('chmod', ['1777', '/tmp/opsgate-apps']);
}

/** The stand-in's fixture directory for an sshd port: app directories, switches
 * (`fail`, `delay`, `no_plugin`) and the call log. */
export function appsFixture(port) {
  const dir = `/tmp/opsgate-apps/${port}`;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  execFileSync('chmod', ['777', dir]);
  return {
    dir,
    appDir: (name) => {
      const p = join(dir, name);
      mkdirSync(p, { recursive: true });
      execFileSync('chmod', ['777', p]);
      return p;
    },
    set: (name, text) => {
      writeFileSync(join(dir, name), text);
      execFileSync('chmod', ['666', join(dir, name)]);
    },
    unset: (name) => rmSync(join(dir, name), { force: true }),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The fake device's fixture directory for an sshd port: its config and login log. */
export function deviceFixture(port) {
  const dir = `/tmp/opsgate-fake/${port}`;
  mkdirSync(dir, { recursive: true });
  execFileSync('chmod', ['777', dir]);
  const setConfig = (text) => {
    writeFileSync(join(dir, 'config.txt'), text);
    execFileSync('chmod', ['644', join(dir, 'config.txt')]);
  };
  writeFileSync(join(dir, 'logins.log'), '');
  execFileSync('chmod', ['666', join(dir, 'logins.log')]);
  return { dir, setConfig, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A real sshd; `rekey()` restarts it on the same port with a new host key. With
 * `devices`, the fake network device account may log in too. */
export async function startSshd({ devices = false, apps = false } = {}) {
  ensureUser();
  if (devices) ensureDevice();
  if (apps) ensureApps();
  const dir = join(TMP, 'sshd');
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const sshd = { port, proc: undefined };
  const keygen = () => {
    rmSync(join(dir, 'host_ed25519'), { force: true });
    rmSync(join(dir, 'host_ed25519.pub'), { force: true });
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_ed25519')]);
  };
  const run = async () => {
    writeFileSync(
      join(dir, 'sshd_config'),
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${dir}/host_ed25519`,
        `PidFile ${dir}/sshd.pid`,
        'PasswordAuthentication yes',
        'KbdInteractiveAuthentication yes',
        'UsePAM yes',
        'StrictModes no',
        'PermitRootLogin no',
        `AllowUsers ${SSH_USER}${devices ? ` ${DEVICE_USER}` : ''}${apps ? ` ${APPS_USER}` : ''}`,
        'LogLevel ERROR',
        'PrintMotd no',
        'PrintLastLog no',
        '',
      ].join('\n'),
    );
    sshd.proc = start('sshd', '/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')]);
    await waitPort(port, 10_000);
  };
  keygen();
  await run();
  sshd.fingerprint = () => execFileSync('ssh-keygen', ['-lf', join(dir, 'host_ed25519.pub')]).toString().split(' ')[1];
  sshd.rekey = async () => {
    kill(sshd.proc);
    await new Promise((r) => setTimeout(r, 300));
    keygen();
    await run();
  };
  return sshd;
}

/** The NetBox-shaped fixture server (tests/fixtures/netbox_fixture.py, Python stdlib)
 * on a free loopback port. Its v2 token is `NETBOX_TOKEN`. */
export const NETBOX_TOKEN = 'nbt_opsgatetest.s3cretPart42';
export async function startNetbox({ devices = 120, sites = 3 } = {}) {
  const port = await freePort();
  start('netbox', 'python3', [join(ROOT, 'tests/fixtures/netbox_fixture.py'), '--devices', String(devices), '--sites', String(sites), '--port', String(port)]);
  await waitPort(port, 10_000);
  return { port, url: `http://127.0.0.1:${port}` };
}

/** The gateway binary (target/debug/opsgate unless OPSGATE_BIN says otherwise). */
export async function startGateway(extraToml = '') {
  const bin = process.env.E2E_GATEWAY_BIN ?? join(ROOT, 'target/debug/opsgate');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: build it first (cargo build)`);
  const dir = join(TMP, 'gateway');
  mkdirSync(join(dir, 'data'), { recursive: true });
  const port = await freePort();
  writeFileSync(join(dir, 'config.toml'), extraToml);
  const proc = start('gateway', bin, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data'), '--config', join(dir, 'config.toml')], {
    OPSGATE_ADMIN_PASSWORD: ADMIN_PASSWORD,
    OPSGATE_LOG: process.env.OPSGATE_LOG ?? 'warn',
  });
  await waitPort(port, 30_000);
  return { port, url: `http://127.0.0.1:${port}/`, proc, log: () => readFileSync(proc.logFile, 'utf8') };
}

function kill(p) {
  if (!p || p.exitCode !== null) return;
  try {
    process.kill(-p.pid, 'SIGTERM');
  } catch {
    /* gone */
  }
}

export async function stopAll() {
  for (const p of children) kill(p);
  await new Promise((r) => setTimeout(r, 300));
  for (const p of children) {
    try {
      process.kill(-p.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  if (!process.env.E2E_KEEP_TMP) rmSync(TMP, { recursive: true, force: true });
}
