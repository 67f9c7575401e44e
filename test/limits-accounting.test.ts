// Limits, budgets and the ledger seen by a client on the paths where a request does not simply run
// to its end: a stream the client abandons, a request refused by a concurrency limit. Runs one gateway
// on the real Postgres and Redis (shared state), with the simulator as the upstream.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';
import { POSTGRES_URL, REDIS_URL, dropRedisPrefix, dropSchema, postgresAvailable, redisAvailable, runId } from './helpers/services.js';

const ADMIN = 'admin-token-for-tests-0123456789';
/** Output-priced only: $0.001 a completion token, so max_tokens 100 reserves $0.10 and the prompt costs nothing. */
const PRICE = { input: 0, output: 1000 };

const services = { redis: await redisAvailable(), postgres: await postgresAvailable() };

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function call(url: string, path: string, opts: { key?: string; body?: unknown; headers?: Record<string, string> } = {}) {
  const res = await request(`${url}${path}`, {
    method: opts.body === undefined ? 'GET' : 'POST',
    headers: { ...(opts.key ? { authorization: `Bearer ${opts.key}` } : {}), ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: (text.startsWith('{') ? JSON.parse(text) : undefined) as Json };
}

describe.skipIf(!(services.redis && services.postgres))('limits, budgets and the ledger on abandoned and refused requests', () => {
  const id = runId();
  const schema = `limits_${id}`;
  const prefix = `test:${id}:`;
  let dir: string;
  let gw: RunningServer;

  const createKey = async (body: Record<string, unknown>) => {
    const res = await call(gw.url, '/admin/keys', { key: ADMIN, body });
    expect(res.status).toBe(201);
    return res.json as { key: string; id: string };
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'if-limits-'));
    gw = await startTestGateway({
      config: {
        auth: { admin_token: ADMIN },
        redis: { url: REDIS_URL, key_prefix: prefix },
        database: { url: POSTGRES_URL, schema },
        ledger: { enabled: true, flush_interval_ms: 50, spool_path: join(dir, 'spool.jsonl') },
        providers: {
          sim: { type: 'simulator' },
          // About 20 tokens a second: a stream runs for seconds, long enough to be abandoned halfway.
          slow: { type: 'simulator', options: { tokens_per_second: 20, answer_words: 200 } },
        },
        models: [
          { name: 'metered', deployments: [{ provider: 'sim', model: 'metered', price: PRICE }] },
          { name: 'slow', deployments: [{ provider: 'slow', model: 'slow', price: PRICE }] },
        ],
      },
    });
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await dropSchema(schema);
    await dropRedisPrefix(prefix);
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a request over a concurrency limit with a short Retry-After, and admits one once the slot is free', async () => {
    const { key } = await createKey({ max_concurrency: 1 });
    const controller = new AbortController();
    const held = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'Tell me a long story.' }] }),
      signal: controller.signal,
    });
    await held.body[Symbol.asyncIterator]().next();
    const refused = await call(gw.url, '/v1/chat/completions', { key, body: { model: 'metered', messages: [{ role: 'user', content: 'hi' }] } });
    expect([refused.status, refused.json.error.code]).toEqual([429, 'rate_limit_exceeded']);
    // The slot frees when a request in flight ends, not when its 10-minute crash lease would expire.
    expect(Number(refused.headers['retry-after'])).toBe(1);
    controller.abort();
    await expect.poll(async () => (await call(gw.url, '/v1/chat/completions', { key, body: { model: 'metered', messages: [{ role: 'user', content: 'hi' }] } })).status, { timeout: 5_000, interval: 100 }).toBe(200);
  });
});
