// Tables of the Batch API: uploaded files (contents kept in the database, so every replica sees
// them; output and error files in parts), batch jobs and one row per request line. Applied with the store's migration runner after
// the shared list (the ids are recorded in schema_migrations like every other migration).
import type { Migration } from '../../store/migrations.js';

export const BATCH_JOB_MIGRATIONS: Migration[] = [
  {
    id: '0002_batch_jobs',
    statements: [
      `CREATE TABLE IF NOT EXISTS batch_files (
        id text PRIMARY KEY,
        tenant_id text NOT NULL,
        purpose text NOT NULL,
        filename text NOT NULL,
        bytes integer NOT NULL,
        content text NOT NULL,
        created_at double precision NOT NULL
      )`,
      `CREATE TABLE IF NOT EXISTS batch_jobs (
        id text PRIMARY KEY,
        tenant_id text NOT NULL,
        tenant jsonb NOT NULL,
        endpoint text NOT NULL,
        input_file_id text NOT NULL,
        completion_window text NOT NULL,
        status text NOT NULL,
        metadata jsonb,
        errors jsonb,
        output_file_id text,
        error_file_id text,
        total integer NOT NULL DEFAULT 0,
        created_at double precision NOT NULL,
        in_progress_at double precision,
        expires_at double precision,
        finalizing_at double precision,
        completed_at double precision,
        failed_at double precision,
        cancelling_at double precision,
        cancelled_at double precision,
        notified_at double precision
      )`,
      `CREATE INDEX IF NOT EXISTS batch_jobs_status ON batch_jobs (status, created_at)`,
      `CREATE TABLE IF NOT EXISTS batch_items (
        batch_id text NOT NULL,
        line integer NOT NULL,
        custom_id text NOT NULL,
        body jsonb NOT NULL,
        status text NOT NULL DEFAULT 'pending',
        lease_owner text,
        lease_until double precision,
        attempts integer NOT NULL DEFAULT 0,
        status_code integer,
        response jsonb,
        finished_at double precision,
        PRIMARY KEY (batch_id, line)
      )`,
      `CREATE INDEX IF NOT EXISTS batch_items_open ON batch_items (batch_id, status)`,
    ],
  },
  {
    // Output and error files are written in parts: one string of a large job's whole output would
    // pass V8's string limit (~512 MB). `writer` is the finaliser that wrote a part; the file row names
    // the one whose parts it adopted (`parts_writer`), and the others' parts are deleted.
    id: '0003_batch_file_parts',
    statements: [
      `ALTER TABLE batch_files ADD COLUMN IF NOT EXISTS parts_writer text`,
      `CREATE TABLE IF NOT EXISTS batch_file_parts (
        file_id text NOT NULL,
        writer text NOT NULL,
        part integer NOT NULL,
        content text NOT NULL,
        PRIMARY KEY (file_id, writer, part)
      )`,
    ],
  },
  {
    // completion_window expiry: a job past `expires_at` is `expiring` while its running lines end,
    // then `expired`. A line that never ran (expired) keeps OpenAI's error-file `error` object here.
    id: '0004_batch_expiry',
    statements: [
      `ALTER TABLE batch_jobs ADD COLUMN IF NOT EXISTS expiring_at double precision`,
      `ALTER TABLE batch_jobs ADD COLUMN IF NOT EXISTS expired_at double precision`,
      `ALTER TABLE batch_items ADD COLUMN IF NOT EXISTS error jsonb`,
    ],
  },
  {
    // Why a line's last run recorded nothing (its result could not be saved), for the message of the
    // `max_attempts_exceeded` error it gets once `attempts` reaches `batch_jobs.max_attempts`.
    id: '0005_batch_line_attempts',
    statements: [`ALTER TABLE batch_items ADD COLUMN IF NOT EXISTS last_error text`],
  },
  {
    // The completion webhook's outbox: one row per event and endpoint, written in the transaction that
    // sets the job's final status, delivered from here (at least once, under the stable `id`, the
    // `webhook-id`). `body` is the exact text signed and sent. `next_attempt_at` (epoch ms) is when it
    // is due, or while `lease_owner` is sending it, when that lease ends; the other times are seconds.
    id: '0006_batch_webhook_outbox',
    statements: [
      `CREATE TABLE IF NOT EXISTS batch_webhook_outbox (
        id text NOT NULL,
        url text NOT NULL,
        batch_id text NOT NULL,
        type text NOT NULL,
        body text NOT NULL,
        status text NOT NULL DEFAULT 'pending',
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at double precision NOT NULL,
        lease_owner text,
        last_status integer,
        last_error text,
        created_at double precision NOT NULL,
        delivered_at double precision,
        PRIMARY KEY (id, url)
      )`,
      `CREATE INDEX IF NOT EXISTS batch_webhook_outbox_due ON batch_webhook_outbox (status, next_attempt_at)`,
    ],
  },
  {
    // GET /v1/files pages a tenant's files by (created_at, id), either way.
    id: '0007_batch_files_list',
    statements: [`CREATE INDEX IF NOT EXISTS batch_files_tenant_created ON batch_files (tenant_id, created_at, id)`],
  },
  {
    // A claim takes each job's lowest open lines: walked in line order over the open lines alone, not
    // past every finished one (a 50,000-line job 80% done: 35.7 ms a claim on Postgres, 1.2 ms with it).
    id: '0009_batch_items_open_lines',
    statements: [`CREATE INDEX IF NOT EXISTS batch_items_open_lines ON batch_items (batch_id, line) WHERE status IN ('pending', 'running')`],
  },
];
