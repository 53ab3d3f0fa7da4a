// End to end in Debian's Chromium against the real gateway binary and a real sshd:
// sign-in (wrong password, throttle), host-key trust, a shell, resize, a reload that
// keeps every byte of the scrollback, a 200 KB paste into a slow reader, the inventory
// and admin screens, and sign-out closing the socket. Screenshots of every screen at
// 1280×720 and 1920×1080 go to web/artifacts/screens/.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { ADMIN_PASSWORD, APPS_USER, CHROMIUM, DEVICE_ENABLE, DEVICE_USER, ROOT, SSH_PASSWORD, SSH_USER, appsFixture, deviceFixture, NETBOX_TOKEN, startGateway, startNetbox, startSshd, stopAll } from './fixtures.mjs';

const SHOTS = join(ROOT, 'web/artifacts/screens');
const PASTE_BYTES = 200 * 1024;

let browser, ctx, page, gw, sshd, device, appsHost;

// The fake device's running config before and after one change (as tests/jobs.rs).
const CONFIG_V1 = 'hostname rtr1\n!\ninterface GigabitEthernet0/1\n description uplink to core\n ip address 10.0.0.1 255.255.255.0\n!\ninterface GigabitEthernet0/2\n shutdown\n!\nvlan 321\n name users\n!\nvlan 400\n name voice\n!\nrouter ospf 1\n network 10.0.0.0 0.0.0.255 area 0\n!\nline vty 0 4\n transport input ssh\n!';
const CONFIG_V2 = CONFIG_V1.replace(' name users', ' name staff');
const sockets = [];

/** A browser tab of the shared context (same cookie, its own sessionStorage). */
async function newPage() {
  page = await ctx.newPage();
  page.setDefaultTimeout(10_000);
  page.on('websocket', (ws) => {
    const rec = { url: ws.url(), closed: false };
    ws.on('close', () => (rec.closed = true));
    sockets.push(rec);
  });
  page.on('console', (m) => {
    if (m.type() === 'error') process.stderr.write(`[browser] ${m.text()}\n`);
  });
  return page;
}

const hook = (fn, arg) => page.evaluate(fn, arg);
const text = () => hook(() => window.__opsgate.text());
const terms = () => hook(() => window.__opsgate.terms());

