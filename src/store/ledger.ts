// The spend ledger: one row per request (who, which model and deployment, tokens, cost, latency,
// cache hit, status). `record` only appends to memory; a timer writes batches off the hot path.
// A batch that fails because the database is unreachable stays queued and is retried; at shutdown
// everything is flushed, and whatever the database still cannot take goes to a spool file that the
// next start replays — no record is lost. A batch the database refuses for its data (SQLSTATE class
// 22 or 23: the same rows would fail on every retry) is split until every good row is written; the
// rows it refuses are set aside in a dead-letter file (`<spool_path>-rejected.jsonl`), logged and counted.
// Each process writes its own spool file (`<spool_path>.<pid>-<time>`): workers sharing the setting
// never interleave their lines, and a start replays every spool file it finds.
// The queue is bounded (`maxPendingRows`): while the database is down, the timer moves the oldest
// queued rows beyond the bound to a spool file of this process's (or, without a spool path, drops
// them: the newest rows are kept), and once a flush has drained the queue this process replays the
// spool files it wrote itself, so the rows reach the database without a restart.
import { randomUUID } from 'node:crypto';
import { appendFile, mkdir, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { and, count, gte, lt, sql as dsql, sum, type SQL } from 'drizzle-orm';
import type { Logger } from 'pino';
import { withTimeout } from '../gateway/timeout.js';
import { storableJson, type SqlDatabase } from './sql.js';
import { ledger, type LedgerRow } from './tables.js';

export type LedgerEntry = Omit<LedgerRow, 'id'> & { id?: string };

export interface LedgerOptions {
  flushIntervalMs: number;
  batchSize: number;
  spoolPath?: string;
  /**
   * Rows kept in memory at most (checked at every tick of the flush timer, never per request): beyond
   * it the oldest queued rows go to a spool file, or without a spool path are dropped. Default 50,000.
   */
  maxPendingRows?: number;
}

export const DEFAULT_MAX_PENDING_ROWS = 50_000;
/** A spill leaves this share of the bound queued, so each spool file holds at least a quarter of it. */
const SPILL_TO = 0.75;
/** After a replay of this process's spool files failed, the next try waits this long. */
const REPLAY_RETRY_MS = 5_000;
/** How long close() waits for the database before it spools (or drops) what is left. */
export const CLOSE_TIMEOUT_MS = 10_000;
/** Dropped rows are logged at once, then summed into a line at most this often. */
const DROP_LOG_EVERY_MS = 30_000;

// One statement and one JSON parameter per batch: Postgres expands the rows itself. Building a
// drizzle insert of hundreds of rows × 18 columns cost more JS time than the write (measured: the
// ledger was the largest cost on the request path at saturation). It answers how many rows it
// inserted: a row whose id is there already (an earlier attempt whose answer was lost, a spool file
// replayed again) is skipped, and counted as a duplicate rather than as written.
const INSERT_BATCH = `WITH inserted AS (
INSERT INTO ledger (id, request_id, ts, tenant_id, tenant_kind, key_id, user_id, team_id, endpoint, model,
  provider, deployment, prompt_tokens, completion_tokens, cost_usd, latency_ms, cache, status, error_code)
SELECT id, request_id, ts, tenant_id, tenant_kind, key_id, user_id, team_id, endpoint, model,
  provider, deployment, prompt_tokens, completion_tokens, cost_usd, latency_ms, cache, status, error_code
FROM json_populate_recordset(NULL::ledger, $1::json)
ON CONFLICT (id) DO NOTHING
RETURNING 1)
SELECT count(*)::int AS n FROM inserted`;

// Values the database refuses would fail their whole batch on every retry and hold back every row
// queued after it: Postgres text (and its json parser) cannot hold U+0000 or an unpaired surrogate,
// which a client can put in any string it sends (a passthrough `model` is recorded as sent) —
// storableJson writes both as U+FFFD; the integer columns refuse a fraction (an OpenAI-compatible
// upstream's usage is not checked to be whole) and a count beyond their range (SQLSTATE 22003); a
// non-finite number becomes JSON null, which the NOT NULL columns refuse. A token count is clamped to
// 0 … 2,147,483,647 rather than sending the row, and the cost it carries, to the dead-letter file:
// the count was wrong either way, and the saturated value says so. The status is the gateway's own:
// one out of range is a bug, left for the dead-letter file to show.
const whole = (v: number | null | undefined): number => (v != null && Number.isFinite(v) ? Math.round(v) : 0);
/** The largest value of a Postgres `integer` column. */
const INTEGER_MAX = 2_147_483_647;
const tokenCount = (v: number | null | undefined): number => Math.min(INTEGER_MAX, Math.max(0, whole(v)));
const finite = (v: number | null | undefined): number => (v != null && Number.isFinite(v) ? v : 0);

/** A row's columns as JSON, or the error making them threw (an invalid Date's toISOString) — for that row alone. */
function prepare(row: LedgerRow): Prepared {
  try {
    return { row, json: storableJson(toColumns(row)) };
  } catch (error) {
    return { row, error };
  }
}

/** Text columns go as they are: an absent value is left out of the JSON, which the insert reads as NULL. */
function toColumns(r: LedgerRow): Record<string, unknown> {
  return {
    id: r.id,
    request_id: r.requestId,
    ts: r.ts instanceof Date ? r.ts.toISOString() : r.ts,
    tenant_id: r.tenantId,
    tenant_kind: r.tenantKind,
    key_id: r.keyId,
    user_id: r.userId,
    team_id: r.teamId,
    endpoint: r.endpoint,
    model: r.model,
    provider: r.provider,
    deployment: r.deployment,
    prompt_tokens: tokenCount(r.promptTokens),
    completion_tokens: tokenCount(r.completionTokens),
    cost_usd: finite(r.costUsd),
    latency_ms: finite(r.latencyMs),
    cache: r.cache,
    status: whole(r.status),
    error_code: r.errorCode,
  };
}

/**
 * Did the database refuse the statement for the data it carried — SQLSTATE class 22 (data exception:
 * a number out of range, text its json parser refuses…) or 23 (integrity constraint violation: a NULL
 * in a NOT NULL column…)? Such a batch fails the same way on every retry; anything else (no code, a
 * connection error, 08…, 57P01 shutdown, 53… resources) is the database's state and is retried.
 * Postgres (`pg`) and PGlite both put the SQLSTATE in `code`.
 */
export function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code);
}

