// Spend budgets per API key, user and team, per day or month. Money is counted in integer micro-USD:
// the estimated cost is reserved atomically (all budgets or none) before the call and corrected to
// the actual cost after, so concurrent requests cannot overshoot a budget. With Redis the counters
// are shared by every replica; a counter that does not exist (a new period, or Redis lost it: a restart
// without persistence, a failover, an eviction) is seeded from the ledger before anything is reserved.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { hashTagged, type RedisClient } from '../store/redis.js';
import type { Logger } from 'pino';
import type { BudgetConfig, BudgetsConfig } from '../config/schema.js';
import type { Tenant } from '../gateway/context.js';
import { GatewayError } from '../server/errors.js';
import { RedisFailurePolicyHandler, type RedisFailurePolicy } from './sliding-window.js';

export type BudgetScope = 'key' | 'user' | 'team';
export type BudgetPeriod = 'day' | 'month';

export interface BudgetLine {
  scope: BudgetScope;
  id: string;
  period: BudgetPeriod;
  periodStart: Date;
  /** Store key, unique per scope, id and period. */
  key: string;
  limitMicros: number;
  ttlMs: number;
}

export interface ReserveResult {
  ok: boolean;
  /** The counters after the reservation (or as found, when refused). */
  values: number[];
  /** With `onlyExisting`: indexes of the lines whose counter does not exist; nothing was reserved. */
  missing?: number[];
  /**
   * Names a reservation taken in a store that records it (Redis): passed back to `adjust` when it is
   * settled, which removes the record.
   */
  id?: string;
  /**
   * The store that answered, when this one stands for others (FailoverBudgetStore): the reservation
   * is seeded and settled there, so a reservation taken locally while Redis failed is never settled
   * on Redis, which never held it.
   */
  store?: BudgetStore;
}

export interface BudgetStore {
  /**
   * Adds `cost` to every line if all stay within their limit. A counter that does not exist starts
   * at 0, unless `onlyExisting`: then nothing is reserved and the missing lines are named, so the
   * caller can seed them from the ledger first.
   */
  reserve(lines: readonly BudgetLine[], costMicros: number, onlyExisting?: boolean): Promise<ReserveResult>;
  /**
   * Adds `deltaMicros` to the counters that exist and returns them (0 for a missing one). A counter
   * that does not exist is left missing: recreated from this delta alone it would forget the spend
   * before it (and have no expiry); the next reservation seeds it from the ledger instead. Settling a
   * reservation, `reservationId` is its `ReserveResult.id`: a store that records reservations applies
   * the delta only while its record exists, and drops the record, so a settle sent again changes
   * nothing (and returns the counters as they are).
   */
  adjust(lines: readonly BudgetLine[], deltaMicros: number, reservationId?: string): Promise<number[]>;
  /** Sets a counter only if it does not exist (seeding from the ledger); true when this call set it. */
  seed(key: string, valueMicros: number, ttlMs: number): Promise<boolean>;
  /** True the first time a marker is set (threshold alerts fire once across replicas). */
  markOnce(key: string, ttlMs: number): Promise<boolean>;
  /** Removes a marker (an alert that could not be delivered is sent again at the next crossing). */
  unmark(key: string): Promise<void>;
  /** At shutdown: sends what the store still owes its backend (Redis), within a short bound. */
  close?(): Promise<void>;
}

/** What names a budget counter: whose it is (`scope`, `id`) and its period (`label`, from `periodOf`). */
export interface BudgetCounter {
  scope: BudgetScope;
  id: string;
  label: string;
}

/** A budget line's store key, unique per scope, id and period. */
const budgetLineKey = ({ scope, id, label }: BudgetCounter): string => `budget:${scope}:${id}:${label}`;

/**
 * The Redis key, under the gateway's Redis key prefix `prefix`, of a budget counter or of any other
 * store key (a line's `key`, an alert marker): `{<prefix>budgets:}budget:<scope>:<id>:<label>…`, in
 * the one hash-tagged namespace of every budget key. Every key RedisBudgetStore touches is built here.
 */
export function budgetRedisKey(prefix: string, key: string | BudgetCounter): string {
  return hashTagged(`${prefix}budgets:`) + (typeof key === 'string' ? key : budgetLineKey(key));
}

export const toMicros = (usd: number): number => Math.round(usd * 1_000_000);
export const fromMicros = (micros: number): number => micros / 1_000_000;

