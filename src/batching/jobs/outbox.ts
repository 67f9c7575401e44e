// The completion webhook's outbox. A job's `batch.*` event is stored (one row per endpoint) in the
// transaction that sets its final status (store.ts), and delivered from here: any process with the
// endpoint configured claims due rows by lease (`FOR UPDATE SKIP LOCKED`), POSTs each signed under
// the row's stable id (the `webhook-id`), marks it delivered only after a 2xx, and otherwise schedules
// the next attempt with backoff — until `max_attempts`, or at once on a refusing 4xx (not 408 or 429).
// A row whose sender died is taken over when its lease ends, so an event survives a crash or a restart
// and is delivered at least once; receivers dedupe on `webhook-id`. Delivered and given-up rows are
// deleted after `retentionMs` (7 days), at most hourly by each process.
import type { Logger } from 'pino';
import { endpointForLog, type AttemptResult, type WebhookEndpoint } from '../../server/webhooks/sender.js';
import type { SqlDatabase } from '../../store/sql.js';
import type { OutboxEvent } from './store.js';
import { Wakeup } from './wakeup.js';

/** Where completion events go: the Standard Webhooks sender (`batch_jobs.webhook`, or the tenancy `webhooks.endpoints`). */
export interface CompletionNotifier {
  /** The endpoints that take events of `type`; all of them without one. */
  targets(type?: string): readonly WebhookEndpoint[];
  /** One signed POST. */
  attempt(endpoint: WebhookEndpoint, id: string, body: string, signal?: AbortSignal): Promise<AttemptResult>;
  /** The wait after failed attempt number `attempt`. */
  backoffMs(attempt: number): number;
  readonly maxAttempts: number;
  /** The time one attempt may take for its headers, and again for its body. */
  readonly timeoutMs: number;
}

/** One event's outbox rows: one per endpoint that takes `type`, under one webhook id (a job has one final event). */
export function completionEvents(notifier: CompletionNotifier, batchId: string, type: string, data: unknown): OutboxEvent[] {
  const targets = notifier.targets(type);
  if (targets.length === 0) return [];
  const id = `msg_${batchId}_${type.replace(/^batch\./, '')}`;
  const body = JSON.stringify({ type, timestamp: new Date().toISOString(), data });
  return targets.map((t) => ({ id, url: t.url, batch_id: batchId, type, body }));
}

export interface WebhookOutboxOptions {
  log: Logger;
  /** This process's id on the rows it is sending. */
  owner: string;
  /** Longest wait between two looks at the outbox when nothing is due sooner, ms. */
  idleMs: number;
  /** How long a row being sent is this process's before another may send it, ms; by default well past an attempt's timeouts. */
  leaseMs?: number;
  /** How long delivered and given-up rows are kept (for inspection) before they are deleted, ms; by default 7 days. */
  retentionMs?: number;
}

/** Delivered and given-up rows older than this are deleted, by default. */
export const OUTBOX_RETENTION_MS = 7 * 24 * 3600_000;
/** How often a process deletes old rows. */
const PRUNE_EVERY_MS = 3600_000;

/** Rows sent at once. */
const CLAIM_ROWS = 8;
/** How long a graceful stop lets the deliveries under way finish before it cuts them short. */
const STOP_GRACE_MS = 2_000;

interface Claimed {
  id: string;
  url: string;
  body: string;
  attempts: number;
}

export class WebhookOutbox {
  private running = false;
  /** Set by stop() and abandon(): a claim under way when one lands sends nothing (stop() hands its rows back). */
  private stopping = false;
  private loop: Promise<void> | undefined;
  private readonly wakeup = new Wakeup();
  private controller = new AbortController();
  private prunedAt = 0;
  /** This process's endpoints by URL (fixed configuration); the first of a URL, should one repeat. */
  private readonly endpoints: ReadonlyMap<string, WebhookEndpoint>;
  private readonly urls: string[];

  constructor(
    private readonly sql: SqlDatabase,
    private readonly notifier: CompletionNotifier,
    private readonly opts: WebhookOutboxOptions,
  ) {
    this.endpoints = new Map([...notifier.targets()].reverse().map((t) => [t.url, t]));
    this.urls = [...this.endpoints.keys()];
  }

  private get leaseMs(): number {
    return this.opts.leaseMs ?? 3 * this.notifier.timeoutMs + 5_000;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopping = false;
    this.controller = new AbortController();
    this.loop = this.run();
  }

  /** Looks for due events now (one was just stored). */
  kick(): void {
    this.wakeup.kick();
  }

