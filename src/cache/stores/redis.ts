// The shared cache store: entries live in Redis so every replica serves them and they survive a
// restart. Each entry is a hash (metadata, payload, vector) with a TTL; a sorted set orders keys by
// last use, another by expiry, and a byte counter enforces the memory budget (Lua keeps them consistent). Every write and
// delete is appended to a Redis stream that each replica follows to keep its vector index current.
// Every key shares one hash tag, so the scripts also run on Redis Cluster (docs/scaling.md).
import { randomBytes } from 'node:crypto';
import { Cluster } from 'ioredis';
import { compareEntryIds, createRedis, entryIdMs, hashTagged, masters, type RedisClient } from '../../store/redis.js';
import { entryBytes, vectorFromBuffer, type EntryMeta, type StoredEntry } from '../entry.js';
import { escapePart } from '../keys.js';
import { filterGlob, type CacheStore, type InvalidateFilter, type StatCounters, type StoreCounters, type StoreEvent } from './types.js';

export interface RedisStoreOptions {
  /** A client to share (not closed by the store), or a URL to open one. */
  client?: RedisClient;
  /** `redis://…`, or `redis+cluster://…` for a cluster. */
  url?: string;
  /** Prefix of every key, e.g. `inferenceflow:`; `cache:` is appended. */
  keyPrefix: string;
  maxBytes: number;
  /**
   * Longest entry TTL: a use-order record older than this belongs to an expired entry even when the
   * expiry set has no record of it (entries written before the expiry set existed).
   */
  maxTtlMs: number;
  /** Events kept in the stream (approximate trim). */
  streamMaxLen?: number;
  sweepIntervalMs?: number;
  /** Use-order records a sweep step looks at; a sweep takes steps until none is stale (default 1,000). */
  sweepBatch?: number;
  /** Reports a change event that could not be applied (listeners are then told to resync). */
  onError?: (err: unknown, what: string) => void;
  /** How far behind the stream the follower may fall and still give the event loop back between slices (default 500 ms). */
  followMaxLagMs?: number;
}

// Sets an entry (its expiry in the expiry set: the hash's PEXPIRE, which a read does not move), then,
// while the byte total is over budget, drops the records of entries already expired (by the writer's
// clock) and then evicts least recently used entries: an entry read just before it expired is last
// in the use order, and live entries would go before it.
// KEYS[1] (the use-order set) routes the script to the node owning the cache's hash tag on a
// cluster; the keys the script builds from ARGV[1] share that tag, so they live on the same node.
// Every key popped from the use-order set goes into a `del` event, so every replica's index drops
// it: those whose hash Redis still held as `evicted` (and counted as evictions), those Redis had
// already expired as `expired` (nothing else would report them: the sweep looks in the use-order
// set, which no longer has them). Returns { evicted, expired }.
const SET_SCRIPT = `
local p = ARGV[1]
local k = ARGV[2]
local ek = p .. 'e:' .. k
local old = redis.call('HGET', p .. 'sizes', k)
if old then redis.call('DECRBY', p .. 'bytes', old) end
redis.call('DEL', ek)
if ARGV[5] ~= '' then
  redis.call('HSET', ek, 'm', ARGV[3], 'd', ARGV[4], 'v', ARGV[5])
else
  redis.call('HSET', ek, 'm', ARGV[3], 'd', ARGV[4])
end
redis.call('PEXPIRE', ek, ARGV[6])
redis.call('HSET', p .. 'sizes', k, ARGV[7])
local total = redis.call('INCRBY', p .. 'bytes', ARGV[7])
redis.call('ZADD', p .. 'lru', ARGV[8], k)
redis.call('ZADD', p .. 'exp', tonumber(ARGV[8]) + tonumber(ARGV[6]), k)
redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[10], '*', 'op', 'add', 'o', ARGV[11], 'm', ARGV[3], 'v', ARGV[5])
local max = tonumber(ARGV[9])
local evicted = {}
local expired = {}
while total > max do
  local victim
  local due = redis.call('ZRANGEBYSCORE', p .. 'exp', '-inf', ARGV[8], 'LIMIT', 0, 1)
  if #due > 0 then
    victim = due[1]
    redis.call('ZREM', p .. 'lru', victim)
  else
    local popped = redis.call('ZPOPMIN', p .. 'lru', 1)
    if #popped == 0 then break end
    victim = popped[1]
  end
  redis.call('ZREM', p .. 'exp', victim)
  local sz = tonumber(redis.call('HGET', p .. 'sizes', victim) or '0')
  redis.call('HDEL', p .. 'sizes', victim)
  total = redis.call('DECRBY', p .. 'bytes', sz)
  if redis.call('DEL', p .. 'e:' .. victim) == 1 then table.insert(evicted, victim) else table.insert(expired, victim) end
end
if #evicted > 0 then
  redis.call('INCRBY', p .. 'evictions', #evicted)
  redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[10], '*', 'op', 'del', 'o', ARGV[11], 'r', 'evicted', 'k', table.concat(evicted, '\\n'))
end
if #expired > 0 then
  redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[10], '*', 'op', 'del', 'o', ARGV[11], 'r', 'expired', 'k', table.concat(expired, '\\n'))
end
return { evicted, expired }
`;

