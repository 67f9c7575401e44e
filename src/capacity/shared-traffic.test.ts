// Several gateway replicas and one autoscaler, over the real Redis and a Redis Cluster (unique key prefix): the forecast
// sees the sum of every replica's traffic, one replica leads, and the others show its report.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it as vitestIt } from 'vitest';
import { costOptimizationSchema, scalingSchema } from './config.js';
import { Autoscaler, type ScaleApplier } from './scaler-service.js';
import type { TrafficSource } from './shared-traffic.js';
import { replicaName } from './service.js';
import { RedisLeaderLock, RedisTrafficStore } from './shared-traffic.js';
import { TrafficRecorder } from './traffic.js';
import { redisTargets } from '../../test/helpers/redis.js';
import { hashTagged, type RedisClient } from '../store/redis.js';

// On a single server and on a Redis Cluster (test/helpers/redis.ts).
const targets = await redisTargets();
const run = randomUUID();

afterAll(async () => {
  for (const t of targets) if (t.available) await t.cleanup(`*test:${run}:*`);
});

const BUCKET_MS = 300_000;

describe.each(targets.map((t) => [t.name, t] as const))('RedisTrafficStore and RedisLeaderLock on %s', (_name, target) => {
  const skip = !target.available;
  let redis: RedisClient;
  let prefix: string;
  beforeAll(() => {
    if (skip) return;
    redis = target.connect();
    prefix = `test:${run}:${target.name}:scaling:`;
  });
  const it = skip ? vitestIt.skip : vitestIt;

  it('sums the buckets of every replica, with queue depth per replica added up', async () => {
    let now = BUCKET_MS * 10_000;
    const replicas = ['a', 'b'].map((name) => {
      const recorder = new TrafficRecorder({ bucketMs: BUCKET_MS, historyBuckets: 12, now: () => now, trackPending: true });
      return { recorder, store: new RedisTrafficStore({ redis, keyPrefix: prefix, recorder, historyBuckets: 12, replica: name, now: () => now }) };
    });
    const [a, b] = replicas as [(typeof replicas)[number], (typeof replicas)[number]];
    // First bucket: a serves 300 requests, b 600; queues peak at 4 and 7.
    a.recorder.record(300, 3_000);
    a.recorder.observeQueueDepth(4);
    b.recorder.record(600, 6_000);
    b.recorder.observeQueueDepth(7);
    await a.store.flush();
    a.recorder.record(300, 0); // a second push into the same bucket adds up
    await Promise.all([a.store.flush(), b.store.flush()]);
    now += BUCKET_MS; // second bucket: only b
    b.recorder.record(60, 0);
    now += 2 * BUCKET_MS + 60_000; // a minute into the fourth bucket; the third was idle
    a.recorder.record(120, 0);

    const series = await b.store.series();
    expect(series.map((p) => [p.start / BUCKET_MS - 10_000, p.requestsPerS, p.queueDepth])).toEqual([
      [0, 1_200 / 300, 11],
      [1, 60 / 300, 0],
      [2, 0, 0],
    ]);
    expect(series[0]?.tokensPerS).toBe(9_000 / 300);
    // a's open-bucket counts are pushed when b reads (a reads through its own store here).
    expect((await a.store.current()).requestsPerS).toBe(120 / 60);
  });

  it('keeps the counts of a push that failed and sends them with the next one', async () => {
    const now = BUCKET_MS * 20_000 + 60_000;
    const recorder = new TrafficRecorder({ bucketMs: BUCKET_MS, historyBuckets: 12, now: () => now, trackPending: true });
    const keyPrefix = `${prefix}flush-retry:`;
    // The same replica's store over a connection whose transaction fails, then over a working one.
    const tx = { hincrbyfloat: () => tx, hset: () => tx, expire: () => tx, exec: async () => Promise.reject(new Error('Connection is closed.')) };
    const gone = { multi: () => tx } as unknown as RedisClient;
    const broken = new RedisTrafficStore({ redis: gone, keyPrefix, recorder, historyBuckets: 12, replica: 'r', now: () => now });
    const working = new RedisTrafficStore({ redis, keyPrefix, recorder, historyBuckets: 12, replica: 'r', now: () => now });
    recorder.record(120, 1_200);
    recorder.observeQueueDepth(5);
    await expect(broken.flush()).rejects.toThrow();
    recorder.record(60, 600); // recorded between the failed push and the next
    recorder.observeQueueDepth(3);
    await working.flush();
    const h = await redis.hgetall(`${hashTagged(keyPrefix)}traffic:${Math.floor(now / BUCKET_MS)}`);
    expect(h).toEqual({ requests: '180', tokens: '1800', 'queue:r': '5' });
    expect(recorder.takePending()).toEqual([]);
  });

  it('two workers of one pod (same HOSTNAME) are two replicas: only one of them leads', async () => {
    const env = { HOSTNAME: 'gateway-7d9f-abcde' };
    const [w1, w2] = [replicaName(env), replicaName(env)];
    expect(w1).not.toBe(w2);
    expect(w1.startsWith('gateway-7d9f-abcde/')).toBe(true);
    const key = `${prefix}pod-leader`;
    const held = await Promise.all([w1, w2].map((name) => new RedisLeaderLock(redis, key, name, 5_000).isLeader()));
    expect(held.filter(Boolean)).toHaveLength(1);
  });

  describe('leader failover', () => {
    const scaling = scalingSchema.parse({ enabled: true, dry_run: false, interval_s: 60, per_replica: { requests_per_s: 50 }, headroom: 0.2 });
    const cost = costOptimizationSchema.parse({});
    // One Deployment both replicas patch, and a load every replica sees the same way (the shared store's role).
    const make = (key: string, name: string, clock: { now: number }, deployment: { replicas: number; patches: Array<[number, number]> }, load: { rps: number }) => {
      const applier: ScaleApplier = {
        getReplicas: async () => deployment.replicas,
        setReplicas: async (_d, n) => {
          deployment.replicas = n;
          deployment.patches.push([clock.now, n]);
        },
      };
      const source: TrafficSource = { series: async () => [], current: async () => ({ requestsPerS: load.rps, tokensPerS: 0, queueDepth: 0 }) };
      const recorder = new TrafficRecorder({ bucketMs: BUCKET_MS, historyBuckets: 12 });
      return new Autoscaler({ scaling, cost, recorder, source, applier, leader: new RedisLeaderLock(redis, key, name, 180_000), now: () => clock.now });
    };

    it('a leader that stops releases the lock: the next replica leads at its next tick, not after the TTL', async () => {
      const key = `${prefix}release`;
      const clock = { now: 1_000_000 };
      const deployment = { replicas: 3, patches: [] as Array<[number, number]> };
      const load = { rps: 0 };
      const a = make(key, 'a', clock, deployment, load);
      const b = make(key, 'b', clock, deployment, load);
      expect(await a.tick()).toBeDefined();
      expect(await b.tick()).toBeUndefined();
      await a.stop();
      expect(await redis.get(key)).toBeNull();
      expect(await b.tick()).toBeDefined();
      expect(b.report().role).toBe('leader');
      expect(await a.tick()).toBeUndefined(); // stopped for good
      // Releasing is compare-and-delete: a replica that lost the lock cannot delete the new holder's.
      expect(await new RedisLeaderLock(redis, key, 'a', 180_000).release()).toBe(false);
      expect(await redis.get(key)).toBe('b');
      await b.stop();
    });

    it('the new leader keeps the cooldown: no scale-down 60 s after the old leader scaled up', async () => {
      const key = `${prefix}cooldown`;
      const clock = { now: 2_000_000 };
      const deployment = { replicas: 3, patches: [] as Array<[number, number]> };
      const load = { rps: 280 }; // 280 / 50 × 1.2 = 6.72 -> 7 replicas
      const a = make(key, 'a', clock, deployment, load);
      expect((await a.tick())?.target).toBe(7);
      // One key beside the lock: the report, with the state the next leader takes over inside.
      expect(await redis.exists(`${key}:state`)).toBe(0);
      expect(JSON.parse((await redis.get(`${key}:report`))!)).toMatchObject({ role: 'leader', handover: { known: 7 } });
      await a.stop(); // a rolling update replaces the leader
      clock.now += 60_000;
      load.rps = 20; // the load dips at once
      const b = make(key, 'b', clock, deployment, load);
      const d = await b.tick();
      expect(d).toMatchObject({ current: 7, desired: 3, target: 7, direction: 'hold' });
      expect(d?.reasons.join('; ')).toContain('scale-down held: 60 s since the last change');
      expect(deployment.patches).toEqual([[2_000_000, 7]]);
      // It also continues the old leader's history.
      expect(b.report().history.map((h) => h.target)).toEqual([7, 7]);
      await b.stop();
    });

    it("the new leader keeps the scale-down window: the old leader's recent wish for 7 holds the fleet", async () => {
      const key = `${prefix}window`;
      const clock = { now: 3_000_000 };
      const deployment = { replicas: 3, patches: [] as Array<[number, number]> };
      const load = { rps: 280 };
      const a = make(key, 'a', clock, deployment, load);
      await a.tick(); // 3 -> 7
      clock.now += 550_000;
      expect((await a.tick())?.desired).toBe(7); // still wanted 550 s later
      await a.stop();
      clock.now += 70_000; // 620 s after the change: past the cooldown, within 600 s of that wish
      load.rps = 20;
      const b = make(key, 'b', clock, deployment, load);
      const d = await b.tick();
      expect(d).toMatchObject({ current: 7, desired: 3, target: 7, direction: 'hold' });
      expect(d?.reasons.join('; ')).toContain('load asked for 7 replicas within the last 600 s');
      await b.stop();
    });
  });

  it('lets one replica lead; the other shows the leader report and takes over when the lock lapses', async () => {
    const scaling = scalingSchema.parse({ enabled: true, dry_run: true, interval_s: 1 });
    const cost = costOptimizationSchema.parse({});
    const key = `${prefix}leader`;
    const make = (name: string) => {
      const recorder = new TrafficRecorder({ bucketMs: BUCKET_MS, historyBuckets: 12 });
      // A 3 s lease: the follower's first tick must come while the leader's lease holds, even on a loaded machine.
      const lock = new RedisLeaderLock(redis, key, name, 3_000);
      return new Autoscaler({ scaling, cost, recorder, leader: lock });
    };
    const first = make('first');
    const second = make('second');
    expect(await first.tick()).toBeDefined();
    expect(await second.tick()).toBeUndefined();
    expect(first.report().role).toBe('leader');
    const shown = second.report();
    expect(shown.role).toBe('follower');
    expect(shown.decision).toEqual(first.report().decision);
    expect(shown).not.toHaveProperty('handover');
    // The leader stops renewing (it died); after the TTL the follower takes over.
    await new Promise((r) => setTimeout(r, 3_200));
    expect(await second.tick()).toBeDefined();
    expect(second.report().role).toBe('leader');
    expect(await first.tick()).toBeUndefined();
    expect(first.report().role).toBe('follower');
  });
});
