// Sliding-window and concurrency limits, checked all-or-nothing in one step. A window is split into
// ~60 buckets (1 s each for a minute), so "the last N seconds" slides with bucket precision and a
// reservation can later be corrected: refunded in the bucket it landed in, an overage counted in the
// current one. Two stores share the semantics: RedisLimiterStore (one Lua script per check, so any number of replicas enforce ONE limit) and
// MemoryLimiterStore (one process). FailoverLimiterStore falls back to memory or fails closed.
import { hashTagged, type RedisClient } from '../store/redis.js';
import type { Logger } from 'pino';
import { GatewayError } from '../server/errors.js';

export type LimitRule =
  | { kind: 'window'; key: string; limit: number; windowMs: number; cost: number }
  | { kind: 'concurrency'; key: string; limit: number; leaseMs: number };

export interface RuleState {
  limit: number;
  remaining: number;
  /** ms until the window has room again (oldest counted bucket leaves it). */
  resetMs: number;
}

export interface AcquireResult {
  admitted: boolean;
  /**
   * When refused: ms until every refusing rule could admit the request (a concurrency rule: a short
   * CONCURRENCY_RETRY_MS, as its slots free when requests end); -1 if it never can.
   */
  retryAfterMs: number;
  /** The store's clock at the check, ms; pass it back to `adjust`. */
  at: number;
  states: RuleState[];
  /**
   * The store that checked the rules and holds what was taken: the reservation is corrected and its
   * leases ended there, whichever store would answer by then (a fail-open limiter may have admitted
   * on its local store during a Redis outage that is over when the request settles, or the reverse).
   */
  store: ReservationStore;
}

export interface LimiterStore {
  acquire(rules: readonly LimitRule[], leaseId: string): Promise<AcquireResult>;
  close?(): void;
}

/** Where a reservation lives (AcquireResult.store). */
export interface ReservationStore {
  /**
   * Corrects a reservation taken at `at` by `delta`. A refund (negative) comes off the bucket the
   * reservation landed in, where it was counted (nothing, once that bucket has left the window). An
   * overage (positive) goes in the current bucket, on the store's clock: those tokens were used up
   * to now, and a stream that outlasted the window would otherwise add them to a bucket already gone.
   */
  adjust(key: string, windowMs: number, at: number, delta: number): Promise<void>;
  /** Ends a concurrency lease. */
  release(key: string, leaseId: string): Promise<void>;
}

const BUCKETS = 60;

/**
 * Retry-After for a concurrency refusal. A slot frees when one of the caller's requests in flight
 * ends, which nothing here can foresee; the oldest lease's expiry (`concurrency_lease_s`, 10 minutes
 * by default) is only a crash backstop and would tell a client to wait that long for nothing.
 */
export const CONCURRENCY_RETRY_MS = 1000;

export function bucketMs(windowMs: number): number {
  return Math.max(10, Math.ceil(windowMs / BUCKETS));
}

// KEYS: one per rule. ARGV: leaseId, then 4 per rule: kind (w|c), limit, windowMs|leaseMs, cost.
// Returns {admitted, retryAfterMs, now, remaining1, reset1, remaining2, reset2, …}.
const ACQUIRE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = ARGV[1]
local admitted = 1
local retry = 0
local used = {}
local resets = {}
for i = 1, #KEYS do
  local b0 = 1 + (i - 1) * 4
  local kind = ARGV[b0 + 1]
  local limit = tonumber(ARGV[b0 + 2])
  local win = tonumber(ARGV[b0 + 3])
  local cost = tonumber(ARGV[b0 + 4])
  if kind == 'w' then
    local bms = math.max(10, math.ceil(win / ${BUCKETS}))
    local nb = math.ceil(win / bms)
    local cur = math.floor(now / bms)
    local oldest = cur - nb + 1
    local h = redis.call('HGETALL', KEYS[i])
    local sum = 0
    local first = nil
    for j = 1, #h, 2 do
      local b = tonumber(h[j])
      local c = tonumber(h[j + 1])
      if b < oldest then redis.call('HDEL', KEYS[i], h[j])
      else
        sum = sum + c
        if c > 0 and (first == nil or b < first) then first = b end
      end
    end
    used[i] = sum
    resets[i] = win
    if first ~= nil then resets[i] = (first + nb) * bms - now end
    if sum + cost > limit then
      admitted = 0
      local r = -1
      -- Only a refusal needs the live buckets in order (when enough of them will have left the window).
      local list = {}
      for j = 1, #h, 2 do
        local b = tonumber(h[j])
        local c = tonumber(h[j + 1])
        if b >= oldest and c > 0 then table.insert(list, {b, c}) end
      end
      table.sort(list, function(x, y) return x[1] < y[1] end)
      if cost <= limit then
        local freed = 0
        for _, e in ipairs(list) do
          freed = freed + e[2]
          if sum - freed + cost <= limit then r = (e[1] + nb) * bms - now break end
        end
      end
      if r < 0 then retry = -1 elseif retry >= 0 and r > retry then retry = r end
    end
  else
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    local n = redis.call('ZCARD', KEYS[i])
    used[i] = n
    resets[i] = 0
    if n + 1 > limit then
      admitted = 0
      if retry >= 0 and ${CONCURRENCY_RETRY_MS} > retry then retry = ${CONCURRENCY_RETRY_MS} end
    end
  end