// Deletes the given keys (ARGV[4..]) with their bookkeeping; ARGV[3] names the reason.
const DELETE_SCRIPT = `
local p = ARGV[1]
local gone = {}
for i = 4, #ARGV do
  local k = ARGV[i]
  local sz = redis.call('HGET', p .. 'sizes', k)
  if sz then
    redis.call('HDEL', p .. 'sizes', k)
    redis.call('DECRBY', p .. 'bytes', sz)
  end
  redis.call('ZREM', p .. 'lru', k)
  redis.call('ZREM', p .. 'exp', k)
  if redis.call('DEL', p .. 'e:' .. k) == 1 or sz then table.insert(gone, k) end
end
if #gone > 0 then
  redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[2], '*', 'op', 'del', 'o', '', 'r', ARGV[3], 'k', table.concat(gone, '\\n'))
end
return #gone
`;

/** How often a replica writes the cache statistics it summed, ms. */
const STATS_FLUSH_MS = 1_000;
/** How long closing waits for that last write, ms. */
const STATS_CLOSE_WAIT_MS = 1_000;

/** Longest stretch the change-stream follower applies events without yielding to requests, ms. */
const FOLLOW_SLICE_MS = 2;
/** Further behind the stream than this, the follower stops yielding until it has caught up, ms. */
const FOLLOW_MAX_LAG_MS = 500;

/** The store's scripts, defined on its client (one key: the LRU set; the rest are arguments). */
interface CacheScripts {
  ifCacheSet(lru: string, ...args: (string | number | Buffer)[]): Promise<unknown>;
  ifCacheDelete(lru: string, ...args: (string | number)[]): Promise<unknown>;
}

export class RedisCacheStore implements CacheStore {
  readonly kind = 'redis' as const;
  private readonly redis: RedisClient;
  private readonly owned: boolean;
  private readonly p: string;
  private readonly origin = randomBytes(8).toString('hex');
  private readonly listeners = new Set<(e: StoreEvent) => void>();
  private follower: RedisClient | undefined;
  private following = false;
  private lastId = '$';
  private sweeper: NodeJS.Timeout | undefined;
  private readonly streamMaxLen: number;
  private pendingStats = new Map<string, number>();
  private statsTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;
  private closed = false;

  constructor(private readonly opts: RedisStoreOptions) {
    if (opts.client) {
      this.redis = opts.client;
      this.owned = false;
    } else {
      if (!opts.url) throw new Error('RedisCacheStore needs a client or a url');
      this.redis = createRedis(opts.url, 'cache');
      this.owned = true;
    }
    this.p = hashTagged(`${opts.keyPrefix}cache:`);
    this.streamMaxLen = opts.streamMaxLen ?? 10_000;
    // EVALSHA, loading the script on NOSCRIPT: EVAL would send the 1.3 KB script with every store.
    if (!('ifCacheSet' in this.redis)) {
      this.redis.defineCommand('ifCacheSet', { numberOfKeys: 1, lua: SET_SCRIPT });
      this.redis.defineCommand('ifCacheDelete', { numberOfKeys: 1, lua: DELETE_SCRIPT });
    }
  }

  private get scripts(): CacheScripts {
    return this.redis as unknown as CacheScripts;
  }