/** The file rows the database refuses are set aside in, next to the spool files but never replayed. */
export const rejectedPath = (spoolPath: string): string => `${spoolPath}-rejected.jsonl`;

/** A queued row with its columns as JSON, or why it has none (a value the mapping or JSON cannot take). */
interface Prepared {
  row: LedgerRow;
  json?: string;
  error?: unknown;
}

/**
 * A queued row's Prepared, made when it is recorded: a flush then only joins strings. Serialising a
 * 200-row batch at flush time held the event loop ~1–2 ms at once, every few hundred ms at 1,000
 * req/s — a stall every request arriving meanwhile waited out; per row it is a few µs. A symbol key,
 * so the spool and dead-letter files (JSON.stringify) never see it.
 */
const PREPARED = Symbol('ledger.prepared');
type QueuedRow = LedgerRow & { [PREPARED]?: Prepared };
const preparedOf = (row: QueuedRow): Prepared => row[PREPARED] ?? prepare(row);

export class LedgerWriter {
  private queue: QueuedRow[] = [];
  /** Rows recordAfter promised and has not recorded yet. */
  private readonly promised = new Set<Promise<void>>();
  private flushing?: Promise<void>;
  /** How many rows at the queue's head a write is working on (a spill leaves them in place). */
  private inFlight = 0;
  private spilling?: Promise<void>;
  private replaying?: Promise<void>;
  private replayNotBefore = 0;
  /** Spool files this process wrote while running, not yet replayed (oldest first). */
  private readonly ownSpools: string[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly maxPending: number;
  private closed = false;
  private failures = 0;
  private droppedUnlogged = 0;
  private lastDropLog = 0;
  /** Rows a statement inserted since start (tests and /metrics read it). */
  written = 0;
  /**
   * Rows whose write found them in the database already, since start: an earlier attempt that landed
   * though its answer was lost (a timeout after the commit), or a spool file replayed again. Each row
   * a write settles counts once, as written or as duplicate.
   */
  duplicate = 0;
  /** Rows the database refused since start, set aside in the dead-letter file (or only logged without a spool path). */
  rejected = 0;
  /** Rows this process moved from its queue to a spool file: over the bound while running, or at shutdown. */
  spooled = 0;
  /**
   * Rows dropped over the bound because there is no spool path (or its file could not be written),
   * and rows recordAfter could not make (a bug, logged).
   */
  dropped = 0;

  constructor(
    private readonly sql: SqlDatabase,
    private readonly log: Logger,
    private readonly opts: LedgerOptions,
  ) {
    this.maxPending = Math.max(1, opts.maxPendingRows ?? DEFAULT_MAX_PENDING_ROWS);
    this.timer = setInterval(() => void this.tick(), opts.flushIntervalMs);
    this.timer.unref();
  }

  /** Rows queued in memory. */
  get pending(): number {
    return this.queue.length;
  }

  /**
   * Records a row once `settled` is over (a request whose budget settles after its answer went out);
   * `recorded()` waits for such rows. The row is recorded however `settled` ends: a settlement that
   * failed still leaves a request that was served. Should making the row throw (a bug), the error is
   * logged and counted as dropped, and neither `recorded()` nor the process is left with a rejection.
   */
  recordAfter(settled: Promise<unknown>, entry: () => LedgerEntry): void {
    const write = (): void => {
      this.promised.delete(row);
      try {
        this.record(entry());
      } catch (err) {
        this.dropped++;
        this.log.error({ err }, 'ledger: a row could not be made; it is not recorded');
      }
    };
    const row: Promise<void> = settled.then(write, (err: unknown) => {
      this.log.warn({ err }, 'ledger: a request\'s settlement failed; recording the row as it stands');
      write();
    });
    this.promised.add(row);
  }

  /**
   * Resolves once every row promised by recordAfter is recorded, those promised meanwhile included:
   * a reader flushes after it (read-your-writes: `GET /v1/spend`), as does shutdown.
   */
  async recorded(): Promise<void> {
    while (this.promised.size > 0) await Promise.all([...this.promised]);
  }

  record(entry: LedgerEntry): void {
    const row: QueuedRow = { ...entry, id: entry.id ?? randomUUID() };
    row[PREPARED] = prepare(row);
    this.queue.push(row);
    // A full batch is written at once — unless writes are failing (the database is down): then the
    // timer's retry, every flush_interval_ms, is the only one, not a new attempt per batch of traffic.
    if (this.queue.length >= this.opts.batchSize && !this.flushing && this.failures === 0) void this.flush().catch(() => undefined);
  }

  /**
   * What the timer does: bounds the queue (a spill to a spool file, or drops), flushes, and once the
   * queue has drained after a successful flush replays this process's spool files. Resolves when all
   * three are done; never rejects.
   */
  async tick(): Promise<void> {
    this.bound();
    await Promise.all([this.spilling, this.flush().catch(() => undefined)]);
    this.replayOwnSpools();
    await this.replaying;
  }

  /**
   * Writes everything queued now; rejects (keeping the rows not yet written queued) if the database
   * fails. Rows the database refuses for their data are set aside, not kept: they resolve the flush.
   */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing.then(() => (this.queue.length ? this.flush() : undefined));
    if (this.queue.length === 0) return Promise.resolve();
    this.flushing = (async () => {
      try {
        while (this.queue.length > 0) {
          const batch = this.queue.slice(0, this.opts.batchSize);
          const done = new Set<LedgerRow>();
          this.inFlight = batch.length;
          try {
            await this.write(batch.map(preparedOf), done);
          } finally {
            this.settle(batch, done);
            this.inFlight = 0;
          }
          this.failures = 0;
        }
      } catch (err) {
        if (this.failures++ % 30 === 0) this.log.error({ err: (err as Error).message, pending: this.queue.length }, 'ledger: write failed; records kept for retry');
        throw err;
      } finally {
        this.flushing = undefined;
      }
    })();
    return this.flushing;
  }

