// Runs batch jobs: claims open lines by lease (up to `concurrency` at a time across all jobs), runs
// each through the gateway, records its result, and once a job has no open line writes its output
// and error files (in parts, a page of lines at a time: never a whole file in memory), sets its
// final status with the signed completion webhook stored in the outbox, and delivers it (outbox.ts). Any number of replicas can run one; after a crash the dead worker's lines are taken over when their leases end,
// and a line whose result was recorded never runs again. A job whose completion window ends first
// expires: its lines that have not started never run (the error file's `batch_expired`).
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { DEFAULT_FILE_PART_BYTES, DEFAULT_MAX_ATTEMPTS } from '../config.js';
import { completionEvents, WebhookOutbox, type CompletionNotifier } from './outbox.js';
import type { BatchRow, BatchStore, ClaimedItem, CompletionEvents, ItemOutcome, RequestCounts, WrittenFile } from './store.js';
import { Wakeup } from './wakeup.js';

export type { CompletionNotifier } from './outbox.js';

/** Finished lines read from the database at a time while a file is written. */
const FILE_PAGE_ROWS = 500;

/** Runs one line; undefined means "not run" (the runner is stopping) and the line is released. */
export type ItemExecutor = (item: ClaimedItem, signal: AbortSignal) => Promise<ItemOutcome | undefined>;

export interface BatchRunnerOptions {
  concurrency: number;
  leaseMs: number;
  pollMs: number;
  log: Logger;
  /** Where completion webhooks go; none are stored without one. */
  notifier?: CompletionNotifier;
  /** Renders a job as the API shows it (the webhook's `data`), from the row and counts its final transaction sees. */
  describe?: (job: BatchRow, counts: RequestCounts) => unknown;
  /** How long a webhook delivery is this worker's before another may take it over, ms (tests; default from the sender's timeout). */
  webhookLeaseMs?: number;
  /** Worker id; a fresh one per process by default. */
  owner?: string;
  /** Size of the parts output and error files are stored in (`batch_jobs.file_part_bytes`). */
  filePartBytes?: number;
  /** Runs of one line before it is failed with `max_attempts_exceeded` (`batch_jobs.max_attempts`). */
  maxAttempts?: number;
}

export class BatchRunner {
  readonly owner: string;
  private running = false;
  private inFlight = 0;
  private readonly wakeup = new Wakeup();
  private loop: Promise<void> | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly controller = new AbortController();
  private readonly tasks = new Set<Promise<void>>();
  /** The lines this worker is running, whose leases the heartbeat extends. */
  private readonly held = new Map<string, { batch_id: string; line: number }>();
  private lastSweep = 0;
  /** Jobs this process is finishing in the background (sweep), by id. */
  private readonly finishing = new Map<string, Promise<void>>();
  /** Lines run by this worker (tests and stats). */
  executed = 0;
  private readonly outbox: WebhookOutbox | undefined;

  constructor(
    private readonly store: BatchStore,
    private readonly execute: ItemExecutor,
    private readonly opts: BatchRunnerOptions,
  ) {
    this.owner = opts.owner ?? `worker-${randomUUID()}`;
    this.outbox = opts.notifier
      ? new WebhookOutbox(store.sql, opts.notifier, { log: opts.log, owner: this.owner, idleMs: this.sweepEveryMs, ...(opts.webhookLeaseMs ? { leaseMs: opts.webhookLeaseMs } : {}) })
      : undefined;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.outbox?.start();
    this.heartbeat = setInterval(() => {
      if (this.held.size > 0) this.store.extendLeases(this.owner, this.opts.leaseMs, [...this.held.values()]).catch((err: unknown) => this.opts.log.warn({ err: (err as Error).message }, 'batch: could not extend leases'));
    }, Math.max(50, Math.floor(this.opts.leaseMs / 3)));
    this.heartbeat.unref();
    this.loop = this.run();
  }

  /** Looks for work now (a job was just created or cancelled). */
  kick(): void {
    this.wakeup.kick();
  }

  /** Graceful stop: no new lines, cancel the ones under way and hand their leases back at once. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearInterval(this.heartbeat);
    this.controller.abort();
    this.kick();
    await this.loop;
    await Promise.allSettled([...this.tasks, ...this.finishing.values()]);
    await this.store.releaseOwner(this.owner).catch(() => undefined);
    await this.outbox?.stop();
  }

  /** Stops without handing leases back, as a crash would (tests). */
  async abandon(): Promise<void> {
    this.running = false;
    clearInterval(this.heartbeat);
    this.outbox?.abandon();
    this.kick();
    await this.loop;
  }

