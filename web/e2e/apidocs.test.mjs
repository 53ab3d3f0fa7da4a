// The API reference page (`{base}/api/docs`, RapiDoc bundled by Vite) in Debian's
// Chromium against the real gateway under a base path: it renders the generated
// document (an operation's title is visible), logs no console error (a CSP violation
// would be one), and sends no request to another origin (fonts, CDNs, telemetry).
// Screenshot at 1280×720 in web/artifacts/screens/.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, ROOT, startGateway, stopAll } from './fixtures.mjs';

const SHOTS = join(ROOT, 'web/artifacts/screens');

let browser, gw;

describe('API reference page in Chromium', { timeout: 60_000 }, () => {
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    gw = await startGateway('base_path = "/og"\n');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  });

  after(async () => {
    await browser?.close();
    await stopAll();
  });

  it('renders the document offline, without console errors or foreign requests', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 } });
    const page = await ctx.newPage();
    page.setDefaultTimeout(15_000);
    const origin = new URL(gw.url).origin;
    const errors = [];
    const foreign = [];
    const requests = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('request', (r) => {
      requests.push(r.url());
      const u = new URL(r.url());
      // data: URLs stay in the page; anything else must be this gateway.
      if (u.protocol !== 'data:' && u.origin !== origin) foreign.push(r.url());
    });
    const resp = await page.goto(`${gw.url}og/api/docs`);
    assert.equal(resp.status(), 200);
    // An operation's title from the generated document (RapiDoc renders in a shadow
    // root; Playwright's locators pierce it).
    await page.getByText('Every user', { exact: false }).first().waitFor({ state: 'attached' });
    await page.getByText('/api/sessions/{id}').first().waitFor();
    await page.waitForLoadState('networkidle');
    await page.screenshot({ path: join(SHOTS, 'api-docs-1280x720.png') });
    assert.ok(requests.some((u) => u.endsWith('/og/api/openapi.json')), `the document was fetched: ${requests}`);
    assert.deepEqual(foreign, [], 'requests to another origin');
    assert.deepEqual(errors, [], 'console errors');
    await ctx.close();
  });
});
