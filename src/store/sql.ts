// The SQL connection: Postgres (`DATABASE_URL`, shared by replicas) or the embedded PGlite file (the
// single-process default, run in a worker thread). Both are Postgres dialects, so one drizzle schema
// and one list of SQL migrations serve them. Opened once at start-up (PGlite takes seconds), closed
// at shutdown.
import type { Worker } from 'node:worker_threads';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import type { ManagedResource } from '../gateway/gateway.js';
import { startModuleWorker, WorkerClient } from '../gateway/worker-rpc.js';
import type { PgliteRequest } from './pglite-host.js';
import { MIGRATION_LOCK, applyMigrations, type Migration } from './migrations.js';

export type Drizzle = PgDatabase<PgQueryResultHKT>;

export interface SqlDatabase {
  readonly kind: 'postgres' | 'pglite';
  /** Typed queries (drizzle over the same connection). */
  readonly db: Drizzle;
  /** A raw parameterised query ($1, $2…). */
  query<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<T[]>;
  /**
   * Runs `fn` in one transaction; statements inside use the `q` it is given. `unbounded`: no query
   * timeout (schema migrations: an index built on a large table, the migration lock waited for).
   */
  transaction<T>(fn: (q: RawQuery) => Promise<T>, opts?: { unbounded?: boolean }): Promise<T>;
  close(): Promise<void>;
}

export type RawQuery = <T = Record<string, unknown>>(text: string, params?: unknown[]) => Promise<T[]>;

export interface SqlOptions {
  /** postgres://… ; empty opens PGlite at `pglitePath`. */
  url?: string;
  pglitePath: string;
  /** Postgres schema to use (created if missing); tests use one per run. */
  schema?: string;
  migrations?: readonly Migration[];
  /**
   * How long connecting to Postgres may take (TCP and the startup handshake), ms; default 10 s. A
   * server that drops packets would otherwise hold a ledger flush, a key lookup or the start-up for
   * the operating system's TCP timeout (about two minutes).
   */
  connectTimeoutMs?: number;
  /**
   * How long one Postgres query may take before the client gives up on it (and discards its
   * connection), ms; default 30 s. A server gone silent mid-connection would otherwise hold it for
   * the kernel's retransmission timeout (~15 min).
   */
  queryTimeoutMs?: number;
}

const CONNECT_TIMEOUT_MS = 10_000;
/** How long one Postgres query may take before the client gives up on it, ms. */
const QUERY_TIMEOUT_MS = 30_000;

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Opens the database and applies pending migrations. */
export async function openSql(opts: SqlOptions): Promise<SqlDatabase> {
  if (opts.schema !== undefined && !SCHEMA_NAME.test(opts.schema)) throw new Error(`invalid database schema name "${opts.schema}"`);
  const sql = opts.url ? await openPostgres(opts.url, opts.schema, opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS, opts.queryTimeoutMs ?? QUERY_TIMEOUT_MS) : await openPglite(opts.pglitePath, opts.schema);
  try {
    await applyMigrations(sql, opts.migrations);
  } catch (err) {
    await sql.close().catch(() => undefined);
    throw err;
  }
  return sql;
}

async function openPostgres(url: string, schema: string | undefined, connectionTimeoutMillis: number, queryTimeoutMs: number): Promise<SqlDatabase> {
  const { default: pg } = await import('pg');
  const { drizzle } = await import('drizzle-orm/node-postgres');
  if (schema) {
    const admin = new pg.Client({ connectionString: url, connectionTimeoutMillis });
    await admin.connect();
    try {
      // Serialised with every other replica's schema changes (see applyMigrations).
      await admin.query('BEGIN');
      await admin.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
      await admin.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
      await admin.query('COMMIT');
    } finally {
      await admin.end();
    }
  }
  // A server that goes silent mid-connection (a failover, a partition dropping packets) would hold a
  // query for the kernel's retransmission timeout (~15 min): each query gives up after
  // queryTimeoutMs (the client is then discarded, not reused), and keepalive probes find the dead
  // connection of an idle client.
  const pool = new pg.Pool({
    connectionString: url,
    max: 10,
    connectionTimeoutMillis,
    query_timeout: queryTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    ...(schema ? { options: `-c search_path="${schema}"` } : {}),
  });
  // An idle client's error (server restart) must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  const db = drizzle({ client: pool }) as unknown as Drizzle;
  return {
    kind: 'postgres',
    db,
    async query<T>(text: string, params?: unknown[]) {
      return (await pool.query(text, params)).rows as T[];
    },
    async transaction<T>(fn: (q: RawQuery) => Promise<T>, opts?: { unbounded?: boolean }) {
      const client = await pool.connect();
      // pg reads a falsy per-query timeout as "the pool's": the largest timer delay stands for none.
      const timeout = opts?.unbounded ? { query_timeout: 2 ** 31 - 1 } : {};
      // A client whose ROLLBACK failed (its connection broken, or a query timed out and may still be
      // running) goes, rather than back to the pool mid-transaction.
      let broken = false;
      try {
        await client.query({ text: 'BEGIN', ...timeout });
        const result = await fn(async <R>(text: string, params?: unknown[]) => (await client.query({ text, ...(params ? { values: params } : {}), ...timeout })).rows as R[]);
        await client.query({ text: 'COMMIT', ...timeout });
        return result;
      } catch (err) {
        broken = await client.query('ROLLBACK').then(
          () => false,
          () => true,
        );
        throw err;
      } finally {
        client.release(broken);
      }
    },
    async close() {
      await pool.end();
    },
  };
}

