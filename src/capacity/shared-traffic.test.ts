// Several gateway replicas and one autoscaler, over the real Redis (unique key prefix): the forecast
// sees the sum of every replica's traffic, one replica leads, and the others show its report.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { costOptimizationSchema, scalingSchema } from './config.js';
import { Autoscaler } from './scaler-service.js';
import { RedisLeaderLock, RedisTrafficStore } from './shared-traffic.js';
import { TrafficRecorder } from './traffic.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
const reachable = await redis.connect().then(
  () => true,
  () => false,
);
if (!reachable && process.env.CI) throw new Error(`Redis at ${REDIS_URL} is unreachable and CI is set`);
if (!reachable) console.warn(`skipping shared traffic tests: Redis at ${REDIS_URL} is unreachable`);
const prefix = `test:${randomUUID()}:scaling:`;

afterAll(async () => {
  if (reachable) {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
  }
  redis.disconnect();
});

const BUCKET_MS = 300_000;

describe.skipIf(!reachable)('RedisTrafficStore and RedisLeaderLock', () => {
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

  it('lets one replica lead; the other shows the leader report and takes over when the lock lapses', async () => {
    const scaling = scalingSchema.parse({ enabled: true, dry_run: true, interval_s: 1 });
    const cost = costOptimizationSchema.parse({});
    const key = `${prefix}leader`;
    const make = (name: string) => {
      const recorder = new TrafficRecorder({ bucketMs: BUCKET_MS, historyBuckets: 12 });
      const lock = new RedisLeaderLock(redis, key, name, 1_000);
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
    // The leader stops renewing (it died); after the TTL the follower takes over.
    await new Promise((r) => setTimeout(r, 1_200));
    expect(await second.tick()).toBeDefined();
    expect(second.report().role).toBe('leader');
    expect(await first.tick()).toBeUndefined();
    expect(first.report().role).toBe('follower');
  });
});
