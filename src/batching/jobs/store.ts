// The Batch API's durable state over the SQL store (Postgres or PGlite): files, jobs and their
// request lines. Work is handed out by lease: a worker claims lines (status `running`, its id, a
// deadline it keeps extending), and a result is recorded only by the lease holder, so a line's
// result is written at most once; lines of a worker that died become claimable when its lease ends.
import type { Tenant } from '../../gateway/context.js';
import { storableJson, type RawQuery, type SqlDatabase } from '../../store/sql.js';
import { DEFAULT_MAX_ATTEMPTS } from '../config.js';

export type BatchStatus = 'validating' | 'failed' | 'in_progress' | 'finalizing' | 'completed' | 'expiring' | 'expired' | 'cancelling' | 'cancelled';
/** `expired`: never ran, its job's completion window ended first (in the error file as `batch_expired`). */
export type ItemStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'expired';

/** The error-file `error` of a line its job's completion window ended before it ran (OpenAI's code and wording). */
export const EXPIRED_LINE_ERROR = { code: 'batch_expired', message: 'This request could not be executed before the completion window expired.' } as const;

/** The default (and only API) completion window, "24h". */
export const COMPLETION_WINDOW_MS = 24 * 3600 * 1000;

export interface FileRow {
  id: string;
  tenant_id: string;
  purpose: string;
  filename: string;
  bytes: number;
  created_at: number;
}

export interface BatchRow {
  id: string;
  tenant_id: string;
  tenant: Tenant;
  endpoint: string;
  input_file_id: string;
  completion_window: string;
  status: BatchStatus;
  metadata: Record<string, string> | null;
  errors: { object: 'list'; data: { code: string; message: string; line: number | null; param: string | null }[] } | null;
  output_file_id: string | null;
  error_file_id: string | null;
  total: number;
  created_at: number;
  in_progress_at: number | null;
  expires_at: number | null;
  finalizing_at: number | null;
  completed_at: number | null;
  failed_at: number | null;
  cancelling_at: number | null;
  cancelled_at: number | null;
  notified_at: number | null;
  /** When the expiry sweep found the window over (internal: the API shows `status: "finalizing"` until `expired`). */
  expiring_at: number | null;
  expired_at: number | null;
}

export interface ItemInput {
  line: number;
  custom_id: string;
  body: Record<string, unknown>;
}

export interface ClaimedItem extends ItemInput {
  batch_id: string;
  endpoint: string;
  tenant: Tenant;
  attempts: number;
}

export interface ItemOutcome {
  status: 'succeeded' | 'failed';
  statusCode: number;
  /** The output line's `response` (status_code, request_id, body). */
  response: Record<string, unknown>;
}

/** One completion webhook to one endpoint, as the outbox stores it (src/batching/jobs/outbox.ts). */
export interface OutboxEvent {
  /** The `webhook-id`: the same on every attempt and for every endpoint of one event. */
  id: string;
  url: string;
  batch_id: string;
  type: string;
  /** The exact JSON text sent and signed. */
  body: string;
}

/** The webhook rows of a job's final status, built from the job as it is then (in the same transaction). */
export type CompletionEvents = (job: BatchRow, counts: RequestCounts) => OutboxEvent[];

/** An output or error file whose parts a finaliser has written. */
export interface WrittenFile {
  id: string;
  bytes: number;
}

export interface RequestCounts {
  total: number;
  completed: number;
  failed: number;
}

const nowS = () => Date.now() / 1000;
/** Rows per INSERT when loading a batch's lines (keeps each statement's parameter count small). */
const INSERT_CHUNK = 500;

/** A row of CLAIM_SQL: the counts, and a claimed line (all null when none was). */
interface ClaimRow {
  open_jobs: number;
  candidates: number;
  batch_id: string | null;
  line: number;
  custom_id: string;
  body: Record<string, unknown>;
  attempts: number;
  endpoint: string;
  tenant: Tenant;
}

/** A line a claim may take: queued, or its lease over with runs left (`$3` now in ms, `$5` maxAttempts). */
const CLAIMABLE = (i: string) => `(${i}.status = 'pending' OR (${i}.status = 'running' AND ${i}.lease_until < $3 AND ${i}.attempts < $5))`;

