// Tenancy end to end through real gateways: API keys from the admin API (limits, models, IP
// allowlist, expiry, revocation seen at once by another replica), rate-limit headers and 429s,
// a budget that 50 concurrent requests cannot overshoot with the ledger agreeing to the cent, a
// signed budget-alert webhook, and signed webhook ingestion (tampered, stale, replayed). Runs on
// Postgres + Redis and on PGlite + in-memory state.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { countPromptTokens, countTextTokens } from '../src/providers/tokens.js';
import { signWebhook, verifyWebhook } from '../src/server/webhooks/signature.js';
import { startTestGateway } from './helpers/gateway.js';
import { createKey, keySpend } from './helpers/http.js';
import { POSTGRES_URL, REDIS_URL, dropRedisPrefix, dropSchema, postgresAvailable, redisAvailable, runId } from './helpers/services.js';

const ADMIN = 'admin-token-for-tests-0123456789';
const WEBHOOK_SECRET = 'whsec_dGVzdC13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5';
const MESSAGES = [{ role: 'user' as const, content: 'How much does this cost?' }];
// Input-priced only, so the estimate (real prompt token count) equals the actual cost: $0.10 a call.
const PROMPT_TOKENS = countPromptTokens(MESSAGES);
const PRICE_INPUT = (0.1 / PROMPT_TOKENS) * 1_000_000;
// An embedding input priced at $0.25 a call (the simulator counts its tokens as the tokenizer does).
const EMBED_INPUT = 'Embed this sentence for the budget test.';
const EMBED_PRICE_INPUT = (0.25 / countTextTokens(EMBED_INPUT)) * 1_000_000;

const services = { redis: await redisAvailable(), postgres: await postgresAvailable() };

