// A budget reservation whose command failed on the gateway's side (a command timeout, a connection
// dropped after sending) may have run on Redis all the same. The gateway then reserves locally (fail
// open) or refuses (fail closed) and never settles it on Redis, so what the script took must be given
// back once Redis answers: exactly once, and only if it ran. A settle whose command failed so is sent
// again until Redis answers, and applied once; what is still owed at shutdown is sent by close().
// Against the real Redis and Redis Cluster (REDIS_CLUSTER_NODES), with the script's reply lost, the
// command never sent, or sent twice.
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { budgetsSchema, configSchema } from '../src/config/schema.js';
import type { Tenant } from '../src/gateway/context.js';
import { assembleTenancy } from '../src/gateway/tenancy.js';
import { BudgetManager, FailoverBudgetStore, MAX_UNSETTLED_RESERVATIONS, MemoryBudgetStore, RedisBudgetStore, type BudgetLine } from '../src/limits/budgets.js';
import { scanKeys, type RedisClient } from '../src/store/redis.js';
import { createLogger } from '../src/telemetry/logger.js';
import { redisTargets, type RedisTarget } from './helpers/redis.js';

const targets = await redisTargets();
const run = randomBytes(4).toString('hex');
afterAll(async () => {
  for (const t of targets) await t.cleanup(`*test:${run}:*`);
});

type Script = (...args: (string | number)[]) => Promise<unknown>;
const timedOut = () => new Error('Command timed out');

/**
 * A replica's budget store on its own client, whose reservation and release commands the test can
 * make fail on the client's side; `counters` reads the counters through another client (another replica).
 */
function replica(t: RedisTarget, tag: string) {
  const prefix = `test:${run}:${t.name}:${tag}:`;
  const client = t.connect();
  const logged = logSink();
  const store = new RedisBudgetStore(client, prefix, logged.log);
  const scripts = client as unknown as Record<'ifBudgetReserve' | 'ifBudgetRelease' | 'ifBudgetAdjust', Script>;
  const real = { reserve: scripts.ifBudgetReserve.bind(client), release: scripts.ifBudgetRelease?.bind(client), adjust: scripts.ifBudgetAdjust.bind(client) };
  const reader = new RedisBudgetStore(t.connect(), prefix);
  return {
    store,
    client,
    prefix,
    /** What the store logged (warn and above). */
    logged: logged.lines,
    real,
    /** What the next reservation commands do instead of just running. */
    onReserve(f: (args: (string | number)[]) => Promise<unknown>) {
      scripts.ifBudgetReserve = (...args) => f(args);
    },
    onRelease(f: (args: (string | number)[]) => Promise<unknown>) {
      scripts.ifBudgetRelease = (...args) => f(args);
    },
    onAdjust(f: (args: (string | number)[]) => Promise<unknown>) {
      scripts.ifBudgetAdjust = (...args) => f(args);
    },
    /**
     * Redis runs each reservation but its reply is lost, and releases fail on the client's side,
     * until the function returned is called (Redis answers again).
     */
    loseReplies(): () => void {
      let reachable = false;
      scripts.ifBudgetReserve = async (...args) => {
        await real.reserve(...args);
        throw timedOut();
      };
      scripts.ifBudgetRelease = async (...args) => {
        if (!reachable) throw timedOut();
        return real.release?.(...args);
      };
      return () => {
        reachable = true;
      };
    },
    /** A reservation's record key, to expire or release it behind the store's back. */
    recordKey: (id: string) => (store as unknown as { recordKey(id: string): string }).recordKey(id),
    counters: (lines: readonly BudgetLine[]) => reader.adjust(lines, 0),
    /** Reservation records left in Redis under this replica's prefix. */
    records: async () => (await scanKeys(client as RedisClient, `*${prefix}*reservation:*`)).length,
  };
}

function logSink() {
  const lines: { msg: string; [k: string]: unknown }[] = [];
  const stream = new PassThrough();
  stream.on('data', (chunk: Buffer) => {
    for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as (typeof lines)[number]);
  });
  return { log: createLogger('warn', stream), lines };
}

