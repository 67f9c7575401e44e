// Virtual API keys: created through the admin API, stored only as a SHA-256 hash beside a short
// visible prefix, each with allowed models, limits, a budget, metadata, an IP allowlist, expiry and
// revocation. Lookups are cached per replica for `cache_ttl_ms`; a revocation is seen at once on
// every replica through a Redis marker checked on each cache hit (without Redis: one process).
// Redis failing follows rate_limiting.on_redis_failure: open goes on without the marker (the row, at
// most cache_ttl_ms old, still says whether the key was revoked), closed answers 503.
import { hash, randomBytes } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { desc, eq, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { RedisClient } from '../store/redis.js';
import { z } from 'zod';
import type { Tenant } from '../gateway/context.js';
import { withTimeout } from '../gateway/timeout.js';
import { GatewayError } from '../server/errors.js';
import { storableText, type SqlDatabase } from '../store/sql.js';
import { apiKeys, type ApiKeyRow } from '../store/tables.js';
import { RedisFailurePolicyHandler, type RedisFailurePolicy } from './sliding-window.js';

function keysFailureHandler(policy: RedisFailurePolicy, log?: Logger): RedisFailurePolicyHandler {
  return new RedisFailurePolicyHandler(policy, log, {
    open: 'api keys: Redis failed; revocations by other replicas are seen when cached keys expire (fail open)',
    closed: 'api keys: Redis failed; refusing API keys (fail closed)',
    refusal: 'The shared store of API-key revocations is unreachable and the gateway is configured to fail closed.',
  });
}

function validCidr(value: string): boolean {
  const [addr, bits, extra] = value.split('/');
  if (extra !== undefined || !addr) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n >= 0 && n <= (family === 4 ? 32 : 128);
}

/** The largest value the int4 columns (rpm, tpm, max_concurrency) hold. */
const MAX_INT4 = 2_147_483_647;
/** The longest expires_in_s: 100 years (a longer one overflows a date, or the database's). */
const MAX_EXPIRES_IN_S = 100 * 366 * 86_400;

/**
 * An ISO date-time in years 1..9999 (UTC), the range both the database and toISOString take: a
 * 400 invalid_value outside it, where the database would fail the query (a 500).
 */
export const boundedDatetime = z.iso.datetime({ offset: true }).superRefine((iso, ctx) => {
  const year = new Date(iso).getUTCFullYear();
  if (!(year >= 1 && year <= 9999)) ctx.addIssue({ code: 'invalid_value', values: [], message: 'expected a date in years 1 to 9999' });
});

/** Text the store can keep (store/sql.ts storableText: no NUL, no unpaired surrogate), refused by name otherwise. */
const UNSTORABLE = 'holds a NUL character or an unpaired surrogate, which the store cannot keep';
const storable = () => z.string().refine(storableText, { message: UNSTORABLE });

/** Whether every key and string in a JSON value is storable text. */
function storableValue(v: unknown): boolean {
  if (typeof v === 'string') return storableText(v);
  if (Array.isArray(v)) return v.every(storableValue);
  if (v !== null && typeof v === 'object') return Object.entries(v).every(([k, x]) => storableText(k) && storableValue(x));
  return true;
}

export const createKeySchema = z
  .object({
    name: storable().max(200).default(''),
    user_id: storable().min(1).max(200).optional(),
    team_id: storable().min(1).max(200).optional(),
    models: z.array(storable().min(1)).optional(),
    rpm: z.number().int().positive().max(MAX_INT4).optional(),
    tpm: z.number().int().positive().max(MAX_INT4).optional(),
    max_concurrency: z.number().int().positive().max(MAX_INT4).optional(),
    budget_usd: z.number().positive().optional(),
    budget_period: z.enum(['day', 'month']).default('month'),
    metadata: z.record(z.string(), z.unknown()).refine(storableValue, { message: UNSTORABLE }).optional(),
    ip_allowlist: z.array(z.string().refine(validCidr, 'expected an IP address or CIDR block')).optional(),
    expires_at: boundedDatetime.optional(),
    expires_in_s: z.number().int().positive().max(MAX_EXPIRES_IN_S).optional(),
  })
  .strict();

export type CreateKeyInput = z.input<typeof createKeySchema>;

/** What the admin API shows of a key (never its hash). */
export interface ApiKeyView {
  id: string;
  name: string;
  prefix: string;
  user_id: string | null;
  team_id: string | null;
  models: string[] | null;
  rpm: number | null;
  tpm: number | null;
  max_concurrency: number | null;
  budget_usd: number | null;
  budget_period: string | null;
  metadata: Record<string, unknown> | null;
  ip_allowlist: string[] | null;
  expires_at: string | null;
  revoked_at: string | null;
  created_at: string;
}

export function keyView(r: ApiKeyRow): ApiKeyView {
  return {
    id: r.id,
    name: r.name,
    prefix: r.prefix,
    user_id: r.userId,
    team_id: r.teamId,
    models: r.allowedModels,
    rpm: r.rpm,
    tpm: r.tpm,
    max_concurrency: r.maxConcurrency,
    budget_usd: r.budgetUsd,
    budget_period: r.budgetPeriod,
    metadata: r.metadata,
    ip_allowlist: r.ipAllowlist,
    expires_at: r.expiresAt?.toISOString() ?? null,
    revoked_at: r.revokedAt?.toISOString() ?? null,
    created_at: r.createdAt.toISOString(),
  };
}

export const hashKey = (key: string): string => hash('sha256', key, 'hex');

/** How long a key read before waits for its row to be read again before its last row serves, ms. */
const STALE_WAIT_MS = 1_000;
const STILL_READING = 'api key row still being read';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
function randomToken(length: number): string {
  // Rejection sampling keeps every character equally likely.
  let out = '';
  while (out.length < length) {
    for (const b of randomBytes(length * 2)) {
      if (b < 248 && out.length < length) out += ALPHABET[b % 62];
    }
  }
  return out;
}

interface CachedKey {
  row: ApiKeyRow;
  allow?: BlockList;
  at: number;
}

export interface ApiKeyStoreOptions {
  sql: SqlDatabase;
  prefix: string;
  cacheTtlMs: number;
  redis?: RedisClient;
  redisPrefix?: string;
}

export class ApiKeyStore {
  private readonly cache = new Map<string, CachedKey>();
  /** Rows by id for ensureActive (work that outlives its request: batch lines). */
  private readonly byId = new Map<string, { row: ApiKeyRow | undefined; at: number }>();
  /** Row reads in progress, by key hash. */
  private readonly reading = new Map<string, Promise<ApiKeyRow | undefined>>();
  /**
   * Keys revoked through this replica, id → when, kept as long as the Redis marker: a row read that
   * was in flight when the key was revoked lands after revoke cleared the cache, and without Redis
   * nothing else would refuse that stale row until it expired.
   */
  private readonly revokedHere = new Map<string, number>();
  private redisFailure = keysFailureHandler('open');
  private databaseWarned = 0;

  constructor(private readonly opts: ApiKeyStoreOptions) {}

  /**
   * How a failing Redis is met (rate_limiting.on_redis_failure, 'open' until told) and where it is
   * logged: set once at assembly, beside the limiter that follows the same policy.
   */
  onRedisFailure(policy: RedisFailurePolicy, log: Logger): void {
    this.redisFailure = keysFailureHandler(policy, log);
  }

  get prefix(): string {
    return this.opts.prefix;
  }

  /** Creates a key; the plaintext is returned once and never stored. */
  async create(input: CreateKeyInput): Promise<{ key: string; record: ApiKeyView }> {
    const v = createKeySchema.parse(input);
    const key = `${this.opts.prefix}${randomToken(40)}`;
    const expires = v.expires_at ? new Date(v.expires_at) : v.expires_in_s ? new Date(Date.now() + v.expires_in_s * 1000) : null;
    const [row] = await this.opts.sql.db
      .insert(apiKeys)
      .values({
        id: `key_${randomToken(16)}`,
        name: v.name,
        prefix: key.slice(0, this.opts.prefix.length + 6),
        hash: hashKey(key),
        userId: v.user_id ?? null,
        teamId: v.team_id ?? null,
        allowedModels: v.models ?? null,
        rpm: v.rpm ?? null,
        tpm: v.tpm ?? null,
        maxConcurrency: v.max_concurrency ?? null,
        budgetUsd: v.budget_usd ?? null,
        budgetPeriod: v.budget_usd !== undefined ? v.budget_period : null,
        metadata: v.metadata ?? null,
        ipAllowlist: v.ip_allowlist ?? null,
        expiresAt: expires,
      })
      .returning();
    return { key, record: keyView(row as ApiKeyRow) };
  }

  async list(): Promise<ApiKeyView[]> {
    const rows = await this.opts.sql.db.select().from(apiKeys).orderBy(desc(apiKeys.createdAt));
    return rows.map(keyView);
  }

  async get(id: string): Promise<ApiKeyView | undefined> {
    const [row] = await this.opts.sql.db.select().from(apiKeys).where(eq(apiKeys.id, id));
    return row ? keyView(row) : undefined;
  }

  /** Revokes a key everywhere: the database row, this replica's cache, and (with Redis) every other replica's. */
  async revoke(id: string): Promise<ApiKeyView | undefined> {
    // Revoking again keeps the first revocation's time: when the key stopped working.
    const [row] = await this.opts.sql.db.update(apiKeys).set({ revokedAt: sql`coalesce(${apiKeys.revokedAt}, now())` }).where(eq(apiKeys.id, id)).returning();
    if (!row) return undefined;
    // This replica stops accepting the key first, whatever Redis does next.
    const now = Date.now();
    for (const [k, at] of this.revokedHere) if (now - at > this.revokedKeepMs) this.revokedHere.delete(k);
    this.revokedHere.set(id, now);
    for (const [hash, c] of this.cache) if (c.row.id === id) this.cache.delete(hash);
    this.byId.delete(id);
    // The marker outlives any replica's cached copy of the row. The revocation is in the database
    // already: without the marker the other replicas see it when their cached row expires
    // (cache_ttl_ms), so a failed write is logged rather than failing a revoke that happened.
    try {
      await this.opts.redis?.set(this.marker(id), '1', 'PX', this.opts.cacheTtlMs + 60_000);
    } catch (err) {
      this.redisFailure.log?.error({ err: (err as Error).message, key: id }, `api keys: key revoked, but its Redis marker could not be written; other replicas refuse it within ${this.opts.cacheTtlMs} ms`);
    }
    return keyView(row);
  }

  /** Logs a failed key lookup at most every 30 s (an outage fails every lookup). */
  private databaseFailed(err: unknown): void {
    const now = Date.now();
    if (now - this.databaseWarned < 30_000) return;
    this.databaseWarned = now;
    this.redisFailure.log?.error({ err: (err as Error).message }, 'api keys: the database could not be read; keys read before keep their last row, others are refused with 503 store_unavailable');
  }

  /** As long as the Redis marker lives: past it every replica's cached row has been read again. */
  private get revokedKeepMs(): number {
    return this.opts.cacheTtlMs + 60_000;
  }

  /** Whether the key was revoked through this replica at or after `since` (any time when not given). */
  private wasRevokedHere(id: string, since = 0): boolean {
    const at = this.revokedHere.get(id);
    if (at === undefined) return false;
    if (Date.now() - at > this.revokedKeepMs) {
      this.revokedHere.delete(id);
      return false;
    }
    return at >= since;
  }

  private marker(id: string): string {
    return `${this.opts.redisPrefix ?? ''}revoked-key:${id}`;
  }

  /**
   * Whether the Redis revocation marker of a key is set. When Redis fails: fail open — false, the
   * row (read at most cacheTtlMs ago) decides; fail closed — 503 limiter_unavailable, as admission
   * answers. Logged at most every 30 s, so an outage does not flood the log.
   */
  private async revokedMarker(id: string): Promise<boolean> {
    if (!this.opts.redis) return false;
    try {
      return (await this.opts.redis.exists(this.marker(id))) === 1;
    } catch (err) {
      this.redisFailure.failed(err);
      return false;
    }
  }

  /**
   * Throws invalid_api_key when the key with this id no longer exists, was revoked (every replica sees
   * the Redis marker at once) or has expired: for work a key started that runs after its request, such
   * as batch lines. Rows are read at most every cacheTtlMs; while the database is unreachable the last
   * row read holds, and with none the key is taken as usable (a failover must not fail work for good).
   */
  async ensureActive(id: string): Promise<void> {
    const what = 'The API key that created this work';
    if (this.wasRevokedHere(id) || (await this.revokedMarker(id))) throw new GatewayError('invalid_api_key', { message: `${what} has been revoked.` });
    const now = Date.now();
    let entry = this.byId.get(id);
    if (!entry || now - entry.at > this.opts.cacheTtlMs) {
      try {
        const [row] = await this.opts.sql.db.select().from(apiKeys).where(eq(apiKeys.id, id));
        entry = { row, at: now };
        if (this.byId.size > 10_000) this.byId.clear();
        // A row read while this replica revoked the key predates the revocation: never kept.
        if (!this.wasRevokedHere(id, now)) this.byId.set(id, entry);
      } catch {
        if (!entry) return;
      }
      if (this.wasRevokedHere(id)) throw new GatewayError('invalid_api_key', { message: `${what} has been revoked.` });
    }
    if (!entry.row) throw new GatewayError('invalid_api_key', { message: `${what} no longer exists.` });
    unusable(entry.row, now, what);
  }

  /** Reads a key's row (one read per key at a time) and keeps it in the cache, or drops a key that is gone. */
  private readRow(hash: string): Promise<ApiKeyRow | undefined> {
    let p = this.reading.get(hash);
    if (!p) {
      p = (async () => {
        const started = Date.now();
        const [row] = await this.opts.sql.db.select().from(apiKeys).where(eq(apiKeys.hash, hash));
        // A row read while this replica revoked its key predates the revocation: never cached.
        if (!row || this.wasRevokedHere(row.id, started)) this.cache.delete(hash);
        else {
          if (this.cache.size > 10_000) this.cache.clear();
          this.cache.set(hash, cachedKey(row, Date.now()));
        }
        return row;
      })().finally(() => this.reading.delete(hash));
      this.reading.set(hash, p);
    }
    return p;
  }

  /**
   * The tenant for a presented key, or invalid_api_key / permission_denied. The row is read at most
   * every cacheTtlMs; while the database cannot be read, a key whose row was read before keeps its
   * last row (its revocation marker still checked), as ensureActive does, and a key never read is
   * 503 store_unavailable with Retry-After.
   */
  async verify(key: string, ip?: string): Promise<Tenant> {
    const hash = hashKey(key);
    const now = Date.now();
    let cached = this.cache.get(hash);
    // A row from the cache (fresh, or kept while the database fails or is slow) is checked against the revocation marker.
    let fromCache = cached !== undefined && now - cached.at < this.opts.cacheTtlMs;
    if (!fromCache) {
      // One read per key at a time, whoever asks meanwhile: a database gone silent would otherwise
      // hold one pool connection per request, each waiting out the query timeout.
      const reading = this.readRow(hash);
      let row: ApiKeyRow | undefined;
      try {
        // A key read before waits at most STALE_WAIT_MS for its row; then its last one serves and
        // the read lands in the cache when it completes.
        row = await (cached ? withTimeout(reading, STALE_WAIT_MS, STILL_READING) : reading);
      } catch (err) {
        if (!cached || (err as Error).message !== STILL_READING) {
          this.databaseFailed(err);
          if (!cached) throw new GatewayError('store_unavailable', { retryAfterMs: 1000, cause: err });
          // Kept for another cacheTtlMs: requests meanwhile do not each wait on the failing database.
          cached.at = now;
        }
        fromCache = true;
      }
      if (!fromCache) {
        if (!row) throw new GatewayError('invalid_api_key');
        // Absent when the key was revoked here while its row was read.
        cached = this.cache.get(hash) ?? cachedKey(row, now);
      }
    }
    cached = cached as CachedKey;
    if (this.wasRevokedHere(cached.row.id) || (fromCache && (await this.revokedMarker(cached.row.id)))) {
      this.cache.delete(hash);
      throw new GatewayError('invalid_api_key', { message: 'This API key has been revoked.' });
    }
    const { row } = cached;
    unusable(row, now, 'This API key');
    if (cached.allow && !allowed(cached.allow, ip)) {
      throw new GatewayError('permission_denied', { message: 'This API key may not be used from this address.' });
    }
    return {
      id: `key:${row.id}`,
      kind: 'key',
      keyId: row.id,
      ...(row.userId ? { userId: row.userId } : {}),
      ...(row.teamId ? { teamId: row.teamId } : {}),
      ...(row.allowedModels ? { allowedModels: row.allowedModels } : {}),
      ...(row.metadata ? { metadata: row.metadata } : {}),
      limits: {
        ...(row.rpm ? { rpm: row.rpm } : {}),
        ...(row.tpm ? { tpm: row.tpm } : {}),
        ...(row.maxConcurrency ? { maxConcurrency: row.maxConcurrency } : {}),
        ...(row.budgetUsd !== null ? { budgetUsd: row.budgetUsd, budgetPeriod: row.budgetPeriod ?? 'month' } : {}),
      },
    };
  }
}

function cachedKey(row: ApiKeyRow, at: number): CachedKey {
  return { row, at, allow: row.ipAllowlist?.length ? blockList(row.ipAllowlist) : undefined };
}

/** Throws invalid_api_key for a revoked or expired key (`what` names it in the message). */
function unusable(row: ApiKeyRow, now: number, what: string): void {
  if (row.revokedAt) throw new GatewayError('invalid_api_key', { message: `${what} has been revoked.` });
  if (row.expiresAt && row.expiresAt.getTime() <= now) throw new GatewayError('invalid_api_key', { message: `${what} has expired.` });
}

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const [addr, bits] = c.split('/') as [string, string | undefined];
    const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr, family);
    else list.addSubnet(addr, Number(bits), family);
  }
  return list;
}

function allowed(list: BlockList, ip: string | undefined): boolean {
  if (!ip) return false;
  // Node reports IPv4 clients on a dual-stack socket as ::ffff:a.b.c.d.
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1];
  if (v4) return list.check(v4, 'ipv4');
  return list.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4');
}
