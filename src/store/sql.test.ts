// The SQL connection. Connecting to a Postgres that never answers (a host dropping packets, a wrong
// port held by something else) fails within the connect timeout instead of hanging start-up, a ledger
// flush or a key lookup for the operating system's TCP timeout. PGlite, in its worker thread, serves
// queries, transactions and drizzle as it did in-process, without holding the event loop.
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Worker } from 'node:worker_threads';
import { count, sql as dsql, eq, sum } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { POSTGRES_URL, postgresAvailable } from '../../test/helpers/services.js';
import { startModuleWorker } from '../gateway/worker-rpc.js';
import { openPglite, openSql, sqlResource, type SqlDatabase } from './sql.js';
import { apiKeys } from './tables.js';

let silent: Server;
let port = 0;
const sockets: Socket[] = [];

beforeAll(async () => {
  // Accepts the TCP connection and never says a word: the startup handshake never completes.
  silent = createServer((s) => void sockets.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  port = (silent.address() as { port: number }).port;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => silent.close(() => r()));
});

describe('openSql on a Postgres that never answers', () => {
  for (const schema of [undefined, 'connect_timeout_test']) {
    it(`gives up after the connect timeout${schema ? ' (with a schema to create)' : ''}`, async () => {
      const err = await openSql({ url: `postgres://postgres@127.0.0.1:${port}/test`, pglitePath: '', schema, connectTimeoutMs: 300 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/timeout/i);
    }, 20_000); // without a connect timeout it waits for the OS's (minutes): this test's own timeout fails it
  }
});

const havePostgres = await postgresAvailable();
describe('a Postgres that goes silent mid-connection', () => {
  it.skipIf(!havePostgres)('fails a query after the query timeout instead of holding it, and the pool serves again once the server answers', async () => {
    // A proxy to the real Postgres that can stop forwarding in both directions (packets dropped).
    const target = new URL(POSTGRES_URL);
    const links: Array<{ frozen: boolean }> = [];
    const proxy = createServer((down) => {
      const up = connect(Number(target.port || 5432), target.hostname);
      const link = { frozen: false };
      links.push(link);
      for (const s of [down, up]) s.on('error', () => undefined);
      down.on('data', (d) => void (link.frozen || up.write(d)));
      up.on('data', (d) => void (link.frozen || down.write(d)));
      down.on('close', () => up.destroy());
      up.on('close', () => down.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const url = `postgres://postgres@127.0.0.1:${(proxy.address() as { port: number }).port}/test`;
    const sql = await openSql({ url, pglitePath: '', queryTimeoutMs: 500 });
    try {
      expect(await sql.query<{ n: number }>('SELECT 1::int AS n')).toEqual([{ n: 1 }]);
      for (const l of links) l.frozen = true;
      const started = Date.now();
      const err = await sql.query('SELECT 2').catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/timeout/i);
      expect(Date.now() - started).toBeLessThan(10_000);
      // The frozen connection was discarded: a new one answers.
      for (const l of links) l.frozen = false;
      expect(await sql.query<{ n: number }>('SELECT 3::int AS n')).toEqual([{ n: 3 }]);
    } finally {
      await sql.close().catch(() => undefined);
      await new Promise<void>((r) => proxy.close(() => r()));
    }
  }, 30_000);
});

describe('migrations and the query timeout', () => {
  it.skipIf(!havePostgres)('a migration that takes longer than the query timeout (an index on a large ledger) still applies', async () => {
    const schema = `slow_migration_${Date.now().toString(36)}`;
    const sql = await openSql({ url: POSTGRES_URL, pglitePath: '', schema, queryTimeoutMs: 200, migrations: [{ id: 'slow', statements: ['SELECT pg_sleep(0.6)'] }] });
    try {
      expect(await sql.query<{ id: string }>('SELECT id FROM schema_migrations')).toEqual([{ id: 'slow' }]);
      // Queries outside migrations keep the limit.
      await expect(sql.query('SELECT pg_sleep(0.6)')).rejects.toThrow(/timeout/i);
    } finally {
      await sql.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
      await sql.close();
    }
  }, 20_000);
});

// PGlite runs in a worker thread (pglite-host.ts): the same SqlDatabase as in-process, with the
// event loop left free while a statement runs.
describe('PGlite in its worker thread', () => {
  let sql: SqlDatabase;
  beforeAll(async () => {
    sql = await openSql({ pglitePath: 'memory://', schema: 'worker_test' });
    await sql.query(`CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)`);
  }, 60_000);
  afterAll(async () => {
    await sql.close();
  });

  it('carries parameters and values of each type both ways', async () => {
    const at = new Date('2025-06-01T12:34:56.789Z');
    const [row] = await sql.query(
      `SELECT $1::timestamptz AS at, $2::numeric AS amount, $3::jsonb AS doc, $4::bytea AS bytes, $5::int8 AS big, $6::int AS n, $7::text AS missing, $8::double precision AS cost`,
      [at, '12345.678901234567890', { nested: { list: [1, 'two', null] } }, new Uint8Array([0, 255, 7]), 9007199254740993n, 42, null, 0.25],
    );
    expect(row).toEqual({ at, amount: '12345.678901234567890', doc: { nested: { list: [1, 'two', null] } }, bytes: new Uint8Array([0, 255, 7]), big: 9007199254740993n, n: 42, missing: null, cost: 0.25 });
    expect(row!.at).toBeInstanceOf(Date);
    // The schema asked for is where unqualified names went (and where migrations put their tables).
    expect(await sql.query(`SELECT table_schema FROM information_schema.tables WHERE table_name = 'api_keys'`)).toEqual([{ table_schema: 'worker_test' }]);
  });

  it('runs a transaction atomically: a failing statement rolls back all of it and reaches the caller with its code', async () => {
    const err = await sql
      .transaction(async (q) => {
        await q(`INSERT INTO notes VALUES (1, 'first')`);
        await q(`INSERT INTO notes VALUES (1, 'duplicate')`);
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ code: '23505' });
    expect(await sql.query(`SELECT * FROM notes`)).toEqual([]);

    // The caller's own error comes back as it was thrown, after the rollback.
    const own = new Error('changed my mind');
    await expect(
      sql.transaction(async (q) => {
        await q(`INSERT INTO notes VALUES (2, 'second')`);
        throw own;
      }),
    ).rejects.toBe(own);
    expect(await sql.query(`SELECT * FROM notes`)).toEqual([]);

    expect(await sql.transaction(async (q) => (await q<{ id: number }>(`INSERT INTO notes VALUES ($1, $2) RETURNING id`, [3, 'kept']))[0]!.id)).toBe(3);
    expect(await sql.query(`SELECT id, body FROM notes`)).toEqual([{ id: 3, body: 'kept' }]);
  });

  it('keeps a query from outside out of an open transaction', async () => {
    let outside: Promise<unknown[]> | undefined;
    let outsideWrite: Promise<unknown[]> | undefined;
    await expect(
      sql.transaction(async (q) => {
        await q(`INSERT INTO notes VALUES (10, 'uncommitted')`);
        // Another request's work, issued while this transaction is open (not awaited here: it waits for it).
        outside = sql.query(`SELECT id FROM notes WHERE id IN (10, 11) ORDER BY id`);
        outsideWrite = sql.query(`INSERT INTO notes VALUES (11, 'outside')`);
        await new Promise((r) => setTimeout(r, 30));
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    expect(await outside).toEqual([]); // did not see the uncommitted row
    await outsideWrite;
    expect(await sql.query(`SELECT id FROM notes WHERE id IN (10, 11)`)).toEqual([{ id: 11 }]); // not rolled back with it
  });

  it('serves drizzle: typed rows with Dates, numbers and jsonb as the in-process driver gave them', async () => {
    const expiresAt = new Date('2030-01-01T00:00:00.000Z');
    const [created] = await sql.db
      .insert(apiKeys)
      .values({ id: 'k1', prefix: 'sk-', hash: 'h1', allowedModels: ['a', 'b'], rpm: 60, budgetUsd: 1.5, metadata: { team: 'x' }, expiresAt })
      .returning();
    expect(created).toMatchObject({ id: 'k1', allowedModels: ['a', 'b'], rpm: 60, budgetUsd: 1.5, metadata: { team: 'x' }, expiresAt, revokedAt: null });
    expect(created!.createdAt).toBeInstanceOf(Date);

    const revokedAt = new Date('2026-02-03T04:05:06.007Z');
    const [updated] = await sql.db.update(apiKeys).set({ revokedAt }).where(eq(apiKeys.id, 'k1')).returning({ id: apiKeys.id, revokedAt: apiKeys.revokedAt });
    expect(updated).toEqual({ id: 'k1', revokedAt });

    const [selected] = await sql.db.select().from(apiKeys).where(eq(apiKeys.hash, 'h1'));
    expect(selected).toEqual({ ...created, revokedAt });
    const [counted] = await sql.db.select({ n: count(), total: sum(apiKeys.rpm) }).from(apiKeys);
    expect(counted).toEqual({ n: 1, total: '60' });
    expect(await sql.db.select().from(apiKeys).where(eq(apiKeys.id, 'none'))).toEqual([]);
    // Untyped SQL: rows as objects, a timestamp as Postgres' text (drizzle's PGlite driver did the same).
    expect(await sql.db.execute(dsql`SELECT ${'x'}::text AS v, '2025-01-01T00:00:00Z'::timestamptz AS at`)).toEqual([{ v: 'x', at: '2025-01-01 00:00:00+00' }]);
  });

  it('leaves the event loop free while a heavy statement runs', async () => {
    let last = performance.now();
    let maxGap = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
    }, 1);
    const started = performance.now();
    try {
      await sql.query(`SELECT count(*) FROM generate_series(1, 3000000)`);
    } finally {
      clearInterval(ticker);
    }
    const took = performance.now() - started;
    // In this thread the statement would have been one gap as long as itself.
    expect(took).toBeGreaterThanOrEqual(150);
    expect(maxGap).toBeLessThan(took / 2);
  });
});

describe('PGlite worker lifetime', () => {
  it('refuses queries once closed; closing again is harmless', async () => {
    const sql = await openSql({ pglitePath: 'memory://' });
    await sql.close();
    await sql.close();
    await expect(sql.query('SELECT 1')).rejects.toThrow('the PGlite database is closed');
    await expect(sql.transaction(async () => 1)).rejects.toThrow(/closed/);
    await expect(sqlResource(sql).check()).rejects.toThrow(/closed/);
  }, 60_000);

  it('rejects every call with why once the worker has died, so the readiness check fails', async () => {
    let worker: Worker | undefined;
    const sql = await openPglite('memory://', undefined, () => (worker = startModuleWorker(new URL('./sql.ts', import.meta.url).href, 'pglite-worker')));
    try {
      const resource = sqlResource(sql);
      expect(await resource.check()).toBe(true);
      await worker!.terminate();
      await expect(resource.check()).rejects.toThrow(/PGlite worker (exited|stopped)/);
      await expect(sql.transaction(async () => 1)).rejects.toThrow(/PGlite worker/);
    } finally {
      await sql.close();
    }
  }, 60_000);

  it('stops the worker when the database cannot be opened', async () => {
    let worker: Worker | undefined;
    const err = await openPglite('/dev/null/not-a-dir/db', undefined, () => (worker = startModuleWorker(new URL('./sql.ts', import.meta.url).href, 'pglite-worker'))).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ENOTDIR' });
    expect(worker!.threadId).toBe(-1); // terminated
  }, 60_000);
});