end
local out = {admitted, retry, now}
for i = 1, #KEYS do
  local b0 = 1 + (i - 1) * 4
  local kind = ARGV[b0 + 1]
  local limit = tonumber(ARGV[b0 + 2])
  local win = tonumber(ARGV[b0 + 3])
  local cost = tonumber(ARGV[b0 + 4])
  local taken = used[i]
  if admitted == 1 then
    if kind == 'w' then
      local bms = math.max(10, math.ceil(win / ${BUCKETS}))
      if cost ~= 0 then redis.call('HINCRBY', KEYS[i], math.floor(now / bms), cost) end
      redis.call('PEXPIRE', KEYS[i], win + bms)
      taken = taken + cost
    else
      redis.call('ZADD', KEYS[i], now + win, lease)
      redis.call('PEXPIRE', KEYS[i], win)
      taken = taken + 1
    end
  end
  table.insert(out, math.max(0, limit - taken))
  table.insert(out, resets[i])
end
return out
`;

// KEYS: the rule's key. ARGV: the reservation's bucket, delta, windowMs. A refund comes off the
// reservation's bucket, if the key still exists (never recreated without an expiry); an overage goes
// in the current bucket, recreating the key if the window emptied meanwhile, with an expiry as
// acquire sets it (from now, so never shorter than the one it had).
const ADJUST_LUA = `
local delta = tonumber(ARGV[2])
if delta > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local win = tonumber(ARGV[3])
  local bms = math.max(10, math.ceil(win / ${BUCKETS}))
  redis.call('HINCRBY', KEYS[1], math.floor(now / bms), delta)
  redis.call('PEXPIRE', KEYS[1], win + bms)
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], delta)
end
return 1
`;

type LimiterRedis = RedisClient & {
  ifAcquire(...args: (string | number)[]): Promise<number[]>;
  ifAdjust(key: string, bucket: number, delta: number, windowMs: number): Promise<number>;
};

export class RedisLimiterStore implements LimiterStore, ReservationStore {
  private readonly redis: LimiterRedis;
  /**
   * Every limiter key shares one hash tag (`{<prefix>limits:}rl:…`): the rules of one request span
   * identities (a tenant's own rule next to a per-model or per-IP rule), and one script checks them
   * all, so on Redis Cluster they must live in one slot. That puts the limiter on one master.
   */
  private readonly prefix: string;

  constructor(redis: RedisClient, prefix: string) {
    this.prefix = hashTagged(`${prefix}limits:`);
    if (!('ifAcquire' in redis)) {
      redis.defineCommand('ifAcquire', { lua: ACQUIRE_LUA });
      redis.defineCommand('ifAdjust', { numberOfKeys: 1, lua: ADJUST_LUA });
    }
    this.redis = redis as LimiterRedis;
  }

  async acquire(rules: readonly LimitRule[], leaseId: string): Promise<AcquireResult> {
    const keys = rules.map((r) => this.prefix + r.key);
    const args: (string | number)[] = [leaseId];
    for (const r of rules) {
      if (r.kind === 'window') args.push('w', r.limit, r.windowMs, r.cost);
      else args.push('c', r.limit, r.leaseMs, 1);
    }
    const out = await this.redis.ifAcquire(keys.length, ...keys, ...args);
    const states: RuleState[] = rules.map((r, i) => ({ limit: r.limit, remaining: Number(out[3 + i * 2]), resetMs: Number(out[4 + i * 2]) }));
    return { admitted: out[0] === 1, retryAfterMs: Number(out[1]), at: Number(out[2]), states, store: this };
  }

  async adjust(key: string, windowMs: number, at: number, delta: number): Promise<void> {
    if (delta === 0) return;
    await this.redis.ifAdjust(this.prefix + key, Math.floor(at / bucketMs(windowMs)), Math.round(delta), windowMs);
  }

  async release(key: string, leaseId: string): Promise<void> {
    await this.redis.zrem(this.prefix + key, leaseId);
  }
}

interface WindowEntry {
  buckets: Map<number, number>;
  expiresAt: number;
}

/** The same semantics in one process (JavaScript runs each check to completion, so it is atomic). */
export class MemoryLimiterStore implements LimiterStore, ReservationStore {
  private readonly windows = new Map<string, WindowEntry>();
  private readonly leases = new Map<string, Map<string, number>>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly clock: () => number = Date.now) {
    // Forget idle keys (one per IP or session can pile up).
    this.sweeper = setInterval(() => this.sweep(), 30_000);
    this.sweeper.unref();
  }

  async acquire(rules: readonly LimitRule[], leaseId: string): Promise<AcquireResult> {
    return this.acquireSync(rules, leaseId);
  }

  acquireSync(rules: readonly LimitRule[], leaseId: string): AcquireResult {
    const now = this.clock();
    let admitted = true;
    let retry = 0;
    const used: number[] = [];
    const resets: number[] = [];
    for (const r of rules) {
      if (r.kind === 'window') {
        const bms = bucketMs(r.windowMs);
        const nb = Math.ceil(r.windowMs / bms);
        const oldest = Math.floor(now / bms) - nb + 1;
        const entry = this.windows.get(r.key);
        let sum = 0;
        const list: [number, number][] = [];
        if (entry) {
          for (const [b, c] of entry.buckets) {
            if (b < oldest) entry.buckets.delete(b);
            else {
              sum += c;
              if (c > 0) list.push([b, c]);
            }
          }
        }
        list.sort((a, b) => a[0] - b[0]);
        used.push(sum);
        resets.push(list.length ? ((list[0] as [number, number])[0] + nb) * bms - now : r.windowMs);
        if (sum + r.cost > r.limit) {
          admitted = false;
          let wait = -1;
          if (r.cost <= r.limit) {
            let freed = 0;
            for (const [b, c] of list) {
              freed += c;
              if (sum - freed + r.cost <= r.limit) {
                wait = (b + nb) * bms - now;
                break;
              }
            }
          }
          retry = wait < 0 || retry < 0 ? -1 : Math.max(retry, wait);
        }
      } else {
        const held = this.leases.get(r.key);
        if (held) for (const [id, exp] of held) if (exp <= now) held.delete(id);
        const n = held?.size ?? 0;
        used.push(n);
        resets.push(0);
        if (n + 1 > r.limit) {
          admitted = false;
          if (retry >= 0) retry = Math.max(retry, CONCURRENCY_RETRY_MS);
        }
      }
    }
    const states: RuleState[] = rules.map((r, i) => {
      let taken = used[i] as number;
      if (admitted) {
        if (r.kind === 'window') {
          const bms = bucketMs(r.windowMs);
          let entry = this.windows.get(r.key);
          if (!entry) this.windows.set(r.key, (entry = { buckets: new Map(), expiresAt: 0 }));
          const b = Math.floor(now / bms);
          if (r.cost !== 0) entry.buckets.set(b, (entry.buckets.get(b) ?? 0) + r.cost);
          entry.expiresAt = now + r.windowMs + bms;
          taken += r.cost;
        } else {
          let held = this.leases.get(r.key);
          if (!held) this.leases.set(r.key, (held = new Map()));
          held.set(leaseId, now + r.leaseMs);
          taken += 1;
        }
      }
      return { limit: r.limit, remaining: Math.max(0, r.limit - taken), resetMs: resets[i] as number };
    });
    return { admitted, retryAfterMs: retry, at: now, states, store: this };
  }

  async adjust(key: string, windowMs: number, at: number, delta: number): Promise<void> {
    const d = Math.round(delta);
    if (d === 0) return;
    const bms = bucketMs(windowMs);
    let entry = this.windows.get(key);
    if (d < 0) {
      if (!entry) return;
      const b = Math.floor(at / bms);
      entry.buckets.set(b, (entry.buckets.get(b) ?? 0) + d);
      return;
    }
    // An overage: in the current bucket, the window recreated if it emptied meanwhile.
    const now = this.clock();
    if (!entry) this.windows.set(key, (entry = { buckets: new Map(), expiresAt: 0 }));
    const b = Math.floor(now / bms);
    entry.buckets.set(b, (entry.buckets.get(b) ?? 0) + d);
    entry.expiresAt = Math.max(entry.expiresAt, now + windowMs + bms);
  }

  async release(key: string, leaseId: string): Promise<void> {
    const held = this.leases.get(key);
    held?.delete(leaseId);
    if (held && held.size === 0) this.leases.delete(key);
  }

  private sweep(): void {
    const now = this.clock();
    for (const [k, e] of this.windows) if (e.expiresAt <= now) this.windows.delete(k);
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}

export type RedisFailurePolicy = 'open' | 'closed';

/**
 * How a shared-state user meets a failing Redis (rate_limiting.on_redis_failure): 'open' goes on
 * without it, 'closed' throws 503 limiter_unavailable. Logged at most once every 30 s, so an outage
 * does not flood the log.
 */
export class RedisFailurePolicyHandler {
  private lastWarned = 0;

  constructor(
    readonly policy: RedisFailurePolicy,
    readonly log: Logger | undefined,
    private readonly messages: { open: string; closed: string; refusal?: string },
  ) {}

  /** Returns when failing open; throws when failing closed. */
  failed(err: unknown): void {
    const now = Date.now();
    if (now - this.lastWarned > 30_000) {
      this.lastWarned = now;
      this.log?.error({ err: (err as Error).message, policy: this.policy }, this.policy === 'open' ? this.messages.open : this.messages.closed);
    }
    if (this.policy === 'closed') throw new GatewayError('limiter_unavailable', { ...(this.messages.refusal ? { message: this.messages.refusal } : {}), retryAfterMs: 1000, cause: err });
  }
}

/**
 * Redis first; when Redis fails, either the local limiter takes over ('open': each replica then
 * enforces the limit on its own) or the request is refused with 503 ('closed'). Logged, at most
 * once every 30 s, so an outage does not flood the log. A reservation is settled in the store that
 * took it (AcquireResult.store), not in whichever answers at settlement.
 */
export class FailoverLimiterStore implements LimiterStore {
  private readonly failure: RedisFailurePolicyHandler;

  constructor(
    private readonly primary: LimiterStore,
    private readonly local: MemoryLimiterStore,
    policy: RedisFailurePolicy,
    log: Logger,
  ) {
    this.failure = new RedisFailurePolicyHandler(policy, log, {
      open: 'rate limiter: Redis failed; using the local in-memory limiter (fail open)',
      closed: 'rate limiter: Redis failed; refusing requests (fail closed)',
    });
  }

  async acquire(rules: readonly LimitRule[], leaseId: string): Promise<AcquireResult> {
    try {
      return await this.primary.acquire(rules, leaseId);
    } catch (err) {
      this.endLeases(rules, leaseId);
      this.failure.failed(err);
      return this.local.acquire(rules, leaseId);
    }
  }

  /**
   * A check that failed on the client's side (a command timeout) may still have run on Redis and
   * taken a concurrency slot that nothing would ever end: it would hold the slot for the lease's
   * whole life (concurrency_lease_s, 10 minutes by default), refusing a caller with nothing in
   * flight. Its leases are ended, without waiting: sent after the check on the same connection, the
   * removal runs after it if it ran at all, and removes nothing if it did not.
   */
  private endLeases(rules: readonly LimitRule[], leaseId: string): void {
    const primary = this.primary as Partial<ReservationStore>;
    if (!primary.release) return;
    for (const r of rules) if (r.kind === 'concurrency') primary.release(r.key, leaseId).catch(() => undefined);
  }

  close(): void {
    this.local.close();
  }
}
