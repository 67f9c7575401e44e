import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { redisTargets, type RedisTarget } from '../../test/helpers/redis.js';
import { rateLimitingSchema } from '../config/schema.js';
import { defaultRequestOptions, newFacts, type RequestContext, type Tenant } from '../gateway/context.js';
import { Cancellation } from '../providers/cancel.js';
import { createLogger } from '../telemetry/logger.js';
import { createAdmissionStage } from './admission.js';
import { FailoverLimiterStore, MemoryLimiterStore, RedisLimiterStore, type AcquireResult, type LimitRule, type LimiterStore, type ReservationStore } from './sliding-window.js';

// The Redis store runs on a single server and on a Redis Cluster (test/helpers/redis.ts): one
// acquire checks several rule keys in one script, which a cluster only allows within one slot.
const targets = await redisTargets();
const run = randomBytes(4).toString('hex');

const stores: [string, () => LimiterStore, boolean][] = [
  ['memory', () => new MemoryLimiterStore(), true],
  ...targets.map((t): [string, () => LimiterStore, boolean] => [t.name, () => new RedisLimiterStore(t.connect(), `test:${run}:${t.name}:`), t.available]),
];

for (const [name, make, available] of stores) {
  describe.skipIf(!available)(`${name} sliding window`, () => {
    let store: LimiterStore;
    beforeAll(() => {
      store = make();
    });
    afterAll(() => store.close?.());

    it('admits exactly the limit under concurrent checks, then tells when to retry', async () => {
      const rule = { kind: 'window' as const, key: `a:${name}`, limit: 10, windowMs: 60_000, cost: 1 };
      const results = await Promise.all(Array.from({ length: 25 }, (_, i) => store.acquire([rule], `l${i}`)));
      expect(results.filter((r) => r.admitted)).toHaveLength(10);
      const refused = results.find((r) => !r.admitted);
      expect(refused?.states[0]?.remaining).toBe(0);
      expect(refused?.retryAfterMs).toBeGreaterThan(0);
      expect(refused?.retryAfterMs).toBeLessThanOrEqual(61_000);
    });

    it('checks every rule or none: a refusal by one rule takes nothing from the others', async () => {
      const wide = { kind: 'window' as const, key: `wide:${name}`, limit: 100, windowMs: 60_000, cost: 1 };
      const narrow = { kind: 'window' as const, key: `narrow:${name}`, limit: 2, windowMs: 60_000, cost: 1 };
      for (let i = 0; i < 5; i++) await store.acquire([wide, narrow], `x${i}`);
      const probe = await store.acquire([wide], 'p');
      expect(probe.states[0]?.remaining).toBe(100 - 3);
    });

    it('corrects a token reservation in the bucket it landed in', async () => {
      const rule = { kind: 'window' as const, key: `tok:${name}`, limit: 1000, windowMs: 60_000, cost: 800 };
      const first = await store.acquire([rule], 't1');
      expect(first.admitted).toBe(true);
      expect((await store.acquire([rule], 't2')).admitted).toBe(false);
      await first.store.adjust(rule.key, rule.windowMs, first.at, 100 - 800); // only 100 were used
      expect((await store.acquire([rule], 't3')).admitted).toBe(true);
    });

    it('counts the overage of a reservation that outlasted its window (a long stream) in the current bucket', async () => {
      // A one-second window: the reservation's bucket has left it by the time the stream settles.
      const rule = { kind: 'window' as const, key: `long:${name}`, limit: 1000, windowMs: 1000, cost: 100 };
      const first = await store.acquire([rule], 'l1');
      expect(first.admitted).toBe(true);
      await new Promise((r) => setTimeout(r, 1100));
      await first.store.adjust(rule.key, rule.windowMs, first.at, 900 - 100); // 900 were used
      const probe = await store.acquire([{ ...rule, cost: 300 }], 'l2');
      expect(probe.admitted).toBe(false);
      expect(probe.states[0]?.remaining).toBe(200);
    });

    it('refuses a request larger than the whole limit with no retry time', async () => {
      const r = await store.acquire([{ kind: 'window', key: `big:${name}`, limit: 10, windowMs: 60_000, cost: 11 }], 'b');
      expect(r.admitted).toBe(false);
      expect(r.retryAfterMs).toBe(-1);
    });

    it('checks rules of different identities together in one step (one slot on a cluster)', async () => {
      const tenant = { kind: 'window' as const, key: `rl:ident:req:tenant-${name}`, limit: 50, windowMs: 60_000, cost: 1 };
      const model = { kind: 'window' as const, key: `rl:per-model:model:gpt-${name}:req`, limit: 3, windowMs: 60_000, cost: 1 };
      const conc = { kind: 'concurrency' as const, key: `rl:conc:tenant-${name}`, limit: 10, leaseMs: 60_000 };
      const results = await Promise.all(Array.from({ length: 6 }, (_, i) => store.acquire([tenant, model, conc], `m${i}`)));
      expect(results.filter((r) => r.admitted)).toHaveLength(3);
      const probe = await store.acquire([tenant], 'q');
      expect(probe.states[0]?.remaining).toBe(50 - 4);
    });

    it('tells a caller refused by a concurrency limit to retry in a second, not when the oldest lease would expire', async () => {
      const rule = { kind: 'concurrency' as const, key: `conc-retry:${name}`, limit: 1, leaseMs: 600_000 };
      expect((await store.acquire([rule], 'r1')).admitted).toBe(true);
      const refused = await store.acquire([rule], 'r2');
      expect(refused.admitted).toBe(false);
      expect(refused.retryAfterMs).toBe(1000);
      // With a window rule refusing too, the later of the two is the answer.
      const window = { kind: 'window' as const, key: `conc-retry-w:${name}`, limit: 1, windowMs: 60_000, cost: 1 };
      expect((await store.acquire([window], 'w1')).admitted).toBe(true);
      const both = await store.acquire([rule, window], 'r3');
      expect(both.retryAfterMs).toBeGreaterThan(1000);
      expect(both.retryAfterMs).toBeLessThanOrEqual(61_000);
    });

    it('holds concurrency slots until released', async () => {
      const rule = { kind: 'concurrency' as const, key: `conc:${name}`, limit: 2, leaseMs: 60_000 };
      const first = await store.acquire([rule], 'c1');
      expect(first.admitted).toBe(true);
      expect((await store.acquire([rule], 'c2')).admitted).toBe(true);
      const refused = await store.acquire([rule], 'c3');
      expect(refused.admitted).toBe(false);
      await first.store.release(rule.key, 'c1');
      expect((await store.acquire([rule], 'c4')).admitted).toBe(true);
    });
  });
}

