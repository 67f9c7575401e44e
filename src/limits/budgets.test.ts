// One budget-store contract, three stores: in process, Redis and Redis Cluster. A reservation
// checks the key's, the user's and the team's counters at once (one script) and an adjustment
// corrects them together (another script), which a cluster only allows within one slot.
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { redisTargets } from '../../test/helpers/redis.js';
import { budgetsSchema } from '../config/schema.js';
import type { Tenant } from '../gateway/context.js';
import { createLogger } from '../telemetry/logger.js';
import { BudgetManager, budgetRedisKey, SEED_RETRY_MS, FailoverBudgetStore, MemoryBudgetStore, RedisBudgetStore, type BudgetLine, type BudgetStore, type ReserveResult } from './budgets.js';

const targets = await redisTargets();
const run = randomBytes(4).toString('hex');
afterAll(async () => {
  for (const t of targets) await t.cleanup(`*test:${run}:*`);
});

type Factory = () => { a: BudgetStore; b: BudgetStore };
const stores: [string, Factory, boolean][] = [
  [
    'memory',
    () => {
      const s = new MemoryBudgetStore();
      return { a: s, b: s };
    },
    true,
  ],
  // Two clients stand for two gateway replicas sharing the counters.
  ...targets.map((t): [string, Factory, boolean] => [
    t.name,
    () => ({ a: new RedisBudgetStore(t.connect(), `test:${run}:${t.name}:`), b: new RedisBudgetStore(t.connect(), `test:${run}:${t.name}:`) }),
    t.available,
  ]),
];

/**
 * Deletes a budget counter behind the store's back (Redis restarted, failed over or evicted it), and
 * checks it was there to delete: a wrong key would leave the counter and the test would prove nothing.
 */
async function dropCounter(store: BudgetStore, key: string): Promise<void> {
  if (store instanceof MemoryBudgetStore) {
    expect((store as unknown as { values: Map<string, unknown> }).values.delete(key)).toBe(true);
  } else {
    const { redis, prefix } = store as unknown as { redis: { del(k: string): Promise<number> }; prefix: string };
    expect(await redis.del(budgetRedisKey(prefix, key))).toBe(1);
  }
}

/** How long a counter has left to live, as its store keeps it. */
async function lifeOf(store: BudgetStore, key: string): Promise<number> {
  if (store instanceof MemoryBudgetStore) return (store as unknown as { values: Map<string, { exp: number }> }).values.get(key)!.exp - Date.now();
  const { redis, prefix } = store as unknown as { redis: { pttl(k: string): Promise<number> }; prefix: string };
  return redis.pttl(budgetRedisKey(prefix, key));
}

/** A reservation's outcome without its id (a store that records reservations names each one). */
async function outcome(r: Promise<ReserveResult>): Promise<Omit<ReserveResult, 'id'>> {
  const { id: _id, ...rest } = await r;
  return rest;
}

function line(scope: BudgetLine['scope'], id: string, limitMicros: number): BudgetLine {
  return { scope, id, period: 'day', periodStart: new Date(0), key: `budget:${scope}:${id}:2026-01-01`, limitMicros, ttlMs: 60_000 };
}

/**
 * Noon on the 15th of this month, UTC, for Date only (timers stay real): a test of month budgets run
 * across the end of a month would see its spend go to a new period's counter, which starts from zero.
 */
function midMonth(): void {
  const now = new Date();
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 15, 12)));
}