// KEYS: the counters, then the reservation's record when ARGV[#ARGV - 1] (the record's time to live,
// ms) is not 0. ARGV: the cost, each counter's limit and time to live, the record's time to live, and
// '1' to reserve on existing counters only. Returns {1, values} (reserved), {0, values} (refused),
// {-1, missing indexes} or {-2} (released by id before it ran: see RELEASE_LUA).
const RESERVE_LUA = `
local cost = tonumber(ARGV[1])
local n = #KEYS
local record
if ARGV[#ARGV - 1] ~= '0' then
  record = KEYS[n]
  n = n - 1
  local seen = redis.call('GET', record)
  if seen == 'released' then return {-2} end
  if seen then
    local out = {1}
    for i = 1, n do out[i + 1] = tonumber(redis.call('GET', KEYS[i]) or '0') end
    return out
  end
end
if ARGV[#ARGV] == '1' then
  local missing = {-1}
  for i = 1, n do
    if redis.call('EXISTS', KEYS[i]) == 0 then missing[#missing + 1] = i - 1 end
  end
  if #missing > 1 then return missing end
end
for i = 1, n do
  local v = tonumber(redis.call('GET', KEYS[i]) or '0')
  if v + cost > tonumber(ARGV[1 + i * 2 - 1]) then
    local out = {0}
    for j = 1, n do out[j + 1] = tonumber(redis.call('GET', KEYS[j]) or '0') end
    return out
  end
end
local out = {1}
for i = 1, n do
  out[i + 1] = redis.call('INCRBY', KEYS[i], cost)
  if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[1 + i * 2]) end
end
if record then redis.call('SET', record, ARGV[1], 'PX', ARGV[#ARGV - 1]) end
return out
`;

// KEYS: the counters, then, when ARGV[2] is '1', the record of the reservation being settled;
// ARGV[1]: the change in micro-dollars. Returns the new values (0 for a counter that does not exist,
// which stays missing). Settling, the change is applied only while the record holds the reservation's
// cost, and the record is deleted with it: a settle that runs again (its reply was lost and it was
// sent again) finds no record and changes nothing. Nor does one whose record was released (its
// reservation was given back) or has expired (a day): it returns the counters as they are. A
// script, not MULTI: ioredis builds a heavy Pipeline object per MULTI, and this runs once per request.
const ADJUST_LUA = `
local n = #KEYS
if ARGV[2] == '1' then
  n = n - 1
  local record = redis.call('GET', KEYS[#KEYS])
  if not record or record == 'released' then
    local out = {}
    for i = 1, n do out[i] = tonumber(redis.call('GET', KEYS[i]) or '0') end
    return out
  end
  redis.call('DEL', KEYS[#KEYS])
end
local out = {}
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 1 then out[i] = redis.call('INCRBY', KEYS[i], ARGV[1]) else out[i] = 0 end
end
return out
`;

// Gives back a reservation whose reply never came (a command timeout, a dropped connection): KEYS:
// its counters, then its record; ARGV[1]: the record's time to live, ms. Only a reservation that ran
// has a record (holding its cost): then its cost comes off the counters that exist. Either way the
// record becomes 'released', so this subtracts at most once, and a reservation command that reaches
// Redis only afterwards (still queued in the client, sent again after a reconnect) takes nothing.
// Returns 1 when something was given back.
const RELEASE_LUA = `
local record = KEYS[#KEYS]
local cost = redis.call('GET', record)
redis.call('SET', record, 'released', 'PX', ARGV[1])
if not cost or cost == 'released' then return 0 end
for i = 1, #KEYS - 1 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('DECRBY', KEYS[i], cost) end
end
return 1
`;

/**
 * How long Redis keeps the record of a reservation that was not settled (settling deletes it): one
 * whose reply was lost, or one a process that stopped never settled. A reservation lost in an outage
 * longer than this is not given back (its cost stays on the counters until the period ends), and a
 * reservation command the client would still send later than this after giving it back would take
 * its cost again; a day outlasts any request, and the client's own retries, by far.
 */
export const RESERVATION_RECORD_TTL_MS = 24 * 3_600_000;
/**
 * Releases (reservations with an unknown outcome) and settles (whose command failed) this process
 * holds to send again; beyond that, new ones are dropped.
 */