  /**
   * Writes `rows` in one statement; if the database refuses it for its data, writes each half on its
   * own (down to single rows, which are set aside), so one bad row costs itself only and the split
   * costs about 2·log2(batch) statements per bad row. Rows written or set aside are added to `done`;
   * any other failure is thrown with the rest not done (the flush keeps them queued for the retry).
   */
  private async write(rows: Prepared[], done: Set<LedgerRow>): Promise<void> {
    const ready: Prepared[] = [];
    for (const p of rows) {
      if (p.json !== undefined) ready.push(p);
      else await this.setAside(p.row, p.error, done);
    }
    if (ready.length === 0) return;
    let inserted: number;
    try {
      // Ids make a retried batch idempotent (a commit whose answer was lost is not doubled).
      const [answer] = await this.sql.query<{ n: number }>(INSERT_BATCH, [`[${ready.map((p) => p.json).join(',')}]`]);
      inserted = Number(answer?.n ?? 0);
    } catch (err) {
      if (!isDataError(err)) throw err;
      if (ready.length === 1) return this.setAside(ready[0]!.row, err, done);
      const half = Math.ceil(ready.length / 2);
      await this.write(ready.slice(0, half), done);
      await this.write(ready.slice(half), done);
      return;
    }
    for (const p of ready) done.add(p.row);
    this.written += inserted;
    this.duplicate += ready.length - inserted;
  }

