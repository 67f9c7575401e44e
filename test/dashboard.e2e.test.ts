// The live dashboard in a real browser (Debian's chromium through playwright-core): it loads from the
// gateway with nothing fetched elsewhere, shows "not enabled" for capabilities that have not
// reported, its numbers move when traffic arrives, and it leaves a screenshot in test-results/. On a
// gateway with API keys it asks for one, and asks again for a key refused here (its IP allowlist).
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';
import { createKey } from './helpers/http.js';
import { isCI } from './helpers/services.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const BROWSER_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const available = existsSync(CHROMIUM);
if (!available && isCI) throw new Error(`CI=true but ${CHROMIUM} is missing: apt-get install -y chromium`);
if (!available) console.warn(`skipping the dashboard browser test: ${CHROMIUM} not found (apt-get install -y chromium)`);

describe.skipIf(!available)('dashboard in headless Chromium', () => {
  let server: RunningServer;
  let browser: BrowserContext;
  let profile: string;

  beforeAll(async () => {
    server = await startTestGateway({
      config: {
        providers: { sim: { type: 'simulator', options: { latency_ms: 15 } }, flaky: { type: 'simulator', options: { error_rate: 1 } } },
        models: [
          { name: 'chat', deployments: [{ provider: 'sim', model: 'sim-chat', price: { input: 2.5, output: 10 } }] },
          { name: 'flaky', deployments: [{ provider: 'flaky', model: 'flaky-1' }] },
        ],
      },
      env: { GRAFANA_URL: 'http://grafana.example.test:3000' },
    });
    profile = await mkdtemp(join(tmpdir(), 'inferenceflow-chromium-'));
    // A fresh profile directory per run (playwright passes it as --user-data-dir).
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1440, height: 1000 },
      args: BROWSER_ARGS,
    });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  it('shows live numbers that change with traffic, and saves a screenshot', async () => {
    const page = await browser.newPage();
    const foreign: string[] = [];
    const origin = new URL(server.url).origin;
    page.on('request', (r) => {
      if (!r.url().startsWith(origin) && !r.url().startsWith('data:')) foreign.push(r.url());
    });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });

    await page.goto(`${server.url}/dashboard`);
    await expect.poll(() => page.textContent('#status'), { timeout: 10_000 }).toBe('live');
    expect(await page.textContent('#k-total')).toBe('0 requests');
    expect(await page.textContent('#cache')).toContain('not enabled');
    expect(await page.textContent('#gpu')).toContain('not enabled');
    expect(await page.getAttribute('#grafana-link', 'href')).toBe('http://grafana.example.test:3000');
    expect(await page.isVisible('#grafana-link')).toBe(true);

    // Traffic: successes (JSON and streamed) and upstream failures.
    const send = (model: string, stream = false) =>
      fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'Tell me about rivers.' }] }),
      }).then((r) => r.text());
    for (let i = 0; i < 12; i++) await send('chat', i % 3 === 0);
    for (let i = 0; i < 3; i++) await send('flaky');

    await expect.poll(() => page.textContent('#k-total'), { timeout: 10_000 }).toBe('15 requests');
    expect(Number(await page.textContent('#k-p50'))).toBeGreaterThan(0);
    expect(await page.textContent('#k-err')).toBe('20.0 %');
    const rows = await page.$$eval('#providers tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    expect(rows.find((r) => r[0] === 'sim')?.[1]).toBe('12');
    expect(rows.find((r) => r[0] === 'flaky')?.[2]).toBe('100.0 %');
    expect(await page.textContent('#k-cpr')).not.toBe('$0');
    expect(await page.textContent('#alerts')).toContain('error rate');
    // The traffic chart drew something: some non-background pixels in the canvas.
    // (The callback runs in the page; the test's tsconfig has no DOM types, hence the structural type.)
    type Canvas = { width: number; height: number; getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } | null };
    const inked = await page.$eval('#chart-traffic', (c) => {
      const canvas = c as unknown as Canvas;
      const data = canvas.getContext('2d')?.getImageData(0, 0, canvas.width, canvas.height).data ?? new Uint8ClampedArray();
      let n = 0;
      for (let i = 0; i < data.length; i += 4) if ((data[i + 2] ?? 0) > 200 && (data[i] ?? 0) < 120) n++; // the blue request bars
      return n;
    });
    expect(inked).toBeGreaterThan(20);

    await mkdir('test-results', { recursive: true });
    await page.screenshot({ path: 'test-results/dashboard.png', fullPage: true });
    expect(existsSync('test-results/dashboard.png')).toBe(true);
    expect(foreign).toEqual([]);
    expect(errors).toEqual([]);
  });
});

describe.skipIf(!available)('dashboard in headless Chromium, on a gateway with API keys', () => {
  const ADMIN = 'admin-token-for-dashboard-tests-0123';
  let server: RunningServer;
  let browser: BrowserContext;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'inferenceflow-dashboard-keys-'));
    server = await startTestGateway({
      config: {
        auth: { admin_token: ADMIN },
        database: { pglite_path: join(dir, 'db') },
        providers: { sim: { type: 'simulator' } },
        models: [{ name: 'chat', deployments: [{ provider: 'sim', model: 'sim-chat' }] }],
      },
    });
    browser = await chromium.launchPersistentContext(join(dir, 'profile'), { executablePath: CHROMIUM, headless: true, args: BROWSER_ARGS });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('asks for another key when the one given may not read the stats from this address (403)', async () => {
    const fenced = await createKey(server.url, ADMIN, { name: 'fenced', ip_allowlist: ['10.0.0.0/8'] });
    const open = await createKey(server.url, ADMIN, { name: 'open' });
    const page = await browser.newPage();
    await page.goto(`${server.url}/dashboard`);
    await expect.poll(() => page.textContent('#status'), { timeout: 10_000 }).toBe('needs a key');
    expect(await page.isVisible('#auth')).toBe(true);

    await page.fill('#auth-key', fenced.key);
    await page.click('#auth button[type=submit]');
    await expect.poll(() => page.textContent('#auth-error'), { timeout: 10_000 }).toContain('may not read the stats from this address');
    expect(await page.textContent('#status')).toBe('key not allowed here');
    expect(await page.isVisible('#auth')).toBe(true);

    await page.fill('#auth-key', open.key);
    await page.click('#auth button[type=submit]');
    await expect.poll(() => page.textContent('#status'), { timeout: 10_000 }).toBe('live');
    expect(await page.isVisible('#auth')).toBe(false);
  });
});