/**
 * BatchStore.claim in one statement, however many jobs are open. $1 owner, $2 lease end (ms), $3 now
 * (ms), $4 limit, $5 maxAttempts, $6 now (s), $7 the store's turn, $8 the window (below: 2 × limit
 * in a claim's first round, wider in the next).
 *
 * - `open`: the running jobs in their window with a claimable line, in (created_at, id) order; `n`
 *   of them. `jobs`: `pos`, a job's place in that order rotated to start at job `turn mod n`, and
 *   `share`, its part of the limit (at least 1).
 * - `ranked`: the lines in claim order, (past its job's share, pos, line): each job's share in
 *   rotated job order, then the rest in that order. Its first `window` (`chosen`) are the lines the
 *   claim wants and more to take instead of ones another claim holds. Only the lines that can be
 *   among them are read: a job's lowest claimable lines up to its share, or up to window − (n − 1)
 *   when that is more (every other job is ahead of a job's lines past its share with at least one),
 *   and none of a job past place `window` (the jobs before it fill `chosen` with one line each).
 * - `picked`: the first `limit` of `chosen` that are free, locked (SKIP LOCKED: two workers never get
 *   one line); the claimable test is repeated on the locked row, so a line another worker took since
 *   this statement began is passed over too. Leased (`claimed`), each an attempt, and returned in
 *   claim order with its job's endpoint and tenant, after a row of the counts that is there even
 *   when nothing was claimed: fewer lines than min(limit, `candidates`) means some were passed over.
 */
/** A claim's windows, in multiples of the lines it still wants: one round each while it comes back short. */
const CLAIM_WINDOWS = [2, 8, 32];

const CLAIM_SQL = `
WITH open AS (
  SELECT j.id, j.endpoint, j.tenant, count(*) OVER () AS n, row_number() OVER (ORDER BY j.created_at, j.id) - 1 AS k
  FROM batch_jobs j
  WHERE j.status = 'in_progress' AND (j.expires_at IS NULL OR j.expires_at > $6::double precision)
    AND EXISTS (SELECT 1 FROM batch_items i WHERE i.batch_id = j.id AND ${CLAIMABLE('i')})
), jobs AS (
  SELECT id, endpoint, tenant, n, (k - $7::bigint % n + n) % n AS pos, GREATEST(1, ($4::int + n - 1) / n) AS share
  FROM open
), ranked AS (
  SELECT j.id AS batch_id, c.line, j.pos, row_number() OVER (PARTITION BY j.id ORDER BY c.line) > j.share AS late
  FROM jobs j CROSS JOIN LATERAL (
    SELECT i.line FROM batch_items i
    WHERE i.batch_id = j.id AND ${CLAIMABLE('i')}
    ORDER BY i.line
    LIMIT GREATEST(j.share, $8::int - j.n + 1)
  ) c
  WHERE j.pos < $8::int
), chosen AS (
  SELECT batch_id, line, pos, late FROM ranked ORDER BY late, pos, line LIMIT $8::int
), picked AS MATERIALIZED (
  SELECT i.batch_id, i.line, c.pos, c.late
  FROM batch_items i JOIN chosen c ON c.batch_id = i.batch_id AND c.line = i.line
  WHERE ${CLAIMABLE('i')}
  ORDER BY c.late, c.pos, i.line
  LIMIT $4::int
  FOR UPDATE OF i SKIP LOCKED
), claimed AS (
  UPDATE batch_items u SET status = 'running', lease_owner = $1::text, lease_until = $2::double precision, attempts = u.attempts + 1
  FROM picked p
  WHERE u.batch_id = p.batch_id AND u.line = p.line
  RETURNING u.batch_id, u.line, u.custom_id, u.body, u.attempts, p.pos, p.late
)
SELECT (SELECT count(*) FROM open)::int AS open_jobs, (SELECT count(*) FROM chosen)::int AS candidates,
  c.batch_id, c.line, c.custom_id, c.body, c.attempts, j.endpoint, j.tenant
FROM (SELECT 1) AS one
LEFT JOIN (claimed c JOIN jobs j ON j.id = c.batch_id) ON true
ORDER BY c.late, c.pos, c.line`;