  /** Takes the rows written or set aside out of the queue; the others stay at its head, in order. */
  private settle(batch: LedgerRow[], done: Set<LedgerRow>): void {
    if (done.size === 0) return;
    if (this.queue[0] === batch[0]) this.queue.splice(0, batch.length, ...batch.filter((r) => !done.has(r)));
    else this.queue = this.queue.filter((r) => !done.has(r)); // close() spooled the queue meanwhile
  }

  /**
   * A row the database refuses: logged with its request id and the reason, appended to the
   * dead-letter file (one JSON line, the row as the spool holds it plus `refused: {code, reason, at}`;
   * an operator who fixes it can replay it by moving the file to `<spool_path>.<anything>`), counted.
   */
  private async setAside(row: LedgerRow, err: unknown, done: Set<LedgerRow>): Promise<void> {
    const e = err as { message?: string; code?: unknown; detail?: unknown };
    const code = typeof e?.code === 'string' ? e.code : undefined;
    const reason = `${e?.message ?? String(err)}${typeof e?.detail === 'string' && e.detail ? ` (${e.detail})` : ''}`;
    const refused = { code, reason, at: new Date().toISOString() };
    const file = this.opts.spoolPath ? rejectedPath(this.opts.spoolPath) : undefined;
    let kept = false;
    if (file) {
      try {
        await mkdir(dirname(file), { recursive: true });
        // One append per row, under O_APPEND: workers sharing the file never tear each other's lines.
        await appendFile(file, JSON.stringify({ ...row, refused }) + '\n');
        kept = true;
      } catch (writeErr) {
        this.log.error({ file, err: (writeErr as Error).message }, 'ledger: could not write the dead-letter file');
      }
    }
    this.rejected++;
    done.add(row);
    // Without the file the log line carries the row itself, so it is not lost.
    this.log.error(
      { requestId: row.requestId, id: row.id, code, reason, ...(kept ? { file } : { row }) },
      'ledger: row refused by the database; set aside, the rows around it are written',
    );
  }

