// Schema migrations on the real Postgres when replicas start together: `serve --workers 2` against a
// fresh database once failed to start, because both workers created the migration table at the same
// moment and the second hit the catalog's unique index.
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATION_LOCK, MIGRATIONS } from '../src/store/migrations.js';
import { openSql } from '../src/store/sql.js';
import { dropSchema, POSTGRES_URL, postgresAvailable, runId } from './helpers/services.js';

const pgUp = await postgresAvailable();
const schemas: string[] = [];
const freshSchema = (): string => {
  const s = `migrations_${runId()}`;
  schemas.push(s);
  return s;
};

afterAll(async () => {
  for (const s of schemas) await dropSchema(s);
});

async function appliedIds(schema: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: POSTGRES_URL });
  await c.connect();
  try {
    const { rows } = await c.query<{ id: string }>(`SELECT id FROM "${schema}".schema_migrations ORDER BY id`);
    return rows.map((r) => r.id);
  } finally {
    await c.end();
  }
}

describe.skipIf(!pgUp)('migrations on Postgres, replicas starting together', () => {
  it('a replica that starts while another is creating the migration table waits for it, then finds its work done', async () => {
    const schema = freshSchema();
    // The other replica, part-way through: schema made, migration table created, not yet committed.
    const other = new pg.Client({ connectionString: POSTGRES_URL, options: `-c search_path="${schema}"` });
    await other.connect();
    try {
      await other.query(`CREATE SCHEMA "${schema}"`);
      await other.query('BEGIN');
      await other.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
      await other.query(`CREATE TABLE IF NOT EXISTS schema_migrations (id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
      const starting = openSql({ url: POSTGRES_URL, pglitePath: '', schema });
      const settled = starting.then(
        (db) => ({ ok: true as const, db }),
        (err: unknown) => ({ ok: false as const, err }),
      );
      // Give the starting replica time to reach its own CREATE TABLE, then let the other one finish.
      await new Promise((r) => setTimeout(r, 300));
      await other.query('COMMIT');
      const outcome = await settled;
      expect(outcome.ok ? 'started' : String((outcome as { err: unknown }).err)).toBe('started');
      if (outcome.ok) await outcome.db.close();
    } finally {
      await other.end();
    }
    expect(await appliedIds(schema)).toEqual(MIGRATIONS.map((m) => m.id).sort());
  });

  it('four replicas opening one fresh database at once all start, and each migration is applied once', async () => {
    const schema = freshSchema();
    const opened = await Promise.allSettled(Array.from({ length: 4 }, () => openSql({ url: POSTGRES_URL, pglitePath: '', schema })));
    const failures = opened.filter((o) => o.status === 'rejected').map((o) => String((o as PromiseRejectedResult).reason));
    for (const o of opened) if (o.status === 'fulfilled') await o.value.close();
    expect(failures).toEqual([]);
    expect(await appliedIds(schema)).toEqual(MIGRATIONS.map((m) => m.id).sort());
  });
});
