// Two gateway processes sharing the real Redis: a breaker opened by one is honoured by the other
// within 1 s — the second stops calling the dead deployment without ever having seen it fail — and
// a deployment rate-limited for one (429 with Retry-After) cools down for both.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { FaultUpstream } from './helpers/fault-upstream.js';
import { startChildGateway, type ChildGateway } from './helpers/child-gateway.js';
import { isCI } from './helpers/services.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

async function redisReachable(): Promise<boolean> {
  const probe = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await probe.connect();
    return (await probe.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

const reachable = await redisReachable();
if (!reachable && isCI) throw new Error(`Redis at ${REDIS_URL} is required when CI=true`);
if (!reachable) console.warn(`skipping shared-breaker tests: Redis at ${REDIS_URL} is unreachable`);

describe.skipIf(!reachable)('shared circuit breakers across replicas', () => {
  const prefix = `test:routing:${randomUUID()}:`;
  let upstream: FaultUpstream;
  let dir: string;
  const children: ChildGateway[] = [];
  const configFor = (url: string) => ({
    // No ledger: it would open an embedded database per process, which this test does not need.
    ledger: { enabled: false },
    redis: { url: REDIS_URL, key_prefix: prefix },
    // The real openai adapter, talking to the fault-injecting upstream.
    providers: { fault: { type: 'openai', base_url: url, api_key: 'test-key' } },
    models: [
      { name: 'g', retry: { max_retries: 0 }, deployments: [{ provider: 'fault', model: 'dead' }, { provider: 'fault', model: 'ok', priority: 1 }] },
      { name: 'r', retry: { max_retries: 0 }, deployments: [{ provider: 'fault', model: 'limited' }, { provider: 'fault', model: 'ok', priority: 1 }] },
    ],
    routing: { breaker: { consecutive_failures: 3, open_ms: 60_000 } },
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'routing-breaker-'));
    upstream = new FaultUpstream();
    const url = await upstream.start();
    upstream.set('dead', { kind: 'status', status: 500 });
    upstream.set('limited', { kind: 'status', status: 429, retryAfterS: 30 });
    children.push(...(await Promise.all([startChildGateway(dir, 'a', configFor(url)), startChildGateway(dir, 'b', configFor(url))])));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(children.map((c) => c.stop()));
    await upstream?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    const redis = new Redis(REDIS_URL);
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    await redis.quit();
  });

  const chat = async (base: string, model = 'g') => {
    const res = await request(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: [{ role: 'user', content: `hi ${randomUUID()}` }] }) });
    await res.body.text();
    return { status: res.statusCode, deployment: res.headers['x-inferenceflow-deployment'] };
  };
  const deploymentStatus = async (base: string, id: string) => {
    const res = await request(`${base}/v1/providers`);
    const body = (await res.body.json()) as { data: { id: string; breaker: { state: string }; cooling_until?: string }[] };
    return body.data.find((d) => d.id === id);
  };
  const breakerState = async (base: string) => (await deploymentStatus(base, 'fault/dead'))?.breaker.state;
  const coolingUntil = async (base: string) => (await deploymentStatus(base, 'fault/limited'))?.cooling_until;

  it('a breaker opened by one replica is honoured by the other within 1 s', async () => {
    const [a, b] = children as [ChildGateway, ChildGateway];
    expect(await breakerState(b.url)).toBe('closed');
    // Replica A sees the dead deployment fail three times and opens its breaker (every request still succeeds).
    for (let i = 0; i < 3; i++) expect(await chat(a.url)).toEqual({ status: 200, deployment: 'fault/ok' });
    expect(await breakerState(a.url)).toBe('open');
    const deadCalls = upstream.stats('dead').calls;
    expect(deadCalls).toBe(3);
    // Replica B never saw a failure, yet learns of it within a second…
    await expect.poll(() => breakerState(b.url), { timeout: 1_000, interval: 50 }).toBe('open');
    // …and no longer calls the dead deployment at all.
    for (let i = 0; i < 5; i++) expect(await chat(b.url)).toEqual({ status: 200, deployment: 'fault/ok' });
    expect(upstream.stats('dead').calls).toBe(deadCalls);
    // One opening, counted once: by A, which saw the failures. B shows the state without counting it
    // again, so the counter summed over replicas (or workers) is the number of openings.
    const metric = async (base: string, name: string) => {
      const text = await (await request(`${base}/metrics`)).body.text();
      const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes('deployment="fault/dead"'));
      return line === undefined ? 0 : Number(line.split(' ').pop());
    };
    expect(await metric(a.url, 'circuit_breaker_open_total')).toBe(1);
    expect(await metric(b.url, 'circuit_breaker_open_total')).toBe(0);
    expect(await metric(b.url, 'circuit_breaker_state')).toBe(2);
  });

  it('a deployment rate-limited for one replica cools down for the other within 1 s', async () => {
    const [a, b] = children as [ChildGateway, ChildGateway];
    expect(await coolingUntil(b.url)).toBeUndefined();
    // A calls the rate-limited deployment once, is told to wait 30 s, and answers from the other one.
    const before = Date.now();
    expect(await chat(a.url, 'r')).toEqual({ status: 200, deployment: 'fault/ok' });
    expect(upstream.stats('limited').calls).toBe(1);
    const until = await coolingUntil(a.url);
    expect(Date.parse(until ?? '') - before).toBeGreaterThan(25_000);
    // B never called it, yet skips it for the same 30 s: its own first request would have earned another 429.
    await expect.poll(() => coolingUntil(b.url), { timeout: 1_000, interval: 50 }).toBe(until);
    for (let i = 0; i < 3; i++) expect(await chat(b.url, 'r')).toEqual({ status: 200, deployment: 'fault/ok' });
    expect(upstream.stats('limited').calls).toBe(1);
    // Busy is not broken: neither replica's breaker for it moved.
    for (const c of [a, b]) expect((await deploymentStatus(c.url, 'fault/limited'))?.breaker.state).toBe('closed');
  });

  it('a replica started later picks up the open breaker and the cooldown from Redis', async () => {
    const late = await startChildGateway(dir, 'late', configFor(upstream.url));
    children.push(late);
    expect(await breakerState(late.url)).toBe('open');
    expect(await coolingUntil(late.url)).toBe(await coolingUntil((children[0] as ChildGateway).url));
  }, 120_000);
});