  /**
   * Graceful stop: no new attempt; those under way get a moment, then are cut short and their rows
   * handed back, due at once and that attempt not counted, for the next process to send.
   */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.stopping = true;
    this.kick();
    // The loop ends once the deliveries under way are settled (deliverDue waits for each it starts).
    await Promise.race([this.loop, new Promise((r) => setTimeout(r, STOP_GRACE_MS).unref())]);
    this.controller.abort();
    await this.loop;
    await this.sql
      .query(`UPDATE batch_webhook_outbox SET lease_owner = NULL, next_attempt_at = $2, attempts = GREATEST(attempts - 1, 0) WHERE lease_owner = $1 AND status = 'pending'`, [this.opts.owner, Date.now()])
      .catch(() => undefined);
  }

  /** Stops looking without handing anything back, as a crash would (tests). */
  abandon(): void {
    this.running = false;
    this.stopping = true;
    this.kick();
  }

  /** Sends the events that are due (those of endpoints this process has); returns how many it tried. */
  async deliverDue(): Promise<number> {
    const urls = this.urls;
    if (urls.length === 0) return 0;
    const now = Date.now();
    const max = this.notifier.maxAttempts;
    // A row whose sender died during its last attempt: out of attempts, it is given up.
    await this.sql.query(
      `UPDATE batch_webhook_outbox SET status = 'failed', lease_owner = NULL, last_error = COALESCE(last_error, 'the process sending it stopped')
       WHERE status = 'pending' AND next_attempt_at <= $1 AND attempts >= $2 AND url = ANY($3::text[])`,
      [now, max, urls],
    );
    // A stop (or an abandon) that landed during the query above: no new attempt.
    if (this.stopping) return 0;
    const rows = await this.sql.query<Claimed>(
      `UPDATE batch_webhook_outbox SET lease_owner = $1, next_attempt_at = $2, attempts = attempts + 1
       WHERE (id, url) IN (
         SELECT id, url FROM batch_webhook_outbox
         WHERE status = 'pending' AND next_attempt_at <= $3 AND attempts < $4 AND url = ANY($5::text[])
         ORDER BY next_attempt_at LIMIT $6
         FOR UPDATE SKIP LOCKED)
       RETURNING id, url, body, attempts`,
      [this.opts.owner, now + this.leaseMs, now, max, urls, CLAIM_ROWS],
    );
    // One that landed during the claim: the rows stay leased to this process, and stop() hands them
    // back (due at once, the attempt not counted); after an abandon they wait out the lease, as after a crash.
    if (this.stopping) return 0;
    // Every delivery settles before this returns, even when one fails: stop() relies on it.
    const results = await Promise.allSettled(rows.map((row) => this.deliver(row)));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    return rows.length;
  }

  /**
   * Deletes delivered and given-up rows stored more than `retentionMs` ago (pending ones stay, however
   * old: an endpoint may come back into a replica's config); returns how many.
   */
  async prune(now = Date.now()): Promise<number> {
    const before = (now - (this.opts.retentionMs ?? OUTBOX_RETENTION_MS)) / 1000;
    const rows = await this.sql.query(`DELETE FROM batch_webhook_outbox WHERE status IN ('delivered', 'failed') AND created_at < $1 RETURNING id`, [before]);
    return rows.length;
  }

  private async deliver(row: Claimed): Promise<void> {
    const endpoint = this.endpoints.get(row.url);
    if (!endpoint) return; // not claimed: the queries take only these URLs
    const result = await this.notifier.attempt(endpoint, row.id, row.body, this.controller.signal);
    if (this.controller.signal.aborted && !result.ok) return; // cut short by a stop: handed back by stop()
    const now = Date.now();
    if (result.ok) {
      // Delivered is a fact whoever holds the lease now.
      await this.sql.query(`UPDATE batch_webhook_outbox SET status = 'delivered', delivered_at = $3, last_status = $4, lease_owner = NULL WHERE id = $1 AND url = $2 AND status = 'pending'`, [
        row.id,
        row.url,
        now / 1000,
        result.status ?? null,
      ]);
      return;
    }
    const giveUp = !result.retry || row.attempts >= this.notifier.maxAttempts;
    await this.sql.query(
      `UPDATE batch_webhook_outbox SET status = $4, next_attempt_at = $5, last_status = $6, last_error = $7, lease_owner = NULL
       WHERE id = $1 AND url = $2 AND lease_owner = $3 AND status = 'pending'`,
      [row.id, row.url, this.opts.owner, giveUp ? 'failed' : 'pending', now + (giveUp ? 0 : this.notifier.backoffMs(row.attempts)), result.status ?? null, result.error ?? null],
    );
    if (giveUp) this.opts.log.warn({ url: endpointForLog(row.url), id: row.id, status: result.status, attempts: row.attempts, err: result.error }, 'batch webhook: delivery gave up');
  }

  private async run(): Promise<void> {
    while (this.running) {
      let waitMs = this.opts.idleMs;
      try {
        if (Date.now() - this.prunedAt >= PRUNE_EVERY_MS) {
          this.prunedAt = Date.now();
          const pruned = await this.prune();
          if (pruned > 0) this.opts.log.debug({ pruned }, 'batch webhook: old outbox rows deleted');
        }
        // stop() promises no new attempt: one that landed during a query ends the loop here.
        if (!this.running) break;
        await this.deliverDue();
        if (!this.running) break;
        // Sleep until the next attempt falls due (a retry's backoff), or the idle interval.
        const next = await this.nextDue();
        if (next !== undefined) waitMs = Math.min(waitMs, Math.max(10, next - Date.now()));
      } catch (err) {
        this.opts.log.error({ err: (err as Error).message }, 'batch webhook: delivering from the outbox failed');
      }
      if (!this.running) break;
      await this.wakeup.sleep(waitMs);
    }
  }

  /** When the next pending event of this process's endpoints is due (epoch ms). */
  private async nextDue(): Promise<number | undefined> {
    const urls = this.urls;
    if (urls.length === 0) return undefined;
    const rows = await this.sql.query<{ next: number | null }>(`SELECT min(next_attempt_at) AS next FROM batch_webhook_outbox WHERE status = 'pending' AND url = ANY($1::text[])`, [urls]);
    const next = rows[0]?.next;
    return next === null || next === undefined ? undefined : Number(next);
  }
}