for (const [name, make, available] of stores) {
  describe.skipIf(!available)(`${name} budget store`, () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    it('reserves on the key, user and team counters together, and refuses all when one would overshoot', async () => {
      const { a, b } = make();
      const lines = [line('key', `k-${name}`, 10_000), line('user', `u-${name}`, 5_000), line('team', `t-${name}`, 100_000)];
      expect(await outcome(a.reserve(lines, 2_000))).toEqual({ ok: true, values: [2_000, 2_000, 2_000] });
      expect(await outcome(b.reserve(lines, 2_000))).toEqual({ ok: true, values: [4_000, 4_000, 4_000] });
      // The user's 5,000 would be crossed: nothing is taken from any counter.
      expect(await outcome(a.reserve(lines, 2_000))).toEqual({ ok: false, values: [4_000, 4_000, 4_000] });
      expect((await b.reserve([lines[2] as BudgetLine], 0)).values).toEqual([4_000]);
    });

    it('admits exactly what fits under concurrent reservations from two replicas', async () => {
      const { a, b } = make();
      const lines = [line('key', `c-${name}`, 1_000_000), line('team', `ct-${name}`, 10_000)];
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).reserve(lines, 1_000)));
      expect(results.filter((r) => r.ok)).toHaveLength(10);
    });

    it('corrects every counter of a reservation to the actual cost', async () => {
      const { a, b } = make();
      const lines = [line('key', `adj-${name}`, 10_000), line('team', `adjt-${name}`, 10_000)];
      await a.reserve(lines, 3_000);
      expect(await b.adjust(lines, -2_500)).toEqual([500, 500]);
      expect((await a.reserve(lines, 9_500)).ok).toBe(true);
    });

    it('seeds a counter only once, and fires a marker once across replicas', async () => {
      const { a, b } = make();
      const l = line('team', `seed-${name}`, 10_000);
      await a.seed(l.key, 7_000, 60_000);
      await b.seed(l.key, 1, 60_000);
      expect((await b.reserve([l], 4_000)).ok).toBe(false);
      expect((await b.reserve([l], 3_000)).values).toEqual([10_000]);
      const marker = `budget-alert:${name}:80`;
      expect([await a.markOnce(marker, 60_000), await b.markOnce(marker, 60_000)]).toEqual([true, false]);
    });

    it('asked for existing counters only, names the missing ones and reserves nothing', async () => {
      const { a, b } = make();
      const have = line('key', `have-${name}`, 10_000);
      const lost = line('team', `lost-${name}`, 10_000);
      await a.seed(have.key, 1_000, 60_000);
      expect(await b.reserve([have, lost], 500, true)).toEqual({ ok: false, values: [], missing: [1] });
      await b.seed(lost.key, 2_000, 60_000);
      expect(await outcome(a.reserve([have, lost], 500, true))).toEqual({ ok: true, values: [1_500, 2_500] });
    });

    it('leaves a counter that does not exist missing when adjusting, so it is seeded again rather than restarted from the delta', async () => {
      const { a, b } = make();
      const gone = line('key', `gone-${name}`, 10_000);
      const kept = line('team', `kept-${name}`, 10_000);
      await a.reserve([kept], 3_000);
      expect(await b.adjust([gone, kept], -1_000)).toEqual([0, 2_000]);
      expect(await a.reserve([gone, kept], 100, true)).toEqual({ ok: false, values: [], missing: [0] });
    });

    it('a counter lost while a request is in flight is seeded from the ledger by the next reservation, with the settled spend', async () => {
      midMonth();
      const { a } = make();
      let ledgerUsd = 8;
      const manager = new BudgetManager({
        store: a,
        config: budgetsSchema.parse({ default_user: { limit_usd: 10, period: 'month' }, alert_thresholds: [0.9] }),
        log: createLogger('silent'),
        spentSince: async () => ledgerUsd,
      });
      const tenant = { id: `bob-${name}-${run}`, userId: `bob-${name}-${run}` } as Tenant;
      const [l] = manager.linesFor(tenant);
      const reservation = await manager.reserve(manager.linesFor(tenant), 1.5); // $9.50 of $10 reserved
      // Redis loses the counter (restart, failover, eviction) while the request runs.
      await dropCounter(a, l!.key);
      ledgerUsd += 0.5; // the request cost $0.50: its ledger row lands as it settles
      await manager.settle(reservation!, 0.5);
      // $8.50 spent: one more $1 request fits, the next does not.
      await expect(manager.reserve(manager.linesFor(tenant), 1)).resolves.toBeDefined();
      await expect(manager.reserve(manager.linesFor(tenant), 1)).rejects.toMatchObject({ code: 'budget_exceeded' });
    });

    it('sends a threshold alert no receiver took again at the next crossing, and a delivered one only once', async () => {
      midMonth();
      const { a } = make();
      const sent: number[] = [];
      let receiverUp = false;
      const manager = new BudgetManager({
        store: a,
        config: budgetsSchema.parse({ default_user: { limit_usd: 10, period: 'month' }, alert_thresholds: [0.5] }),
        log: createLogger('silent'),
        onAlert: async (alert) => {
          sent.push(alert.spent_usd);
          return receiverUp;
        },
      });
      const tenant = { id: `dave-${name}-${run}`, userId: `dave-${name}-${run}` } as Tenant;
      const spend = async (usd: number) => manager.settle((await manager.reserve(manager.linesFor(tenant), usd))!, usd);
      await spend(6); // crosses 50%: the receiver is down
      await vi.waitFor(() => expect(sent).toHaveLength(1));
      await new Promise((r) => setTimeout(r, 20)); // the marker is lifted
      receiverUp = true;
      await spend(1); // sent again, and taken
      await vi.waitFor(() => expect(sent).toHaveLength(2));
      await spend(1);
      await new Promise((r) => setTimeout(r, 20));
      expect(sent).toHaveLength(2);
    });

    it('a ledger that cannot be read seeds a counter from zero, and the spend it holds from before is added once it answers', async () => {
      midMonth();
      const { a } = make();
      let ledgerDown = true;
      const manager = new BudgetManager({
        store: a,
        config: budgetsSchema.parse({ default_user: { limit_usd: 100, period: 'month' } }),
        log: createLogger('silent'),
        seedRetryMs: 0,
        spentSince: async (_scope, _id, _since, until) => {
          if (ledgerDown) throw new Error('connection timeout');
          // $95 spent before the counter was seeded; what was spent since is on the counter already.
          return until ? 95 : 96;
        },
      });
      const tenant = { id: `carol-${name}-${run}`, userId: `carol-${name}-${run}` } as Tenant;
      const [l] = manager.linesFor(tenant);
      // Served from zero while the ledger is unreadable, rather than refusing: $1 spent.
      await manager.settle((await manager.reserve(manager.linesFor(tenant), 1))!, 1);
      // For the period, as any seed: not reset to zero again and again while the outage lasts.
      expect(await lifeOf(a, l!.key)).toBeGreaterThan(SEED_RETRY_MS);
      await manager.settle((await manager.reserve(manager.linesFor(tenant), 1))!, 1);
      // The ledger answers: its $95 from before is added at the next reservation: 95 + 2 + 3 = $100 fits, a dollar more does not.
      ledgerDown = false;
      // The reservation does not wait for the ledger (a query may take its whole timeout while it is
      // down): it starts the catch-up, which the next reservations see.
      await expect(manager.reserve(manager.linesFor(tenant), 3)).resolves.toBeDefined();
      await manager.caughtUp();
      await expect(manager.reserve(manager.linesFor(tenant), 1)).rejects.toMatchObject({ code: 'budget_exceeded' });
    });

    it('a budget whose counter is lost mid-period is re-seeded from the ledger, not restarted from zero', async () => {
      midMonth();
      const { a, b } = make();
      // The ledger: what was really spent this period, as spentSince reads it.
      let ledgerUsd = 9;
      const manager = (store: BudgetStore) =>
        new BudgetManager({
          store,
          config: budgetsSchema.parse({ default_user: { limit_usd: 10, period: 'month' }, alert_thresholds: [] }),
          log: createLogger('silent'),
          spentSince: async () => ledgerUsd,
        });
      const [replicaA, replicaB] = [manager(a), manager(b)];
      const tenant = { id: `alice-${name}-${run}`, userId: `alice-${name}-${run}` } as Tenant;
      const spend = async (m: BudgetManager) => {
        const r = await m.reserve(m.linesFor(tenant), 0.5);
        await m.settle(r!, 0.5);
        ledgerUsd += 0.5;
      };
      await spend(replicaA); // $9.50 of $10
      // The counter vanishes (Redis restarted without persistence, failed over, or evicted it).
      const [l] = replicaA.linesFor(tenant);
      await dropCounter(a, l!.key);
      await spend(replicaA); // $10.00: the last half dollar the budget had
      await expect(replicaB.reserve(replicaB.linesFor(tenant), 0.5)).rejects.toMatchObject({ code: 'budget_exceeded' });
      await expect(replicaA.reserve(replicaA.linesFor(tenant), 0.01)).rejects.toMatchObject({ code: 'budget_exceeded' });
    });
  });
}