export const MAX_UNSETTLED_RESERVATIONS = 10_000;
/** How many releases and settles are sent at once; then the next ones, unless one failed. */
const RELEASE_BATCH = 100;
/** The first wait before releases and settles that failed are sent again, ms; doubled per failed pass up to RELEASE_RETRY_MAX_MS. */
const RELEASE_RETRY_MS = 1_000;
const RELEASE_RETRY_MAX_MS = 30_000;
/** How long close() keeps sending the releases and settles still owed at shutdown, ms. */
export const CLOSE_FLUSH_MS = 2_000;
/** The wait between close()'s passes while Redis does not answer, ms. */
const CLOSE_RETRY_MS = 100;

type BudgetRedis = RedisClient & {
  ifBudgetReserve(...args: (string | number)[]): Promise<number[]>;
  ifBudgetAdjust(...args: (string | number)[]): Promise<number[]>;
  ifBudgetRelease(...args: (string | number)[]): Promise<number>;
};

export class RedisBudgetStore implements BudgetStore {
  private readonly redis: BudgetRedis;
  /**
   * The gateway's Redis key prefix; every key here is `budgetRedisKey(prefix, …)`, under one hash tag
   * for every budget counter (`{<prefix>budgets:}budget:…`): one reservation checks the
   * key's, the user's and the team's counters in one script (and adjusts them in another), so on
   * Redis Cluster they must share a slot; a team's counter is shared by its users and keys, so no
   * narrower per-identity tag keeps every line of a request together.
   */
  private readonly prefix: string;
  /** `budgetRedisKey(prefix, '')`, made once: each key below is it plus the store key (no hash-tag scan per request). */
  private readonly namespace: string;
  /** Reservation ids: unique to this store instance (random), then a counter. */
  private readonly idPrefix = `${randomBytes(6).toString('base64url')}.`;
  private sequence = 0;
  /**
   * Reservations still owed a command, by id: their keys (counters, then record) and when their
   * command failed. Without `deltaMicros`, a release: the reservation's own command failed on the
   * client's side, so it may have run on Redis or not; it is given back by id. With it, a settle whose
   * command failed (it may have run or not): sent again, applied only if it had not run. Sent until
   * Redis answers.
   */
  private readonly unsettled = new Map<string, { keys: string[]; at: number; deltaMicros?: number }>();
  private releasing: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = RELEASE_RETRY_MS;
  /** close() was called: no retry is scheduled any more (close sends what it can itself). */
  private closed = false;
  /**
   * A release or settle was dropped, MAX_UNSETTLED_RESERVATIONS being held already; cleared once the
   * queue has emptied: such drops are logged once per burst.
   */
  private overflowing = false;

  constructor(
    redis: RedisClient,
    prefix: string,
    private readonly log?: Logger,
  ) {
    this.prefix = prefix;
    this.namespace = budgetRedisKey(prefix, '');
    if (!('ifBudgetReserve' in redis)) redis.defineCommand('ifBudgetReserve', { lua: RESERVE_LUA });
    if (!('ifBudgetAdjust' in redis)) redis.defineCommand('ifBudgetAdjust', { lua: ADJUST_LUA });
    if (!('ifBudgetRelease' in redis)) redis.defineCommand('ifBudgetRelease', { lua: RELEASE_LUA });
    this.redis = redis as BudgetRedis;
  }

  /**
   * A reservation that takes something is recorded in Redis under its id, in the same script (and
   * slot: the record is under the budgets' hash tag) as the counters. If its command fails on this
   * side (a command timeout, a connection dropped after sending it), it may have run all the same and
   * taken its cost from every counter, which the caller — reserving on the local store instead, or
   * refusing — never settles here: it is given back by id (RELEASE_LUA) as soon as Redis answers,
   * which subtracts only what the record shows was taken, and once.
   */
  async reserve(lines: readonly BudgetLine[], costMicros: number, onlyExisting = false): Promise<ReserveResult> {
    const keys = lines.map((l) => this.namespace + l.key);
    // A reservation of nothing needs no record: there is nothing to give back.
    const id = costMicros > 0 ? this.idPrefix + (++this.sequence).toString(36) : undefined;
    if (id) keys.push(this.recordKey(id));
    const args: (string | number)[] = [costMicros];
    for (const l of lines) args.push(l.limitMicros, l.ttlMs);
    args.push(id ? RESERVATION_RECORD_TTL_MS : 0, onlyExisting ? 1 : 0);
    let out: number[];
    try {
      out = await this.redis.ifBudgetReserve(keys.length, ...keys, ...args);
    } catch (err) {
      if (id) this.sendLater(id, { keys, at: Date.now() });
      throw err;
    }
    // Redis answers: releases and settles still to send need not wait for their retry.
    if (this.unsettled.size > 0 && this.retryTimer) void this.retryUnsettled();
    if (out[0] === -1) return { ok: false, values: [], missing: out.slice(1).map(Number) };
    // Only a reservation this store gave up on is released, and its reply would have gone nowhere.
    if (out[0] === -2) throw new Error(`budget reservation ${id} was released before it ran`);
    const ok = out[0] === 1;
    return { ok, values: out.slice(1).map(Number), ...(ok && id ? { id } : {}) };
  }