interface Received {
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

async function call(url: string, path: string, opts: { method?: string; key?: string; body?: unknown; headers?: Record<string, string> } = {}) {
  const res = await request(`${url}${path}`, {
    method: (opts.method ?? (opts.body !== undefined ? 'POST' : 'GET')) as 'GET',
    headers: { ...(opts.key ? { authorization: `Bearer ${opts.key}` } : {}), ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers },
    body: opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, json: (text ? JSON.parse(text) : undefined) as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
}

const chat = (url: string, key: string, model = 'metered') => call(url, '/v1/chat/completions', { key, body: { model, messages: MESSAGES } });

const backends = [
  { name: 'Postgres + Redis', available: services.redis && services.postgres, shared: true },
  { name: 'PGlite + memory', available: true, shared: false },
];

for (const backend of backends) {
  describe.skipIf(!backend.available)(`tenancy on ${backend.name}`, () => {
    const id = runId();
    const schema = `tenancy_${id}`;
    const prefix = `test:${id}:`;
    let dir: string;
    let gw: RunningServer;
    let receiver: Server;
    const received: Received[] = [];

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'if-tenancy-'));
      receiver = createServer((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          received.push({ headers: req.headers, body });
          res.end('ok');
        });
      });
      await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
      const port = (receiver.address() as { port: number }).port;
      gw = await startTestGateway({
        config: {
          auth: { admin_token: ADMIN },
          ...(backend.shared ? { redis: { url: REDIS_URL, key_prefix: prefix }, database: { url: POSTGRES_URL, schema } } : { database: { pglite_path: join(dir, 'db') } }),
          ledger: { enabled: true, flush_interval_ms: 100, spool_path: join(dir, 'spool.jsonl') },
          providers: { sim: { type: 'simulator' } },
          models: [
            { name: 'metered', deployments: [{ provider: 'sim', model: 'metered', price: { input: PRICE_INPUT, output: 0 } }] },
            { name: 'other', deployments: [{ provider: 'sim', model: 'other' }] },
            { name: 'embed-metered', deployments: [{ provider: 'sim', model: 'embed-metered', price: { input: EMBED_PRICE_INPUT, output: 0 } }] },
          ],
          budgets: { alert_thresholds: [0.5] },
          webhooks: { secret: WEBHOOK_SECRET, endpoints: [{ url: `http://127.0.0.1:${port}/hook`, events: ['budget.threshold_crossed'] }], initial_backoff_ms: 50 },
        },
      });
    }, 120_000);

    afterAll(async () => {
      await gw?.close();
      await new Promise<void>((r) => receiver.close(() => r()));
      if (backend.shared) {
        await dropSchema(schema);
        await dropRedisPrefix(prefix);
      }
      await rm(dir, { recursive: true, force: true });
    });

    it('guards the admin API with the admin token and never shows a stored key', async () => {
      expect((await call(gw.url, '/admin/keys')).status).toBe(401);
      expect((await call(gw.url, '/admin/keys', { key: 'not-the-admin-token' })).json.error.code).toBe('invalid_api_key');
      const created = await createKey(gw.url, ADMIN, { name: 'listing', user_id: 'u-list' });
      expect(created.key).toMatch(/^sk-if-[A-Za-z0-9]{40}$/);
      const list = await call(gw.url, '/admin/keys', { key: ADMIN });
      const row = (list.json.data as Record<string, unknown>[]).find((k) => k.id === created.id);
      expect(row).toMatchObject({ name: 'listing', user_id: 'u-list', prefix: created.key.slice(0, 12) });
      expect(JSON.stringify(list.json)).not.toContain(created.key);
      expect(row).not.toHaveProperty('hash');
    });

    it('answers out-of-range dates and limits with 400 invalid_value, not a 500', async () => {
      const bodies: [string, Record<string, unknown>][] = [
        ['expires_in_s', { expires_in_s: 1e13 }],
        ['expires_in_s', { expires_in_s: 9e12 }],
        ['expires_at', { expires_at: '0000-01-01T00:00:00Z' }],
        ['rpm', { rpm: 3_000_000_000 }],
        ['tpm', { tpm: 3_000_000_000 }],
        ['max_concurrency', { max_concurrency: 3_000_000_000 }],
      ];
      for (const [param, body] of bodies) {
        const res = await call(gw.url, '/admin/keys', { key: ADMIN, body });
        expect([res.status, res.json.error.code, res.json.error.param]).toEqual([400, 'invalid_value', param]);
      }
      // The bounds themselves are accepted.
      const edge = await call(gw.url, '/admin/keys', { key: ADMIN, body: { rpm: 2_147_483_647, expires_at: '9999-12-31T00:00:00Z' } });
      expect(edge.status).toBe(201);
      for (const [query, param] of [['start=0000-01-01T00:00:00Z', 'start'], ['end=10000-01-01T00:00:00Z', 'end'], ['start=2026-02-01T00:00:00Z&end=2026-01-01T00:00:00Z', 'start']]) {
        const res = await call(gw.url, `/v1/spend?${query}`, { key: ADMIN });
        expect([res.status, res.json.error.code, res.json.error.param]).toEqual([400, 'invalid_value', param]);
      }
      // A start alone ahead of the server's clock (a client's skew), or equal to the end, is an empty range.
      const ahead = new Date(Date.now() + 60_000).toISOString();
      expect((await call(gw.url, `/v1/spend?start=${ahead}`, { key: ADMIN })).status).toBe(200);
      expect((await call(gw.url, `/v1/spend?start=${ahead}&end=${ahead}`, { key: ADMIN })).status).toBe(200);
      // Text the store cannot keep (a NUL, an unpaired surrogate) is refused by name, not a 500.
      for (const [param, body] of [
        ['name', { name: 'a\u0000b' }],
        ['user_id', { user_id: 'u\ud800' }],
        ['models.0', { models: ['m\u0000'] }],
        ['metadata', { metadata: { note: ['x', { deep: 'y\udc00' }] } }],
        ['metadata', { metadata: { 'k\u0000': 1 } }],
      ] as [string, Record<string, unknown>][]) {
        const res = await call(gw.url, '/admin/keys', { key: ADMIN, body });
        expect([res.status, res.json.error.param]).toEqual([400, param]);
      }
      // A default start (end − 30 days) before year 1 stops at year 1.
      const early = await call(gw.url, '/v1/spend?end=0001-01-10T00:00:00Z', { key: ADMIN });
      expect([early.status, early.json.start, early.json.data]).toEqual([200, '0001-01-01T00:00:00.000Z', []]);
    });

    it('rejects unknown keys, and keys used for other models, from other addresses, after expiry or revocation', async () => {
      expect((await chat(gw.url, 'sk-if-doesnotexist')).status).toBe(401);
      const limited = await createKey(gw.url, ADMIN, { models: ['metered'] });
      expect((await chat(gw.url, limited.key, 'metered')).status).toBe(200);
      expect((await chat(gw.url, limited.key, 'other')).json.error.code).toBe('permission_denied');
      const fenced = await createKey(gw.url, ADMIN, { ip_allowlist: ['10.0.0.0/8'] });
      expect((await chat(gw.url, fenced.key)).status).toBe(403);
      const local = await createKey(gw.url, ADMIN, { ip_allowlist: ['127.0.0.0/8', '::1'] });
      expect((await chat(gw.url, local.key)).status).toBe(200);
      const expired = await createKey(gw.url, ADMIN, { expires_at: new Date(Date.now() - 1000).toISOString() });
      expect((await chat(gw.url, expired.key)).json.error.message).toMatch(/expired/);
      expect((await call(gw.url, `/admin/keys/${limited.id}/revoke`, { method: 'POST', key: ADMIN })).status).toBe(200);
      const after = await chat(gw.url, limited.key);
      expect([after.status, after.json.error.code]).toEqual([401, 'invalid_api_key']);
    });

    it('answers 429 with Retry-After and X-RateLimit-* once a key has used its RPM', async () => {
      const { key } = await createKey(gw.url, ADMIN, { rpm: 3 });
      const remaining: string[] = [];
      for (let i = 0; i < 3; i++) {
        const res = await chat(gw.url, key);
        expect(res.status).toBe(200);
        expect(res.headers['x-ratelimit-limit']).toBe('3');
        remaining.push(res.headers['x-ratelimit-remaining'] as string);
      }
      expect(remaining).toEqual(['2', '1', '0']);
      const refused = await chat(gw.url, key);
      expect(refused.status).toBe(429);
      expect(refused.json.error.code).toBe('rate_limit_exceeded');
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(61);
      expect(refused.headers['x-ratelimit-remaining']).toBe('0');
    });

    it('holds embeddings to the same request limits and budgets as chat', async () => {
      const embed = (key: string) => call(gw.url, '/v1/embeddings', { key, body: { model: 'embed-metered', input: EMBED_INPUT } });
      const { key } = await createKey(gw.url, ADMIN, { rpm: 2 });
      const first = await embed(key);
      expect([first.status, first.headers['x-ratelimit-limit'], first.headers['x-ratelimit-remaining']]).toEqual([200, '2', '1']);
      expect((await embed(key)).status).toBe(200);
      const refused = await embed(key);
      expect([refused.status, refused.json.error.code]).toEqual([429, 'rate_limit_exceeded']);
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      // Chat and embeddings draw on one window: the key's RPM is spent for both.
      expect((await chat(gw.url, key)).status).toBe(429);

      // $0.25 a call against a $1 budget: four calls, then 402, and the spend says $1.00.
      const budgeted = await createKey(gw.url, ADMIN, { budget_usd: 1, budget_period: 'day' });
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await embed(budgeted.key)).status);
      expect(statuses).toEqual([200, 200, 200, 200, 402]);
      await expect.poll(async () => (await keySpend(gw.url, ADMIN, budgeted.id))?.cost_usd.toFixed(2), { timeout: 5_000, interval: 50 }).toBe('1.00');
    });

    it('lets at most 10 of 50 concurrent requests through a budget that fits 10, and the ledger agrees to the cent', async () => {
      const { key, id: keyId } = await createKey(gw.url, ADMIN, { budget_usd: 1, budget_period: 'day' });
      const results = await Promise.all(Array.from({ length: 50 }, () => chat(gw.url, key)));
      const ok = results.filter((r) => r.status === 200);
      expect(ok.length).toBe(10);
      expect(results.filter((r) => r.status === 402).every((r) => r.json.error.code === 'budget_exceeded')).toBe(true);
      expect(ok.length + results.filter((r) => r.status === 402).length).toBe(50);
      const charged = ok.reduce((s, r) => s + Number(r.headers['x-inferenceflow-cost-usd']), 0);
      expect(charged).toBeLessThanOrEqual(1 + 1e-9);

      const line = await keySpend(gw.url, ADMIN, keyId);
      expect(line?.cost_usd.toFixed(2)).toBe(charged.toFixed(2));
      expect(line?.requests).toBe(50); // refusals are recorded too, at no cost

      // The key sees its own spend without the admin token, and nobody else's.
      const own = await call(gw.url, '/v1/spend?group_by=model', { key });
      expect(own.json.data).toEqual([expect.objectContaining({ group: 'metered', requests: 50 })]);
      expect(own.json.total.cost_usd.toFixed(2)).toBe(charged.toFixed(2));

      // Crossing 50% sent one signed budget.threshold_crossed webhook.
      await expect.poll(() => received.filter((r) => r.body.includes(keyId)).length, { timeout: 5_000 }).toBe(1);
      const hook = received.find((r) => r.body.includes(keyId)) as Received;
      expect(verifyWebhook(WEBHOOK_SECRET, hook.headers, hook.body).ok).toBe(true);
      expect(JSON.parse(hook.body)).toMatchObject({ type: 'budget.threshold_crossed', data: { scope: 'key', id: keyId, threshold: 0.5, limit_usd: 1 } });
    });

    it('accepts a signed webhook once and rejects tampered, stale and replayed ones', async () => {
      const body = JSON.stringify({ type: 'model.updated', data: { n: 1 } });
      const ingest = (headers: Record<string, string>, b = body) => call(gw.url, '/webhooks/ingest', { body: b, headers: { 'content-type': 'application/json', ...headers } });
      const h = signWebhook(WEBHOOK_SECRET, `msg_${runId()}`, body);
      const first = await ingest({ ...h });
      expect([first.status, first.json.type]).toEqual([202, 'model.updated']);
      // A redelivery of a stored event (the sender missed the 202) is acknowledged and stored once.
      const again = await ingest({ ...h });
      expect([again.status, again.json.duplicate]).toEqual([200, true]);
      const tampered = await ingest({ ...signWebhook(WEBHOOK_SECRET, `msg_${runId()}`, body) }, body.replace('1', '2'));
      expect([tampered.status, tampered.json.error.code]).toEqual([401, 'invalid_signature']);
      const stale = await ingest({ ...signWebhook(WEBHOOK_SECRET, `msg_${runId()}`, body, Date.now() - 6 * 60_000) });
      expect([stale.status, stale.json.error.code]).toEqual([401, 'invalid_signature']);
      expect((await ingest({})).status).toBe(401);
      if (backend.shared) {
        const c = new pg.Client({ connectionString: POSTGRES_URL });
        await c.connect();
        const rows = await c.query(`SELECT type FROM "${schema}".webhook_events WHERE id = $1`, [h['webhook-id']]);
        await c.end();
        expect(rows.rows).toEqual([{ type: 'model.updated' }]);
      }
    });
  });
}