  /** Starts following the event stream from now; call before scanning so no write falls between. */
  async start(): Promise<void> {
    if (this.following) return;
    const last = (await this.redis.xrevrange(`${this.p}events`, '+', '-', 'COUNT', 1)) as [string, string[]][];
    this.lastId = last[0]?.[0] ?? '0-0';
    this.follower = this.redis.duplicate();
    this.following = true;
    void this.follow();
    this.sweeper = setInterval(() => void this.sweep().catch(() => undefined), this.opts.sweepIntervalMs ?? 30_000);
    this.sweeper.unref();
  }

  async get(key: string): Promise<StoredEntry | undefined> {
    const ek = `${this.p}e:${key}`;
    // Plain commands, not a pipeline: an ioredis Pipeline object (a per-instance accessor, a copy of
    // every defined script) outlived the young generation, most of the cache's share of old-space
    // garbage in a soak (bench/RESULTS.md). The use-order touch is best effort and only for a hit
    // (most lookups miss, and a miss has nothing to touch).
    const [m, d, v] = await this.redis.hmgetBuffer(ek, 'm', 'd', 'v');
    if (!m || !d) return undefined;
    this.redis.zadd(`${this.p}lru`, 'XX', Date.now(), key).catch(() => undefined);
    const entry: StoredEntry = { meta: JSON.parse(m.toString('utf8')) as EntryMeta, payload: d };
    if (v && v.length) entry.vector = vectorFromBuffer(v);
    return entry;
  }

  async set(entry: StoredEntry, ttlMs: number): Promise<void> {
    const meta = JSON.stringify(entry.meta);
    const vec = entry.vector ? Buffer.from(entry.vector.buffer, entry.vector.byteOffset, entry.vector.byteLength) : '';
    // The same count as the memory store: every replica keeps the vector in its own index, so the
    // shared budget has to bound what each replica spends on an entry, not only what Redis holds.
    const bytes = entryBytes(entry, meta.length);
    if (bytes > this.opts.maxBytes) return;
    const [evicted = [], expired = []] = (await this.scripts.ifCacheSet(
      `${this.p}lru`,
      this.p,
      entry.meta.key,
      meta,
      entry.payload,
      vec,
      Math.max(1, Math.round(ttlMs)),
      bytes,
      Date.now(),
      this.opts.maxBytes,
      this.streamMaxLen,
      this.origin,
    )) as [string[]?, string[]?];
    this.emit(entry.vector ? { op: 'add', meta: entry.meta, vector: entry.vector } : { op: 'add', meta: entry.meta });
    if (evicted.length) this.emit({ op: 'delete', keys: evicted, reason: 'evicted' });
    if (expired.length) this.emit({ op: 'delete', keys: expired, reason: 'expired' });
  }

  async delete(keys: string[], reason: 'invalidated' | 'expired' = 'invalidated'): Promise<number> {
    if (keys.length === 0) return 0;
    let n = 0;
    for (let i = 0; i < keys.length; i += 500) {
      n += (await this.scripts.ifCacheDelete(`${this.p}lru`, this.p, this.streamMaxLen, reason, ...keys.slice(i, i + 500))) as number;
    }
    // Local listeners learn through the stream like everyone else; tell them now too.
    this.emit({ op: 'delete', keys, reason });
    return n;
  }

  async invalidate(filter: InvalidateFilter): Promise<number> {
    const glob = filterGlob(filter, escapePart);
    let n = 0;
    for await (const batch of this.scanKeys(glob)) n += await this.delete(batch);
    return n;
  }

  async *scanVectors(): AsyncIterable<{ meta: EntryMeta; vector: Float32Array }> {
    for await (const batch of this.scanKeys('*')) {
      const pipe = this.redis.pipeline();
      for (const k of batch) pipe.hmgetBuffer(`${this.p}e:${k}`, 'm', 'v');
      const res = (await pipe.exec()) as [Error | null, (Buffer | null)[]][];
      for (const [err, fields] of res) {
        const [m, v] = err ? [] : fields;
        if (m && v && v.length) yield { meta: JSON.parse(m.toString('utf8')) as EntryMeta, vector: vectorFromBuffer(v) };
      }
    }
  }

  subscribe(listener: (e: StoreEvent) => void): void {
    this.listeners.add(listener);
  }