describe('FailoverBudgetStore when Redis fails', () => {
  const broken: BudgetStore = {
    reserve: () => Promise.reject(new Error('connection refused')),
    adjust: () => Promise.reject(new Error('connection refused')),
    seed: () => Promise.reject(new Error('connection refused')),
    markOnce: () => Promise.reject(new Error('connection refused')),
    unmark: () => Promise.reject(new Error('connection refused')),
  };

  it('settles a reservation in the store that took it: one taken locally while Redis failed never moves the Redis counter', async () => {
    const redisSide = new MemoryBudgetStore();
    let down = false;
    const flaky: BudgetStore = {
      reserve: (...a) => (down ? Promise.reject(new Error('Command timed out')) : redisSide.reserve(...a)),
      adjust: (...a) => (down ? Promise.reject(new Error('Command timed out')) : redisSide.adjust(...a)),
      seed: (...a) => (down ? Promise.reject(new Error('Command timed out')) : redisSide.seed(...a)),
      markOnce: (...a) => (down ? Promise.reject(new Error('Command timed out')) : redisSide.markOnce(...a)),
      unmark: (...a) => (down ? Promise.reject(new Error('Command timed out')) : redisSide.unmark(...a)),
    };
    const local = new MemoryBudgetStore();
    const manager = new BudgetManager({
      store: new FailoverBudgetStore(flaky, local, 'open', createLogger('silent')),
      config: budgetsSchema.parse({ users: { alice: { limit_usd: 100, period: 'day' } } }),
      log: createLogger('silent'),
      spentSince: async () => 4,
    });
    const lines = manager.linesFor({ id: 'key:k1', kind: 'key', keyId: 'k1', userId: 'alice' } as Tenant);
    await manager.settle((await manager.reserve(lines, 0))!, 0); // seeded on the Redis side: $4
    for (let i = 0; i < 5; i++) {
      down = true;
      const r = await manager.reserve(lines, 2); // taken locally (seeded there from the ledger too)
      down = false;
      await manager.settle(r!, 0.1); // Redis is back: settled where it was taken all the same
    }
    const value = async (s: BudgetStore) => (await s.adjust(lines, 0))[0];
    expect(await value(redisSide)).toBe(4_000_000);
    // The local counter: the ledger's $4 and the five requests' $0.10 each.
    expect(await value(local)).toBe(4_500_000);
  });

  it('falls back through the failure policy when Redis fails between finding a counter missing and seeding it', async () => {
    const redisSide = new MemoryBudgetStore();
    let down = false;
    const failing = <T>(f: () => Promise<T>) => (down ? Promise.reject(new Error('Command timed out')) : f());
    const flaky: BudgetStore = {
      reserve: async (...a) => {
        const r = await failing(() => redisSide.reserve(...a));
        if (r.missing) down = true; // Redis goes away right after answering "missing"
        return r;
      },
      adjust: (...a) => failing(() => redisSide.adjust(...a)),
      seed: (...a) => failing(() => redisSide.seed(...a)),
      markOnce: (...a) => failing(() => redisSide.markOnce(...a)),
      unmark: (...a) => failing(() => redisSide.unmark(...a)),
    };
    const local = new MemoryBudgetStore();
    const manager = new BudgetManager({
      store: new FailoverBudgetStore(flaky, local, 'open', createLogger('silent')),
      config: budgetsSchema.parse({ users: { erin: { limit_usd: 10, period: 'day' } } }),
      log: createLogger('silent'),
      spentSince: async () => 2,
    });
    const lines = manager.linesFor({ id: 'u:erin', kind: 'jwt', userId: 'erin' } as Tenant);
    const r = await manager.reserve(lines, 1);
    expect(r?.store).toBe(local);
    expect((await local.adjust(lines, 0))[0]).toBe(1_000_000);
  });

  it('logs an outage once per throttle window, not on every failed call', async () => {
    const log = createLogger('silent');
    const error = vi.spyOn(log, 'error');
    const now = vi.spyOn(Date, 'now').mockReturnValue(1_000_000);
    try {
      const store = new FailoverBudgetStore(broken, new MemoryBudgetStore(), 'open', log);
      const line: BudgetLine = { scope: 'key', id: 'k', period: 'day', periodStart: new Date(0), key: 'b:throttle', limitMicros: 1_000_000, ttlMs: 60_000 };
      for (let i = 0; i < 20; i++) await store.reserve([line], 1);
      expect(error).toHaveBeenCalledTimes(1);
      now.mockReturnValue(1_000_000 + 30_001);
      await store.adjust([line], 1);
      expect(error).toHaveBeenCalledTimes(2);
    } finally {
      now.mockRestore();
    }
  });
});