function line(scope: BudgetLine['scope'], id: string, limitMicros: number): BudgetLine {
  return { scope, id, period: 'day', periodStart: new Date(0), key: `budget:${scope}:${id}:2026-01-01`, limitMicros, ttlMs: 60_000 };
}

/** The store's reservations with an unknown outcome still to give back. */
/** A manager over `store` failing open to a local store, and user `user`'s lines ($10 a day). */
function failOpen(store: RedisBudgetStore, user: string) {
  const manager = new BudgetManager({
    store: new FailoverBudgetStore(store, new MemoryBudgetStore(), 'open', createLogger('silent')),
    config: budgetsSchema.parse({ users: { [user]: { limit_usd: 10, period: 'day' } }, alert_thresholds: [] }),
    log: createLogger('silent'),
  });
  return { manager, lines: manager.linesFor({ id: `u:${user}`, kind: 'jwt', userId: user } as Tenant) };
}

const pending = (store: RedisBudgetStore) => (store as unknown as { unsettled: Map<string, unknown> }).unsettled.size;

for (const t of targets) {
  describe.skipIf(!t.available)(`${t.name}: a budget reservation whose outcome is unknown`, () => {
    it('that ran before its reply was lost is given back once Redis answers again, while the request is served and settled locally', async () => {
      const r = replica(t, 'lost');
      const { manager, lines } = failOpen(r.store, 'ann');
      await manager.settle((await manager.reserve(lines, 2))!, 1); // $1 spent on Redis
      expect(await r.counters(lines)).toEqual([1_000_000]);

      // Redis goes away the moment the script has run: its reply never comes, nor do releases.
      const answer = r.loseReplies();
      const local = await manager.reserve(lines, 3);
      expect(local?.store).not.toBe(r.store); // reserved locally (fail open)
      expect(await r.counters(lines)).toEqual([4_000_000]); // what the script took on Redis
      await manager.settle(local!, 0.5); // settled where it was taken: never on Redis

      // Redis answers again: the $3 the script took comes off, and only that.
      answer();
      await vi.waitFor(async () => expect(await r.counters(lines)).toEqual([1_000_000]), { timeout: 5_000, interval: 50 });
      await vi.waitFor(() => expect(pending(r.store)).toBe(0));
      expect(await r.records()).toBe(1); // the released one, kept so that it is never released or taken again
    });

    it('that never reached Redis gives back nothing, and takes nothing if the command arrives later', async () => {
      const r = replica(t, 'unsent');
      const lines = [line('key', 'k', 10_000), line('team', 't', 100_000)];
      // Another request's reservation is outstanding on the same counters: no release may touch it.
      const other = await r.store.reserve(lines, 2_000);
      expect(other.ok).toBe(true);

      let queued: (string | number)[] | undefined;
      r.onReserve(async (args) => {
        queued = args; // still in the client's queue when it gave up
        throw timedOut();
      });
      await expect(r.store.reserve(lines, 3_000)).rejects.toThrow('Command timed out');
      await r.store.retryUnsettled();
      expect(pending(r.store)).toBe(0); // released: Redis answered
      expect(await r.counters(lines)).toEqual([2_000, 2_000]);

      // The client sends the queued command after all (a reconnect): it is refused, having been released.
      await expect(r.real.reserve(...queued!)).resolves.toEqual([-2]);
      expect(await r.counters(lines)).toEqual([2_000, 2_000]);
    });

    it('is given back once when its release runs twice (the first release reply lost too)', async () => {
      const r = replica(t, 'twice');
      const lines = [line('key', 'k', 10_000), line('user', 'u', 10_000)];
      await r.store.reserve(lines, 1_000);
      r.onReserve(async (args) => {
        await r.real.reserve(...args);
        throw timedOut();
      });
      let releases = 0;
      r.onRelease(async (args) => {
        releases++;
        const out = await r.real.release(...args);
        if (releases === 1) throw timedOut(); // ran; its reply lost: sent again
        return out;
      });
      await expect(r.store.reserve(lines, 4_000)).rejects.toThrow('Command timed out');
      await r.store.retryUnsettled(); // the first release: ran, reply lost
      await r.store.retryUnsettled(); // sent again (not waiting for the retry timer)
      expect(releases).toBe(2);
      expect(pending(r.store)).toBe(0);
      expect(await r.counters(lines)).toEqual([1_000, 1_000]);
    });

    it('that ran twice (the client sent it again after a dropped connection) takes its cost once, and settling clears its record', async () => {
      const r = replica(t, 'resent');
      const lines = [line('key', 'k', 10_000), line('team', 't', 10_000)];
      r.onReserve(async (args) => {
        await r.real.reserve(...args); // ran; the connection dropped before the reply
        return r.real.reserve(...args); // sent again after the reconnect
      });
      const res = await r.store.reserve(lines, 3_000);
      expect(res).toMatchObject({ ok: true, values: [3_000, 3_000] });
      expect(await r.counters(lines)).toEqual([3_000, 3_000]);
      await r.store.adjust(lines, -2_000, res.id);
      expect(await r.counters(lines)).toEqual([1_000, 1_000]);
      expect(await r.records()).toBe(0);
    });
  });
}