  /**
   * Keeps the queue at the bound: past it, the oldest rows (after those a write is working on) go to
   * a new spool file of this process's, down to three quarters of the bound so that files are not
   * tiny; without a spool path the oldest rows beyond the bound are dropped, keeping the newest.
   */
  private bound(): void {
    if (this.queue.length <= this.maxPending || this.spilling) return;
    const spool = Boolean(this.opts.spoolPath);
    const keep = spool ? Math.floor(this.maxPending * SPILL_TO) : this.maxPending;
    const take = Math.min(this.queue.length - keep, this.queue.length - this.inFlight);
    if (take <= 0) return;
    const rows = this.queue.splice(this.inFlight, take);
    if (!spool) return this.drop(rows.length, 'no spool path');
    this.spilling = this.spill(rows).finally(() => (this.spilling = undefined));
  }

  private async spill(rows: LedgerRow[]): Promise<void> {
    try {
      const file = await this.writeSpool(rows);
      this.ownSpools.push(file);
      this.spooled += rows.length;
      this.log.warn(
        { rows: rows.length, pending: this.queue.length, maxPendingRows: this.maxPending, spool: file },
        'ledger: database not taking rows; oldest queued rows beyond ledger.max_pending_rows spooled to file (replayed once it answers)',
      );
    } catch (err) {
      // Back at the queue's head (after a write's rows) as far as the bound allows; the oldest beyond it are lost.
      const room = Math.max(0, this.maxPending - this.queue.length);
      const back = rows.slice(Math.max(0, rows.length - room));
      this.queue = this.queue.slice(0, this.inFlight).concat(back, this.queue.slice(this.inFlight));
      this.log.error({ err: (err as Error).message }, 'ledger: could not write a spool file');
      if (back.length < rows.length) this.drop(rows.length - back.length, 'spool file could not be written');
    }
  }

  private drop(rows: number, reason: string): void {
    this.dropped += rows;
    this.droppedUnlogged += rows;
    const now = Date.now();
    if (now - this.lastDropLog >= DROP_LOG_EVERY_MS) this.logDropped(reason, now);
  }

  private logDropped(reason: string, now = Date.now()): void {
    this.log.error(
      { dropped: this.droppedUnlogged, droppedTotal: this.dropped, pending: this.queue.length, maxPendingRows: this.maxPending, reason },
      'ledger: queue over ledger.max_pending_rows; oldest rows dropped (LOST: not written to the database)',
    );
    this.droppedUnlogged = 0;
    this.lastDropLog = now;
  }