export class BatchStore {
  /** Which running job a claim starts from (claim): moves on at every claim. */
  private turn = 0;

  constructor(readonly sql: SqlDatabase) {}

  async createFile(file: Omit<FileRow, 'created_at'> & { content: string }): Promise<FileRow> {
    const created = Math.floor(nowS());
    await this.sql.query(`INSERT INTO batch_files (id, tenant_id, purpose, filename, bytes, content, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (id) DO NOTHING`, [
      file.id,
      file.tenant_id,
      file.purpose,
      file.filename,
      file.bytes,
      file.content,
      created,
    ]);
    return { id: file.id, tenant_id: file.tenant_id, purpose: file.purpose, filename: file.filename, bytes: file.bytes, created_at: created };
  }

  async getFile(id: string, tenantId: string): Promise<FileRow | undefined> {
    const rows = await this.sql.query<FileRow>(`SELECT id, tenant_id, purpose, filename, bytes, created_at FROM batch_files WHERE id = $1 AND tenant_id = $2`, [id, tenantId]);
    return rows[0];
  }

  /**
   * A whole file as one string: for input files (at most `max_file_bytes`). Output and error files
   * can be larger than a string may be: read those with `fileChunks`.
   */
  async fileContent(id: string, tenantId: string): Promise<string | undefined> {
    const chunks = await this.fileChunks(id, tenantId);
    if (!chunks) return undefined;
    const parts: string[] = [];
    for await (const c of chunks) parts.push(c);
    return parts.join('');
  }

  /**
   * A file's content in pieces, read from the database one at a time as they are consumed: an
   * uploaded file's content, then the parts of an output or error file in order. undefined when the
   * tenant has no such file.
   */
  async fileChunks(id: string, tenantId: string): Promise<AsyncIterable<string> | undefined> {
    const rows = await this.sql.query<{ content: string; parts_writer: string | null }>(`SELECT content, parts_writer FROM batch_files WHERE id = $1 AND tenant_id = $2`, [id, tenantId]);
    const row = rows[0];
    if (!row) return undefined;
    const sql = this.sql;
    return (async function* () {
      if (row.content) yield row.content;
      if (row.parts_writer === null) return;
      for (let part = 0; ; part++) {
        const got = await sql.query<{ content: string }>(`SELECT content FROM batch_file_parts WHERE file_id = $1 AND writer = $2 AND part = $3`, [id, row.parts_writer, part]);
        if (!got[0]) return;
        yield got[0].content;
      }
    })();
  }

  /**
   * Up to `limit` of a tenant's files in (created_at, id) order, `desc` or `asc`, of one `purpose` if
   * given, after the file `after`. undefined when `after` is none of the tenant's files: another
   * tenant's id is treated as an unknown one, so it tells nothing about that file.
   */
  async listFiles(tenantId: string, q: { limit: number; order: 'asc' | 'desc'; after?: string; purpose?: string }): Promise<FileRow[] | undefined> {
    let cursor: { created_at: number; id: string } | undefined;
    if (q.after !== undefined) {
      cursor = (await this.sql.query<{ created_at: number; id: string }>(`SELECT created_at, id FROM batch_files WHERE id = $1 AND tenant_id = $2`, [q.after, tenantId]))[0];
      if (!cursor) return undefined;
    }
    const [cmp, dir] = q.order === 'asc' ? ['>', 'ASC'] : ['<', 'DESC'];
    return this.sql.query<FileRow>(
      `SELECT id, tenant_id, purpose, filename, bytes, created_at FROM batch_files
       WHERE tenant_id = $1 AND ($2::text IS NULL OR purpose = $2) AND ($3::double precision IS NULL OR (created_at, id) ${cmp} ($3::double precision, $4::text))
       ORDER BY created_at ${dir}, id ${dir} LIMIT $5`,
      [tenantId, q.purpose ?? null, cursor?.created_at ?? null, cursor?.id ?? null, q.limit],
    );
  }