  /**
   * Settling a reservation by id is idempotent (ADJUST_LUA), so one whose command failed on this side
   * (it may have run or not) is sent again, like a release, until Redis answers: its correction is
   * applied once whichever way it failed. The caller still gets the error (and no counters).
   */
  async adjust(lines: readonly BudgetLine[], deltaMicros: number, reservationId?: string): Promise<number[]> {
    const keys = lines.map((l) => this.namespace + l.key);
    if (reservationId) keys.push(this.recordKey(reservationId));
    let out: number[];
    try {
      out = await this.redis.ifBudgetAdjust(keys.length, ...keys, deltaMicros, reservationId ? 1 : 0);
    } catch (err) {
      if (!reservationId) throw err;
      const queued = this.sendLater(reservationId, { keys, at: Date.now(), deltaMicros });
      const then = queued ? 'the settle is sent again once Redis answers' : `the settle is not sent again: ${this.closed ? 'the gateway is stopping' : `${MAX_UNSETTLED_RESERVATIONS} are already waiting`}; the estimate stays counted`;
      throw new Error(`${(err as Error).message} (${then})`, { cause: err });
    }
    if (this.unsettled.size > 0 && this.retryTimer) void this.retryUnsettled();
    return out.map(Number);
  }

  private recordKey(id: string): string {
    return `${this.namespace}reservation:${id}`;
  }

  /**
   * Queues a release or settle to send until Redis answers; false when it was dropped (the queue is
   * full, or the store is closed and sends nothing more). It goes at once unless the queue is backing
   * off (Redis failing): then with the next pass, not in a pass of its own — every failure starting
   * one would resend the whole queue per failed request, bypassing the backoff. Either order is safe.
   */
  private sendLater(id: string, u: { keys: string[]; at: number; deltaMicros?: number }): boolean {
    if (this.closed) return false;
    if (this.unsettled.size >= MAX_UNSETTLED_RESERVATIONS) {
      if (!this.overflowing) {
        this.overflowing = true;
        this.log?.warn(
          { max: MAX_UNSETTLED_RESERVATIONS, dropped: u.deltaMicros === undefined ? 'release' : 'settle' },
          'budgets: too many budget releases and settles are waiting for Redis; new ones are dropped (their reservations stay counted at the estimate until the period ends), logged once until the queue has emptied',
        );
      }
      return false;
    }
    this.unsettled.set(id, u);
    if (!this.retryTimer) void this.retryUnsettled();
    return true;
  }

  /**
   * Sends every release (a reservation whose outcome is unknown) and settle (whose command failed)
   * still owed, in batches, and forgets those Redis answered; if one fails (Redis still away) the rest
   * wait for a retry (1 s, doubling up to 30 s, or sooner when a reservation or settle gets an
   * answer). The first is sent at once (unless the queue is backing off): behind the failed command
   * on the same connection, it runs after it if Redis was only slow. Resolves when this pass has ended.
   */
  retryUnsettled(): Promise<void> {
    if (this.releasing) return this.releasing;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.releasing = (async () => {
      let failed = false;
      while (this.unsettled.size > 0 && !failed) {
        const batch: string[] = [];
        const sent: Promise<unknown>[] = [];
        for (const [id, u] of this.unsettled) {
          // Its record has expired: there is nothing left to give back or settle, nor anything to guard.
          if (Date.now() - u.at >= RESERVATION_RECORD_TTL_MS) {
            this.unsettled.delete(id);
            continue;
          }
          batch.push(id);
          const { keys, deltaMicros } = u;
          sent.push(deltaMicros === undefined ? this.redis.ifBudgetRelease(keys.length, ...keys, RESERVATION_RECORD_TTL_MS) : this.redis.ifBudgetAdjust(keys.length, ...keys, deltaMicros, 1));
          if (batch.length === RELEASE_BATCH) break;
        }
        const results = await Promise.allSettled(sent);
        results.forEach((r, i) => {
          if (r.status === 'fulfilled') this.unsettled.delete(batch[i] as string);
          else failed = true;
        });
      }
      if (failed) {
        if (!this.closed) this.retryTimer = setTimeout(() => void this.retryUnsettled(), this.retryMs).unref();
        this.retryMs = Math.min(this.retryMs * 2, RELEASE_RETRY_MAX_MS);
      } else {
        this.retryMs = RELEASE_RETRY_MS;
      }
    })().finally(() => {
      this.releasing = undefined;
      if (this.unsettled.size === 0) this.overflowing = false;
      // Some failed after this pass took its last batch, and no retry is due: they go now.
      if (this.unsettled.size > 0 && !this.retryTimer && !this.closed) void this.retryUnsettled();
    });
    return this.releasing;
  }

