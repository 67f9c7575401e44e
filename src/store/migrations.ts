// SQL migrations, applied in order at start-up and recorded in `schema_migrations`. The list is
// append-only: a capability that needs tables adds an entry at the end (never edits a shipped one).
// Replicas starting together (or the workers of one `serve --workers N`) serialise on an advisory
// lock, so each migration runs exactly once and no two create the same table at the same moment.
import type { SqlDatabase } from './sql.js';

/** The advisory lock every schema change takes (creating the schema, its migration table, a migration). */
export const MIGRATION_LOCK = 727271;

export interface Migration {
  /** Unique, ordered id, e.g. `0001_tenancy`. */
  id: string;
  /** One statement per entry (PGlite's extended protocol takes one at a time). */
  statements: string[];
}

export const MIGRATIONS: Migration[] = [
  {
    id: '0001_tenancy',
    statements: [
      `CREATE TABLE IF NOT EXISTS api_keys (
        id text PRIMARY KEY,
        name text NOT NULL DEFAULT '',
        prefix text NOT NULL,
        hash text NOT NULL UNIQUE,
        user_id text,
        team_id text,
        allowed_models jsonb,
        rpm integer,
        tpm integer,
        max_concurrency integer,
        budget_usd double precision,
        budget_period text,
        metadata jsonb,
        ip_allowlist jsonb,
        expires_at timestamptz,
        revoked_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now()
      )`,
      `CREATE TABLE IF NOT EXISTS ledger (
        id uuid PRIMARY KEY,
        request_id text NOT NULL,
        ts timestamptz NOT NULL,
        tenant_id text NOT NULL,
        tenant_kind text NOT NULL,
        key_id text,
        user_id text,
        team_id text,
        endpoint text NOT NULL,
        model text,
        provider text,
        deployment text,
        prompt_tokens integer NOT NULL DEFAULT 0,
        completion_tokens integer NOT NULL DEFAULT 0,
        cost_usd double precision NOT NULL DEFAULT 0,
        latency_ms double precision NOT NULL DEFAULT 0,
        cache text,
        status integer NOT NULL,
        error_code text
      )`,
      `CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts)`,
      `CREATE INDEX IF NOT EXISTS ledger_key_ts ON ledger (key_id, ts)`,
      `CREATE INDEX IF NOT EXISTS ledger_user_ts ON ledger (user_id, ts)`,
      `CREATE TABLE IF NOT EXISTS webhook_events (
        id text PRIMARY KEY,
        received_at timestamptz NOT NULL DEFAULT now(),
        signed_at timestamptz NOT NULL,
        type text,
        payload jsonb NOT NULL
      )`,
    ],
  },
  {
    // A team's budget counter is seeded from its spend this period (spentSince), as a key's and a
    // user's are: without this index that read scanned every ledger row of the period.
    id: '0008_ledger_team_index',
    statements: [`CREATE INDEX IF NOT EXISTS ledger_team_ts ON ledger (team_id, ts)`],
  },
];

/** Applies every migration not yet recorded, each in its own transaction, under an advisory lock. */
export async function applyMigrations(sql: SqlDatabase, migrations: readonly Migration[] = MIGRATIONS): Promise<string[]> {
  // Under the lock too: two sessions running CREATE TABLE IF NOT EXISTS at the same moment both find
  // no table, and the second fails on the catalog's unique index ("pg_type_typname_nsp_index").
  // No query timeout here: another replica's migration may hold the lock for minutes, and an index
  // built on a large table (the ledger) takes as long as it takes.
  const unbounded = { unbounded: true };
  await sql.transaction(async (q) => {
    await q(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
    await q(`CREATE TABLE IF NOT EXISTS schema_migrations (id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
  }, unbounded);
  const applied: string[] = [];
  for (const m of migrations) {
    const done = await sql.transaction(async (q) => {
      // Lock per transaction: a replica that waited re-checks and skips what another just applied.
      await q(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
      const rows = await q(`SELECT id FROM schema_migrations WHERE id = $1`, [m.id]);
      if (rows.length > 0) return false;
      for (const s of m.statements) await q(s);
      await q(`INSERT INTO schema_migrations (id) VALUES ($1)`, [m.id]);
      return true;
    }, unbounded);
    if (done) applied.push(m.id);
  }
  return applied;
}
