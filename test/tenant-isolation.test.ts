// What one tenant must not see or spend of another's: spend reports and client-chosen rate-limit
// keys. Two JWT tenants whose users share a subject ("alice"), on the embedded database.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

const SECRET = 'a-shared-hs256-secret-of-32-characters-or-more';
let dir: string;
let gw: RunningServer;

const token = (claims: Record<string, unknown>) =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode(SECRET));

async function chat(bearer: string, session?: string): Promise<number> {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}`, ...(session ? { 'x-session-id': session } : {}) },
    body: JSON.stringify({ model: 'sim', messages: [{ role: 'user', content: `hello ${Math.random()}` }] }),
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
    expect(body.data).toEqual([expect.objectContaining({ group: 'jwt:globex', requests: 1 })]);
  });

  it('a session limit counts one tenant’s session, not every tenant that sends the same session id', async () => {
    const acme = await token({ sub: 'bob', tenant: 'acme' });
    const globex = await token({ sub: 'carol', tenant: 'globex' });
    expect([await chat(acme, 'victim-session'), await chat(acme, 'victim-session')]).toEqual([200, 200]);
    expect(await chat(globex, 'victim-session')).toBe(200);
    expect(await chat(acme, 'victim-session')).toBe(429);
  });
});