async function until(what, fn, ms = 15_000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function shot(name) {
  await page.waitForTimeout(150);
  await page.screenshot({ path: join(SHOTS, `${name}-1280x720.png`) });
  await page.setViewportSize({ width: 1920, height: 1080 });
  await page.waitForTimeout(250);
  await page.screenshot({ path: join(SHOTS, `${name}-1920x1080.png`) });
  await page.setViewportSize({ width: 1280, height: 720 });
  await page.waitForTimeout(200);
}

async function typeInTerminal(s) {
  await page.locator('.pane.focused .xterm-helper-textarea, .pane .xterm-helper-textarea').last().focus();
  await page.keyboard.type(s);
}

const lines = (t) => t.split('\n').map((l) => l.trimEnd());

// The steps build on each other: after a failure the rest are skipped, not timed out.
let failed = false;
function step(name, fn) {
  it(name, async (t) => {
    if (failed) return t.skip('an earlier step failed');
    try {
      await fn(t);
    } catch (e) {
      failed = true;
      await page?.screenshot({ path: join(SHOTS, `FAILED-${name.replace(/\W+/g, '-')}.png`) }).catch(() => {});
      throw e;
    }
  });
}

describe('opsgate console in Chromium', { timeout: 240_000 }, () => {
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    sshd = await startSshd({ devices: true, apps: true });
    appsHost = appsFixture(sshd.port);
    device = deviceFixture(sshd.port);
    device.setConfig(CONFIG_V1);
    gw = await startGateway(`
[login_limit]
per_ip = 3
window_secs = 6

[pty.programs]
slowpaste = ["sh", "-c", "stty raw -echo; printf 'READY\\\\n'; sleep 3; head -c ${PASTE_BYTES} | sha256sum"]
top = ["top"]
`);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
    ctx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
    await ctx.addInitScript(() => localStorage.setItem('opsgate.testHook', '1'));
    await newPage();
  });

  after(async () => {
    await browser?.close();
    device?.remove();
    appsHost?.remove();
    await stopAll();
  });

  step('serves the page with a strict CSP and cacheable assets', async () => {
    const r = await fetch(gw.url);
    assert.equal(r.status, 200);
    const csp = r.headers.get('content-security-policy');
    assert.match(csp, /script-src 'self';/);
    assert.doesNotMatch(csp, /script-src[^;]*unsafe-inline/);
    assert.match(csp, /style-src 'self' 'nonce-[A-Za-z0-9+/=]+'/);
    assert.equal(r.headers.get('cache-control'), 'no-cache');
    const html = await r.text();
    const js = html.match(/src="\.\/(assets\/[^"]+\.js)"/)[1];
    const a = await fetch(gw.url + js);
    assert.equal(a.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.match(a.headers.get('content-type'), /^text\/javascript/);
  });

  step('signs in: wrong password, then the throttle with its wait, then success', async () => {
    await page.goto(gw.url);
    await page.getByLabel('Username').fill('admin');
    await page.getByLabel('Password').fill('wrong-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('Wrong username or password.').waitFor();
    await shot('signin-wrong-password');
    for (let i = 0; i < 6; i++) {
      const resp = page.waitForResponse((r) => r.url().endsWith('/api/auth/login'));
      await page.getByRole('button', { name: 'Sign in' }).click();
      if ((await resp).status() === 429) break;
      await page.getByText('Wrong username or password.').waitFor();
    }
    await page.getByText(/Too many failed sign-ins\. Try again in \d+ s\./).waitFor();
    await shot('signin-throttled');
    await page.getByLabel('Password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).waitFor({ timeout: 10_000 });
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('admin · admin').waitFor();
    await until('socket open', async () => (await hook(() => window.__opsgate.socket())) === 'open');
  });

  step('adds a credential and a saved session through the inventory forms', async () => {
    await page.getByRole('button', { name: 'Inventory' }).click();
    await page.getByRole('tab', { name: 'Credentials' }).click();
    await page.getByRole('button', { name: 'New credential' }).click();
    const dlg = page.getByRole('dialog');
    await dlg.getByLabel('Name', { exact: true }).fill('lab password');
    await dlg.getByLabel('Username', { exact: true }).fill(SSH_USER);
    await dlg.getByLabel('Password', { exact: true }).fill(SSH_PASSWORD);
    await dlg.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('cell', { name: 'lab password', exact: true }).waitFor();
    await shot('inventory-credentials');

    await page.getByRole('tab', { name: 'Sessions' }).click();
    await page.getByRole('button', { name: 'New session' }).click();
    const s = page.getByRole('dialog');
    await s.getByLabel('Name', { exact: true }).fill('lab-ssh');
    await s.getByLabel('Host', { exact: true }).fill('127.0.0.1');
    await s.getByLabel('Port', { exact: true }).fill(String(sshd.port));
    await s.getByLabel('Username', { exact: true }).fill(SSH_USER);
    await s.getByLabel('Credential', { exact: true }).selectOption({ label: 'lab password (password)' });
    await s.getByLabel('Folder', { exact: true }).fill('Lab');
    await s.getByLabel('Tags', { exact: true }).fill('site=lab, linux');
    await s.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('cell', { name: 'lab-ssh', exact: true }).waitFor();
    await shot('inventory-sessions');
  });

  step('finds the device by tag, trusts its host key, and runs echo hello', async () => {
    await page.getByRole('button', { name: 'Terminals' }).click();
    await page.getByLabel(/Search devices/).fill('site=lab');
    await page.getByRole('button', { name: 'lab-ssh', exact: true }).waitFor();
    await page.getByRole('button', { name: 'lab-ssh', exact: true }).press('Enter');
    const dlg = page.getByRole('dialog', { name: 'Unknown host key' });
    await dlg.waitFor();
    await dlg.getByText(sshd.fingerprint()).waitFor();
    await dlg.getByText('ssh-ed25519').waitFor();
    await shot('hostkey-dialog');
    await dlg.getByRole('button', { name: 'Trust' }).click();
    await until('terminal live', async () => (await terms())[0]?.state === 'live');
    await until('a prompt', async () => /\$ ?$/.test((await text()).trimEnd()));
    await typeInTerminal('echo hello\n');
    await until('hello on its own line', async () => lines(await text()).includes('hello'));
    await shot('terminal-ssh');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot('terminal-ssh-dark');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  step('follows window resizes with stty size', async () => {
    const sizeSeen = async (t) => {
      const [{ cols, rows }] = await terms();
      await typeInTerminal(`stty size; echo mark${t}\n`);
      const l = await until('stty output', async () => {
        const ls = lines(await text());
        const i = ls.lastIndexOf(`mark${t}`);
        return i > 0 ? ls[i - 1] : undefined;
      });
      assert.equal(l, `${rows} ${cols}`);
      return { cols, rows };
    };
    const small = await sizeSeen(1);
    await page.setViewportSize({ width: 1920, height: 1080 });
    await until('terminal refit', async () => (await terms())[0].cols > small.cols);
    const big = await sizeSeen(2);
    assert.ok(big.rows > small.rows);
    await page.setViewportSize({ width: 1280, height: 720 });
    await until('terminal refit back', async () => (await terms())[0].cols === small.cols);
  });

  step('keeps the scrollback byte-exact across a reload mid-output', async () => {
    const N = 3000;
    await typeInTerminal(`i=1; while [ $i -le ${N} ]; do echo "n=$i"; i=$((i+1)); case $i in *00) sleep 0.05;; esac; done\n`);
    await until('output under way', async () => lines(await text()).includes('n=400'));
    const before = (await terms())[0];
    await page.reload();
    await until('terminal back', async () => {
      const t = await terms().catch(() => []);
      return t[0]?.id === before.id && t[0]?.state === 'live';
    });
    await until(`n=${N}`, async () => lines(await text()).includes(`n=${N}`), 30_000);
    const seen = lines(await text())
      .filter((l) => /^n=\d+$/.test(l))
      .map((l) => Number(l.slice(2)));
    assert.equal(seen.length, N, `expected ${N} numbered lines, got ${seen.length}`);
    seen.forEach((n, i) => assert.equal(n, i + 1, `line ${i + 1} is n=${n}`));
    await shot('terminal-after-reload');
  });

  step('survives socket drops mid-output and keeps input typed while away', async () => {
    const N = 2000;
    await typeInTerminal(`clear; i=1; while [ $i -le ${N} ]; do echo "m=$i"; i=$((i+1)); case $i in *00) sleep 0.05;; esac; done\n`);
    await until('output under way', async () => lines(await text()).includes('m=300'));
    await hook(() => window.__opsgate.drop());
    await until('reconnected', async () => (await hook(() => window.__opsgate.socket())) === 'open' && (await terms())[0].state === 'live');
    await until('output under way again', async () => lines(await text()).includes('m=1200'));
    await hook(() => window.__opsgate.drop());
    await until(`m=${N}`, async () => lines(await text()).includes(`m=${N}`), 30_000);
    const seen = lines(await text())
      .filter((l) => /^m=\d+$/.test(l))
      .map((l) => Number(l.slice(2)));
    assert.equal(seen.length, N);
    seen.forEach((n, i) => assert.equal(n, i + 1, `line ${i + 1} is m=${n}`));
    // Typed while the socket is down: queued in the client, sent after the re-attach.
    await hook(() => window.__opsgate.drop());
    await page.keyboard.type('echo back-$((40+2))\n');
    await until('input typed while away ran', async () => lines(await text()).some((l) => /^(\$ )?back-42$/.test(l)));
    assert.equal(await hook(() => window.__opsgate.socket()), 'open');
  });

  step('a new tab without stored state finds the terminal through /api/channels', async () => {
    const before = (await terms())[0];
    await page.close();
    await newPage();
    await page.goto(gw.url);
    await until('terminal adopted', async () => {
      const t = await terms().catch(() => []);
      return t[0]?.id === before.id && t[0]?.state === 'live';
    });
    // The gateway still holds all of this channel's output: it is replayed from byte 0.
    await until('scrollback replayed', async () => lines(await text()).includes('m=2000'));
    const seen = lines(await text()).filter((l) => /^m=\d+$/.test(l));
    assert.equal(seen.length, 2000);
    await typeInTerminal('echo adopted-$((6*7))\n');
    await until('the adopted shell answers', async () => lines(await text()).includes('adopted-42'));
  });

  step('pastes 200 KB into a slow reader without losing a byte', async () => {
    const data = randomBytes(PASTE_BYTES * 0.75).toString('base64').slice(0, PASTE_BYTES);
    const want = createHash('sha256').update(data).digest('hex');
    await page.getByRole('button', { name: 'slowpaste', exact: true }).click();
    await until('slowpaste live', async () => (await terms()).some((t) => t.title === 'slowpaste' && t.state === 'live'));
    await until('READY', async () => (await text()).includes('READY'));
    await hook((d) => window.__opsgate.paste(d), data);
    const q = await hook(() => window.__opsgate.inputQueued());
    assert.ok(q.queued > 0, 'the paste waits in the client beyond the input window');
    assert.ok(q.inFlight <= q.window, 'never more in flight than the window');
    await until('sha256 of the paste', async () => (await text()).includes(want), 30_000);
  });

  step('splits panes and shows the shortcut list', async () => {
    await page.locator('.pane.focused .xterm-helper-textarea').focus();
    await page.keyboard.press('Alt+Backslash');
    const pal = page.getByRole('dialog', { name: 'Open to the right' });
    await pal.waitFor();
    await pal.getByRole('combobox').fill('top');
    await shot('quick-open');
    await page.keyboard.press('Enter');
    await until('two panes', async () => (await page.locator('.tab-panel:not([hidden]) .pane').count()) === 2);
    await until('top live', async () => (await terms()).some((t) => t.title === 'top' && t.state === 'live'));
    await page.waitForTimeout(500);
    await shot('split-panes');
    await page.locator('.statusbar').getByRole('button', { name: 'Keyboard shortcuts' }).click();
    await page.getByRole('dialog', { name: 'Keyboard shortcuts' }).waitFor();
    await shot('shortcuts');
    await page.keyboard.press('Escape');
  });

  step('previews a YAML import with per-row errors, then imports', async () => {
    await page.getByRole('button', { name: 'Inventory' }).click();
    await page.getByRole('tab', { name: 'Import / export' }).click();
    const yaml = "- folder_name: Core\n  sessions:\n    - {display_name: core-sw1, host: 10.0.0.1, port: '22', DeviceType: cisco_ios, username: admin}\n    - {display_name: core-sw2, host: 10.0.0.2, port: '70000', DeviceType: cisco_ios, username: admin}\n";
    await page.getByLabel('or paste YAML').fill(yaml);
    await page.getByRole('button', { name: 'Preview' }).click();
    await page.getByText('1 bad row(s)').waitFor();
    await page.getByRole('cell', { name: 'core-sw2', exact: true }).waitFor();
    await shot('import-errors');
    await page.getByLabel('or paste YAML').fill(yaml.replace("'70000'", "'22'"));
    await page.getByRole('button', { name: 'Preview' }).click();
    await page.getByText('This import will create 2, update 0.').waitFor();
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await page.getByText('Imported: 2 created, 0 updated, 0 removed.').waitFor();
    await page.getByRole('tab', { name: 'Known hosts' }).click();
    await page.getByText(sshd.fingerprint()).waitFor();
    await shot('inventory-known-hosts');
  });

  step('runs ping from the tools panel: inline checks, live output, the result table, history', async () => {
    const before = await terms();
    await page.getByRole('button', { name: 'Tools', exact: true }).click();
    await page.getByRole('button', { name: 'ping', exact: true }).click();
    const count = page.getByLabel('count', { exact: true });
    await count.fill('99');
    await count.blur();
    await page.getByText('must be 1-20', { exact: true }).waitFor();
    await page.getByLabel('host', { exact: true }).fill('-oProxy');
    await page.getByRole('button', { name: 'Run', exact: true }).click();
    await page.getByText("may not start with '-'", { exact: true }).waitFor();
    await page.getByLabel('host', { exact: true }).fill('127.0.0.1');
    await count.fill('3');
    await page.getByRole('button', { name: 'Run', exact: true }).click();
    const out = page.getByRole('log', { name: 'Tool output' });
    await until('ping output', async () => /3 packets transmitted, 3 received/.test(await out.textContent()), 20_000);
    const received = page.locator('.result tr', { has: page.locator('th', { hasText: /^received$/ }) }).locator('td');
    await received.waitFor();
    assert.equal(await received.textContent(), '3');
    await page.locator('.run-head .chip.s-succeeded').waitFor();
    await page.getByRole('table', { name: 'Executions' }).getByRole('cell', { name: 'count=3 host=127.0.0.1 size=56' }).first().waitFor();
    await shot('tools-ping');
    // A long run is cancelled from the panel: its process group is killed.
    await count.fill('20');
    await page.getByRole('button', { name: 'Run', exact: true }).click();
    await until('the long ping running', async () => /icmp_seq=2 /.test(await out.textContent()), 20_000);
    await page.locator('.run-head').getByRole('button', { name: 'Cancel' }).click();
    await page.locator('.run-head .chip.s-cancelled').waitFor();
    await page.getByRole('table', { name: 'Executions' }).locator('.chip.s-cancelled').first().waitFor();
    // Screens come and go; the terminals' channels keep running underneath.
    await page.getByRole('button', { name: 'Terminals', exact: true }).click();
    const after = await terms();
    assert.deepEqual(after.map((t) => [t.id, t.state]), before.map((t) => [t.id, t.state]));
  });

  step('backs up a network device from the jobs screen and watches it reach 100 %', async () => {
    const made = await page.evaluate(
      async ({ port, user, pw, enable }) => {
        const post = async (path, body) => {
          const r = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'opsgate' }, body: JSON.stringify(body) });
          return { status: r.status, body: await r.json() };
        };
        const cred = await post('api/credentials', { name: 'device', kind: 'password', secret: pw, enable_secret: enable });
        const sess = await post('api/sessions', { folder: 'Routers', display_name: 'rtr1', host: '127.0.0.1', port, username: user, device_type: 'cisco_ios', credential_id: cred.body.id, tags: ['site=lab'] });
        return [cred.status, sess.status];
      },
      { port: sshd.port, user: DEVICE_USER, pw: SSH_PASSWORD, enable: DEVICE_ENABLE },
    );
    assert.deepEqual(made, [201, 201]);
    await hook(() => window.__opsgate.reloadTree());
    await page.getByRole('button', { name: 'Jobs', exact: true }).click();
    await page.getByRole('checkbox', { name: /^rtr1/ }).check();
    await page.getByLabel('Concurrency').fill('2');
    await page.getByRole('button', { name: 'Start job' }).click();
    await page.locator('.job-view .pct[data-pct="100"]').waitFor({ timeout: 30_000 });
    await page.locator('.job-head .chip.s-succeeded').waitFor();
    await page.getByRole('table', { name: 'Targets' }).getByRole('row', { name: /rtr1/ }).locator('.chip.s-succeeded').waitFor();
    await shot('jobs-backup');
  });

  step('a changed config backs up as a new version and the diff shows exactly the change', async () => {
    device.setConfig(CONFIG_V2);
    const first = await page.locator('.job-view').getAttribute('data-job');
    await page.getByRole('button', { name: 'Start job' }).click();
    await until('a second job', async () => (await page.locator('.job-view').getAttribute('data-job')) !== first);
    await page.locator('.job-view .pct[data-pct="100"]').waitFor({ timeout: 30_000 });
    await page.getByRole('table', { name: 'Targets' }).getByRole('button', { name: 'Diff' }).click();
    const diff = page.getByRole('region', { name: /^Diff/ });
    await diff.waitFor();
    await page.locator('.diffstat').getByText('+1').waitFor();
    await page.locator('.diffstat').getByText('−1').waitFor();
    const ins = await diff.locator('tr.d-insert td.txt').allTextContents();
    const del = await diff.locator('tr.d-delete td.txt').allTextContents();
    assert.deepEqual(ins, [' name staff']);
    assert.deepEqual(del, [' name users']);
    // Inside the changed line, only the word that changed is marked.
    assert.deepEqual(await diff.locator('tr.d-insert mark').allTextContents(), ['staff']);
    assert.deepEqual(await diff.locator('tr.d-delete mark').allTextContents(), ['users']);
    await diff.focus();
    await page.keyboard.press('n');
    await page.getByText('change 1 of 1').waitFor();
    await shot('configs-diff-unified');
    await page.getByRole('button', { name: 'Side by side' }).click();
    await diff.locator('td.txt.d-insert', { hasText: 'name staff' }).waitFor();
    await shot('configs-diff-side-by-side');
    await page.getByRole('tab', { name: 'Search' }).click();
    await page.getByLabel(/Find in the latest config/).fill('name staff');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.getByText('1 matching line in 1 device').waitFor();
    await shot('configs-search');
    await page.getByRole('button', { name: /^rtr1 line \d+: +name staff$/ }).click();
    await page.locator('.code .ln.hit', { hasText: 'name staff' }).waitFor();
    await shot('configs-version');
  });

  step('runs a command job and shows what each target printed', async () => {
    await page.getByRole('button', { name: 'Jobs', exact: true }).click();
    await page.getByRole('button', { name: 'Clear' }).click();
    await page.getByRole('checkbox', { name: /^rtr1/ }).check();
    await page.getByLabel('Job type', { exact: true }).selectOption('command');
    await page.getByLabel('Commands (one per line)').fill('show running-config');
    await page.getByRole('button', { name: 'Start job' }).click();
    await page.locator('.job-head .chip.s-succeeded').waitFor({ timeout: 30_000 });
    const outRow = page.getByRole('row', { name: 'rtr1 output' });
    await outRow.getByText(/^Output \(1 command\)$/).click();
    await outRow.locator('pre.output', { hasText: 'name staff' }).waitFor();
    await shot('jobs-command-output');
    await page.getByLabel('Job type', { exact: true }).selectOption('config_backup');
  });

  step('a failing target shows its error code and message; Retry starts a new job or shows the gateway\'s answer', async () => {
    const made = await page.evaluate(
      async ({ port, user }) => {
        const post = async (path, body) => {
          const r = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'opsgate' }, body: JSON.stringify(body) });
          return { status: r.status, body: await r.json() };
        };
        const cred = await post('api/credentials', { name: 'wrong', kind: 'password', secret: 'not-the-password' });
        const sess = await post('api/sessions', { folder: 'Routers', display_name: 'rtr-badpw', host: '127.0.0.1', port, username: user, device_type: 'cisco_ios', credential_id: cred.body.id });
        return [cred.status, sess.status];
      },
      { port: sshd.port, user: DEVICE_USER },
    );
    assert.deepEqual(made, [201, 201]);
    await hook(() => window.__opsgate.reloadTree());
    await page.getByRole('button', { name: 'Jobs', exact: true }).click();
    await page.getByRole('tab', { name: 'Jobs' }).click();
    await page.getByRole('button', { name: 'Clear' }).click();
    await page.getByRole('checkbox', { name: /^rtr-badpw/ }).check();
    await page.getByRole('button', { name: 'Start job' }).click();
    const row = page.getByRole('table', { name: 'Targets' }).getByRole('row', { name: /rtr-badpw/ });
    await row.locator('.chip.s-failed').waitFor({ timeout: 30_000 });
    await row.getByText('auth_failed').waitFor();
    await page.locator('.job-head .chip.s-failed').waitFor();
    await shot('jobs-failed-target');
    const first = await page.locator('.job-view').getAttribute('data-job');
    await page.getByRole('button', { name: 'Retry failed' }).click();
    // Retry makes a new job over the failed target and opens it; it fails the same way.
    await until('the retry job opens', async () =>
      (await page.locator('.job-view').getAttribute('data-job')) !== first,
    );
    await page.getByRole('table', { name: 'Targets' }).getByRole('row', { name: /rtr-badpw/ })
      .locator('.chip.s-failed').waitFor({ timeout: 30_000 });
    await shot('jobs-retry');
  });

  step('schedules a backup: the cron error from the gateway, then next run and run-now', async () => {
    await page.getByRole('button', { name: 'Jobs', exact: true }).click();
    await page.getByRole('tab', { name: 'Schedules' }).click();
    await page.getByRole('button', { name: 'New schedule' }).click();
    const dlg = page.getByRole('dialog', { name: 'New schedule' });
    await dlg.getByLabel('Name', { exact: true }).fill('nightly');
    await dlg.getByLabel(/^Cron/).fill('61 2 * * *');
    await dlg.getByRole('checkbox', { name: /^rtr1/ }).check();
    await dlg.getByRole('button', { name: 'Create' }).click();
    await dlg.locator('.field-error').filter({ hasText: /\S/ }).waitFor();
    await shot('schedules-cron-error');
    await dlg.getByLabel(/^Cron/).fill('0 2 * * *');
    await dlg.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('table', { name: 'Schedules' }).getByRole('rowheader', { name: 'nightly' }).waitFor();
    await shot('schedules');
    await page.getByRole('button', { name: 'Run nightly now' }).click();
    await page.locator('.job-view .pct[data-pct="100"]').waitFor({ timeout: 30_000 });
  });

  step('the dashboard shows the statistics and live system charts', async () => {
    await page.getByRole('button', { name: 'Dashboard', exact: true }).click();
    await page.getByRole('region', { name: 'Backups, 24 h' }).locator('.big').getByText('3', { exact: true }).waitFor();
    await until('live samples', async () => (await page.locator('svg.spark polyline').count()) >= 3, 15_000);
    // The stats channel belongs to the dashboard: never listed (or adopted) as a terminal.
    await hook(() => window.__opsgate.reloadTree());
    assert.equal(await page.locator('.sidebar').getByText(/stats every/).count(), 0);
    await shot('dashboard');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot('dashboard-dark');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  step('servers and apps: check now, project and app forms with the gateway\'s errors, start with live output, countdown, extend, a failing stop', async () => {
    const shop = appsHost.appDir('shop');
    const made = await page.evaluate(async ({ user, pw, port }) => {
      const post = async (path, body) => {
        const r = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Requested-With': 'opsgate' }, body: JSON.stringify(body) });
        return { status: r.status, body: await r.json() };
      };
      const cred = await post('api/credentials', { name: 'stage login', kind: 'password', secret: pw, username: user });
      const sess = await post('api/sessions', { folder: 'Servers', display_name: 'stage-srv', host: '127.0.0.1', port, username: user, device_type: 'linux', credential_id: cred.body.id, tags: [] });
      return sess.status;
    }, { user: APPS_USER, pw: SSH_PASSWORD, port: sshd.port });
    assert.equal(made, 201);
    await page.getByRole('button', { name: 'Servers & Apps' }).click();
    const row = page.getByRole('table', { name: 'Servers' }).getByRole('row').filter({ hasText: 'stage-srv' });
    await row.waitFor();
    await page.getByRole('button', { name: 'Check stage-srv now' }).click();
    await row.getByText('online').waitFor();
    await page.getByRole('button', { name: 'New project' }).click();
    let dlg = page.getByRole('dialog', { name: 'New project' });
    await dlg.getByLabel('Name', { exact: true }).fill('Staging');
    await dlg.getByLabel('Description', { exact: true }).fill('demo stacks');
    await dlg.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('region', { name: 'Project Staging' }).waitFor();
    await page.getByRole('button', { name: 'New app' }).click();
    dlg = page.getByRole('dialog', { name: 'New app' });
    await dlg.getByLabel('Name', { exact: true }).fill('shop');
    await dlg.getByLabel('Server', { exact: true }).selectOption({ label: 'stage-srv (127.0.0.1)' });
    await dlg.getByLabel('Directory (cd_path)').fill('relative/path');
    await dlg.getByLabel(/^Auto-stop after/).fill('60');
    await dlg.getByRole('button', { name: 'Create' }).click();
    // The gateway's validation message shows in the form, which keeps what was typed.
    await dlg.getByRole('alert').filter({ hasText: /absolute/i }).waitFor();
    await shot('apps-form-error');
    await dlg.getByLabel('Directory (cd_path)').fill(shop);
    await dlg.getByRole('button', { name: 'Create' }).click();
    await dlg.waitFor({ state: 'detached' });
    const appRow = page.getByRole('table', { name: 'Apps of Staging' }).getByRole('row').filter({ hasText: 'shop' });
    await appRow.locator('.chip', { hasText: 'stopped' }).waitFor();
    await page.getByRole('button', { name: 'Start shop' }).click();
    const out = page.getByRole('log', { name: 'App command output' });
    await out.getByText('Container web-1  Started').waitFor();
    await appRow.locator('.chip', { hasText: 'running' }).waitFor();
    const left = () => appRow.locator('.countdown').textContent();
    const first = await until('countdown', async () => ((await left()).match(/^(\d+):(\d\d)$/) ? left() : null));
    const m = first.match(/^(\d+):(\d\d)$/);
    assert.ok(Number(m[1]) >= 58 && Number(m[1]) <= 59, `about an hour left: ${first}`);
    await until('countdown ticks', async () => (await left()) !== first, 5000);
    await page.getByRole('button', { name: 'Check stage-srv now' }).click().catch(() => {});
    await shot('apps-running');
    await page.getByRole('button', { name: 'Extend shop' }).click();
    dlg = page.getByRole('dialog', { name: 'Extend shop' });
    await dlg.getByRole('button', { name: 'Extend' }).click();
    await until('extended', async () => /^1:2\d:\d\d$/.test(await left()));
    // A stop that fails: the command's output and the app's last error show.
    appsHost.set('fail', 'compose exploded: no such network\n');
    await page.getByRole('button', { name: 'Stop shop' }).click();
    await out.getByText('compose exploded: no such network').waitFor();
    await appRow.locator('.chip', { hasText: 'failed' }).waitFor();
    await appRow.locator('.last-error').filter({ hasText: 'command_failed' }).waitFor();
    await page.getByRole('status').filter({ hasText: 'command_failed' }).first().waitFor();
    await shot('apps-failed');
    appsHost.unset('fail');
  });

  step('NetBox: a refused token, then the connection; search with filters and paging; dry run; import with progress', async () => {
    const nb = await startNetbox({ devices: 120, sites: 3 });
    await page.getByRole('button', { name: 'NetBox' }).click();
    await page.getByLabel('NetBox URL').fill(nb.url);
    await page.getByLabel('API token').fill('nbt_wrong.token1');
    await page.getByRole('button', { name: 'Save and test' }).click();
    await page.getByRole('alert').filter({ hasText: 'netbox_auth_failed' }).waitFor();
    await shot('netbox-auth-failed');
    await page.getByLabel('API token').fill(NETBOX_TOKEN);
    await page.getByRole('button', { name: 'Save and test' }).click();
    await page.getByText(/Connection works/).waitFor();
    await page.getByText('1–50 of 120 device(s)', { exact: false }).waitFor();
    await page.getByRole('button', { name: 'Next page' }).click();
    await page.getByText('51–100 of 120 device(s)', { exact: false }).waitFor();
    await page.getByLabel('Site', { exact: true }).selectOption({ label: 'Site 01' });
    await page.getByRole('button', { name: 'Search devices' }).click();
    await page.getByText('1–40 of 40 device(s)', { exact: false }).waitFor();
    // dev-00100 has no primary IP: shown with the reason, not selectable.
    assert.equal(await page.getByRole('checkbox', { name: 'Select dev-00100' }).isDisabled(), true);
    await page.getByRole('checkbox', { name: 'Select dev-00004' }).check();
    await page.getByRole('checkbox', { name: 'Select dev-00007' }).check();
    await page.getByText('1–40 of 40 device(s) · 2 selected').waitFor();
    await page.getByRole('button', { name: 'Preview (dry run)' }).click();
    await page.getByText('This import will create 2, update 0 and refuse 0 device(s).').waitFor();
    await page.getByLabel('Import which devices').selectOption('filters');
    await page.getByRole('button', { name: 'Preview (dry run)' }).click();
    // Refused: dev-00100 (no primary IP) and dev-00001, whose 10.0.0.1:22 is core-sw1's
    // (from the YAML import above).
    await page.getByText(/This import will create 38, update 0 and refuse 2 device/).waitFor();
    const refused = page.getByRole('table', { name: 'Refused devices' });
    await refused.getByRole('cell', { name: 'dev-00100' }).waitFor();
    await refused.getByRole('cell', { name: 'dev-00001' }).waitFor();
    await shot('netbox-preview');
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await page.getByText(/Imported: 38 created, 0 updated, 2 refused/).waitFor();
    await page.getByRole('navigation', { name: 'Devices' }).getByText('Site 01').waitFor();
    await shot('netbox-imported');
  });

  step('warns loudly when the host key changes', async () => {
    await sshd.rekey();
    await page.getByRole('button', { name: 'Terminals' }).click();
    await page.getByRole('button', { name: 'lab-ssh', exact: true }).click();
    await page.getByText('The host key of lab-ssh changed').waitFor();
    await page.getByText(`Now: ${sshd.fingerprint()}`).waitFor();
    await page.getByText('Trusted: SHA256:').waitFor();
    await shot('hostkey-changed');
  });

  step('shows users and the audit log to an admin', async () => {
    await page.getByRole('button', { name: 'Admin' }).click();
    await page.getByRole('cell', { name: /^admin/ }).first().waitFor();
    await shot('admin-users');
    await page.getByRole('tab', { name: 'Audit log' }).click();
    await page.getByLabel('Action', { exact: true }).fill('channel.open');
    await page.getByRole('cell', { name: 'channel.open', exact: true }).first().waitFor();
    await shot('admin-audit');
  });

  step('switches to a team workspace and back; terminals keep running; a viewer gets no write actions', async () => {
    // As admin over REST: a team with admin as operator holding one device, and a second
    // team where admin is only a viewer.
    const made = await page.evaluate(async () => {
      const call = async (method, path, body, ws) => {
        const headers = { 'Content-Type': 'application/json', 'X-Requested-With': 'opsgate' };
        if (ws) headers['X-Opsgate-Workspace'] = ws;
        const r = await fetch(path, { method, headers, body: body && JSON.stringify(body) });
        return { status: r.status, body: r.status === 204 ? null : await r.json() };
      };
      const noc = await call('POST', 'api/teams', { name: 'NOC' });
      await call('PUT', `api/teams/${noc.body.id}/members/admin`, { role: 'operator' });
      const sess = await call('POST', 'api/sessions', { folder: 'Team gear', display_name: 'team-sw1', host: '127.0.0.1', port: 22, username: 'x', device_type: 'cisco_ios', tags: [] }, noc.body.id);
      const audit = await call('POST', 'api/teams', { name: 'Auditors' });
      await call('PUT', `api/teams/${audit.body.id}/members/admin`, { role: 'viewer' });
      return { noc: noc.body.id, sess: sess.status, auditors: audit.body.id };
    });
    assert.equal(made.sess, 201);
    // The switcher lists workspaces when the page loads: a reload shows the new teams.
    await page.reload();
    await until('socket open', async () => (await hook(() => window.__opsgate.socket())) === 'open');
    const ids = async () => (await terms()).map((t) => t.id).filter(Boolean).sort();
    const before = await until('terminals back', async () => ((await ids()).length > 0 ? ids() : null));
    const sw = page.getByLabel('Workspace', { exact: true });
    await sw.selectOption({ label: 'NOC (operator)' });
    await page.getByRole('button', { name: 'team-sw1', exact: true }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'lab-ssh', exact: true }).count(), 0, 'the personal device is not in the team tree');
    await page.getByText('admin · operator in NOC').waitFor();
    assert.deepEqual(await ids(), before, 'terminals keep running across a switch');
    await shot('workspace-team');
    // The choice is remembered across a reload.
    await page.reload();
    await page.getByRole('button', { name: 'team-sw1', exact: true }).waitFor();
    // The current screen reloads from the new workspace too.
    await page.getByRole('button', { name: 'Inventory' }).click();
    await page.getByRole('cell', { name: 'team-sw1' }).first().waitFor();
    await sw.selectOption({ label: 'Auditors (viewer)' });
    await page.getByText('admin · viewer in Auditors').waitFor();
    await until('team device gone', async () => (await page.getByRole('cell', { name: 'team-sw1' }).count()) === 0);
    assert.equal(await page.getByRole('button', { name: '+ Session' }).isVisible(), false, 'a viewer gets no add buttons');
    assert.equal(await page.getByRole('button', { name: 'New session' }).isVisible(), false, 'nor inventory write actions');
    await shot('workspace-viewer');
    // A remembered team that is gone falls back to personal.
    await page.evaluate(() => localStorage.setItem('opsgate.workspace.admin', 'no-such-team'));
    await page.reload();
    // The top bar says admin · admin before the list loads too: wait for the switcher.
    await until('personal selected', async () => (await sw.inputValue()) === 'personal');
    await page.getByText('admin · admin').waitFor();
    await page.getByRole('button', { name: 'Terminals' }).click();
    await page.getByRole('button', { name: 'lab-ssh', exact: true }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'team-sw1', exact: true }).count(), 0);
    assert.equal(await page.getByRole('button', { name: '+ Session' }).isVisible(), true);
  });

  step('signs out and the socket closes', async () => {
    await page.getByRole('button', { name: 'Terminals' }).click();
    assert.ok(sockets.length > 0);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByText('Signed out.').waitFor();
    // The page's live socket (earlier ones went with the reload).
    const live = sockets[sockets.length - 1];
    await until('the socket closed', async () => live.closed);
    assert.equal(await hook(() => document.cookie.includes('opsgate_session')), false);
    const status = await page.evaluate(async () => (await fetch('api/auth/status')).status);
    assert.equal(status, 401);
    await shot('signed-out');
  });

  step('signing in again starts clean: the old login\'s terminals ended, shortcuts reach the new console', async () => {
    await page.getByLabel('Username').fill('admin');
    await page.getByLabel('Password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('admin · admin').waitFor();
    await until('socket open', async () => (await hook(() => window.__opsgate.socket())) === 'open');
    await page.waitForTimeout(1800); // past the second look for detached channels
    assert.equal((await terms()).length, 0, 'logout ended every channel of the old login');
    await page.keyboard.press('Alt+t');
    const pal = page.getByRole('dialog', { name: 'Open in a new tab' });
    await pal.waitFor();
    assert.equal(await page.locator('dialog[open]').count(), 1);
    await pal.getByRole('combobox').fill('top');
    await page.keyboard.press('Enter');
    await until('top live', async () => (await terms()).length === 1 && (await terms())[0].state === 'live');
  });
});