for (const t of targets) {
  describe.skipIf(!t.available)(`${t.name}: settling a budget reservation by id`, () => {
    it('applies its correction once: a settle that runs again (its reply lost, sent again) changes nothing', async () => {
      const r = replica(t, 'settle-twice');
      const lines = [line('key', 'k', 10_000), line('team', 't', 10_000)];
      const res = await r.store.reserve(lines, 3_000);
      expect(await r.store.adjust(lines, -2_000, res.id)).toEqual([1_000, 1_000]);
      expect(await r.store.adjust(lines, -2_000, res.id)).toEqual([1_000, 1_000]);
      expect(await r.counters(lines)).toEqual([1_000, 1_000]);
      expect(await r.records()).toBe(0);
    });

    it('changes nothing once its record has expired or its reservation was given back', async () => {
      const r = replica(t, 'settle-gone');
      const lines = [line('key', 'k', 10_000), line('user', 'u', 10_000)];
      const expired = await r.store.reserve(lines, 3_000);
      const released = await r.store.reserve(lines, 2_000);
      expect(await r.client.del(r.recordKey(expired.id!))).toBe(1); // its day passed
      await r.client.set(r.recordKey(released.id!), 'released', 'PX', 60_000);
      expect(await r.store.adjust(lines, -1_000, expired.id)).toEqual([5_000, 5_000]);
      expect(await r.store.adjust(lines, -1_000, released.id)).toEqual([5_000, 5_000]);
      expect(await r.counters(lines)).toEqual([5_000, 5_000]);
      // The released mark stays: the reservation command arriving late still takes nothing.
      expect(await r.client.get(r.recordKey(released.id!))).toBe('released');
    });

    it('whose reply was lost after it ran is sent again, and not applied twice', async () => {
      const r = replica(t, 'settle-lost');
      const lines = [line('key', 'k', 10_000), line('team', 't', 10_000)];
      const res = await r.store.reserve(lines, 4_000);
      let settles = 0;
      r.onAdjust(async (args) => {
        settles++;
        const out = await r.real.adjust(...args);
        if (settles === 1) throw timedOut(); // ran; its reply lost
        return out;
      });
      await expect(r.store.adjust(lines, -3_000, res.id)).rejects.toThrow('Command timed out');
      await r.store.retryUnsettled();
      expect(settles).toBe(2); // sent again at once
      expect(pending(r.store)).toBe(0);
      expect(await r.counters(lines)).toEqual([1_000, 1_000]);
      expect(await r.records()).toBe(0);
    });

    it('that never reached Redis is applied once when Redis answers, sooner than its retry when another command succeeds', async () => {
      const r = replica(t, 'settle-unsent');
      const { manager, lines } = failOpen(r.store, 'bo');
      const reservation = await manager.reserve(lines, 3); // $3 reserved on Redis
      expect(reservation?.store).toBe(r.store);

      let reachable = false;
      let settles = 0;
      r.onAdjust(async (args) => {
        settles++;
        if (!reachable) throw timedOut(); // never sent
        return r.real.adjust(...args);
      });
      await expect(manager.settle(reservation!, 1)).rejects.toThrow('Command timed out');
      await vi.waitFor(() => expect(settles).toBe(2)); // sent again at once, failing too: a retry is due in a second
      expect(pending(r.store)).toBe(1);
      expect(await r.counters(lines)).toEqual([3_000_000]); // still the estimate

      // Redis answers: the next request's reservation sends the settle at once.
      reachable = true;
      const next = await manager.reserve(lines, 2);
      await vi.waitFor(() => expect(pending(r.store)).toBe(0), { timeout: 500, interval: 10 }); // its retry was a second away
      expect(settles).toBe(3);
      expect(await r.counters(lines)).toEqual([3_000_000]); // $1 spent, $2 reserved
      await manager.settle(next!, 2);
      expect(await r.counters(lines)).toEqual([3_000_000]);
      expect(await r.records()).toBe(0);
    });
  });
}