  async deleteFile(id: string, tenantId: string): Promise<boolean> {
    return this.sql.transaction(async (q) => {
      const rows = await q(`DELETE FROM batch_files WHERE id = $1 AND tenant_id = $2 RETURNING id`, [id, tenantId]);
      if (rows.length > 0) await q(`DELETE FROM batch_file_parts WHERE file_id = $1`, [id]);
      return rows.length > 0;
    });
  }

  /**
   * Creates a job with its lines in one transaction: in progress, or failed with `errors`. It expires
   * `windowMs` after its `created_at` (whole seconds, as OpenAI's `expires_at`): 24 h by default.
   * A job failed at creation stores its `batch.failed` webhook (`events`) in the same transaction.
   */
  async createBatch(b: {
    id: string;
    tenant: Tenant;
    endpoint: string;
    inputFileId: string;
    completionWindow: string;
    metadata: Record<string, string> | null;
    items: ItemInput[];
    errors?: BatchRow['errors'];
    windowMs?: number;
    events?: CompletionEvents;
  }): Promise<BatchRow> {
    const now = nowS();
    const failed = !!b.errors;
    await this.sql.transaction(async (q) => {
      await q(
        `INSERT INTO batch_jobs (id, tenant_id, tenant, endpoint, input_file_id, completion_window, status, metadata, errors, total, created_at, in_progress_at, expires_at, failed_at)
         VALUES ($1,$2,$3::jsonb,$4,$5,$6,$7,$8::jsonb,$9::jsonb,$10,$11,$12,$13,$14)`,
        [
          b.id,
          b.tenant.id,
          JSON.stringify(b.tenant),
          b.endpoint,
          b.inputFileId,
          b.completionWindow,
          failed ? 'failed' : 'in_progress',
          b.metadata ? JSON.stringify(b.metadata) : null,
          b.errors ? JSON.stringify(b.errors) : null,
          failed ? 0 : b.items.length,
          Math.floor(now),
          failed ? null : Math.floor(now),
          Math.floor(now) + (b.windowMs ?? COMPLETION_WINDOW_MS) / 1000,
          failed ? Math.floor(now) : null,
        ],
      );
      if (!failed) await insertItems(q, b.id, b.items);
      else if (b.events) await storeEvents(q, b.id, b.events);
    });
    return (await this.getBatch(b.id)) as BatchRow;
  }

  async getBatch(id: string, tenantId?: string): Promise<BatchRow | undefined> {
    const rows = await this.sql.query<BatchRow>(`SELECT * FROM batch_jobs WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2)`, [id, tenantId ?? null]);
    return rows[0];
  }

  /**
   * A page of the tenant's batches, newest first, after the batch `after`; undefined when `after` is
   * not one of the tenant's batches (unknown, or another tenant's: refused alike, so it tells nothing).
   */
  async listBatches(tenantId: string, limit: number, after?: string): Promise<BatchRow[] | undefined> {
    let cursor: { created_at: number; id: string } | undefined;
    if (after !== undefined) {
      cursor = (await this.sql.query<{ created_at: number; id: string }>(`SELECT created_at, id FROM batch_jobs WHERE id = $1 AND tenant_id = $2`, [after, tenantId]))[0];
      if (!cursor) return undefined;
    }
    return this.sql.query<BatchRow>(
      `SELECT * FROM batch_jobs WHERE tenant_id = $1 AND ($2::double precision IS NULL OR (created_at, id) < ($2::double precision, $3::text))
       ORDER BY created_at DESC, id DESC LIMIT $4`,
      [tenantId, cursor?.created_at ?? null, cursor?.id ?? null, limit],
    );
  }

  async counts(batchId: string): Promise<RequestCounts> {
    return countsWith((text, params) => this.sql.query(text, params), batchId);
  }

