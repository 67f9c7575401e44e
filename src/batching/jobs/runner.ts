// Runs batch jobs: claims open lines by lease (up to `concurrency` at a time across all jobs), runs
// each through the gateway, records its result, and once a job has no open line writes its output
// and error files, sets its final status and sends the signed completion webhook. Any number of
// replicas can run one; after a crash the dead worker's lines are taken over when their leases end,
// and a line whose result was recorded never runs again.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { BatchRow, BatchStore, ClaimedItem, ItemOutcome } from './store.js';

/** Runs one line; undefined means "not run" (the runner is stopping) and the line is released. */
export type ItemExecutor = (item: ClaimedItem, signal: AbortSignal) => Promise<ItemOutcome | undefined>;

/** Where the completion event goes: the Standard Webhooks sender, or anything with its `send`. */
export interface CompletionNotifier {
  send(type: string, data: unknown): unknown;
}

export interface BatchRunnerOptions {
  concurrency: number;
  leaseMs: number;
  pollMs: number;
  log: Logger;
  notifier?: CompletionNotifier;
  /** Renders a job as the API shows it (for the webhook payload). */
  describe?: (job: BatchRow) => Promise<unknown>;
  /** Worker id; a fresh one per process by default. */
  owner?: string;
}

export class BatchRunner {
  readonly owner: string;
  private running = false;
  private inFlight = 0;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly controller = new AbortController();
  private readonly tasks = new Set<Promise<void>>();
  private lastSweep = 0;
  /** Lines run by this worker (tests and stats). */
  executed = 0;
  private kicked = false;

  constructor(
    private readonly store: BatchStore,
    private readonly execute: ItemExecutor,
    private readonly opts: BatchRunnerOptions,
  ) {
    this.owner = opts.owner ?? `worker-${randomUUID()}`;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.heartbeat = setInterval(() => {
      if (this.inFlight > 0) this.store.extendLeases(this.owner, this.opts.leaseMs).catch((err: unknown) => this.opts.log.warn({ err: (err as Error).message }, 'batch: could not extend leases'));
    }, Math.max(50, Math.floor(this.opts.leaseMs / 3)));
    this.heartbeat.unref();
    this.loop = this.run();
  }

  /** Looks for work now (a job was just created or cancelled). */
  kick(): void {
    if (this.wake) this.wake();
    else this.kicked = true;
  }

  /** Graceful stop: no new lines, cancel the ones under way and hand their leases back at once. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearInterval(this.heartbeat);
    this.controller.abort();
    this.kick();
    await this.loop;
    await Promise.allSettled([...this.tasks]);
    await this.store.releaseOwner(this.owner).catch(() => undefined);
  }

  /** Stops without handing leases back, as a crash would (tests). */
  async abandon(): Promise<void> {
    this.running = false;
    clearInterval(this.heartbeat);
    this.kick();
    await this.loop;
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
        const items = free > 0 ? await this.store.claim(this.owner, this.opts.leaseMs, free) : [];
        // Stopped while claiming: the lines stay leased to this worker and stop() hands them back.
        if (!this.running) break;
        for (const item of items) this.spawn(item);
        idlePolls = items.length > 0 || this.inFlight > 0 ? 0 : idlePolls + 1;
        if (items.length > 0 && items.length === free) continue;
      } catch (err) {
        this.opts.log.error({ err: (err as Error).message }, 'batch: polling for work failed');
      }
      const waitMs = this.opts.pollMs * Math.min(8, 2 ** Math.max(0, idlePolls - 1));
      // Work announced while this loop was busy claiming: look again at once.
      if (this.kicked) {
        this.kicked = false;
        idlePolls = 0;
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waitMs);
        this.wake = () => {
          clearTimeout(timer);
          idlePolls = 0;
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** Every few seconds: finish jobs whose finalisation was lost (a crash between last line and files). */
  private async sweep(): Promise<void> {
    const now = Date.now();
    if (now - this.lastSweep < Math.max(this.opts.pollMs * 5, 2_000)) return;
    this.lastSweep = now;
    await this.store.dropCancelled();
    for (const id of await this.store.unfinalized()) await this.settle(id);
    for (const id of await this.store.staleFinalizing(Math.ceil(this.opts.leaseMs / 1000))) {
      const job = await this.store.getBatch(id);
      if (job) await this.finalize(job);
    }
  }

  private spawn(item: ClaimedItem): void {
    this.inFlight++;
    const task = this.runItem(item).finally(() => {
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
      await this.settle(item.batch_id);
    } catch (err) {
      this.opts.log.error({ batch: item.batch_id, line: item.line, err: (err as Error).message }, 'batch: recording a line failed; it will run again when its lease ends');
    }
  }

  private async finalize(job: BatchRow): Promise<void> {
    const items = await this.store.finishedItems(job.id);
    const lines = (status: string) =>
      items
        .filter((i) => i.status === status)
        .map((i) => JSON.stringify({ id: `batch_req_${job.id.replace(/^batch_/, '')}_${i.line}`, custom_id: i.custom_id, response: i.response, error: null }))
        .join('\n');
    const out = lines('succeeded');
    const err = lines('failed');
    const final = job.cancelling_at ? 'cancelled' : 'completed';
    const done = await this.store.complete(job.id, final, {
      ...(out ? { output: { id: `file-${job.id}-output`, content: `${out}\n` } } : {}),
      ...(err ? { error: { id: `file-${job.id}-errors`, content: `${err}\n` } } : {}),
    });
    if (!done || (done.status !== 'completed' && done.status !== 'cancelled')) return;
    this.opts.log.info({ batch: job.id, status: done.status }, 'batch finished');
    if (this.opts.notifier && (await this.store.markNotified(job.id))) {
      this.opts.notifier.send(`batch.${done.status}`, this.opts.describe ? await this.opts.describe(done) : { id: done.id, status: done.status });
    }
  }
}