for (const t of targets) {
  describe.skipIf(!t.available)(`${t.name}: closing a budget store`, () => {
    /** A replica with a release (its reservation ran, the reply lost) and a settle (never sent) owed to a Redis that does not answer. */
    async function owing(tag: string) {
      const r = replica(t, tag);
      const lines = [line('key', 'k', 10_000), line('team', 't', 10_000)];
      const settled = await r.store.reserve(lines, 3_000);
      const answer = r.loseReplies();
      let reachable = false;
      r.onAdjust(async (args) => {
        if (!reachable) throw timedOut();
        return r.real.adjust(...args);
      });
      await expect(r.store.reserve(lines, 4_000)).rejects.toThrow('Command timed out');
      await expect(r.store.adjust(lines, -2_000, settled.id)).rejects.toThrow('Command timed out');
      await vi.waitFor(() => expect((r.store as unknown as { retryTimer?: unknown }).retryTimer).toBeDefined()); // their first resend failed
      expect(pending(r.store)).toBe(2);
      expect(await r.counters(lines)).toEqual([7_000, 7_000]);
      return {
        r,
        lines,
        answer: () => {
          reachable = true;
          answer();
        },
      };
    }

    it('sends the releases and settles still owed, without waiting for their retry', async () => {
      const { r, lines, answer } = await owing('close');
      answer();
      const started = Date.now();
      await r.store.close();
      expect(Date.now() - started).toBeLessThan(900); // the retry was a second away
      expect(pending(r.store)).toBe(0);
      expect(await r.counters(lines)).toEqual([1_000, 1_000]); // $4 given back, $3 settled at $1
      expect(r.logged).toEqual([]);
    });

    it('gives up after its bound while Redis does not answer, schedules no retry, and logs what it left', async () => {
      const { r } = await owing('close-away');
      const started = Date.now();
      await r.store.close(300);
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(pending(r.store)).toBe(2);
      expect((r.store as unknown as { retryTimer?: unknown }).retryTimer).toBeUndefined();
      expect(r.logged).toEqual([expect.objectContaining({ level: 'warn', releases: 1, settles: 1 })]);
    });

    it('is closed when the gateway shuts down: tenancy registers it as a resource', async () => {
      const r = replica(t, 'tenancy');
      const close = vi.spyOn(RedisBudgetStore.prototype, 'close');
      try {
        const config = configSchema.parse({ redis: { key_prefix: r.prefix }, ledger: { enabled: false }, budgets: { enabled: true } });
        const tenancy = await assembleTenancy({ config, log: createLogger('silent'), redis: r.client, priceOf: () => undefined });
        const budgets = tenancy.resources.find((res) => res.name === 'budgets');
        expect(budgets).toBeDefined();
        for (const res of [...tenancy.resources].reverse()) await res.close();
        expect(close).toHaveBeenCalledTimes(1);
      } finally {
        close.mockRestore();
      }
    });
  });
}