  /**
   * Hands out up to `limit` open lines of running jobs: a share of the limit from each job, its lowest
   * open lines first, starting from a job that moves on at every claim, then what is left in the same
   * order — not one job's lines before another's (a tenant's 50,000-line batch would hold every slot
   * until it was done, and a later batch would expire unrun), nor the lowest line numbers first (a new
   * job's would starve an old one part-way through). Expired leases included,
   * unless the line has had `maxAttempts` runs already (`exhaustAttempts` fails it instead). Each
   * claim is an attempt. Nothing of a job whose window is over, even before the sweep has marked it
   * expiring.
   *
   * One statement however many jobs are open (CLAIM_SQL), choosing among the first 2 × limit lines in
   * claim order. Lines other workers are claiming at that moment are passed over (SKIP LOCKED); when
   * they were more than the spares, so that the claim came back short while lines past its window
   * may be free, it looks again over a window four times as wide, then sixteen — at most three
   * statements, which fill the claim unless some 30 × limit lines are being claimed at that moment.
   */
  async claim(owner: string, leaseMs: number, limit: number, maxAttempts = DEFAULT_MAX_ATTEMPTS): Promise<ClaimedItem[]> {
    if (limit <= 0) return [];
    const now = Date.now();
    const turn = this.turn;
    const claimed: ClaimedItem[] = [];
    let openJobs = 0;
    for (let round = 0; round < CLAIM_WINDOWS.length && claimed.length < limit; round++) {
      const want = limit - claimed.length;
      const window = want * (CLAIM_WINDOWS[round] as number);
      const rows = await this.sql.query<ClaimRow>(CLAIM_SQL, [owner, now + leaseMs, now, want, maxAttempts, now / 1000, turn, window]);
      const counts = rows[0];
      if (round === 0) openJobs = counts?.open_jobs ?? 0;
      let got = 0;
      for (const r of rows) {
        if (r.batch_id === null) continue;
        claimed.push({ batch_id: r.batch_id, line: r.line, custom_id: r.custom_id, body: r.body, attempts: r.attempts, endpoint: r.endpoint, tenant: r.tenant });
        got++;
      }
      // It got every line it wanted or could choose: there are no more to find. Fewer means some were
      // skipped (another claim held them or had just taken them), and lines past the window may be free.
      if (!counts || got >= Math.min(want, counts.candidates)) break;
    }
    if (openJobs > 0) this.turn++;
    return claimed;
  }

  /**
   * Keeps the leases of the lines this worker is running alive. Only those: a line whose result it
   * could not record is no longer its own to keep, even if handing it back failed too.
   */
  async extendLeases(owner: string, leaseMs: number, lines: readonly { batch_id: string; line: number }[]): Promise<void> {
    if (lines.length === 0) return;
    await this.sql.query(
      `UPDATE batch_items SET lease_until = $2 WHERE lease_owner = $1 AND status = 'running' AND (batch_id, line) IN (SELECT * FROM unnest($3::text[], $4::int[]))`,
      [owner, Date.now() + leaseMs, lines.map((l) => l.batch_id), lines.map((l) => l.line)],
    );
  }

  /**
   * A line that ran but whose result could not be recorded: its lease ends now, so it runs again at
   * once (another attempt) or, out of attempts, is failed by `exhaustAttempts`. `error` stays in the
   * database (`last_error`) and the log, not in the tenant's error file: it is the database's text.
   */
  async abandonItem(batchId: string, line: number, owner: string, error: string): Promise<void> {
    await this.sql.query(`UPDATE batch_items SET last_error = $4, lease_owner = NULL, lease_until = 0 WHERE batch_id = $1 AND line = $2 AND lease_owner = $3 AND status = 'running'`, [
      batchId,
      line,
      owner,
      error.slice(0, 500),
    ]);
  }

  /**
   * Fails the lines of running jobs that had `maxAttempts` runs and none recorded a result (their
   * result could not be saved, or their worker died each time), with `max_attempts_exceeded` in the
   * error file, so their jobs can finish. Only lines whose last lease has ended: one still held may
   * yet record its result.
   */
  async exhaustAttempts(maxAttempts: number): Promise<void> {
    await this.sql.query(
      `UPDATE batch_items i SET status = 'failed', response = NULL, status_code = NULL, finished_at = $3, lease_owner = NULL, lease_until = NULL,
         error = jsonb_build_object('code', 'max_attempts_exceeded', 'message',
           'This request was run ' || i.attempts || ' times without its result being recorded ' ||
           CASE WHEN i.last_error IS NULL THEN '(each time the worker running it stopped first).'
                ELSE '(the gateway could not save it; its log has the error for this batch and line).' END)
       FROM batch_jobs j
       WHERE j.id = i.batch_id AND j.status = 'in_progress' AND i.status = 'running' AND i.lease_until < $1 AND i.attempts >= $2`,
      [Date.now(), maxAttempts, nowS()],
    );
  }