  /**
   * At shutdown (the gateway's requests have drained): sends the releases and settles still owed,
   * pass after pass (CLOSE_RETRY_MS apart while Redis does not answer), for up to `timeoutMs`, and
   * schedules no retry after. What is left then is logged, and lost: those reservations' estimates
   * stay on the counters until the period ends. The client is left open (its owner closes it).
   */
  async close(timeoutMs = CLOSE_FLUSH_MS): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const bound = new AbortController();
    const deadline = Date.now() + timeoutMs;
    const expired = sleep(timeoutMs, undefined, { signal: bound.signal }).catch(() => undefined);
    try {
      while (this.unsettled.size > 0 && Date.now() < deadline) {
        await Promise.race([this.retryUnsettled(), expired]);
        if (this.unsettled.size > 0 && Date.now() < deadline) await Promise.race([sleep(CLOSE_RETRY_MS), expired]);
      }
    } finally {
      bound.abort();
    }
    if (this.unsettled.size > 0) {
      const settles = [...this.unsettled.values()].filter((u) => u.deltaMicros !== undefined).length;
      this.log?.warn(
        { releases: this.unsettled.size - settles, settles, timeoutMs },
        'budgets: Redis did not take these budget releases and settles before shutdown; their reservations stay counted at the estimate until the period ends',
      );
    }
  }

  async seed(key: string, valueMicros: number, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(this.namespace + key, valueMicros, 'PX', ttlMs, 'NX')) === 'OK';
  }

  async markOnce(key: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(this.namespace + key, '1', 'PX', ttlMs, 'NX')) === 'OK';
  }

  async unmark(key: string): Promise<void> {
    await this.redis.del(this.namespace + key);
  }
}

export class MemoryBudgetStore implements BudgetStore {
  private readonly values = new Map<string, { v: number; exp: number }>();

  private get(key: string): number {
    const e = this.values.get(key);
    if (!e) return 0;
    if (e.exp <= Date.now()) {
      this.values.delete(key);
      return 0;
    }
    return e.v;
  }

  private has(key: string): boolean {
    this.get(key); // drops an expired entry
    return this.values.has(key);
  }

  private set(key: string, v: number, ttlMs: number): void {
    const e = this.values.get(key);
    this.values.set(key, { v, exp: e && e.exp > Date.now() ? e.exp : Date.now() + ttlMs });
  }

  async reserve(lines: readonly BudgetLine[], costMicros: number, onlyExisting = false): Promise<ReserveResult> {
    if (onlyExisting) {
      const missing = lines.flatMap((l, i) => (this.has(l.key) ? [] : [i]));
      if (missing.length > 0) return { ok: false, values: [], missing };
    }
    const current = lines.map((l) => this.get(l.key));
    if (lines.some((l, i) => (current[i] as number) + costMicros > l.limitMicros)) return { ok: false, values: current };
    lines.forEach((l, i) => this.set(l.key, (current[i] as number) + costMicros, l.ttlMs));
    return { ok: true, values: current.map((v) => v + costMicros) };
  }

  // Reservations here are not recorded: one that fails in process fails whole, and nothing is lost in between.
  async adjust(lines: readonly BudgetLine[], deltaMicros: number, _reservationId?: string): Promise<number[]> {
    return lines.map((l) => {
      if (!this.has(l.key)) return 0;
      const v = this.get(l.key) + deltaMicros;
      this.set(l.key, v, l.ttlMs);
      return v;
    });
  }

