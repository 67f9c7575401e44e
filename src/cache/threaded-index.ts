// The semantic index in a worker thread. A usearch search and insert cost ~50 µs each at 30k
// entries, and every cache miss does both: on the event loop that was a third of a saturated
// gateway's busy time. Here the graph lives in index-worker.ts; this thread queues adds and removes
// and posts them as one batch per turn of the event loop (no answer awaited; a message per update
// cost the worker more in receiving than the insert itself), and awaits searches. One port carries
// both in order and a search carries what is queued, applied first, so it sees every add made before it: a put
// followed by a lookup hits as it did in-thread. What the cache reads synchronously (label →
// partition, for size, has and partitions) is kept here.
import type { Worker } from 'node:worker_threads';
import { startModuleWorker, WorkerClient } from '../gateway/worker-rpc.js';
import { isPostFailure, type IndexBatch, type IndexSearch, type IndexSettings } from './index-host.js';
import type { Neighbour, SemanticIndex } from './vector-index.js';

export interface ThreadedIndexEvents {
  /** The worker is gone (an error, an exit): called once, never after close(). */
  onFailure(err: Error): void;
  /** A posted add or remove failed in the worker; the worker carries on. */
  onError(err: Error): void;
}

/** A view into a larger buffer (a pooled Buffer, a batch's output) would be cloned whole. */
function compact(v: Float32Array): Float32Array {
  return v.byteOffset === 0 && v.byteLength === v.buffer.byteLength ? v : v.slice();
}

/** A search waiting this long while the worker makes no progress at all means it is stuck (see `stuck`). */
const STUCK_AFTER_MS = 1_000;
/** While the worker has not started (loading its modules), only this long a wait counts as stuck. */
const NOT_STARTED_AFTER_MS = 10_000;

export interface ThreadedIndexOptions {
  /** How long a search may wait while the worker makes no progress before it is declared stuck, ms (default 1 s). */
  stuckAfterMs?: number;
  /** Starts the worker (tests substitute one); default index-worker.ts with the settings. */
  start?: (settings: IndexSettings) => Worker;
}

export class ThreadedVectorIndex implements SemanticIndex {
  private readonly client: WorkerClient;
  private readonly partOf = new Map<string, string>();
  /** Labels per partition, so a search of a partition this thread knows is empty skips the round trip. */
  private readonly counts = new Map<string, number>();
  private closed = false;
  private down = false;
  /** Updates not yet posted: sent as one batch at the end of this turn of the event loop, or before a search. */
  private queued: IndexBatch['updates'] = [];
  private queuedVectors: Float32Array[] = [];
  private flushScheduled: NodeJS.Immediate | undefined;
  /** Searches the worker has not answered, oldest first, each with when it was asked and how to end it as a miss. */
  private readonly waiting = new Map<number, { since: number; miss(): void }>();
  private nextSearch = 1;
  private watchdog: NodeJS.Timeout | undefined;
  private readonly stuckAfterMs: number;
  /** The worker's progress counter (IndexSettings.progress), last value seen and when it last moved. */
  private readonly progress = new Int32Array(new SharedArrayBuffer(4));
  private progressSeen = 0;
  private progressAt = performance.now();

  constructor(
    private readonly settings: IndexSettings,
    private readonly events: ThreadedIndexEvents,
    opts: ThreadedIndexOptions = {},
  ) {
    this.stuckAfterMs = opts.stuckAfterMs ?? STUCK_AFTER_MS;
    // Vectors are copied, never handed over: the probe and the memory store keep theirs (a batch's
    // vectors are packed into a new buffer, which is transferred; a search's query is cloned).
    const start = opts.start ?? ((s: IndexSettings) => startModuleWorker(import.meta.url, 'index-worker', { workerData: s }));
    this.client = new WorkerClient(start({ ...settings, progress: this.progress }), 'semantic index');
    const worker = this.client.worker;
    // WorkerClient's own listeners ran first: `failed` says why, and unanswered searches are rejected.
    const died = (err?: unknown) => this.failed(this.client.failed ?? (err instanceof Error ? err : new Error('semantic index worker failed')));
    worker.on('error', died);
    worker.on('exit', () => died());
    worker.on('message', (m: unknown) => {
      if (!isPostFailure(m)) return;
      const err = new Error(m.postError.message);
      if (m.postError.stack !== undefined) err.stack = m.postError.stack;
      events.onError(err);
    });
  }

  /** Reports the worker gone, once, never after close(). */
  private failed(err: Error): void {
    if (this.closed || this.down) return;
    this.down = true;
    this.events.onFailure(err);
  }

  /** The thread the index runs in (tests stop it to see the cache fall back). */
  get worker(): Worker {
    return this.client.worker;
  }

  get size(): number {
    return this.partOf.size;
  }
  get partitions(): number {
    return this.counts.size;
  }
  has(label: string): boolean {
    return this.partOf.has(label);
  }