  /**
   * The outbox rows of a job's final event `type` (`batch.completed`, …), for the transaction that
   * sets that status; undefined when no webhook is configured.
   */
  eventsFor(type: string): CompletionEvents | undefined {
    const notifier = this.opts.notifier;
    if (!notifier) return undefined;
    return (job, counts) => completionEvents(notifier, job.id, type, this.opts.describe ? this.opts.describe(job, counts) : { id: job.id, status: job.status });
  }

  /** A completion webhook was just stored: send it now. */
  kickWebhooks(): void {
    this.outbox?.kick();
  }

  private get sweepEveryMs(): number {
    return Math.max(this.opts.pollMs * 5, 2_000);
  }

  /** Finalises a job if nothing of it is open (after a cancel). */
  async settle(batchId: string): Promise<void> {
    const job = await this.store.beginFinalizing(batchId);
    if (job) await this.finalize(job);
  }

  private async run(): Promise<void> {
    // Idle polls back off to 8 × poll_ms: a claim query costs real CPU (about 20 ms on the embedded
    // database), and new work on this replica wakes the loop at once (kick). Other replicas' jobs and
    // expired leases are still picked up within 8 polls.
    let idlePolls = 0;
    while (this.running) {
      try {
        await this.sweep();
        const free = this.opts.concurrency - this.inFlight;
        const items = free > 0 ? await this.store.claim(this.owner, this.opts.leaseMs, free, this.maxAttempts) : [];
        // Stopped while claiming: the lines stay leased to this worker and stop() hands them back.
        if (!this.running) break;
        for (const item of items) this.spawn(item);
        idlePolls = items.length > 0 || this.inFlight > 0 ? 0 : idlePolls + 1;
        if (items.length > 0 && items.length === free) continue;
      } catch (err) {
        this.opts.log.error({ err: (err as Error).message }, 'batch: polling for work failed');
      }
      const waitMs = this.opts.pollMs * Math.min(8, 2 ** Math.max(0, idlePolls - 1));
      // Work announced (also while this loop was busy claiming): look again at once.
      if (await this.wakeup.sleep(waitMs)) idlePolls = 0;
    }
  }

  /**
   * Every few seconds: move jobs whose completion window is over to `expiring`, end the lines of
   * cancelling and expiring jobs that will not run, and finish jobs whose finalisation was lost (a
   * crash between last line and files). Every step is safe when several workers sweep at once.
   */
  private async sweep(): Promise<void> {
    const now = Date.now();
    if (now - this.lastSweep < this.sweepEveryMs) return;
    this.lastSweep = now;
    const expiring = await this.store.expireDue();
    if (expiring.length > 0) this.opts.log.info({ batches: expiring }, 'batch: completion window over; expiring');
    await this.store.dropUnrunnable();
    await this.store.exhaustAttempts(this.maxAttempts);
    // In the background, one at a time per job: a large job's files take a while, and the claim
    // loop must not wait for them. A job that fails to finish does not hold the others back.
    for (const id of await this.store.unfinalized()) this.inBackground(id, () => this.settle(id));
    for (const id of await this.store.staleFinalizing(Math.ceil(this.opts.leaseMs / 1000))) {
      this.inBackground(id, async () => {
        const job = await this.store.getBatch(id);
        if (job) await this.finalize(job);
      });
    }
  }

  /** Runs `work` for job `id` unless this process is already finishing it; failures are logged (the next sweep tries again). */
  private inBackground(id: string, work: () => Promise<void>): void {
    if (this.finishing.has(id)) return;
    const p = work()
      .catch((err: unknown) => this.opts.log.error({ batch: id, err: (err as Error).message }, 'batch: finishing the job failed; the next sweep tries again'))
      .finally(() => this.finishing.delete(id));
    this.finishing.set(id, p);
  }

  private get maxAttempts(): number {
    return this.opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  }

  private spawn(item: ClaimedItem): void {
    this.inFlight++;
    const key = `${item.batch_id}\n${item.line}`;
    this.held.set(key, { batch_id: item.batch_id, line: item.line });
    const task = this.runItem(item).finally(() => {
      this.held.delete(key);
      this.inFlight--;
      this.tasks.delete(task);
      this.kick();
    });
    this.tasks.add(task);
  }

