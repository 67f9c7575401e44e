// The SQL connection: Postgres (`DATABASE_URL`, shared by replicas) or the embedded PGlite file (the
// single-process default). Both are Postgres dialects, so one drizzle schema and one list of SQL
// migrations serve them. Opened once at start-up (PGlite takes seconds), closed at shutdown.
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import type { ManagedResource } from '../gateway/gateway.js';
import { MIGRATION_LOCK, applyMigrations, type Migration } from './migrations.js';

export type Drizzle = PgDatabase<PgQueryResultHKT>;

export interface SqlDatabase {
  readonly kind: 'postgres' | 'pglite';
  /** Typed queries (drizzle over the same connection). */
  readonly db: Drizzle;
  /** A raw parameterised query ($1, $2…). */
  query<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<T[]>;
  /** Runs `fn` in one transaction; statements inside use the `q` it is given. */
  transaction<T>(fn: (q: RawQuery) => Promise<T>): Promise<T>;
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
}

const CONNECT_TIMEOUT_MS = 10_000;

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Opens the database and applies pending migrations. */
export async function openSql(opts: SqlOptions): Promise<SqlDatabase> {
  if (opts.schema !== undefined && !SCHEMA_NAME.test(opts.schema)) throw new Error(`invalid database schema name "${opts.schema}"`);
  const sql = opts.url ? await openPostgres(opts.url, opts.schema, opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS) : await openPglite(opts.pglitePath, opts.schema);
  try {
    await applyMigrations(sql, opts.migrations);
  } catch (err) {
    await sql.close().catch(() => undefined);
    throw err;
  }
  return sql;
}

async function openPostgres(url: string, schema: string | undefined, connectionTimeoutMillis: number): Promise<SqlDatabase> {
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
  const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis, ...(schema ? { options: `-c search_path="${schema}"` } : {}) });
  // An idle client's error (server restart) must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  const db = drizzle({ client: pool }) as unknown as Drizzle;
  return {
    kind: 'postgres',
    db,
    async query<T>(text: string, params?: unknown[]) {
      return (await pool.query(text, params)).rows as T[];
    },
    async transaction<T>(fn: (q: RawQuery) => Promise<T>) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const result = await fn(async <R>(text: string, params?: unknown[]) => (await client.query(text, params)).rows as R[]);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
    },
    async close() {
      await pool.end();
    },
  };
}

async function openPglite(path: string, schema?: string): Promise<SqlDatabase> {
  const { PGlite } = await import('@electric-sql/pglite');
  const { drizzle } = await import('drizzle-orm/pglite');
  if (path !== 'memory://') await mkdir(dirname(path), { recursive: true });
  const pg = await PGlite.create(path === 'memory://' ? undefined : path);
  if (schema) {
    await pg.exec(`CREATE SCHEMA IF NOT EXISTS "${schema}"; SET search_path TO "${schema}"`);
  }
  const db = drizzle({ client: pg }) as unknown as Drizzle;
  return {
    kind: 'pglite',
    db,
    async query<T>(text: string, params?: unknown[]) {
      return (await pg.query<T>(text, params)).rows;
    },
    async transaction<T>(fn: (q: RawQuery) => Promise<T>) {
      return pg.transaction(async (tx) => fn(async <R>(text: string, params?: unknown[]) => (await tx.query<R>(text, params)).rows));
    },
    async close() {
      if (!pg.closed) await pg.close();
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
