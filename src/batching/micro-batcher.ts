// A generic micro-batcher: single items submitted from many concurrent callers are gathered into one
// call of a batch function, flushed when the batch is full or when the oldest item has waited the
// flush timeout. The embedders use it; the local model and the mesh reuse it (seed 001 BATCH_*).
import type { CancelSignal } from '../providers/cancel.js';

export interface MicroBatcherOptions<I = unknown> {
  /** Largest batch handed to the batch function (seed 001 BATCH_MAX_SIZE, default 32). */
  maxSize: number;
  /** Longest time the first item of a batch waits for company, ms (BATCH_FLUSH_TIMEOUT_MS, 20). */
  flushTimeoutMs: number;
  /** Batches allowed in flight at once; further full batches wait their turn. */
  maxConcurrency?: number;
  /**
   * True for a batch failure that one item (or one caller's items) may have caused — the upstream
   * refused an input — rather than the batch's upstream call as such. Such a batch is run again
   * apart, one call per group, so only the group at fault fails. Unset: a failure fails the batch.
   */
  retryApart?: (err: unknown) => boolean;
  /** The group an item is retried with (a caller's items belong together); default: each item alone. */
  groupOf?: (item: I) => unknown;
  /**
   * Most items waiting for a batch at once; a submission that would pass it while items wait is
   * refused with MicroBatcherFull (one larger than this alone is taken into an empty queue). Default:
   * no limit.
   */
  maxQueued?: number;
  /** Called whenever nothing is left queued or in flight (a batch ended, or aborted items were dropped). */
  onIdle?: () => void;
}

/** The queue holds `maxQueued` items already: the caller should shed or retry elsewhere. */
export class MicroBatcherFull extends Error {
  constructor(readonly queued: number) {
    super(`the batch queue is full (${queued} items waiting)`);
    this.name = 'MicroBatcherFull';
  }
}

/**
 * Resolves one output per input, in input order; a rejection fails every item of that batch (unless
 * `retryApart` sends its groups again one by one).
 */
export type BatchFunction<I, O> = (items: I[]) => Promise<O[]>;

interface Pending<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (err: unknown) => void;
}

export class MicroBatcher<I, O> {
  private readonly maxSize: number;
  private readonly flushTimeoutMs: number;
  private readonly maxConcurrency: number;
  private readonly retryApart: ((err: unknown) => boolean) | undefined;
  private readonly groupOf: (item: I) => unknown;
  private readonly maxQueued: number;
  private readonly onIdle: (() => void) | undefined;
  private queue: Pending<I, O>[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private closed = false;
  /** Batches run so far; for tests and stats. */
  batches = 0;

  constructor(
    private readonly run: BatchFunction<I, O>,
    options: MicroBatcherOptions<I>,
  ) {
    if (!(options.maxSize >= 1)) throw new RangeError('maxSize must be at least 1');
    if (!(options.flushTimeoutMs >= 0)) throw new RangeError('flushTimeoutMs must be >= 0');
    this.maxSize = Math.floor(options.maxSize);
    this.flushTimeoutMs = options.flushTimeoutMs;
    this.maxConcurrency = Math.max(1, options.maxConcurrency ?? Number.POSITIVE_INFINITY);
    this.retryApart = options.retryApart;
    this.groupOf = options.groupOf ?? ((item) => item);
    this.maxQueued = options.maxQueued ?? Number.POSITIVE_INFINITY;
    this.onIdle = options.onIdle;
  }

  /** Items waiting for a batch. */
  get pending(): number {
    return this.queue.length;
  }

  /** Nothing queued and no batch in flight. */
  get idle(): boolean {
    return this.queue.length === 0 && this.inFlight === 0;
  }

  submit(item: I, signal?: CancelSignal): Promise<O> {
    return this.submitMany([item], signal).then((out) => out[0] as O);
  }

  /**
   * Queues items of one caller. When `signal` aborts, those still queued are dropped — never sent —
   * and rejected with its reason; those already in a batch in flight are not recalled.
   */
  submitMany(items: I[], signal?: CancelSignal): Promise<O[]> {
    if (this.closed) return Promise.reject(new Error('MicroBatcher is closed'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.queue.length > 0 && this.queue.length + items.length > this.maxQueued) return Promise.reject(new MicroBatcherFull(this.queue.length));
    const mine: Pending<I, O>[] = [];
    const all = Promise.all(items.map((item) => new Promise<O>((resolve, reject) => mine.push({ item, resolve, reject }))));
    for (const p of mine) {
      this.queue.push(p);
      if (this.queue.length >= this.maxSize) this.drain();
      else if (this.timer === undefined) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.drain(true);
        }, this.flushTimeoutMs);
      }
    }
    if (signal) {
      const onAbort = () => this.drop(mine, signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      const unlink = () => signal.removeEventListener('abort', onAbort);
      all.then(unlink, unlink);
    }
    return all;
  }