  async seed(key: string, valueMicros: number, ttlMs: number): Promise<boolean> {
    if (this.has(key)) return false;
    this.set(key, valueMicros, ttlMs);
    return true;
  }

  async markOnce(key: string, ttlMs: number): Promise<boolean> {
    if (this.get(key) > 0) return false;
    this.set(key, 1, ttlMs);
    return true;
  }

  async unmark(key: string): Promise<void> {
    this.values.delete(key);
  }
}

/** Redis first; on a Redis failure the local store (fail open) or 503 limiter_unavailable (fail closed). */
export class FailoverBudgetStore implements BudgetStore {
  private readonly failure: RedisFailurePolicyHandler;

  constructor(
    private readonly primary: BudgetStore,
    private readonly local: BudgetStore,
    policy: RedisFailurePolicy,
    log: Logger,
  ) {
    // Logged at most once every 30 s, as the rate limiter and the API-key store do.
    this.failure = new RedisFailurePolicyHandler(policy, log, {
      open: 'budgets: Redis failed; using the local in-memory budgets (fail open)',
      closed: 'budgets: Redis failed; refusing requests (fail closed)',
    });
  }

  private async run<T>(op: (s: BudgetStore) => Promise<T>): Promise<T> {
    try {
      return await op(this.primary);
    } catch (err) {
      this.failure.failed(err);
      return op(this.local);
    }
  }

  reserve(lines: readonly BudgetLine[], costMicros: number, onlyExisting?: boolean): Promise<ReserveResult> {
    return this.run(async (s) => ({ ...(await s.reserve(lines, costMicros, onlyExisting)), store: s }));
  }
  adjust(lines: readonly BudgetLine[], deltaMicros: number, reservationId?: string) {
    return this.run((s) => s.adjust(lines, deltaMicros, reservationId));
  }
  seed(key: string, valueMicros: number, ttlMs: number) {
    return this.run((s) => s.seed(key, valueMicros, ttlMs));
  }
  markOnce(key: string, ttlMs: number) {
    return this.run((s) => s.markOnce(key, ttlMs));
  }
  unmark(key: string) {
    return this.run((s) => s.unmark(key));
  }
  async close(): Promise<void> {
    await Promise.all([this.primary.close?.(), this.local.close?.()]);
  }
}

/** Period start (UTC) and the time-to-live that outlasts the period by a day. */
export function periodOf(period: BudgetPeriod, now = new Date()): { start: Date; label: string; ttlMs: number } {
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  const start = period === 'day' ? new Date(Date.UTC(y, m, now.getUTCDate())) : new Date(Date.UTC(y, m, 1));
  const end = period === 'day' ? new Date(Date.UTC(y, m, now.getUTCDate() + 1)) : new Date(Date.UTC(y, m + 1, 1));
  const label = period === 'day' ? start.toISOString().slice(0, 10) : start.toISOString().slice(0, 7);
  return { start, label, ttlMs: end.getTime() - now.getTime() + 86_400_000 };
}

export interface BudgetAlert {
  scope: BudgetScope;
  id: string;
  period: BudgetPeriod;
  period_start: string;
  threshold: number;
  limit_usd: number;
  spent_usd: number;
}

export interface BudgetReservation {
  lines: readonly BudgetLine[];
  reservedMicros: number;
  /** Where it was taken (the local store while Redis failed open): settled there. */
  store: BudgetStore;
  /** Its id in that store (ReserveResult.id), when the store records reservations. */
  id?: string;
}

export interface BudgetManagerOptions {
  store: BudgetStore;
  config: BudgetsConfig;
  log: Logger;
  /** Spend already in the ledger for a scope from `since` (and before `until`, when given): seeds counters after a restart. */
  spentSince?: (scope: BudgetScope, id: string, since: Date, until?: Date) => Promise<number>;
  /** How often a counter seeded from zero (the ledger unreadable) tries the ledger again, ms; default SEED_RETRY_MS. */
  seedRetryMs?: number;
  /**
   * A threshold was crossed (once per budget, period and threshold across replicas). A promise that
   * resolves false (no receiver took it) lifts the once-marker, so the next settlement past the
   * threshold sends the alert again instead of it being lost for the period.
   */
  onAlert?: (alert: BudgetAlert) => void | Promise<boolean>;
}

