// Runs against the real Redis on 127.0.0.1:6379 and a Redis Cluster (REDIS_CLUSTER_NODES, see
// test/helpers/redis.ts) under a unique key prefix per run.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { entryBytes, type StoredEntry } from '../entry.js';
import { entryKey } from '../keys.js';
import { RedisCacheStore } from './redis.js';
import { entry, storeContract } from './store-contract.js';
import type { StoreEvent } from './types.js';
import { redisTargets } from '../../../test/helpers/redis.js';
import { hashTagged } from '../../store/redis.js';

const targets = await redisTargets();
const runId = randomBytes(6).toString('hex');
const open: RedisCacheStore[] = [];

afterAll(async () => {
  for (const s of open.splice(0)) await s.close();
  for (const t of targets) if (t.available) await t.cleanup(`*iftest:${runId}:*`);
});

describe.each(targets.map((t) => [t.name, t] as const))('on %s', (_name, target) => {
  const available = target.available;
  const REDIS_URL = target.url;
  const prefix = `iftest:${runId}:${target.name}:`;
  let run = 0;
  async function make(maxBytes: number, shared?: string, extra: Partial<ConstructorParameters<typeof RedisCacheStore>[0]> = {}): Promise<RedisCacheStore> {
    const s = new RedisCacheStore({ url: REDIS_URL, keyPrefix: `${prefix}${shared ?? run++}:`, maxBytes, maxTtlMs: 60_000, ...extra });
    open.push(s);
    await s.start();
    return s;
  }

  describe('RedisCacheStore', () => {
    describe('contract', () => {
      storeContract(({ maxBytes }) => make(maxBytes), () => !available);
    });

    it('sums statistics per replica and writes them within a second, at close, and before reading them', async (t) => {
      if (!available) return t.skip();
      const a = await make(1e6, 'stats');
      const b = await make(1e6, 'stats');
      a.incrementStats({ exact_hits: 2, usd_saved: 0.25 });
      a.incrementStats({ exact_hits: 1, usd_saved: 0.5 });
      // The writer sees its own at once (it writes what is pending before reading).
      expect(await a.readStats()).toMatchObject({ exact_hits: 3, usd_saved: 0.75 });
      // A sum that comes out whole, added to a field that holds a fraction (HINCRBY would fail there).
      a.incrementStats({ usd_saved: 0.5 });
      a.incrementStats({ usd_saved: 0.5 });
      await expect.poll(async () => (await b.readStats()).usd_saved, { timeout: 2500, interval: 100 }).toBe(1.75);
      // Cleared: what was pending is dropped too.
      a.incrementStats({ misses: 5 });
      await a.clearStats();
      expect(await b.readStats()).toEqual({});
      // Closing writes what is pending.
      a.incrementStats({ stores: 4 });
      await a.close();
      expect(await b.readStats()).toEqual({ stores: 4 });
    });

    it('tells a second replica about adds and deletes through the event stream', async (t) => {
      if (!available) return t.skip();
      const a = await make(1e6, 'pair');
      const b = await make(1e6, 'pair');
      const seen: StoreEvent[] = [];
      b.subscribe((e) => seen.push(e));
      const e = entry('t', 'm', 'shared', { vector: Float32Array.from([0, 1]) });
      await a.set(e, 60_000);
      await expect.poll(() => seen.find((x) => x.op === 'add'), { timeout: 1000, interval: 20 }).toBeTruthy();
      const add = seen.find((x) => x.op === 'add');
      expect(add).toMatchObject({ op: 'add', meta: { key: e.meta.key } });
      expect(Array.from((add as { vector: Float32Array }).vector)).toEqual([0, 1]);
      await a.invalidate({ namespace: 't' });
      await expect.poll(() => seen.some((x) => x.op === 'delete' && x.keys.includes(e.meta.key)), { timeout: 1000, interval: 20 }).toBe(true);
      expect(await b.get(entryKey('t', 'm', 'shared'))).toBeUndefined();
    });

    it('reports a change event it cannot read, tells its listeners to resync, and goes on following', async (t) => {
      if (!available) return t.skip();
      const errors: string[] = [];
      const opts = { url: REDIS_URL, keyPrefix: `${prefix}bad-event:`, maxBytes: 1e6, maxTtlMs: 60_000 };
      const a = new RedisCacheStore(opts);
      const b = new RedisCacheStore({ ...opts, onError: (_err, what) => errors.push(what) });
      open.push(a, b);
      await a.start();
      await b.start();
      const seen: StoreEvent[] = [];
      b.subscribe((e) => seen.push(e));
      // An add whose metadata is not JSON, as another version or a damaged write could leave.
      await target.connect().xadd(`${hashTagged(`${prefix}bad-event:cache:`)}events`, '*', 'op', 'add', 'o', 'elsewhere', 'm', '{not json', 'v', '');
      const e = entry('t', 'm', 'after-bad');
      await a.set(e, 60_000);
      await expect.poll(() => seen.some((x) => x.op === 'add' && x.meta.key === e.meta.key), { timeout: 2000, interval: 20 }).toBe(true);
      expect(seen.some((x) => x.op === 'resync')).toBe(true);
      expect(errors).toEqual(['cache change event']);
    });

    it('applies a backlog of other replicas\' events in short slices, giving the event loop back between them', async (t) => {
      if (!available) return t.skip();
      const a = await make(1e8, 'backlog');
      // A follower more than followMaxLagMs behind stops yielding (by design, so a saturated loop
      // cannot starve it): on a loaded machine this one can fall that far behind, so it is set out of reach.
      const b = await make(1e8, 'backlog', { followMaxLagMs: 600_000 });
      let applied = 0;
      // Each add costs the follower what an index insert would (~0.2 ms here).
      b.subscribe((e) => {
        if (e.op !== 'add') return;
        const until = performance.now() + 0.2;
        while (performance.now() < until);
        applied++;
      });
      const total = 300;
      // Count how many events the follower applies between two turns of the event loop, from before
      // the writes start (a backlog builds while the follower waits for its next read).
      let worstRun = 0;
      let lastSeen = 0;
      const watched = new Promise<void>((resolve) => {
        const turn = () => {
          worstRun = Math.max(worstRun, applied - lastSeen);
          lastSeen = applied;
          if (applied >= total) resolve();
          else setImmediate(turn);
        };
        setImmediate(turn);
      });
      await Promise.all(Array.from({ length: total }, (_, i) => a.set(entry('t', 'm', `backlog-${i}`, { vector: Float32Array.from([1, i]) }), 60_000)));
      await watched;
      // 300 × 0.2 ms is 60 ms of work; sliced at 2 ms, no turn of the loop waits for more than a few dozen.
      expect(worstRun).toBeGreaterThan(0);
      expect(worstRun).toBeLessThan(50);
    });

    it('tells its listeners to resync when the stream was trimmed past events it had not read', async (t) => {
      if (!available) return t.skip();
      const opts = { url: REDIS_URL, keyPrefix: `${prefix}gap:`, maxBytes: 1e8, maxTtlMs: 60_000, streamMaxLen: 10 };
      const a = new RedisCacheStore(opts);
      const b = new RedisCacheStore(opts);
      open.push(a, b);
      await a.start();
      await b.start();
      const seen: StoreEvent[] = [];
      b.subscribe((e) => seen.push(e));
      // A burst of writes while this process cannot run b's follower: the stream keeps only the last
      // few (approximate trim), so b's next read starts after a hole.
      const writes = Array.from({ length: 1000 }, (_, i) => a.set(entry('t', 'm', `gap-${i}`, { vector: Float32Array.from([1, i]) }), 60_000));
      const until = performance.now() + 300;
      while (performance.now() < until);
      await Promise.all(writes);
      await expect.poll(() => seen.some((e) => e.op === 'resync'), { timeout: 3000, interval: 20 }).toBe(true);
      // Once caught up, a follower hears no resync: the burst may have overtaken a's follower too
      // (its own writes fill the stream), so let both settle before listening.
      await new Promise((r) => setTimeout(r, 1200));
      const own: StoreEvent[] = [];
      a.subscribe((e) => own.push(e));
      await a.set(entry('t', 'm', 'after'), 60_000);
      await new Promise((r) => setTimeout(r, 1200));
      expect(own.some((e) => e.op === 'resync')).toBe(false);
    });

    it('tells every replica about evicted keys Redis had already expired, so no index keeps them', async (t) => {
      if (!available) return t.skip();
      const size = entryBytes(entry('t', 'm', 'old-0', { vector: Float32Array.from([1, 0]) }));
      const opts = { url: REDIS_URL, keyPrefix: `${prefix}evict-expired:`, maxBytes: 4 * size, maxTtlMs: 60_000 };
      const a = new RedisCacheStore(opts);
      const b = new RedisCacheStore(opts);
      open.push(a, b);
      await a.start();
      await b.start();
      // What a replica's vector index would hold: every add with a vector, minus every delete.
      const indexed = new Set<string>();
      const expiredEvents: string[] = [];
      b.subscribe((e) => {
        if (e.op === 'add' && e.vector) indexed.add(e.meta.key);
        else if (e.op === 'delete') {
          for (const k of e.keys) indexed.delete(k);
          if (e.reason === 'expired') expiredEvents.push(...e.keys);
        }
      });
      const olds = [0, 1, 2].map((i) => entry('t', 'm', `old-${i}`, { vector: Float32Array.from([1, i]) }));
      for (const e of olds) await a.set(e, 20);
      await expect.poll(() => indexed.size, { timeout: 2000, interval: 20 }).toBe(3);
      // Redis expires them; the use-order set still lists them, oldest first.
      for (const e of olds) await expect.poll(() => a.get(e.meta.key), { timeout: 2000, interval: 20 }).toBeUndefined();
      // Four fit the budget: the 2nd to 4th new entry pop the three expired ones, the 5th evicts new-0.
      const news = [0, 1, 2, 3, 4].map((i) => entry('t', 'm', `new-${i}`, { vector: Float32Array.from([2, i]) }));
      for (const e of news) await a.set(e, 60_000);
      const live = news.slice(1).map((e) => e.meta.key);
      await expect.poll(() => [...indexed].sort(), { timeout: 2000, interval: 20 }).toEqual(live);
      expect(expiredEvents.sort()).toEqual(olds.map((e) => e.meta.key));
      // Only a real deletion counts as an eviction.
      expect(await a.counters()).toEqual({ entries: 4, bytes: 4 * size, evictions: 1 });
    });

    it('sweeps until no stale use-order record is left, stepping over entries that still exist', async (t) => {
      if (!available) return t.skip();
      const s = new RedisCacheStore({ url: REDIS_URL, keyPrefix: `${prefix}sweep-all:`, maxBytes: 1e8, maxTtlMs: 10 });
      open.push(s);
      const deleted = new Set<string>();
      s.subscribe((e) => {
        if (e.op === 'delete') for (const k of e.keys) deleted.add(k);
      });
      // More expired entries than one sweep step (1,000) takes, with entries that outlive maxTtlMs
      // (so their records are in the stale range but their hashes exist) among the first ones.
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 1100; i++) {
        if (i % 20 === 0) writes.push(s.set(entry('t', 'm', `kept-${i}`), 60_000));
        writes.push(s.set(entry('t', 'm', `gone-${i}`), 10));
      }
      await Promise.all(writes);
      await expect.poll(() => s.get(entryKey('t', 'm', 'gone-1099')), { timeout: 2000, interval: 20 }).toBeUndefined();
      await new Promise((r) => setTimeout(r, 20));
      expect(await s.sweep()).toBe(1100);
      expect(deleted.size).toBe(1100);
      expect([...deleted].some((k) => k.includes('kept-'))).toBe(false);
      expect((await s.counters()).entries).toBe(55);
      expect(await s.sweep()).toBe(0);
    });

    it('sweeps an entry read just before it expired once it has expired, not a TTL after that read', async (t) => {
      if (!available) return t.skip();
      const s = new RedisCacheStore({ url: REDIS_URL, keyPrefix: `${prefix}sweep-read:`, maxBytes: 1e6, maxTtlMs: 1000 });
      open.push(s);
      const deleted: string[] = [];
      s.subscribe((e) => {
        if (e.op === 'delete') deleted.push(...e.keys);
      });
      const read = entry('t', 'm', 'read');
      await s.set(read, 1000);
      await s.set(entry('t', 'm', 'live'), 60_000);
      // Read late in its life: the read moves its last use, not its expiry.
      await new Promise((r) => setTimeout(r, 800));
      expect(await s.get(read.meta.key)).toBeDefined();
      await expect.poll(() => s.get(read.meta.key), { timeout: 2000, interval: 20 }).toBeUndefined();
      expect(await s.sweep()).toBe(1);
      expect(deleted).toEqual([read.meta.key]);
      expect(await s.counters()).toMatchObject({ entries: 1, bytes: entryBytes(entry('t', 'm', 'live')) });
    });

    it('over budget, drops an expired entry read just before it expired before any live one', async (t) => {
      if (!available) return t.skip();
      const size = entryBytes(entry('t', 'm', 'live'));
      const s = new RedisCacheStore({ url: REDIS_URL, keyPrefix: `${prefix}evict-read:`, maxBytes: 3 * size, maxTtlMs: 60_000 });
      open.push(s);
      const [live, read, c, d] = ['live', 'read', 'cccc', 'dddd'].map((h) => entry('t', 'm', h)) as [StoredEntry, StoredEntry, StoredEntry, StoredEntry];
      await s.set(live, 60_000);
      await s.set(read, 1000);
      await new Promise((r) => setTimeout(r, 800));
      expect(await s.get(read.meta.key)).toBeDefined();
      await expect.poll(() => s.get(read.meta.key), { timeout: 2000, interval: 20 }).toBeUndefined();
      await s.set(c, 60_000);
      await s.set(d, 60_000);
      // The least recently used live entry stays: the expired one made the room.
      for (const e of [live, c, d]) expect(await s.get(e.meta.key)).toBeDefined();
      expect(await s.counters()).toEqual({ entries: 3, bytes: 3 * size, evictions: 0 });
    });

    it('sweeps use-order records of entries Redis expired, giving their bytes back', async (t) => {
      if (!available) return t.skip();
      const s = new RedisCacheStore({ url: REDIS_URL, keyPrefix: `${prefix}sweep:`, maxBytes: 1e6, maxTtlMs: 10 });
      open.push(s);
      await s.set(entry('t', 'm', 'gone'), 10);
      await new Promise((r) => setTimeout(r, 60));
      expect(await s.sweep()).toBe(1);
      expect(await s.counters()).toMatchObject({ entries: 0, bytes: 0 });
    });
  });
});