  /**
   * Writes rows to a new spool file of this process's, `<spool_path>.<pid>-<time>-<random>`: under a
   * name no replay claims, then renamed, so a start never reads a half-written file.
   */
  private async writeSpool(rows: readonly LedgerRow[]): Promise<string> {
    const file = this.newSpoolName();
    const dir = dirname(file);
    const partial = join(dir, `.${basename(file)}.partial`);
    await mkdir(dir, { recursive: true });
    try {
      await writeFile(partial, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
      await rename(partial, file);
    } catch (err) {
      await unlink(partial).catch(() => undefined);
      throw err;
    }
    return file;
  }

  /** Starts replaying this process's spool files when the queue has drained after a successful flush. */
  private replayOwnSpools(): void {
    if (this.replaying || this.ownSpools.length === 0 || this.queue.length > 0 || this.failures > 0 || Date.now() < this.replayNotBefore) return;
    this.replaying = (async () => {
      let replayed = 0;
      while (this.ownSpools.length > 0) {
        const file = this.ownSpools.shift()!;
        const claimed = this.claimName();
        try {
          await rename(file, claimed);
        } catch {
          continue; // a process starting meanwhile claimed it: that one replays it
        }
        try {
          replayed += await this.replayFile(claimed, basename(file));
        } catch (err) {
          // The rows not written are in a spool file of ours again: tried once the database answers.
          this.replayNotBefore = Date.now() + REPLAY_RETRY_MS;
          this.log.warn({ err: (err as Error).message, files: this.ownSpools.length }, 'ledger: replaying this process\'s spool files failed; kept for the next try');
          break;
        }
      }
      if (replayed > 0) this.log.info({ rows: replayed }, 'ledger: database answering again; replayed the rows this process had spooled');
    })().finally(() => (this.replaying = undefined));
  }

  /** A new name for a spool file of this process's, `<spool_path>.<pid>-<time>-<random>`. */
  private newSpoolName(): string {
    const path = this.opts.spoolPath!;
    return join(dirname(path), `${basename(path)}.${process.pid}-${Date.now()}-${randomUUID().slice(0, 8)}`);
  }

  private claimName(): string {
    const path = this.opts.spoolPath!;
    return join(dirname(path), `${basename(path)}.replaying-${process.pid}-${randomUUID().slice(0, 8)}`);
  }

  /**
   * Writes a claimed spool file's rows straight to the database, batch by batch (not through the
   * queue, so a large file never counts against the bound), and deletes it. If the database fails,
   * the rows not written yet go back to a spool file of this process's (the claimed file itself,
   * renamed, when none was written), which is replayed once the database answers, and the error is
   * thrown. Returns how many rows the file held (lines that do not parse are skipped and logged).
   */
  private async replayFile(claimed: string, name: string): Promise<number> {
    let text: string;
    try {
      text = await readFile(claimed, 'utf8');
    } catch {
      return 0; // a process starting meanwhile claimed it from us (claims match `<spool_path>.*`): that one replays it
    }
    const rows: LedgerRow[] = [];
    let skipped = 0;
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const r = JSON.parse(line) as LedgerRow & { ts: string };
        rows.push({ ...r, ts: new Date(r.ts) });
      } catch {
        skipped++;
      }
    }
    if (skipped > 0) this.log.warn({ file: name, skipped }, 'ledger: spool lines that do not parse were skipped');
    for (let i = 0; i < rows.length; i += this.opts.batchSize) {
      const batch = rows.slice(i, i + this.opts.batchSize);
      const done = new Set<LedgerRow>();
      try {
        await this.write(batch.map(prepare), done);
      } catch (err) {
        const rest = batch.filter((r) => !done.has(r)).concat(rows.slice(i + this.opts.batchSize));
        if (rest.length === rows.length && skipped === 0) {
          const back = this.newSpoolName();
          await rename(claimed, back);
          this.ownSpools.push(back);
        } else {
          this.ownSpools.push(await this.writeSpool(rest));
          await unlink(claimed).catch(() => undefined);
        }
        throw err;
      }
    }
    await unlink(claimed).catch(() => undefined);
    return rows.length;
  }

  /**
   * Replays the spool files left by earlier shutdowns: `spool_path` itself (older versions), every
   * `<spool_path>.*` a process wrote, and any claimed by a replay that did not finish. Each file is
   * claimed by renaming it, so concurrent starts do not both take it (a row replayed twice would be
   * ignored anyway: rows keep their ids). A line that does not parse is skipped and counted. If the
   * database fails, the rows of the file being replayed not yet written become a spool file of this
   * process's (replayed once the database answers, like a spill), the files not reached yet stay for
   * the next start, and the error is thrown.
   */
  async replaySpool(): Promise<number> {
    const path = this.opts.spoolPath;
    if (!path) return 0;
    const dir = dirname(path);
    const base = basename(path);
    const names = await readdir(dir).catch(() => [] as string[]);
    let total = 0;
    for (const name of names.filter((n) => n === base || n.startsWith(`${base}.`))) {
      const claimed = this.claimName();
      try {
        await rename(join(dir, name), claimed);
      } catch {
        continue; // another process claimed it first
      }
      total += await this.replayFile(claimed, name);
    }
    if (total > 0) this.log.info({ rows: total }, 'ledger: replayed the spool files');
    return total;
  }

  /**
   * Flushes what is queued (three tries), then spools what is left. A database that does not answer
   * within `timeoutMs` (a host gone silent holds a write until the query timeout) does not hold the
   * shutdown: the whole queue goes to the spool then, rows being written included (if that write
   * lands after all, the replay skips them by id). Without a spool path the rows left are dropped,
   * logged at error level with their content (the only copy), and counted.
   */
  async close(timeoutMs = CLOSE_TIMEOUT_MS): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    const drained = (async () => {
      await this.spilling;
      for (let attempt = 0; attempt < 3 && this.queue.length > 0; attempt++) {
        try {
          await this.flush();
        } catch {
          await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
        }
      }
      // The database answered and the queue drained: this process's spool files, if any, go now.
      this.replayOwnSpools();
      await this.replaying;
    })();
    const timedOut = await withTimeout(drained, timeoutMs).then(
      () => false,
      () => true,
    );
    if (timedOut) this.log.error({ timeoutMs, pending: this.queue.length }, 'ledger: the database did not answer at shutdown; giving up on it');
    if (this.droppedUnlogged > 0) this.logDropped('no spool path');
    if (this.queue.length > 0) {
      const left = this.queue;
      this.queue = [];
      if (this.opts.spoolPath) {
        try {
          const file = await this.writeSpool(left);
          this.spooled += left.length;
          this.log.warn({ rows: left.length, spool: file }, 'ledger: database unavailable at shutdown; records spooled to file');
        } catch (err) {
          this.dropAtShutdown(left, `the spool file could not be written: ${(err as Error).message}`);
        }
      } else this.dropAtShutdown(left, 'no spool path');
    }
    if (this.ownSpools.length > 0) this.log.warn({ files: this.ownSpools.length }, 'ledger: spool files written while running are left for the next start');
  }

  /** Rows nothing can keep at shutdown: counted, and logged whole (the log is their only copy). */
  private dropAtShutdown(rows: readonly LedgerRow[], reason: string): void {
    this.dropped += rows.length;
    this.log.error({ dropped: rows.length, droppedTotal: this.dropped, reason, rows: rows.map((r) => ({ ...r })) }, 'ledger: rows left unwritten at shutdown (LOST: not written to the database; their content is in this line)');
  }
}