  async counters(): Promise<StoreCounters> {
    const res = await this.redis.pipeline().zcard(`${this.p}lru`).get(`${this.p}bytes`).get(`${this.p}evictions`).exec();
    const [entries, bytes, evictions] = (res ?? []).map(([, v]) => v);
    return { entries: Number(entries ?? 0), bytes: Number(bytes ?? 0), evictions: Number(evictions ?? 0) };
  }

  /**
   * Adds to the shared statistics. Increments are summed here and written once per
   * STATS_FLUSH_MS (and before this replica reads them, and at close): a round trip per request
   * cost Redis a command and this process a pipeline per request for numbers nobody reads that often.
   */
  incrementStats(delta: StatCounters): void {
    for (const k in delta) this.pendingStats.set(k, (this.pendingStats.get(k) ?? 0) + (delta[k] as number));
    if (!this.statsTimer) {
      this.statsTimer = setTimeout(() => void this.flushStats(), STATS_FLUSH_MS);
      this.statsTimer.unref();
    }
  }

  /** Writes the summed increments; statistics are best effort, so a failed write is dropped. */
  private async flushStats(): Promise<void> {
    clearTimeout(this.statsTimer);
    this.statsTimer = undefined;
    if (this.pendingStats.size === 0) return;
    const pending = this.pendingStats;
    this.pendingStats = new Map();
    // HINCRBYFLOAT for every field: a sum of fractions can come out whole, and HINCRBY on a field
    // that holds a fraction is an error; Redis prints whole results without a decimal point.
    await Promise.all([...pending].map(([k, v]) => this.redis.hincrbyfloat(`${this.p}stats`, k, v))).catch(() => undefined);
  }

