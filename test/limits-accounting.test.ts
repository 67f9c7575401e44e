// Limits, budgets and the ledger seen by a client on the paths where a request does not simply run
// to its end: a stream the client abandons (even before it started, while Redis was slow), a request
// refused by a concurrency limit. Runs one gateway on the real Postgres and Redis (shared state),
// reached through a proxy the test can pause, with the simulator as the upstream.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { createLogger } from '../src/telemetry/logger.js';
import { startTestGateway } from './helpers/gateway.js';
import { abandonStream } from './helpers/streams.js';
import { call, createKey, expertBurst, keySpend } from './helpers/http.js';
import { pollUntil } from './helpers/wait.js';
import { POSTGRES_URL, REDIS_URL, dropRedisPrefix, dropSchema, postgresAvailable, redisAvailable, runId, keyBudgetMicros, settledLedgerRow } from './helpers/services.js';

const ADMIN = 'admin-token-for-tests-0123456789';
/** Output-priced only: $0.001 a completion token, so max_tokens 100 reserves $0.10 and the prompt costs nothing. */
const PRICE = { input: 0, output: 1000 };

const services = { redis: await redisAvailable(), postgres: await postgresAvailable() };

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
  /** The gateway's log lines (request lines among them). */
  const logLines: Record<string, unknown>[] = [];
  const logStream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) logLines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });

  const budgetMicros = (keyId: string) => keyBudgetMicros(prefix, keyId);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'if-limits-'));
    await redis.start(REDIS_URL);
    gw = await startTestGateway({
      logger: createLogger('info', logStream),
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
          // Served by the cheap deployment (first by priority); the dear one is only its fallback.
          {
            name: 'pair',
            deployments: [
              { provider: 'slow', model: 'pair-cheap', id: 'cheap', priority: 0, price: PRICE },
              { provider: 'slow', model: 'pair-dear', id: 'dear', priority: 1, price: { input: 0, output: 5000 } },
            ],
          },
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
    const { key } = await createKey(gw.url, ADMIN, { max_concurrency: 1 });
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
    const { key } = await createKey(gw.url, ADMIN, { max_concurrency: 1, budget_usd: 0.05, budget_period: 'day' });
    const body = { model: 'metered', max_tokens: 20, stream: true, messages: [{ role: 'user', content: `Stream this once, then from the cache (${id}).` }] };
    const first = await call(gw.url, '/v1/chat/completions', { key, body });
    expect(first.status).toBe(200); // at most 20 tokens: $0.02
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

  it('records a stream its client abandoned as 499 with the tokens that went out, at the cost its budget was charged', async () => {
    const { key, id: keyId } = await createKey(gw.url, ADMIN, { budget_usd: 5, budget_period: 'day' });
    const { requestId, received } = await abandonStream(gw.url, key, { model: 'slow', max_tokens: 150, messages: [{ role: 'user', content: `Tell me a long story (${id}).` }] }, 6);
    expect(received).not.toContain('[DONE]');
    const row = await settledLedgerRow(schema, requestId);
    expect(row).toMatchObject({ status: 499, error_code: 'client_closed_request' });
    expect(row.completion_tokens).toBeGreaterThan(0);
    expect(Number(row.cost_usd)).toBeCloseTo(row.completion_tokens * 0.001, 9);
    // The budget was charged exactly what the ledger says (nothing else ran on this key).
    expect(await budgetMicros(keyId)).toBe(Math.round(Number(row.cost_usd) * 1e6));
    // The request's log line says the same (it waits for the settlement, like the row).
    const line = await pollUntil(async () => logLines.find((l) => l.msg === 'request' && l.reqId === requestId), `the request line of ${requestId}`, 5_000, 50);
    expect(line).toMatchObject({ status: 499, outcome: 'client_closed', tokens: { output: row.completion_tokens } });
    expect(line.costUsd as number).toBeCloseTo(Number(row.cost_usd), 9);
  });

  it('writes the settled row of a stream still running at shutdown, once, even when settling is slow', async () => {
    // A second gateway on the same database and Redis, stopped while a stream is in flight.
    const slowRedis = new PausableProxy();
    await slowRedis.start(REDIS_URL);
    const stopping = await startTestGateway({
      config: {
        auth: { admin_token: ADMIN, api_keys: { cache_ttl_ms: 0 } },
        redis: { url: slowRedis.url, key_prefix: prefix },
        database: { url: POSTGRES_URL, schema },
        ledger: { enabled: true, flush_interval_ms: 60_000, spool_path: join(dir, 'spool-stopping.jsonl') },
        server: { shutdown_timeout_ms: 300 },
        providers: { slow: { type: 'simulator', options: { tokens_per_second: 20, answer_words: 200 } } },
        models: [{ name: 'slow', deployments: [{ provider: 'slow', model: 'slow', price: PRICE }] }],
      },
    });
    const { key, id: keyId } = await createKey(gw.url, ADMIN, { budget_usd: 5, budget_period: 'day' });
    const res = await request(`${stopping.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'slow', max_tokens: 150, stream: true, messages: [{ role: 'user', content: `A story cut by a shutdown (${id}).` }] }),
    });
    const requestId = res.headers['x-request-id'] as string;
    const reading = res.body.text().catch(() => '');
    await sleep(300);
    // The drain deadline passes with the stream still running: its connection is closed, and settling
    // it waits on a Redis that answers only a second later.
    slowRedis.pause();
    setTimeout(() => slowRedis.resume(), 1_000);
    await stopping.close();
    await reading;
    await slowRedis.close();
    const c = new pg.Client({ connectionString: POSTGRES_URL });
    await c.connect();
    const { rows } = await c.query(`SELECT status, completion_tokens, cost_usd FROM "${schema}".ledger WHERE request_id = $1`, [requestId]);
    await c.end();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 499 });
    expect(rows[0].completion_tokens).toBeGreaterThan(0);
    expect(await budgetMicros(keyId)).toBe(Math.round(Number(rows[0].cost_usd) * 1e6));
  });

  it('charges a streamed cache hit nothing and counts none of its tokens, as a JSON hit', async () => {
    const { key, id: keyId } = await createKey(gw.url, ADMIN, { tpm: 100_000, budget_usd: 5, budget_period: 'day' });
    const body = { model: 'metered', max_tokens: 20, stream: true, messages: [{ role: 'user', content: `Answer once, then from the cache (${id}, hits).` }] };
    const stream = async () => {
      const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const text = await res.body.text();
      expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
      return { requestId: res.headers['x-request-id'] as string, cache: res.headers['x-inferenceflow-cache'], remainingTokens: Number(res.headers['x-ratelimit-remaining-tokens']), cost: res.trailers['x-inferenceflow-cost-usd'] };
    };
    const stores = Number((await call(gw.url, '/v1/cache/stats', { key: ADMIN })).json.stores);
    const miss = await stream();
    expect(miss.cache).toBe('miss');
    expect(Number(miss.cost)).toBeGreaterThan(0);
    await expect.poll(async () => Number((await call(gw.url, '/v1/cache/stats', { key: ADMIN })).json.stores), { timeout: 5_000, interval: 20 }).toBeGreaterThan(stores);

    const hit = await stream();
    expect([hit.cache, hit.cost]).toEqual(['exact', '0']);
    const again = await stream();
    expect(again.cache).toBe('exact');
    // The first hit's token reservation was given back whole: the next request sees the same room.
    expect(again.remainingTokens).toBe(hit.remainingTokens);

    const row = await settledLedgerRow(schema, hit.requestId);
    expect(row).toMatchObject({ status: 200, cache: 'exact', prompt_tokens: 0, completion_tokens: 0 });
    expect(Number(row.cost_usd)).toBe(0);
    // The budget holds the miss alone, as the ledger does.
    await settledLedgerRow(schema, again.requestId);
    expect(await budgetMicros(keyId)).toBe(Math.round(Number(miss.cost) * 1e6));
  });

  it('charges a stream that ended without a usage chunk at the price of the deployment that served it', async () => {
    const { key, id: keyId } = await createKey(gw.url, ADMIN, { budget_usd: 5, budget_period: 'day' });
    const { requestId } = await abandonStream(gw.url, key, { model: 'pair', max_tokens: 150, messages: [{ role: 'user', content: `Tell me a long story (${id}, pair).` }] }, 6);
    const row = await settledLedgerRow(schema, requestId);
    expect(row.status).toBe(499);
    expect(row.completion_tokens).toBeGreaterThan(0);
    // $0.001 a token (the cheap deployment's price), not $0.005 (the dearest in the group).
    expect(Number(row.cost_usd)).toBeCloseTo(row.completion_tokens * 0.001, 9);
    expect(await budgetMicros(keyId)).toBe(Math.round(Number(row.cost_usd) * 1e6));
  });

  it('keeps 30 concurrent expert-difficulty requests within a budget: each reserves every pass it may run', async () => {
    // Expert runs 5 passes; with max_tokens 20 each request may use 100 tokens: $0.10 of a $0.50 budget.
    const { key, id: keyId } = await createKey(gw.url, ADMIN, { budget_usd: 0.5, budget_period: 'day' });
    const { ok, refused } = await expertBurst(gw.url, key, 'metered', 30, id);
    expect(ok.length).toBeGreaterThanOrEqual(1);
    expect(ok.every((r) => r.headers['x-inferenceflow-passes'] === '5')).toBe(true);
    expect(refused.every((r) => r.status === 402 && r.json.error.code === 'budget_exceeded')).toBe(true);
    // What the passes cost stays within the budget, in the ledger and on the counter alike.
    const { cost_usd: spent } = await pollUntil(async () => {
      const line = await keySpend(gw.url, ADMIN, keyId);
      return line?.requests === 30 && line;
    }, `30 ledger rows of key ${keyId}`, 5_000, 50);
    expect(spent).toBeGreaterThan(0);
    expect(spent).toBeLessThanOrEqual(0.5 + 1e-9);
    expect(await budgetMicros(keyId)).toBe(Math.round(spent * 1e6));
  });
});