/** How often a counter seeded from zero (the ledger unreadable) tries the ledger again for its earlier spend, ms. */
export const SEED_RETRY_MS = 60_000;

export class BudgetManager {
  /** Seeds in progress in this process per store, so concurrent requests that find a counter missing share one ledger query. */
  private readonly seeding = new WeakMap<BudgetStore, Map<string, Promise<void>>>();
  /** Counters this process seeded from zero while the ledger could not be read (their earlier spend is owed), by store. */
  private readonly unseeded = new Map<BudgetStore, Map<string, { line: BudgetLine; seededAt: Date; retryAt: number }>>();
  private catchingUp: Promise<void> | undefined;
  /** When the earliest owed counter is due to try the ledger again (Date.now() ms). */
  private nextCatchUpAt = 0;

  constructor(private readonly opts: BudgetManagerOptions) {}

  /** The budgets that apply to an identity: its key's, its user's and its team's. */
  linesFor(tenant: Tenant): BudgetLine[] {
    const { config } = this.opts;
    const out: BudgetLine[] = [];
    // Most callers have no budget: no clock is read for them.
    if (!tenant.keyId && !tenant.userId && !tenant.teamId) return out;
    const at = new Date();
    const add = (scope: BudgetScope, id: string | undefined, b: BudgetConfig | undefined) => {
      if (!id || !b) return;
      const p = periodOf(b.period, at);
      out.push({ scope, id, period: b.period, periodStart: p.start, key: budgetLineKey({ scope, id, label: p.label }), limitMicros: toMicros(b.limit_usd), ttlMs: p.ttlMs });
    };
    if (tenant.keyId && tenant.limits?.budgetUsd !== undefined) add('key', tenant.keyId, { limit_usd: tenant.limits.budgetUsd, period: tenant.limits.budgetPeriod ?? 'month' });
    if (tenant.userId) add('user', tenant.userId, config.users[tenant.userId] ?? config.default_user);
    if (tenant.teamId) add('team', tenant.teamId, config.teams[tenant.teamId] ?? config.default_team);
    return out;
  }

  /** Reserves the estimate on every budget line (an identity's, from linesFor), or throws budget_exceeded. */
  async reserve(lines: readonly BudgetLine[], estimateUsd: number): Promise<BudgetReservation | undefined> {
    if (lines.length === 0) return undefined;
    // In the background: while the ledger stays down its query may take its whole timeout, which no
    // reservation should wait out. The counter gets the earlier spend once the ledger answers.
    if (this.unseeded.size > 0 && Date.now() >= this.nextCatchUpAt) void this.catchUp();
    const cost = toMicros(estimateUsd);
    // Whether a counter exists is asked of the store on every reservation (in the same script), not
    // remembered here: Redis can lose a counter while this process runs, and a counter recreated
    // from zero would forget everything spent this period.
    let r = await this.opts.store.reserve(lines, cost, this.opts.spentSince !== undefined);
    // Seeded, reserved again and settled in the store that answered first.
    let store = r.store ?? this.opts.store;
    if (r.missing) {
      try {
        await Promise.all(r.missing.map((i) => this.seed(store, lines[i] as BudgetLine)));
        r = await store.reserve(lines, cost, false);
      } catch (err) {
        // That store failed meanwhile (Redis went away): nothing was reserved there; the reservation
        // goes through the failure policy as a first one would (the local store, or 503).
        if (store === this.opts.store) throw err;
        r = await this.opts.store.reserve(lines, cost, false);
        store = r.store ?? this.opts.store;
      }
    }
    const { ok, values } = r;
    if (!ok) {
      const i = lines.findIndex((l, k) => (values[k] as number) + cost > l.limitMicros);
      const l = lines[Math.max(0, i)] as BudgetLine;
      throw new GatewayError('budget_exceeded', {
        message: `The ${l.period === 'day' ? 'daily' : 'monthly'} budget of ${l.scope} "${l.id}" ($${fromMicros(l.limitMicros).toFixed(2)}) has no room for this request (estimated $${estimateUsd.toFixed(6)}; spent or reserved $${fromMicros(values[Math.max(0, i)] as number).toFixed(6)}).`,
      });
    }
    return { lines, reservedMicros: cost, store, ...(r.id ? { id: r.id } : {}) };
  }