  async readStats(): Promise<StatCounters> {
    await this.flushStats();
    const raw = await this.redis.hgetall(`${this.p}stats`);
    return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, Number(v)]));
  }

  async clearStats(): Promise<void> {
    this.pendingStats.clear();
    await this.redis.del(`${this.p}stats`, `${this.p}evictions`);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.following = false;
    if (this.sweeper) clearInterval(this.sweeper);
    // The last second of statistics, but shutdown never waits long on a Redis that is gone.
    await Promise.race([this.flushStats(), new Promise((r) => setTimeout(r, STATS_CLOSE_WAIT_MS).unref())]);
    this.follower?.disconnect();
    this.follower = undefined;
    if (this.owned) await this.redis.quit().catch(() => undefined);
  }

  /**
   * Drops the records of entries Redis has already expired (they still count bytes and take a place
   * in the use order) and tells every index. The expiry set says which: its score is when the entry's
   * PEXPIRE runs out, which a read does not move (the use order's score, which a read does move, kept
   * an entry read just before it expired counting for up to twice its TTL). Then, for records the
   * expiry set lacks (written before it existed), the use order's records older than `maxTtlMs`.
   * Works in steps of `sweepBatch` records (one range read, one pipeline of EXISTS, one delete script
   * per 500), yielding between steps so neither Redis nor this process is held, and goes on until no
   * stale record is left. Records in the range whose entry still exists (a replica's clock ahead of
   * Redis's; a TTL longer than `maxTtlMs`) are stepped over, not read again. One sweep at a time.
   */
  sweep(): Promise<number> {
    this.sweeping ??= this.sweepAll().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweepAll(): Promise<number> {
    const now = Date.now();
    const removed = await this.sweepRange(`${this.p}exp`, now);
    return removed + (this.closed ? 0 : await this.sweepRange(`${this.p}lru`, now - this.opts.maxTtlMs));
  }

  /** Sweeps the records of `set` scored at most `cutoff` whose entries are gone. */
  private async sweepRange(set: string, cutoff: number): Promise<number> {
    const batch = this.opts.sweepBatch ?? 1_000;
    let removed = 0;
    let kept = 0;
    for (;;) {
      const stale = await this.redis.zrangebyscore(set, '-inf', cutoff, 'LIMIT', kept, batch);
      if (stale.length === 0) break;
      const pipe = this.redis.pipeline();
      for (const k of stale) pipe.exists(`${this.p}e:${k}`);
      const exists = (await pipe.exec()) as [Error | null, number][];
      const gone = stale.filter((_, i) => exists[i]?.[1] === 0);
      kept += stale.length - gone.length;
      if (gone.length) removed += await this.delete(gone, 'expired');
      if (stale.length < batch || this.closed) break;
      await new Promise<void>((r) => setImmediate(r));
    }
    return removed;
  }

  private async *scanKeys(glob: string): AsyncIterable<string[]> {
    const prefix = `${this.p}e:`;
    // SCAN sees one node: on a cluster, walk every master (the tag keeps the entries on one of them).
    if (this.redis instanceof Cluster) await this.redis.ping(); // its masters are known once it is connected
    for (const node of masters(this.redis)) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}${glob}`, 'COUNT', 500);
        cursor = next;
        if (keys.length) yield keys.map((k) => k.slice(prefix.length));
      } while (cursor !== '0');
    }
  }

  // Follows the event stream with a blocking read on a dedicated connection; other replicas' adds
  // and every delete reach the listeners, usually within milliseconds of the write.
  private async follow(): Promise<void> {
    while (this.following && this.follower) {
      let res: [Buffer, [Buffer, Buffer[]][]][] | null;
      try {
        // The oldest entry still in the stream, read just before the blocking read: if it is newer
        // than the last one applied, the trim overtook this replica and the events in between are
        // gone (its index may hold deleted entries or miss new ones): listeners reconcile.
        // Both on the follower's own connection, so Redis runs them in this order.
        const [first, read] = await Promise.all([
          this.follower.xrange(`${this.p}events`, '-', '+', 'COUNT', 1),
          this.follower.xreadBuffer('COUNT', 500, 'BLOCK', 1000, 'STREAMS', `${this.p}events`, this.lastId),
        ]);
        const firstId = first[0]?.[0];
        if (firstId !== undefined && compareEntryIds(this.lastId, firstId) < 0) this.emit({ op: 'resync' });
        res = read as [Buffer, [Buffer, Buffer[]][]][] | null;
      } catch {
        if (!this.following) return;
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      let sliceStart = performance.now();
      for (const [, entries] of res ?? []) {
        for (const [id, fields] of entries) {
          this.lastId = id.toString();
          try {
            this.handleEvent(fields);
          } catch (err) {
            // One bad event (another version's, damaged) must not end the follower, whose loop
            // nothing awaits: what it carried is lost, so listeners reconcile with the store.
            this.opts.onError?.(err, 'cache change event');
            this.emit({ op: 'resync' });
          }
          // Another replica's add costs this one an index insert (0.1-0.2 ms), and a read returns
          // everything that piled up since the last: applied in one go, a backlog of hundreds held
          // the event loop for ~100 ms in a soak. Requests get the loop back every FOLLOW_SLICE_MS,
          // unless this replica is more than FOLLOW_MAX_LAG_MS behind the stream: yielding to a
          // saturated loop then starved the follower until the stream's trim overtook it.
          if (performance.now() - sliceStart >= FOLLOW_SLICE_MS && Date.now() - (entryIdMs(this.lastId) ?? 0) < (this.opts.followMaxLagMs ?? FOLLOW_MAX_LAG_MS)) {
            await new Promise<void>((r) => setImmediate(r));
            if (!this.following) return;
            sliceStart = performance.now();
          }
        }
      }
    }
  }

  private handleEvent(fields: Buffer[]): void {
    const f = new Map<string, Buffer>();
    for (let i = 0; i + 1 < fields.length; i += 2) f.set((fields[i] as Buffer).toString(), fields[i + 1] as Buffer);
    const op = f.get('op')?.toString();
    const origin = f.get('o')?.toString();
    if (op === 'add') {
      if (origin === this.origin) return;
      const m = f.get('m');
      if (!m) return;
      const meta = JSON.parse(m.toString('utf8')) as EntryMeta;
      const v = f.get('v');
      this.emit(v && v.length ? { op: 'add', meta, vector: vectorFromBuffer(v) } : { op: 'add', meta });
    } else if (op === 'del') {
      if (origin === this.origin) return;
      const keys = (f.get('k')?.toString() ?? '').split('\n').filter(Boolean);
      const reason = f.get('r')?.toString();
      if (keys.length) this.emit({ op: 'delete', keys, reason: reason === 'evicted' ? 'evicted' : reason === 'expired' ? 'expired' : 'invalidated' });
    }
  }

  private emit(e: StoreEvent): void {
    for (const l of this.listeners) l(e);
  }
}