  /** Takes the given items out of the queue (if still there) and rejects them. */
  private drop(items: Pending<I, O>[], reason: unknown): void {
    const gone = new Set(items);
    const kept = this.queue.filter((p) => !gone.has(p));
    if (kept.length === this.queue.length) return;
    for (const p of this.queue) if (gone.has(p)) p.reject(reason);
    this.queue = kept;
    if (this.queue.length === 0 && this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.idle) this.onIdle?.();
  }

  /** Sends whatever is queued now, without waiting for the timeout. */
  flush(): void {
    this.drain(true);
  }

  /** Flushes what is queued and refuses new items. */
  close(): void {
    this.drain(true);
    this.closed = true;
  }

  // Starts full batches (and, when `partial`, the remainder) as far as concurrency allows.
  private drain(partial = false): void {
    while (this.queue.length > 0 && this.inFlight < this.maxConcurrency) {
      if (this.queue.length < this.maxSize && !partial) break;
      const batch = this.queue.splice(0, this.maxSize);
      void this.execute(batch);
    }
    if (this.queue.length === 0 && this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    } else if (this.queue.length > 0 && this.timer === undefined && this.inFlight < this.maxConcurrency) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.drain(true);
      }, this.flushTimeoutMs);
    }
  }

  /** Runs `batch` through the batch function and resolves its items; throws what the call threw. */
  private async settle(batch: Pending<I, O>[]): Promise<void> {
    const out = await this.run(batch.map((p) => p.item));
    if (!Array.isArray(out) || out.length !== batch.length) {
      throw new Error(`batch function returned ${Array.isArray(out) ? out.length : typeof out} results for ${batch.length} items`);
    }
    for (let i = 0; i < batch.length; i++) (batch[i] as Pending<I, O>).resolve(out[i] as O);
  }

  /** The batch's items by `groupOf`, groups in order of first appearance. */
  private groups(batch: Pending<I, O>[]): Pending<I, O>[][] {
    const by = new Map<unknown, Pending<I, O>[]>();
    for (const p of batch) {
      const key = this.groupOf(p.item);
      const group = by.get(key);
      if (group) group.push(p);
      else by.set(key, [p]);
    }
    return [...by.values()];
  }

  private async execute(batch: Pending<I, O>[]): Promise<void> {
    this.inFlight++;
    this.batches++;
    try {
      await this.settle(batch);
    } catch (err) {
      const groups = this.retryApart?.(err) ? this.groups(batch) : [batch];
      if (groups.length > 1) {
        // One bad input must not fail its neighbours: each group goes again on its own, one after
        // another in the batch's slot (maxConcurrency still bounds the calls in flight).
        for (const group of groups) {
          await this.settle(group).catch((e: unknown) => group.forEach((p) => p.reject(e)));
        }
      } else for (const p of batch) p.reject(err);
    } finally {
      this.inFlight--;
      // Items that queued while every slot was busy go out now.
      if (this.queue.length > 0) this.drain(this.queue.length >= this.maxSize ? false : this.timer === undefined);
      else if (this.idle) this.onIdle?.();
    }
  }
}