  /** Records a line's result if this worker still holds its lease; false means someone else took it over. */
  async finishItem(batchId: string, line: number, owner: string, outcome: ItemOutcome): Promise<boolean> {
    const rows = await this.sql.query(
      `UPDATE batch_items SET status = $4, status_code = $5, response = $6::jsonb, finished_at = $7, lease_owner = NULL, lease_until = NULL
       WHERE batch_id = $1 AND line = $2 AND lease_owner = $3 AND status = 'running' RETURNING line`,
      // Storable as jsonb: a result that could not be recorded would run again at every lease end.
      [batchId, line, owner, outcome.status, outcome.statusCode, storableJson(outcome.response), nowS()],
    );
    return rows.length > 0;
  }

  /** Graceful stop: this worker's unfinished lines go back to the queue at once. */
  async releaseOwner(owner: string): Promise<void> {
    // A line of a job cancelled (or expired) while it ran is cancelled (expired), not queued again:
    // nothing claims lines of such a job, so a pending one would keep it from ever finishing.
    await this.sql.query(
      // A run cut short by a shutdown is not one of the line's attempts.
      `UPDATE batch_items i SET status = CASE j.status WHEN 'cancelling' THEN 'cancelled' WHEN 'expiring' THEN 'expired' ELSE 'pending' END,
         error = CASE WHEN j.status = 'expiring' THEN $2::jsonb ELSE i.error END, lease_owner = NULL, lease_until = NULL,
         attempts = GREATEST(i.attempts - 1, 0)
       FROM batch_jobs j WHERE j.id = i.batch_id AND i.lease_owner = $1 AND i.status = 'running'`,
      [owner, JSON.stringify(EXPIRED_LINE_ERROR)],
    );
  }

  /**
   * Moves running jobs whose window is over to `expiring`; returns their ids. One UPDATE: when two
   * workers sweep at once, each job is moved by one of them.
   */
  async expireDue(): Promise<string[]> {
    const now = nowS();
    const rows = await this.sql.query<{ id: string }>(`UPDATE batch_jobs SET status = 'expiring', expiring_at = $1 WHERE status = 'in_progress' AND expires_at <= $1 RETURNING id`, [now]);
    return rows.map((r) => r.id);
  }

  /**
   * Ends the lines of cancelling and expiring jobs that will never run: queued ones and running ones
   * whose lease ended (their worker died). A cancelled job's are cancelled; an expiring job's expire
   * (the error file's `batch_expired`). The sweep's `unfinalized()` then finds those jobs and
   * finishes them. Idempotent: workers sweeping together change each line once.
   */
  async dropUnrunnable(): Promise<void> {
    await this.sql.query(
      `UPDATE batch_items i SET status = CASE WHEN j.status = 'cancelling' THEN 'cancelled' ELSE 'expired' END,
         error = CASE WHEN j.status = 'expiring' THEN $2::jsonb ELSE i.error END, lease_owner = NULL, lease_until = NULL
       FROM batch_jobs j
       WHERE j.id = i.batch_id AND j.status IN ('cancelling', 'expiring')
         AND (i.status = 'pending' OR (i.status = 'running' AND i.lease_until < $1))`,
      [Date.now(), JSON.stringify(EXPIRED_LINE_ERROR)],
    );
  }

  /** Cancels a job: queued lines are dropped now; lines under way finish, then the job is finalised. */
  async cancel(id: string, tenantId: string): Promise<BatchRow | undefined> {
    await this.sql.transaction(async (q) => {
      const rows = await q(`UPDATE batch_jobs SET status = 'cancelling', cancelling_at = $3 WHERE id = $1 AND tenant_id = $2 AND status IN ('validating', 'in_progress') RETURNING id`, [id, tenantId, Math.floor(nowS())]);
      if (rows.length > 0) await q(`UPDATE batch_items SET status = 'cancelled', lease_owner = NULL WHERE batch_id = $1 AND status = 'pending'`, [id]);
    });
    return this.getBatch(id, tenantId);
  }

