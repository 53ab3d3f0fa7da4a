// Measures the console under a flood: one pane prints 50 MB (base64 of random bytes)
// while we type into a second pane (`cat` in raw mode) every 200 ms and time each
// keystroke's echo on screen (key press in the browser → the character in xterm's
// buffer). Samples the tab's JS heap and the renderer's RSS every 500 ms.
// Run: (cd web && node e2e/flood-measure.mjs)   [E2E_GATEWAY_BIN=../target/release/opsgate]
import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { ADMIN_PASSWORD, CHROMIUM, startGateway, stopAll } from './fixtures.mjs';

const FLOOD_BYTES = 50 * 1000 * 1000;
const RAW = Math.ceil((FLOOD_BYTES * 3) / 4);
const gw = await startGateway(`
[pty.programs]
flood = ["sh", "-c", "sleep 2; head -c ${RAW} /dev/urandom | base64 -w 0; exec sleep 600"]
echo = ["sh", "-c", "stty raw -echo; exec cat"]
`);
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  await ctx.addInitScript(() => localStorage.setItem('opsgate.testHook', '1'));
  const page = await ctx.newPage();
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Performance.enable');
  await page.goto(gw.url);
  await page.getByLabel('Username').fill('admin');
  await page.getByLabel('Password').fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('admin · admin').waitFor();
  await page.getByRole('button', { name: 'flood', exact: true }).click();
  await page.locator('.pane.focused .xterm-helper-textarea').focus();
  await page.keyboard.press('Alt+Backslash');
  await page.getByRole('combobox').fill('echo');
  await page.keyboard.press('Enter');
  const hook = (fn, a) => page.evaluate(fn, a);
  const terms = () => hook(() => window.__opsgate.terms());
  for (let i = 0; i < 100 && !(await terms()).every((t) => t.state === 'live'); i++) await page.waitForTimeout(100);
  const chars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  await hook((c) => window.__opsgate.echoProbe('echo', c), chars);

  const metric = async () => {
    const m = (await cdp.send('Performance.getMetrics')).metrics;
    const heap = m.find((x) => x.name === 'JSHeapUsedSize')?.value ?? 0;
    let rss = 0;
    try {
      const out = execFileSync('ps', ['-C', 'chromium', '-o', 'rss=,args=']).toString();
      for (const l of out.split('\n')) if (l.includes('--type=renderer')) rss = Math.max(rss, Number(l.trim().split(/\s+/)[0]) * 1024);
    } catch {
      /* no ps */
    }
    return { heap, rss };
  };
  const samples = [];
  const lat = [];
  const t0 = Date.now();
  let done = false;
  let flood = 0;
  // Rounds of distinct characters on one line each (Ctrl+J moves cat's echo down a line).
  while (!done && Date.now() - t0 < 600_000) {
    const typed = {};
    for (const c of chars) {
      typed[c] = Date.now();
      await page.keyboard.type(c);
      await page.waitForTimeout(200);
      samples.push({ t: Date.now() - t0, ...(await metric()) });
      flood = (await terms()).find((t) => t.title === 'flood')?.received ?? 0;
      if (flood >= FLOOD_BYTES) {
        done = true;
        break;
      }
    }
    await page.waitForTimeout(300);
    const seen = await hook(() => {
      const s = { ...window.__opsgate.echoSeen() };
      for (const k of Object.keys(window.__opsgate.echoSeen())) delete window.__opsgate.echoSeen()[k];
      return s;
    });
    for (const [c, t] of Object.entries(typed)) lat.push(seen[c] ? seen[c] - t : Infinity);
    await page.keyboard.press('Control+j');
    await page.waitForTimeout(100);
  }
  const seconds = (Date.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const pct = (p) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))];
  const peak = (k) => Math.max(...samples.map((s) => s[k]));
  const mib = (b) => (b / 1048576).toFixed(1);
  const end = await metric();
  console.log(
    JSON.stringify(
      {
        flood_bytes_received: flood,
        seconds: Number(seconds.toFixed(1)),
        mb_per_s: Number((flood / 1e6 / seconds).toFixed(1)),
        echo_samples: lat.length,
        echo_ms: { p50: pct(50), p95: pct(95), max: lat[lat.length - 1] },
        js_heap_mib: { first: mib(samples[0]?.heap ?? 0), peak: mib(peak('heap')), end: mib(end.heap) },
        renderer_rss_mib: { first: mib(samples[0]?.rss ?? 0), peak: mib(peak('rss')), end: mib(end.rss) },
      },
      null,
      2,
    ),
  );
} finally {
  await browser.close();
  await stopAll();
}