export const SPEND_GROUPS = { key: ledger.keyId, user: ledger.userId, team: ledger.teamId, model: ledger.model, provider: ledger.provider, tenant: ledger.tenantId } as const;
export type SpendGroup = keyof typeof SPEND_GROUPS;

export interface SpendQuery {
  groupBy: SpendGroup;
  start: Date;
  end: Date;
  /** Only these rows (a non-admin caller sees its own spend). */
  filter?: { keyId?: string; userId?: string; tenantId?: string };
}

export interface SpendRow {
  group: string | null;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  cost_usd: number;
}

export async function querySpend(db: SqlDatabase, q: SpendQuery): Promise<SpendRow[]> {
  const col = SPEND_GROUPS[q.groupBy];
  const where: SQL[] = [gte(ledger.ts, q.start), lt(ledger.ts, q.end)];
  if (q.filter?.keyId) where.push(dsql`${ledger.keyId} = ${q.filter.keyId}`);
  if (q.filter?.userId) where.push(dsql`${ledger.userId} = ${q.filter.userId}`);
  if (q.filter?.tenantId) where.push(dsql`${ledger.tenantId} = ${q.filter.tenantId}`);
  const rows = await db.db
    .select({ group: col, requests: count(), prompt: sum(ledger.promptTokens), completion: sum(ledger.completionTokens), cost: sum(ledger.costUsd) })
    .from(ledger)
    .where(and(...where))
    .groupBy(col)
    .orderBy(dsql`sum(${ledger.costUsd}) desc`);
  return rows.map((r) => ({ group: r.group, requests: Number(r.requests), prompt_tokens: Number(r.prompt ?? 0), completion_tokens: Number(r.completion ?? 0), cost_usd: Number(r.cost ?? 0) }));
}

/** Spend in USD since a time, for seeding budget counters. */
export async function spentSince(db: SqlDatabase, scope: 'key' | 'user' | 'team', id: string, since: Date, until?: Date): Promise<number> {
  const col = scope === 'key' ? ledger.keyId : scope === 'user' ? ledger.userId : ledger.teamId;
  const [row] = await db.db
    .select({ cost: sum(ledger.costUsd) })
    .from(ledger)
    .where(and(dsql`${col} = ${id}`, gte(ledger.ts, since), ...(until ? [lt(ledger.ts, until)] : [])));
  return Number(row?.cost ?? 0);
}