  /**
   * Moves a job whose lines are all done to `finalizing` and returns it (exactly one caller wins);
   * undefined while lines are still open or when another worker already did it.
   */
  async beginFinalizing(id: string): Promise<BatchRow | undefined> {
    const rows = await this.sql.query<{ id: string }>(
      `UPDATE batch_jobs SET status = 'finalizing', finalizing_at = $2
       WHERE id = $1 AND status IN ('in_progress', 'cancelling', 'expiring')
         AND NOT EXISTS (SELECT 1 FROM batch_items WHERE batch_id = $1 AND status IN ('pending', 'running'))
       RETURNING id`,
      [id, Math.floor(nowS())],
    );
    return rows.length > 0 ? this.getBatch(id) : undefined;
  }

  /** A finaliser still at work says so, so no sweep takes its job for one left by a dead worker. */
  async touchFinalizing(id: string): Promise<void> {
    await this.sql.query(`UPDATE batch_jobs SET finalizing_at = $2 WHERE id = $1 AND status = 'finalizing'`, [id, Math.floor(nowS())]);
  }

  /** Jobs left in `finalizing` by a worker that died (not touched for `olderThanS`). */
  async staleFinalizing(olderThanS: number): Promise<string[]> {
    const rows = await this.sql.query<{ id: string }>(`SELECT id FROM batch_jobs WHERE status = 'finalizing' AND finalizing_at < $1`, [Math.floor(nowS()) - olderThanS]);
    return rows.map((r) => r.id);
  }

  /** Running, cancelling or expiring jobs with no open lines (a finalisation that never happened). */
  async unfinalized(): Promise<string[]> {
    const rows = await this.sql.query<{ id: string }>(
      `SELECT j.id FROM batch_jobs j WHERE j.status IN ('in_progress', 'cancelling', 'expiring') AND NOT EXISTS (SELECT 1 FROM batch_items i WHERE i.batch_id = j.id AND i.status IN ('pending', 'running'))`,
    );
    return rows.map((r) => r.id);
  }

  /**
   * Up to `limit` lines of one file after line `afterLine`, in input order: a page of the output file
   * (answered lines) or of the error file (failed and expired ones).
   */
  async finishedItemsPage(
    batchId: string,
    file: 'output' | 'error',
    afterLine: number,
    limit: number,
  ): Promise<{ line: number; custom_id: string; response: Record<string, unknown> | null; error: { code: string; message: string } | null }[]> {
    return this.sql.query(`SELECT line, custom_id, response, error FROM batch_items WHERE batch_id = $1 AND status = ANY($2::text[]) AND line > $3 ORDER BY line LIMIT $4`, [
      batchId,
      file === 'output' ? ['succeeded'] : ['failed', 'expired'],
      afterLine,
      limit,
    ]);
  }

  /** Stores part `part` of a file being written by `writer` (a finaliser); writing it again replaces it. */
  async writeFilePart(fileId: string, writer: string, part: number, content: string): Promise<void> {
    await this.sql.query(
      `INSERT INTO batch_file_parts (file_id, writer, part, content) VALUES ($1,$2,$3,$4) ON CONFLICT (file_id, writer, part) DO UPDATE SET content = EXCLUDED.content`,
      [fileId, writer, part, content],
    );
  }

  /** Drops the parts `writer` wrote for a file that did not adopt them. */
  async discardFileParts(fileId: string, writer: string): Promise<void> {
    await this.sql.query(`DELETE FROM batch_file_parts WHERE file_id = $1 AND writer = $2`, [fileId, writer]);
  }

