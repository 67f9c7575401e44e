// ApiKeyStore.ensureActive on the embedded database (in memory): what batch lines check before they run.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSql, type SqlDatabase } from '../store/sql.js';
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

  it('refuses a key revoked through this store at once, whatever it had cached', async () => {
    const store = new ApiKeyStore({ sql, prefix: 'sk-if-', cacheTtlMs: 60_000 });
    const { record } = await store.create({ name: 'revoked-here' });
    await store.ensureActive(record.id);
    await store.revoke(record.id);
    await expect(store.ensureActive(record.id)).rejects.toThrow(/revoked/);
  });
});