  add(partition: string, label: string, vector: Float32Array): void {
    // As PartitionedVectorIndex does (the worker checks again): the count here must match its own.
    if (vector.length !== this.settings.dimensions) return;
    const prev = this.partOf.get(label);
    if (prev !== partition) {
      if (prev !== undefined) this.forget(label, prev);
      this.partOf.set(label, partition);
      this.counts.set(partition, (this.counts.get(partition) ?? 0) + 1);
    }
    this.queued.push({ op: 'add', partition, label });
    this.queuedVectors.push(vector);
    this.scheduleFlush();
  }

  remove(label: string): boolean {
    const partition = this.partOf.get(label);
    if (partition === undefined) return false;
    this.forget(label, partition);
    this.queued.push({ op: 'remove', label });
    this.scheduleFlush();
    return true;
  }

  /**
   * The worker's answer. A search the worker died before answering finds nothing (a miss): the
   * cache falls back to an index in its own thread meanwhile (onFailure). So does one it leaves
   * unanswered for `stuckAfterMs` (see `stuck`).
   */
  search(partition: string, query: Float32Array, k = 1): Neighbour[] | Promise<Neighbour[]> {
    // This thread has posted every add the worker will have applied before this search.
    if (!this.counts.has(partition)) return [];
    // What is queued goes with the search, applied before it.
    const batch = this.takeQueued();
    const m: IndexSearch = { op: 'search', partition, vector: compact(query), k, ...(batch ? { batch } : {}) };
    const id = this.nextSearch++;
    return new Promise<Neighbour[]>((resolve, reject) => {
      this.waiting.set(id, { since: performance.now(), miss: () => resolve([]) });
      this.watch();
      this.client.call<Neighbour[]>(m as unknown as Record<string, unknown>, batch ? [batch.vectors.buffer as ArrayBuffer] : undefined).then(
        (found) => {
          if (this.waiting.delete(id)) resolve(found);
        },
        (err: unknown) => {
          if (!this.waiting.delete(id)) return;
          if (this.client.failed) resolve([]);
          else reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  /**
   * Checks every 100 ms, while searches wait, that the worker moves: stuck means a search has waited
   * `stuckAfterMs` and the worker has applied no update and answered no search for as long. A worker
   * working through a backlog (the store's entries indexed at start, a burst of updates) advances
   * its counter all along however long a search waits behind it. One not started yet (loading its
   * modules) gets NOT_STARTED_AFTER_MS.
   */
  private watch(): void {
    if (this.watchdog) return;
    this.watchdog = setInterval(() => {
      const oldest = this.waiting.values().next();
      if (oldest.done) {
        clearInterval(this.watchdog);
        this.watchdog = undefined;
        return;
      }
      const now = performance.now();
      const seen = Atomics.load(this.progress, 0);
      if (seen !== this.progressSeen) {
        this.progressSeen = seen;
        this.progressAt = now;
      }
      const limit = seen === 0 ? Math.max(NOT_STARTED_AFTER_MS, this.stuckAfterMs) : this.stuckAfterMs;
      if (now - oldest.value.since >= limit && now - this.progressAt >= limit) this.stuck();
    }, Math.min(100, this.stuckAfterMs));
    this.watchdog.unref();
  }

  /**
   * The worker answers nothing: stuck in native code (usearch's remove once looped forever) or
   * starved. Its searches end as misses and it is reported gone, so the cache falls back to an
   * index in its own thread; it is told to stop (a thread stuck in native code may not).
   */
  private stuck(): void {
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    for (const w of waiting) w.miss();
    this.failed(new Error(`the semantic index worker left a search unanswered for ${this.stuckAfterMs} ms`));
    void this.client.terminate().catch(() => undefined);
  }

  clear(): void {
    this.partOf.clear();
    this.counts.clear();
    this.queued.push({ op: 'clear' });
    this.scheduleFlush();
  }

  /** Stops the worker; it is not reported as a failure. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.watchdog);
    this.watchdog = undefined;
    await this.client.terminate();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    // After this turn's I/O callbacks: every answer completed in one turn goes in one message.
    this.flushScheduled = setImmediate(() => this.flush());
    this.flushScheduled.unref();
  }

  /** Posts the queued updates as one batch. */
  private flush(): void {
    const batch = this.takeQueued();
    if (batch) this.client.post(batch as unknown as Record<string, unknown>, [batch.vectors.buffer as ArrayBuffer]);
  }

  /** The queued updates as one batch (their vectors packed), the queue emptied; undefined when none. */
  private takeQueued(): IndexBatch | undefined {
    if (this.flushScheduled) {
      clearImmediate(this.flushScheduled);
      this.flushScheduled = undefined;
    }
    if (this.queued.length === 0) return undefined;
    const d = this.settings.dimensions;
    const vectors = new Float32Array(this.queuedVectors.length * d);
    this.queuedVectors.forEach((v, i) => vectors.set(v, i * d));
    const batch: IndexBatch = { op: 'batch', updates: this.queued, vectors };
    this.queued = [];
    this.queuedVectors = [];
    return batch;
  }

  private forget(label: string, partition: string): void {
    this.partOf.delete(label);
    const n = (this.counts.get(partition) ?? 1) - 1;
    if (n > 0) this.counts.set(partition, n);
    else this.counts.delete(partition);
  }
}