  private async runItem(item: ClaimedItem): Promise<void> {
    try {
      const outcome = await this.execute(item, this.controller.signal);
      if (!outcome) return;
      this.executed++;
      const recorded = await this.store.finishItem(item.batch_id, item.line, this.owner, outcome);
      if (!recorded) {
        this.opts.log.warn({ batch: item.batch_id, line: item.line }, 'batch: lease lost before the result was recorded; the result is dropped');
        return;
      }
    } catch (err) {
      // Its lease ends now: the line runs again (another attempt), or once out of attempts is failed
      // with this error in its message. Should this fail too, the lease runs out on its own.
      const message = (err as Error).message;
      this.opts.log.error({ batch: item.batch_id, line: item.line, attempt: item.attempts, err: message }, 'batch: recording a line failed; it runs again unless it is out of attempts');
      this.held.delete(`${item.batch_id}\n${item.line}`);
      await this.store.abandonItem(item.batch_id, item.line, this.owner, message).catch(() => undefined);
      return;
    }
    await this.settle(item.batch_id).catch((err: unknown) => this.opts.log.error({ batch: item.batch_id, err: (err as Error).message }, 'batch: finishing the job failed; the sweep finishes it'));
  }

  private async finalize(job: BatchRow): Promise<void> {
    // Still at work: touched every third of a lease, so no sweep (here or on another replica) takes
    // the job for one a dead worker left, and writes its files again meanwhile.
    const touch = setInterval(() => void this.store.touchFinalizing(job.id).catch(() => undefined), Math.max(1_000, Math.floor(this.opts.leaseMs / 3)));
    touch.unref();
    try {
      await this.finalizeOnce(job);
    } finally {
      clearInterval(touch);
    }
  }

  private async finalizeOnce(job: BatchRow): Promise<void> {
    // Written part by part (a page of lines read at a time): a large job's whole output as one string
    // would pass V8's string limit, and the job would stay finalizing with every sweep failing again.
    // The parts are this finaliser's own until `complete` adopts them with the final status.
    const writer = randomUUID();
    const ids = { output: `file-${job.id}-output`, error: `file-${job.id}-errors` };
    const output = await this.writeFile(job, 'output', ids.output, writer);
    const error = await this.writeFile(job, 'error', ids.error, writer);
    const final = job.expiring_at ? 'expired' : job.cancelling_at ? 'cancelled' : 'completed';
    const { job: done, adopted } = await this.store.complete(
      job.id,
      final,
      writer,
      { ...(output ? { output } : {}), ...(error ? { error } : {}) },
      [ids.output, ids.error],
      this.eventsFor(`batch.${final}`),
    );
    if (!adopted) {
      // Another finaliser finished the job first; its files stand.
      for (const id of [ids.output, ids.error]) await this.store.discardFileParts(id, writer);
      return;
    }
    if (!done || (done.status !== 'completed' && done.status !== 'cancelled' && done.status !== 'expired')) return;
    this.opts.log.info({ batch: job.id, status: done.status }, 'batch finished');
    this.outbox?.kick();
  }

  /** Writes the job's output or error file as parts of about `filePartBytes`; undefined when it has no line. */
  private async writeFile(job: BatchRow, file: 'output' | 'error', fileId: string, writer: string): Promise<WrittenFile | undefined> {
    const partBytes = this.opts.filePartBytes ?? DEFAULT_FILE_PART_BYTES;
    const prefix = `batch_req_${job.id.replace(/^batch_/, '')}_`;
    let part = 0;
    let bytes = 0;
    let pending: string[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      await this.store.writeFilePart(fileId, writer, part++, pending.join(''));
      bytes += pendingBytes;
      pending = [];
      pendingBytes = 0;
    };
    for (let after = 0; ; ) {
      const rows = await this.store.finishedItemsPage(job.id, file, after, FILE_PAGE_ROWS);
      for (const i of rows) {
        // An answer (or an upstream's error answer) is the `response`; a line that never got one
        // (expired) has `response: null` and its `error`, as OpenAI writes them.
        const line = `${JSON.stringify({ id: `${prefix}${i.line}`, custom_id: i.custom_id, response: i.response, error: i.error ?? null })}\n`;
        pending.push(line);
        pendingBytes += Buffer.byteLength(line);
        if (pendingBytes >= partBytes) await flush();
      }
      if (rows.length < FILE_PAGE_ROWS) break;
      after = (rows[rows.length - 1] as { line: number }).line;
    }
    if (pending.length > 0) await flush();
    return part > 0 ? { id: fileId, bytes } : undefined;
  }
}
