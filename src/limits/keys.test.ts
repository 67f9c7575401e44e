// ApiKeyStore on the embedded database (in memory): ensureActive, what batch lines check before they
// run, and both it and verify while Redis (the revocation markers) is down or up (the real Redis).
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDIS_URL, redisAvailable } from '../../test/helpers/services.js';
import { createRedis, type RedisClient } from '../store/redis.js';
import { openSql, type SqlDatabase } from '../store/sql.js';
import { createLogger } from '../telemetry/logger.js';
import { ApiKeyStore } from './keys.js';

let sql: SqlDatabase;
beforeAll(async () => {
  sql = await openSql({ pglitePath: 'memory://' });
}, 60_000);
afterAll(() => sql?.close());

describe('ApiKeyStore.ensureActive', () => {
  it('passes a usable key, refuses a revoked, expired or deleted one', async () => {
    const store = new ApiKeyStore({ sql, prefix: 'sk-if-', cacheTtlMs: 0 });
    const { record } = await store.create({ name: 'batch' });
    await expect(store.ensureActive(record.id)).resolves.toBeUndefined();
    await store.revoke(record.id);
    await expect(store.ensureActive(record.id)).rejects.toThrow(/revoked/);
    const { record: old } = await store.create({ name: 'old', expires_at: new Date(Date.now() + 60_000).toISOString() });
    await expect(store.ensureActive(old.id)).resolves.toBeUndefined();
    await sql.query(`UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = $1`, [old.id]);
    await expect(store.ensureActive(old.id)).rejects.toThrow(/expired/);
    await expect(store.ensureActive('key_missing')).rejects.toThrow(/no longer exists/);
  });

  it('reads a row at most once per cache interval, and keeps the last one while the database fails', async () => {
    const store = new ApiKeyStore({ sql, prefix: 'sk-if-', cacheTtlMs: 60_000 });
    const { record } = await store.create({ name: 'cached' });
    await store.ensureActive(record.id);
    // Revoked behind its back (no Redis marker here): the cached row holds until it expires.
    await sql.query(`UPDATE api_keys SET revoked_at = now() WHERE id = $1`, [record.id]);
    await expect(store.ensureActive(record.id)).resolves.toBeUndefined();
    const failing = new ApiKeyStore({ sql: { ...sql, db: { select: () => { throw new Error('connection refused'); } } } as unknown as SqlDatabase, prefix: 'sk-if-', cacheTtlMs: 0 });
    await expect(failing.ensureActive(record.id)).resolves.toBeUndefined(); // nothing known: the work runs

    // A row read before the database went away holds, even past the cache interval.
    let down = false;
    const db = new Proxy(sql.db, {
      get(target, prop) {
        if (prop === 'select' && down) return () => { throw new Error('connection refused'); };
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const flaky = new ApiKeyStore({ sql: { ...sql, db } as unknown as SqlDatabase, prefix: 'sk-if-', cacheTtlMs: 0 });
    await expect(flaky.ensureActive(record.id)).rejects.toThrow(/revoked/);
    down = true;
    await expect(flaky.ensureActive(record.id)).rejects.toThrow(/revoked/);
  });

  it('revoking twice keeps the first revocation time', async () => {
    const store = new ApiKeyStore({ sql, prefix: 'sk-if-', cacheTtlMs: 0 });
    const { record } = await store.create({ name: 'twice' });
    const first = await store.revoke(record.id);
    await sql.query(`UPDATE api_keys SET revoked_at = revoked_at - interval '1 hour' WHERE id = $1`, [record.id]);
    const earlier = (await store.get(record.id))?.revoked_at;
    expect(earlier).not.toBe(first?.revoked_at);
    expect((await store.revoke(record.id))?.revoked_at).toBe(earlier);
    expect((await store.get(record.id))?.revoked_at).toBe(earlier);
  });

  it('refuses a key revoked through this store at once, whatever it had cached', async () => {
    const store = new ApiKeyStore({ sql, prefix: 'sk-if-', cacheTtlMs: 60_000 });
    const { record } = await store.create({ name: 'revoked-here' });
    await store.ensureActive(record.id);
    await store.revoke(record.id);
    await expect(store.ensureActive(record.id)).rejects.toThrow(/revoked/);
  });
});

describe('ApiKeyStore revocation racing a row read (no Redis)', () => {
  /** The embedded database, whose SELECTs, while `held`, read their rows and answer only once released. */
  function slowReads() {
    let release: (() => void) | undefined;
    let readDone: (() => void) | undefined;
    const state = { held: false, read: Promise.resolve() };
    const db = new Proxy(sql.db, {
      get(target, prop) {
        if (prop === 'select' && state.held) {
          const gate = new Promise<void>((r) => (release = r));
          state.read = new Promise<void>((r) => (readDone = r));
          return () => ({
            from: (t: Parameters<typeof target.select>[0] & object) => ({
              where: async (w: unknown) => {
                const rows = await target.select().from(t as never).where(w as never);
                readDone?.();
                await gate;
                return rows;
              },
            }),
          });
        }
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    return { state, release: () => release?.(), store: new ApiKeyStore({ sql: { ...sql, db } as unknown as SqlDatabase, prefix: 'sk-if-', cacheTtlMs: 60_000 }) };
  }

  it('verify: a row read before the revocation and answered after it is not kept', async () => {
    const { state, release, store } = slowReads();
    const { key, record } = await store.create({ name: 'race-verify' });
    state.held = true;
    const inFlight = store.verify(key).catch((err: unknown) => err);
    await state.read;
    state.held = false;
    await store.revoke(record.id);
    release();
    await inFlight;
    await expect(store.verify(key)).rejects.toMatchObject({ code: 'invalid_api_key', message: expect.stringContaining('revoked') });
  });

  it('ensureActive: a row read before the revocation and answered after it is not kept', async () => {
    const { state, release, store } = slowReads();
    const { record } = await store.create({ name: 'race-ensure' });
    state.held = true;
    const inFlight = store.ensureActive(record.id).catch((err: unknown) => err);
    await state.read;
    state.held = false;
    await store.revoke(record.id);
    release();
    await inFlight;
    await expect(store.ensureActive(record.id)).rejects.toThrow(/revoked/);
  });
});

describe('ApiKeyStore.verify while the database fails', () => {
  /** The embedded database, whose reads fail while `down.now`. */
  function flakyStore(down: { now: boolean }): ApiKeyStore {
    const db = new Proxy(sql.db, {
      get(target, prop) {
        if (prop === 'select' && down.now) return () => { throw new Error('connection refused'); };
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    return new ApiKeyStore({ sql: { ...sql, db } as unknown as SqlDatabase, prefix: 'sk-if-', cacheTtlMs: 20 });
  }

  it('a key read before keeps its last row past the cache interval; one never read is 503 store_unavailable, not a 500', async () => {
    const down = { now: false };
    const store = flakyStore(down);
    const { key, record } = await store.create({ name: 'through-an-outage', rpm: 7 });
    const { key: other } = await store.create({ name: 'first-seen-in-the-outage' });
    await expect(store.verify(key)).resolves.toMatchObject({ keyId: record.id, limits: { rpm: 7 } });
    down.now = true;
    await new Promise((r) => setTimeout(r, 40)); // past cache_ttl_ms: the row would be read again
    await expect(store.verify(key)).resolves.toMatchObject({ keyId: record.id, limits: { rpm: 7 } });
    await expect(store.verify(other)).rejects.toMatchObject({ code: 'store_unavailable', status: 503, retryAfterMs: 1000 });
    // Back up: rows are read again, and a key deleted meanwhile is refused.
    down.now = false;
    await sql.query(`DELETE FROM api_keys WHERE id = $1`, [record.id]);
    await new Promise((r) => setTimeout(r, 40));
    await expect(store.verify(key)).rejects.toMatchObject({ code: 'invalid_api_key' });
    await expect(store.verify(other)).resolves.toBeDefined();
  });
});

describe('ApiKeyStore.verify while the database is silent', () => {
  it('reads a stale row once for every request that needs it, and serves the last row after a second rather than waiting out the query', async () => {
    let silent = false;
    let reads = 0;
    const db = new Proxy(sql.db, {
      get(target, prop) {
        if (prop === 'select' && silent) {
          return () => ({ from: () => ({ where: () => (reads++, new Promise(() => undefined)) }) });
        }
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const store = new ApiKeyStore({ sql: { ...sql, db } as unknown as SqlDatabase, prefix: 'sk-if-', cacheTtlMs: 20 });
    const { key, record } = await store.create({ name: 'silent-db' });
    await store.verify(key);
    silent = true;
    await new Promise((r) => setTimeout(r, 40));
    const started = Date.now();
    const tenants = await Promise.all(Array.from({ length: 20 }, () => store.verify(key)));
    expect(tenants.every((t) => t.keyId === record.id)).toBe(true);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(reads).toBe(1);
  });
});

describe('API keys while Redis is down', () => {
  const log = createLogger('silent');
  let down: RedisClient;
  let up: RedisClient | undefined;
  const prefix = `test:keys:${randomBytes(4).toString('hex')}:`;
  beforeAll(async () => {
    // A port nothing listens on: every command fails, as against a Redis that is down (at once rather
    // than after the gateway's reconnect attempts, which only make an outage slower to see).
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    await new Promise((r) => server.close(r));
    down = createRedis(`redis://127.0.0.1:${port}`, 'test-down', { enableOfflineQueue: false });
    down.on('error', () => undefined);
    if (await redisAvailable()) up = createRedis(REDIS_URL, 'test-up');
  });
  afterAll(async () => {
    down.disconnect();
    if (up) for (const k of await up.keys(`${prefix}*`)) await up.del(k);
    up?.disconnect();
  });

  it('fail open: a cached key keeps working, ensureActive still reads the row', async () => {
    const store = new ApiKeyStore({ sql, prefix: 'sk-if-', cacheTtlMs: 60_000, redis: down, redisPrefix: prefix });
    store.onRedisFailure('open', log);
    const { key, record } = await store.create({ name: 'open' });
    await expect(store.verify(key)).resolves.toMatchObject({ keyId: record.id });
    // The second call is a cache hit, which checks the revocation marker.
    await expect(store.verify(key)).resolves.toMatchObject({ keyId: record.id });
    await expect(store.ensureActive(record.id)).resolves.toBeUndefined();
    // A revocation another replica wrote to the database is seen once the cached row is read again.
    await sql.query(`UPDATE api_keys SET revoked_at = now() WHERE id = $1`, [record.id]);
    const fresh = new ApiKeyStore({ sql, prefix: 'sk-if-', cacheTtlMs: 0, redis: down, redisPrefix: prefix });
    fresh.onRedisFailure('open', log);
    await expect(fresh.ensureActive(record.id)).rejects.toMatchObject({ code: 'invalid_api_key' });
  });

  it('fail closed: 503 limiter_unavailable rather than a 500', async () => {
    const store = new ApiKeyStore({ sql, prefix: 'sk-if-', cacheTtlMs: 60_000, redis: down, redisPrefix: prefix });
    store.onRedisFailure('closed', log);
    const { key, record } = await store.create({ name: 'closed' });
    await store.verify(key);
    await expect(store.verify(key)).rejects.toMatchObject({ code: 'limiter_unavailable', status: 503 });
    await expect(store.ensureActive(record.id)).rejects.toMatchObject({ code: 'limiter_unavailable', status: 503 });
  });

  it('revoke succeeds, and this replica refuses the key at once, though the marker cannot be written', async () => {
    const store = new ApiKeyStore({ sql, prefix: 'sk-if-', cacheTtlMs: 60_000, redis: down, redisPrefix: prefix });
    store.onRedisFailure('open', log);
    const { key, record } = await store.create({ name: 'revoked-in-outage' });
    await store.verify(key);
    await expect(store.revoke(record.id)).resolves.toMatchObject({ id: record.id, revoked_at: expect.any(String) });
    await expect(store.verify(key)).rejects.toMatchObject({ code: 'invalid_api_key' });
  });

  it('with Redis up, a revocation is seen at once by another replica that cached the key', async () => {
    if (!up) return;
    const a = new ApiKeyStore({ sql, prefix: 'sk-if-', cacheTtlMs: 60_000, redis: up, redisPrefix: prefix });
    const b = new ApiKeyStore({ sql, prefix: 'sk-if-', cacheTtlMs: 60_000, redis: up, redisPrefix: prefix });
    const { key, record } = await a.create({ name: 'two-replicas' });
    await b.verify(key);
    await a.revoke(record.id);
    await expect(b.verify(key)).rejects.toMatchObject({ code: 'invalid_api_key' });
  });
});