describe('a window slides', () => {
  it('frees capacity as old buckets leave the window', async () => {
    let now = 1_000_000;
    const store = new MemoryLimiterStore(() => now);
    const rule = { kind: 'window' as const, key: 'slide', limit: 3, windowMs: 60_000, cost: 1 };
    for (let i = 0; i < 3; i++) {
      expect((await store.acquire([rule], 's')).admitted).toBe(true);
      now += 10_000;
    }
    const refused = await store.acquire([rule], 's');
    expect(refused.admitted).toBe(false);
    now += refused.retryAfterMs;
    expect((await store.acquire([rule], 's')).admitted).toBe(true);
    expect((await store.acquire([rule], 's')).admitted).toBe(false);
    store.close();
  });
});

describe('when Redis fails', () => {
  const broken: LimiterStore = { acquire: () => Promise.reject(new Error('connection refused')) };
  const log = createLogger('silent');
  const rule = { kind: 'window' as const, key: 'f', limit: 1, windowMs: 60_000, cost: 1 };

  it('fails open onto the local limiter', async () => {
    const store = new FailoverLimiterStore(broken, new MemoryLimiterStore(), 'open', log);
    expect((await store.acquire([rule], 'a')).admitted).toBe(true);
    expect((await store.acquire([rule], 'b')).admitted).toBe(false);
    store.close();
  });

  it('fails closed with 503 limiter_unavailable', async () => {
    const store = new FailoverLimiterStore(broken, new MemoryLimiterStore(), 'closed', log);
    await expect(store.acquire([rule], 'a')).rejects.toMatchObject({ code: 'limiter_unavailable', status: 503 });
    store.close();
  });

  /** The real Redis store behind a switch: while down, every call fails as against a Redis that is away. */
  class Switchable implements LimiterStore, ReservationStore {
    down = false;
    constructor(private readonly inner: RedisLimiterStore) {}
    private check(): void {
      if (this.down) throw new Error('connection refused');
    }
    async acquire(rules: readonly LimitRule[], leaseId: string): Promise<AcquireResult> {
      this.check();
      return { ...(await this.inner.acquire(rules, leaseId)), store: this };
    }
    async adjust(key: string, windowMs: number, at: number, delta: number): Promise<void> {
      this.check();
      await this.inner.adjust(key, windowMs, at, delta);
    }
    async release(key: string, leaseId: string): Promise<void> {
      this.check();
      await this.inner.release(key, leaseId);
    }
  }
  const redisTarget = targets.find((t) => t.name === 'redis');

  describe.skipIf(!redisTarget?.available)('a check Redis ran though the client gave up on it (a command timeout)', () => {
    for (const policy of ['open', 'closed'] as const) {
      it(`leaves no concurrency lease behind (fail ${policy}): the caller's slot is free again`, async () => {
        const redis = new RedisLimiterStore((redisTarget as RedisTarget).connect(), `test:${run}:ghost-${policy}:`);
        // The script runs and takes the slot; its answer comes too late for the client.
        const late: LimiterStore = {
          acquire: async (rules, leaseId) => {
            await redis.acquire(rules, leaseId);
            throw new Error('Command timed out');
          },
        };
        Object.assign(late, { release: (key: string, leaseId: string) => redis.release(key, leaseId), adjust: () => Promise.resolve() });
        const local = new MemoryLimiterStore();
        const store = new FailoverLimiterStore(late, local, policy, log);
        const conc: LimitRule = { kind: 'concurrency', key: 'rl:conc:key:k1', limit: 1, leaseMs: 600_000 };
        const first = await store.acquire([conc], 'lease-1').catch((e: unknown) => e);
        if (policy === 'closed') expect(first).toMatchObject({ code: 'limiter_unavailable' });
        else await (first as AcquireResult).store.release(conc.key, 'lease-1');
        // Nothing is in flight: Redis admits the caller's next request.
        await vi.waitFor(async () => {
          const next = await redis.acquire([conc], 'lease-2');
          expect(next.admitted).toBe(true);
          await redis.release(conc.key, 'lease-2');
        });
        local.close();
      });
    }
  });

  describe.skipIf(!redisTarget?.available)('fail open, with Redis back (or gone) by the time a request settles', () => {
    // A default limit of 1,000 tokens a window; each request reserves its prompt plus max_tokens 700 and uses 100.
    const config = rateLimitingSchema.parse({ tokens: 1000 });
    const tenant: Tenant = { id: 'key:k1', kind: 'key', keyId: 'k1' };
    const key = `rl:default:tok:${tenant.id}`;
    const remaining = async (store: LimiterStore) => (await store.acquire([{ kind: 'window', key, limit: 1000, windowMs: 60_000, cost: 0 }], 'probe')).states[0]?.remaining;

    /** Runs one request through admission over `limiter`; `during` runs while it is in flight. */
    async function request(limiter: LimiterStore, during: () => void): Promise<void> {
      const stage = createAdmissionStage({ limiter, config, priceOf: () => undefined });
      const ctx = { id: 'r', startedAt: 0, endpoint: 'chat', tenant, signal: new Cancellation(), log, options: defaultRequestOptions(), facts: newFacts(), headers: {} } as RequestContext;
      await stage(ctx, { model: 'm', max_tokens: 700, messages: [{ role: 'user', content: 'hello' }] }, async (c) => {
        during();
        c.facts.usage = { prompt_tokens: 50, completion_tokens: 50, total_tokens: 100 };
        return { kind: 'result', result: { id: 'x', object: 'chat.completion', created: 0, model: 'm', choices: [], usage: c.facts.usage } };
      });
    }

    it('settles a reservation the local store took there, not in Redis', async () => {
      const redis = new Switchable(new RedisLimiterStore((redisTarget as RedisTarget).connect(), `test:${run}:switch-a:`));
      const local = new MemoryLimiterStore();
      // Redis already counts 100 tokens of this identity's window.
      expect((await redis.acquire([{ kind: 'window', key, limit: 1000, windowMs: 60_000, cost: 100 }], 'r0')).admitted).toBe(true);
      redis.down = true;
      await request(new FailoverLimiterStore(redis, local, 'open', log), () => (redis.down = false));
      // Redis never got this request, and is not corrected for it; the local store is.
      expect(await remaining(redis)).toBe(900);
      expect(await remaining(local)).toBe(900);
      local.close();
    });

    it('settles a reservation Redis took in Redis, never in the local store', async () => {
      const redis = new Switchable(new RedisLimiterStore((redisTarget as RedisTarget).connect(), `test:${run}:switch-b:`));
      const local = new MemoryLimiterStore();
      // The local store counts 100 tokens of this identity from an earlier outage.
      expect((await local.acquire([{ kind: 'window', key, limit: 1000, windowMs: 60_000, cost: 100 }], 'l0')).admitted).toBe(true);
      // Redis is away when the request settles: its correction fails (logged), and the local store,
      // which never held the reservation, is left as it was.
      await request(new FailoverLimiterStore(redis, local, 'open', log), () => (redis.down = true));
      expect(await remaining(local)).toBe(900);
      local.close();
    });
  });
});

afterAll(async () => {
  for (const t of targets) await t.cleanup(`*test:${run}:*`);
});