describe.skipIf(!(services.redis && services.postgres))('two replicas sharing Postgres and Redis', () => {
  const id = runId();
  const schema = `tenancy_${id}`;
  const prefix = `test:${id}:`;
  let a: RunningServer;
  let b: RunningServer;

  beforeAll(async () => {
    const config = {
      auth: { admin_token: ADMIN, api_keys: { cache_ttl_ms: 600_000 } },
      redis: { url: REDIS_URL, key_prefix: prefix },
      database: { url: POSTGRES_URL, schema },
      ledger: { enabled: true, spool_path: join(tmpdir(), `if-spool-${id}.jsonl`) },
    };
    a = await startTestGateway({ config });
    b = await startTestGateway({ config });
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await dropSchema(schema);
    await dropRedisPrefix(prefix);
  });

  it('rejects a revoked key at once on the replica that did not revoke it (even with it cached)', async () => {
    const { key, id: keyId } = await createKey(a.url, ADMIN, {});
    expect((await chat(b.url, key, 'any-model')).status).toBe(200); // b now caches the key for 10 min
    expect((await call(a.url, `/admin/keys/${keyId}/revoke`, { method: 'POST', key: ADMIN })).status).toBe(200);
    const res = await chat(b.url, key, 'any-model');
    expect([res.status, res.json.error.code]).toEqual([401, 'invalid_api_key']);
  });
});