  /** Replaces the reservation by the actual cost and sends threshold alerts that were crossed. */
  async settle(r: BudgetReservation, actualUsd: number): Promise<void> {
    const delta = toMicros(actualUsd) - r.reservedMicros;
    const values = await r.store.adjust(r.lines, delta, r.id);
    if (!this.opts.onAlert || delta === -r.reservedMicros) return;
    for (const [i, l] of r.lines.entries()) {
      const v = values[i] as number;
      for (const t of this.opts.config.alert_thresholds) {
        if (v < t * l.limitMicros) continue;
        const mark = `${l.key}:alert:${t}`;
        if (await this.opts.store.markOnce(mark, l.ttlMs)) {
          const delivered = this.opts.onAlert({ scope: l.scope, id: l.id, period: l.period, period_start: l.periodStart.toISOString(), threshold: t, limit_usd: fromMicros(l.limitMicros), spent_usd: fromMicros(v) });
          if (delivered) void delivered.then((ok) => (ok ? undefined : this.opts.store.unmark(mark))).catch(() => undefined);
        }
      }
    }
  }

  /**
   * Sets a missing counter in `store` to what the ledger holds for its period (SET NX: the first
   * replica's seed wins). While the ledger cannot be read the counter starts from zero, for the
   * period as any seed, rather than refusing every request; the replica whose seed set it adds the
   * ledger's spend from before that moment once the ledger answers (tried every SEED_RETRY_MS, at a
   * reservation), so an outage forgets the period's earlier spend only while it lasts.
   */
  private seed(store: BudgetStore, l: BudgetLine): Promise<void> {
    let inStore = this.seeding.get(store);
    if (!inStore) this.seeding.set(store, (inStore = new Map()));
    const seeding = inStore;
    let p = seeding.get(l.key);
    if (!p) {
      // Only called for counters the reserve script named missing, which it does only with a ledger.
      const spentSince = this.opts.spentSince as NonNullable<typeof this.opts.spentSince>;
      const seededAt = new Date();
      p = spentSince(l.scope, l.id, l.periodStart)
        .then(
          async (usd) => void (await store.seed(l.key, toMicros(usd), l.ttlMs)),
          async (err: unknown) => {
            this.opts.log.warn({ err: (err as Error).message, budget: l.key }, 'could not seed a budget from the ledger; counting from zero and adding its spend once it can be read');
            if (!(await store.seed(l.key, 0, l.ttlMs))) return;
            let owed = this.unseeded.get(store);
            if (!owed) this.unseeded.set(store, (owed = new Map()));
            const retryAt = Date.now() + this.retryMs;
            owed.set(l.key, { line: l, seededAt, retryAt });
            this.nextCatchUpAt = Math.min(this.nextCatchUpAt, retryAt);
          },
        )
        .finally(() => seeding.delete(l.key));
      seeding.set(l.key, p);
    }
    return p;
  }

  private get retryMs(): number {
    return this.opts.seedRetryMs ?? SEED_RETRY_MS;
  }

  /**
   * Adds to counters seeded from zero the spend the ledger holds from before they were seeded, once
   * it can be read again (due ones only; one pass at a time).
   */
  private catchUp(): Promise<void> {
    if (this.catchingUp) return this.catchingUp;
    const now = Date.now();
    const due = [...this.unseeded].flatMap(([store, owed]) => [...owed.values()].filter((u) => u.retryAt <= now).map((u) => ({ store, owed, u })));
    const spentSince = this.opts.spentSince as NonNullable<typeof this.opts.spentSince>;
    this.catchingUp = (async () => {
      for (const { store, owed, u } of due) {
        try {
          const before = await spentSince(u.line.scope, u.line.id, u.line.periodStart, u.seededAt);
          if (before > 0) await store.adjust([u.line], toMicros(before));
          owed.delete(u.line.key);
          if (owed.size === 0) this.unseeded.delete(store);
        } catch {
          u.retryAt = Date.now() + this.retryMs;
        }
      }
      let next = Number.POSITIVE_INFINITY;
      for (const owed of this.unseeded.values()) for (const u of owed.values()) next = Math.min(next, u.retryAt);
      this.nextCatchUpAt = next;
    })().finally(() => (this.catchingUp = undefined));
    return this.catchingUp;
  }

  /** Resolves once a catch-up with the ledger in progress (reserve starts it in the background) has ended. */
  async caughtUp(): Promise<void> {
    await this.catchingUp;
  }
}