/** Starts the thread the embedded database runs in (tests substitute one they can stop). */
export type StartPgliteWorker = () => Worker;

const startPgliteWorker: StartPgliteWorker = () => startModuleWorker(import.meta.url, 'pglite-worker');

/**
 * PGlite in a worker thread (pglite-host.ts): its WASM runs synchronously, and a ledger flush of a
 * few milliseconds in this thread held every request arriving meanwhile. Each query is a message;
 * a transaction is begun, used and ended by messages carrying its id.
 */
export async function openPglite(path: string, schema?: string, start: StartPgliteWorker = startPgliteWorker): Promise<SqlDatabase> {
  const { drizzle } = await import('drizzle-orm/pg-proxy');
  const worker = new WorkerClient(start(), 'PGlite');
  let closing: Promise<void> | undefined;
  const call = <T>(m: PgliteRequest): Promise<T> => (closing ? Promise.reject(new Error('the PGlite database is closed')) : worker.call<T>(m));
  try {
    await call({ op: 'open', path, ...(schema ? { schema } : {}) });
  } catch (err) {
    await worker.terminate();
    throw err;
  }
  const rawQuery: RawQuery = <T>(text: string, params?: unknown[]) => call<T[]>({ op: 'query', text, ...(params ? { params } : {}) });
  // drizzle's PGlite driver, through messages: 'all' (a typed select or returning) wants rows as
  // arrays by column position, 'execute' (untyped) objects; dates stay text for drizzle to map.
  // Unlike that driver, pg-proxy has no db.transaction (it throws; use `transaction`) and its
  // db.execute resolves to the rows alone, not PGlite's result object.
  const db = drizzle(async (text, params, method) => ({
    rows: await call<unknown[]>({ op: 'query', text, params, rows: method === 'all' ? 'arrays' : 'drizzle-objects' }),
  })) as unknown as Drizzle;
  return {
    kind: 'pglite',
    db,
    query: rawQuery,
    async transaction<T>(fn: (q: RawQuery) => Promise<T>) {
      const tx = await call<number>({ op: 'begin' });
      let result: T;
      try {
        result = await fn(<R>(text: string, params?: unknown[]) => call<R[]>({ op: 'query', text, tx, ...(params ? { params } : {}) }));
      } catch (err) {
        // The caller's error is the one to report (as on Postgres); a rollback refused because the
        // worker died has nothing left to undo.
        await call({ op: 'rollback', tx }).catch(() => undefined);
        throw err;
      }
      await call({ op: 'commit', tx });
      return result;
    },
    close() {
      closing ??= (async () => {
        await worker.call({ op: 'close' } satisfies PgliteRequest).catch(() => undefined);
        await worker.terminate();
      })();
      return closing;
    },
  };
}

export function sqlResource(sql: SqlDatabase): ManagedResource {
  return {
    name: sql.kind === 'postgres' ? 'postgres' : 'pglite',
    async check() {
      await sql.query('SELECT 1');
      return true;
    },
    close: () => sql.close(),
  };
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** False for a string Postgres cannot store in text or jsonb: one holding a NUL or an unpaired surrogate. */
export function storableText(s: string): boolean {
  return !s.includes('\0') && !LONE_SURROGATE.test(s);
}

/**
 * JSON that jsonb accepts (a batch line's answer, a webhook event's payload): jsonb refuses `\u0000`
 * and `\ud800`, so a NUL character or an unpaired surrogate in any string or key is stored as U+FFFD.
 * JSON.stringify writes both as lowercase escapes (a surrogate pair as the character itself); only a
 * real escape is replaced (one preceded by an even run of backslashes), not an escaped backslash
 * followed by the text "u0000".
 */
export function storableJson(value: unknown): string {
  const json = JSON.stringify(value);
  return mayHoldUnstorable(json) ? json.replace(UNSTORABLE_ESCAPES, '$1\\ufffd') : json;
}

/**
 * Whether JSON text may hold a NUL or an unpaired surrogate: a `\u0000` or `\uD8xx`–`\uDFxx` escape
 * (any case, as a client may write it). A cheap test before the slower exact check.
 */
export function mayHoldUnstorable(json: string): boolean {
  return UNSTORABLE_ESCAPE.test(json);
}

const UNSTORABLE_ESCAPE = /\\u(?:0000|[dD][89a-fA-F])/;
const UNSTORABLE_ESCAPES = /(?<!\\)((?:\\\\)*)\\u(?:0000|d[89a-f][0-9a-f]{2})/g;
