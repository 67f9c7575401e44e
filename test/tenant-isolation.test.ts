// What one tenant must not see or spend of another's: spend reports, client-chosen rate-limit keys
// and the budgets of same-named users. Two JWT tenants whose users share a subject ("alice"), on the embedded database.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { countPromptTokens } from '../src/providers/tokens.js';
import { startTestGateway } from './helpers/gateway.js';

const SECRET = 'a-shared-hs256-secret-of-32-characters-or-more';
let dir: string;
let gw: RunningServer;

const token = (claims: Record<string, unknown>) =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode(SECRET));

/** The status of one chat request to `server` (default: the first gateway, its `sim` model, a fresh prompt). */
async function chat(bearer: string, opts: { session?: string; server?: RunningServer; model?: string; messages?: unknown[] } = {}): Promise<number> {
  const res = await fetch(`${(opts.server ?? gw).url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}`, ...(opts.session ? { 'x-session-id': opts.session } : {}) },
    body: JSON.stringify({ model: opts.model ?? 'sim', messages: opts.messages ?? [{ role: 'user', content: `hello ${Math.random()}` }] }),
  });
  await res.arrayBuffer();
  return res.status;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'if-isolation-'));
  gw = await startTestGateway({
    config: {
      auth: { jwt: { secret: SECRET } },
      database: { pglite_path: join(dir, 'db') },
      ledger: { enabled: true, flush_interval_ms: 50 },
      cache: { enabled: false },
      rate_limiting: { rules: [{ name: 'per-session', per: 'session', requests: 2, window_s: 60 }] },
      providers: { sim: { type: 'simulator', options: { latency_ms: 1 } } },
      models: [{ name: 'sim', deployments: [{ provider: 'sim', model: 'sim', price: { input: 1, output: 1 } }] }],
    },
  });
}, 120_000);

afterAll(async () => {
  await gw?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('tenant isolation', () => {
  it('a JWT user sees its own tenant spend only, even when another tenant has a user of the same name', async () => {
    const acme = await token({ sub: 'alice', tenant: 'acme' });
    const globex = await token({ sub: 'alice', tenant: 'globex' });
    expect([await chat(acme), await chat(acme), await chat(globex)]).toEqual([200, 200, 200]);
    const res = await fetch(`${gw.url}/v1/spend?group_by=tenant`, { headers: { authorization: `Bearer ${globex}` } });
    const body = (await res.json()) as { data: { group: string; requests: number }[] };
    expect(res.status).toBe(200);
    expect(body.data).toEqual([expect.objectContaining({ group: 'jwt:t:globex', requests: 1 })]);
  });

  it('a tenant claim and a lone subject of the same name are different tenants (stored responses, spend)', async () => {
    const member = await token({ sub: 'alice', tenant: 'initech' });
    const lone = await token({ sub: 'initech' });
    const call = (bearer: string, path: string, init: RequestInit = {}) =>
      fetch(`${gw.url}${path}`, { ...init, headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` } });
    const created = await call(member, '/v1/responses', { method: 'POST', body: JSON.stringify({ model: 'sim', input: 'A secret of initech.' }) });
    expect(created.status).toBe(200);
    const { id } = (await created.json()) as { id: string };
    expect((await call(member, `/v1/responses/${id}`)).status).toBe(200);
    expect((await call(lone, `/v1/responses/${id}`)).status).toBe(404);
    // Once the ledger has the member's row, the lone subject still has none.
    const spendOf = async (bearer: string) => ((await (await call(bearer, '/v1/spend?group_by=tenant')).json()) as { data: { group: string }[] }).data;
    await expect.poll(async () => (await spendOf(member)).map((r) => r.group), { timeout: 5_000, interval: 50 }).toEqual(['jwt:t:initech']);
    expect(await spendOf(lone)).toEqual([]);
  });

  it('a session limit counts one tenant’s session, not every tenant that sends the same session id', async () => {
    const acme = await token({ sub: 'bob', tenant: 'acme' });
    const globex = await token({ sub: 'carol', tenant: 'globex' });
    expect([await chat(acme, { session: 'victim-session' }), await chat(acme, { session: 'victim-session' })]).toEqual([200, 200]);
    expect(await chat(globex, { session: 'victim-session' })).toBe(200);
    expect(await chat(acme, { session: 'victim-session' })).toBe(429);
  });
});

describe('budgets of JWT users', () => {
  const MESSAGES = [{ role: 'user' as const, content: 'How much does this cost?' }];
  // Input-priced only, so the estimate equals the actual cost: $0.10 a call.
  const PRICE_INPUT = (0.1 / countPromptTokens(MESSAGES)) * 1_000_000;
  let budgetDir: string;
  let budgeted: RunningServer;
  beforeAll(async () => {
    budgetDir = await mkdtemp(join(tmpdir(), 'if-isolation-budget-'));
    budgeted = await startTestGateway({
      config: {
        auth: { jwt: { secret: SECRET } },
        database: { pglite_path: join(budgetDir, 'db') },
        cache: { enabled: false },
        budgets: { default_user: { limit_usd: 0.2, period: 'day' }, alert_thresholds: [] },
        providers: { sim: { type: 'simulator', options: { latency_ms: 1 } } },
        models: [{ name: 'metered', deployments: [{ provider: 'sim', model: 'metered', price: { input: PRICE_INPUT, output: 0 } }] }],
      },
    });
  }, 120_000);
  afterAll(async () => {
    await budgeted?.close();
    await rm(budgetDir, { recursive: true, force: true });
  });

  it('a user of one tenant cannot spend the budget of a same-named user of another', async () => {
    const send = (bearer: string) => chat(bearer, { server: budgeted, model: 'metered', messages: MESSAGES });
    const acme = await token({ sub: 'dave', tenant: 'acme' });
    const globex = await token({ sub: 'dave', tenant: 'globex' });
    expect([await send(acme), await send(acme), await send(acme)]).toEqual([200, 200, 402]);
    expect(await send(globex)).toBe(200);
  });
});