  /**
   * Adopts the output/error files whose parts `writer` (a finaliser) wrote and sets the final status,
   * in one transaction, only while the job is still finalizing; the completion webhooks (`events`) are
   * stored in the outbox in that transaction too, so a job never ends without them. `adopted` is false
   * when another finaliser finished the job first: the caller's parts are then its own to discard.
   * Parts other finalisers left under any of `fileIds` (one that died midway) are deleted.
   */
  async complete(
    id: string,
    final: 'completed' | 'cancelled' | 'expired',
    writer: string,
    files: { output?: WrittenFile; error?: WrittenFile },
    fileIds: readonly string[],
    events?: CompletionEvents,
  ): Promise<{ job: BatchRow | undefined; adopted: boolean }> {
    const now = Math.floor(nowS());
    const adopted = await this.sql.transaction(async (q) => {
      const job = (await q<BatchRow>(`SELECT * FROM batch_jobs WHERE id = $1 FOR UPDATE`, [id]))[0];
      if (!job || job.status !== 'finalizing') return false;
      for (const f of [files.output, files.error]) {
        if (!f) continue;
        await q(`INSERT INTO batch_files (id, tenant_id, purpose, filename, bytes, content, parts_writer, created_at) VALUES ($1,$2,'batch_output',$3,$4,'',$5,$6) ON CONFLICT (id) DO NOTHING`, [
          f.id,
          job.tenant_id,
          `${f.id}.jsonl`,
          f.bytes,
          writer,
          now,
        ]);
      }
      for (const fileId of fileIds) await q(`DELETE FROM batch_file_parts WHERE file_id = $1 AND writer <> $2`, [fileId, writer]);
      await q(
        `UPDATE batch_jobs SET status = $2, output_file_id = $3, error_file_id = $4, ${final}_at = $5 WHERE id = $1`,
        [id, final, files.output?.id ?? null, files.error?.id ?? null, now],
      );
      // The lines' requests and answers are in the files now: the rows keep their status (the
      // counts) but not a second copy of every prompt and answer, which deleting the files (the
      // tenant's way to remove them) would leave behind for good.
      await q(`UPDATE batch_items SET body = '{}'::jsonb, response = NULL WHERE batch_id = $1`, [id]);
      if (events) await storeEvents(q, id, events);
      return true;
    });
    return { job: await this.getBatch(id), adopted };
  }

}

async function countsWith(q: RawQuery, batchId: string): Promise<RequestCounts> {
  const rows = await q<{ status: ItemStatus; n: number }>(`SELECT status, count(*)::int AS n FROM batch_items WHERE batch_id = $1 GROUP BY status`, [batchId]);
  const by = Object.fromEntries(rows.map((r) => [r.status, Number(r.n)])) as Partial<Record<ItemStatus, number>>;
  const total = rows.reduce((s, r) => s + Number(r.n), 0);
  // Expired lines are in the error file: they count as failed, so completed + failed = total once a job has expired.
  return { total, completed: by.succeeded ?? 0, failed: (by.failed ?? 0) + (by.expired ?? 0) };
}

/**
 * Stores a job's completion webhooks in the outbox, inside the transaction that sets its final
 * status, from the job as that transaction sees it; `notified_at` says when. Once per job.
 */
async function storeEvents(q: RawQuery, batchId: string, events: CompletionEvents): Promise<void> {
  const job = (await q<BatchRow>(`SELECT * FROM batch_jobs WHERE id = $1`, [batchId]))[0];
  if (!job || job.notified_at !== null) return;
  const rows = events(job, job.status === 'failed' ? { total: 0, completed: 0, failed: 0 } : await countsWith(q, batchId));
  const now = Date.now();
  for (const e of rows) {
    await q(`INSERT INTO batch_webhook_outbox (id, url, batch_id, type, body, next_attempt_at, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (id, url) DO NOTHING`, [
      e.id,
      e.url,
      e.batch_id,
      e.type,
      e.body,
      now,
      now / 1000,
    ]);
  }
  if (rows.length > 0) await q(`UPDATE batch_jobs SET notified_at = $2 WHERE id = $1`, [batchId, now / 1000]);
}

async function insertItems(q: RawQuery, batchId: string, items: ItemInput[]): Promise<void> {
  for (let start = 0; start < items.length; start += INSERT_CHUNK) {
    const chunk = items.slice(start, start + INSERT_CHUNK);
    const params: unknown[] = [];
    const values = chunk.map((item, i) => {
      params.push(batchId, item.line, item.custom_id, JSON.stringify(item.body));
      const b = i * 4;
      return `($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}::jsonb)`;
    });
    await q(`INSERT INTO batch_items (batch_id, line, custom_id, body) VALUES ${values.join(', ')}`, params);
  }
}