for (const t of targets) {
  describe.skipIf(!t.available)(`${t.name}: releases and settles beyond the bound`, () => {
    it('are dropped and logged once per burst: again only after the queue has emptied', async () => {
      const r = replica(t, 'bound');
      const lines = [line('key', 'k', 1_000_000), line('team', 't', 1_000_000)];
      const settled = await r.store.reserve(lines, 1_000);
      r.onReserve(async () => {
        throw timedOut();
      });
      r.onAdjust(async () => {
        throw timedOut();
      });
      const queue = (r.store as unknown as { unsettled: Map<string, { keys: string[]; at: number }> }).unsettled;
      const fill = () => {
        for (let i = queue.size; i < MAX_UNSETTLED_RESERVATIONS; i++) queue.set(`held-${i}`, { keys: [r.recordKey(`held-${i}`)], at: Date.now() });
      };
      fill();
      await expect(r.store.reserve(lines, 1_000)).rejects.toThrow('Command timed out');
      // The settle's error says it is not sent again (the request's log must not promise a resend).
      await expect(r.store.adjust(lines, -500, settled.id)).rejects.toThrow(`the settle is not sent again: ${MAX_UNSETTLED_RESERVATIONS} are already waiting`);
      await expect(r.store.reserve(lines, 1_000)).rejects.toThrow('Command timed out');
      expect(pending(r.store)).toBe(MAX_UNSETTLED_RESERVATIONS); // none of the three was taken
      expect(r.logged).toEqual([expect.objectContaining({ level: 'warn', max: MAX_UNSETTLED_RESERVATIONS, dropped: 'release' })]);

      // The queue empties (here: the records it held have expired), and a new burst is logged again.
      for (const u of queue.values()) u.at = 0;
      await r.store.retryUnsettled();
      expect(pending(r.store)).toBe(0);
      fill();
      await expect(r.store.adjust(lines, -500, settled.id)).rejects.toThrow('Command timed out');
      await expect(r.store.reserve(lines, 1_000)).rejects.toThrow('Command timed out');
      expect(r.logged).toHaveLength(2);
      expect(r.logged[1]).toMatchObject({ level: 'warn', dropped: 'settle' });
    });
  });
}

for (const t of targets) {
  describe.skipIf(!t.available)(`${t.name}: while Redis keeps failing`, () => {
    it('sends what is owed once per backoff step, not again with every request that fails', async () => {
      const r = replica(t, 'backoff');
      const lines = [line('key', 'k', 1_000_000)];
      let releases = 0;
      r.onReserve(async () => {
        throw timedOut();
      });
      r.onRelease(async () => {
        releases++;
        throw timedOut();
      });
      try {
        // 300 owed, then 20 more requests fail over the next second: the first failure's pass sends a
        // batch (100) and backs off 1 s; the others wait for that retry.
        const queue = (r.store as unknown as { unsettled: Map<string, { keys: string[]; at: number }> }).unsettled;
        for (let i = 0; i < 300; i++) queue.set(`owed-${i}`, { keys: [r.recordKey(`owed-${i}`)], at: Date.now() });
        for (let i = 0; i < 20; i++) {
          await expect(r.store.reserve(lines, 1_000)).rejects.toThrow('Command timed out');
          await new Promise((done) => setTimeout(done, 40));
        }
        expect(pending(r.store)).toBe(320);
        // One pass, perhaps the 1 s retry's too: at most two batches, not a batch per failed request.
        expect(releases).toBeLessThanOrEqual(200);
        expect(releases).toBeGreaterThanOrEqual(100);
      } finally {
        await r.store.close(0);
      }
    });
  });
}
