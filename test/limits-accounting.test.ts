// Limits, budgets and the ledger seen by a client on the paths where a request does not simply run
// to its end: a stream the client abandons (even before it started, while Redis was slow), a request
// refused by a concurrency limit. Runs one gateway on the real Postgres and Redis (shared state),
// reached through a proxy the test can pause, with the simulator as the upstream.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A TCP proxy to Redis that can hold the gateway's commands back, as a slow or stalled Redis would. */
class PausableProxy {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private held: (() => void)[] | undefined;
  url = '';

  async start(target: string): Promise<void> {
    const { hostname, port } = new URL(target);
    this.server = createServer((client) => {
      const upstream = connect(Number(port || 6379), hostname);
      this.sockets.add(client).add(upstream);
      client.on('data', (d) => (this.held ? this.held.push(() => upstream.write(d)) : upstream.write(d)));
      upstream.on('data', (d) => client.write(d));
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('close', end).on('error', end);
      upstream.on('close', end).on('error', end);
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `redis://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  pause(): void {
    this.held ??= [];
  }

  resume(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const send of held) send();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

describe.skipIf(!(services.redis && services.postgres))('limits, budgets and the ledger on abandoned and refused requests', () => {
  const id = runId();
  const schema = `limits_${id}`;
  const prefix = `test:${id}:`;
  let dir: string;
  let gw: RunningServer;
  const redis = new PausableProxy();

  const createKey = async (body: Record<string, unknown>) => {
    const res = await call(gw.url, '/admin/keys', { key: ADMIN, body });
    expect(res.status).toBe(201);
    return res.json as { key: string; id: string };
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'if-limits-'));
    await redis.start(REDIS_URL);
    gw = await startTestGateway({
      config: {
        // Keys are read from Postgres on every request (no per-replica cache, so no Redis revocation
        // check): a stalled Redis then holds a request inside admission, after its context exists.
        auth: { admin_token: ADMIN, api_keys: { cache_ttl_ms: 0 } },
        redis: { url: redis.url, key_prefix: prefix },
        cache: { enabled: true, semantic: { enabled: false } },
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
    await redis.close();
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

  it('gives back the concurrency slot and the budget reservation of a stream whose client left while Redis was slow', async () => {
    // One request at a time, and a budget with room for the first answer and one $0.02 estimate.
    const { key } = await createKey({ max_concurrency: 1, budget_usd: 0.05, budget_period: 'day' });
    const body = { model: 'metered', max_tokens: 20, stream: true, messages: [{ role: 'user', content: `Stream this once, then from the cache (${id}).` }] };
    const first = await call(gw.url, '/v1/chat/completions', { key, body });
    expect(first.status).toBe(200); // 20 tokens: $0.02
    await expect.poll(async () => (await call(gw.url, '/v1/cache/stats', { key: ADMIN })).json.stores, { timeout: 5_000, interval: 20 }).toBeGreaterThanOrEqual(1);

    // Redis stalls; the client gives up on its (cached) stream before the gateway could start it.
    redis.pause();
    const controller = new AbortController();
    const abandoned = request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: controller.signal,
    }).catch(() => undefined);
    await sleep(300);
    controller.abort();
    await abandoned;
    await sleep(500);
    redis.resume();

    // Nothing of the abandoned request stays held: not its slot (429 for the lease's 10 minutes), not
    // its estimate (402: $0.02 spent + $0.02 held + $0.02 asked > $0.05).
    await expect.poll(async () => (await call(gw.url, '/v1/chat/completions', { key, body })).status, { timeout: 5_000, interval: 100 }).toBe(200);
  });
});
