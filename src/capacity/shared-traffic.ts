// Scaling across replicas: each replica sees only its share of the traffic, so with Redis the
// replicas push their bucket counts into shared per-bucket hashes and the autoscaler forecasts the
// sum. A leader lock lets one replica apply decisions; the others serve the leader's last report.
import { hashTagged, type RedisClient } from '../store/redis.js';
import type { Load } from './autoscaler.js';
import type { TrafficPoint, TrafficRecorder } from './traffic.js';

/** Where the autoscaler reads traffic from. */
export interface TrafficSource {
  series(): Promise<TrafficPoint[]>;
  current(): Promise<Load>;
}

export function localTrafficSource(recorder: TrafficRecorder): TrafficSource {
  return { series: async () => recorder.series(), current: async () => recorder.current() };
}

export interface RedisTrafficStoreOptions {
  redis: RedisClient;
  /** e.g. `inferenceflow:scaling:`; the buckets share its hash tag (one pipeline reads them all). */
  keyPrefix: string;
  /** The local recorder, created with trackPending, whose counts this store pushes. */
  recorder: TrafficRecorder;
  historyBuckets: number;
  /** This replica's name: its queue depth is kept per replica and summed. */
  replica: string;
  now?: () => number;
}

export class RedisTrafficStore implements TrafficSource {
  private readonly redis: RedisClient;
  private readonly prefix: string;
  private readonly recorder: TrafficRecorder;
  private readonly historyBuckets: number;
  private readonly replica: string;
  private readonly now: () => number;

  constructor(opts: RedisTrafficStoreOptions) {
    this.redis = opts.redis;
    this.prefix = hashTagged(opts.keyPrefix);
    this.recorder = opts.recorder;
    this.historyBuckets = opts.historyBuckets;
    this.replica = opts.replica;
    this.now = opts.now ?? Date.now;
  }

  /**
   * Pushes what this replica recorded since the last push (call every few seconds and before
   * reading). One MULTI (the bucket keys share a hash tag): when it does not run — Redis unreachable,
   * the transaction refused — the counts go back to the recorder for the next push, not lost.
   */
  async flush(): Promise<void> {
    const deltas = this.recorder.takePending();
    if (deltas.length === 0) return;
    const ttlS = Math.ceil(((this.historyBuckets + 2) * this.recorder.bucketMs) / 1000);
    const tx = this.redis.multi();
    for (const d of deltas) {
      const key = this.key(d.index);
      if (d.requests) tx.hincrbyfloat(key, 'requests', d.requests);
      if (d.tokens) tx.hincrbyfloat(key, 'tokens', d.tokens);
      tx.hset(key, `queue:${this.replica}`, d.queueDepth);
      tx.expire(key, ttlS);
    }
    let results: Awaited<ReturnType<typeof tx.exec>>;
    try {
      results = await tx.exec();
    } catch (err) {
      this.recorder.restorePending(deltas);
      throw err;
    }
    if (!results) {
      this.recorder.restorePending(deltas);
      throw new Error('pushing traffic counts: the transaction was aborted');
    }
    // A command that failed inside an executed transaction left the others applied: resending would count them twice.
    const failed = results.find(([err]) => err);
    if (failed) throw failed[0] as Error;
  }

  async series(): Promise<TrafficPoint[]> {
    await this.flush();
    const bucketMs = this.recorder.bucketMs;
    const open = Math.floor(this.now() / bucketMs);
    const first = open - this.historyBuckets;
    const tx = this.redis.pipeline();
    for (let i = first; i < open; i++) tx.hgetall(this.key(i));
    const rows = (await tx.exec()) ?? [];
    // Leading empty buckets are history the cluster never recorded, not idle time.
    let start = rows.findIndex(([, v]) => Object.keys((v as Record<string, string>) ?? {}).length > 0);
    if (start < 0) start = rows.length;
    return rows.slice(start).map(([, v], j) => this.point((first + start + j) * bucketMs, v as Record<string, string>, bucketMs / 1000));
  }

  async current(): Promise<Load> {
    await this.flush();
    const bucketMs = this.recorder.bucketMs;
    const open = Math.floor(this.now() / bucketMs);
    const elapsedS = Math.max(1, (this.now() - open * bucketMs) / 1000);
    const [cur, prev] = await Promise.all([this.redis.hgetall(this.key(open)), this.redis.hgetall(this.key(open - 1))]);
    // A very young bucket says little: use the last full one, as the local recorder does.
    if (elapsedS < 10 && Object.keys(prev).length > 0) {
      const p = this.point(0, prev, bucketMs / 1000);
      return { requestsPerS: p.requestsPerS, tokensPerS: p.tokensPerS, queueDepth: Math.max(p.queueDepth, this.point(0, cur, 1).queueDepth) };
    }
    const p = this.point(0, cur, elapsedS);
    return { requestsPerS: p.requestsPerS, tokensPerS: p.tokensPerS, queueDepth: p.queueDepth };
  }

  private point(start: number, h: Record<string, string>, seconds: number): TrafficPoint {
    let queueDepth = 0;
    for (const [k, v] of Object.entries(h)) if (k.startsWith('queue:')) queueDepth += Number(v);
    return { start, requestsPerS: Number(h.requests ?? 0) / seconds, tokensPerS: Number(h.tokens ?? 0) / seconds, queueDepth };
  }

  private key(index: number): string {
    return `${this.prefix}traffic:${index}`;
  }
}

// Take the lock if free, or renew it if we hold it; 1 when we hold it afterwards.
const LEADER = `
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`;

// Delete the lock only if we still hold it (a lock that lapsed may be another replica's by now).
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * One replica at a time applies scaling decisions; the lock lapses if the leader dies, and a leader
 * that stops releases it. Beside it the leader keeps its last report (`<key>:report`), which followers
 * serve and which carries the decision state the next leader takes over.
 */
export class RedisLeaderLock {
  constructor(
    private readonly redis: RedisClient,
    private readonly key: string,
    private readonly holder: string,
    private readonly ttlMs: number,
  ) {}

  async isLeader(): Promise<boolean> {
    return (await this.redis.eval(LEADER, 1, this.key, this.holder, this.ttlMs)) === 1;
  }

  /** Gives up the lock if this replica holds it; true when it did. */
  async release(): Promise<boolean> {
    return (await this.redis.eval(RELEASE, 1, this.key, this.holder)) === 1;
  }

  /** Stores the leader's report for `ttlMs`, and at least ten lock TTLs. */
  async publish(report: unknown, ttlMs = 0): Promise<void> {
    await this.redis.set(`${this.key}:report`, JSON.stringify(report), 'PX', Math.max(ttlMs, this.ttlMs * 10));
  }

  async lastReport<T>(): Promise<T | undefined> {
    const raw = await this.redis.get(`${this.key}:report`);
    return raw ? (JSON.parse(raw) as T) : undefined;
  }
}
