// The semantic index's worker-thread side: a PartitionedVectorIndex that applies the messages the
// cache posts to it. It lives here rather than in index-worker.ts so that tests run it in their own
// thread (coverage does not see code run inside worker threads); the worker only feeds it messages.
import { loadUsearch, PartitionedVectorIndex, typescriptHnswFactory, usearchFactory, type AnnFactory, type IndexTuning, type Neighbour } from './vector-index.js';

/**
 * How the worker builds its index. A factory is a function, which cannot be posted to a thread, so
 * the worker gets the settings the cache's own factory was made from and makes its own.
 */
export interface IndexSettings {
  dimensions: number;
  /** The implementation the cache resolved (`auto` already decided in the cache's thread). */
  kind: 'usearch' | 'typescript-hnsw';
  tuning: IndexTuning;
  /** Where usearch is loaded from when not from node_modules (benchmarks). */
  usearchPath?: string;
  /**
   * A counter shared with the cache's thread (one Int32 over a SharedArrayBuffer), advanced on
   * start and after every update and search: how the cache tells a worker working through a
   * backlog from one stuck (threaded-index.ts).
   */
  progress?: Int32Array;
}

export type IndexUpdate = { op: 'add'; partition: string; label: string; vector: Float32Array } | { op: 'remove'; label: string } | { op: 'clear' };

/**
 * Updates posted together: the adds' vectors packed in one array (`vectors`, `dimensions` floats
 * each, in the order of the adds), so a batch is one message and one buffer to clone, not one of
 * each per update.
 */
export interface IndexBatch {
  op: 'batch';
  updates: Array<{ op: 'add'; partition: string; label: string } | { op: 'remove'; label: string } | { op: 'clear' }>;
  vectors: Float32Array;
}

/** A search; `batch`, the updates queued before it, is applied first (one message instead of two). */
export interface IndexSearch {
  op: 'search';
  partition: string;
  vector: Float32Array;
  k: number;
  batch?: IndexBatch;
}

export type IndexMessage = IndexUpdate | IndexBatch | IndexSearch;

export function annFactoryFor(settings: IndexSettings): AnnFactory {
  if (settings.kind === 'typescript-hnsw') return typescriptHnswFactory(settings.tuning);
  const mod = loadUsearch(settings.usearchPath);
  if (!mod) throw new Error(`the semantic index worker could not load usearch${settings.usearchPath ? ` from ${settings.usearchPath}` : ''}`);
  return usearchFactory(mod, settings.tuning);
}

export class IndexHost {
  readonly index: PartitionedVectorIndex;

  private readonly dimensions: number;
  private readonly progress: Int32Array | undefined;

  /** `onUpdateError`: where an update that came with a search and failed is reported (the search still answers). */
  constructor(
    settings: IndexSettings,
    private readonly onUpdateError: (err: unknown) => void = () => undefined,
  ) {
    this.dimensions = settings.dimensions;
    this.index = new PartitionedVectorIndex(settings.dimensions, annFactoryFor(settings));
    this.progress = settings.progress;
    this.advance();
  }

  private advance(): void {
    if (this.progress) Atomics.add(this.progress, 0, 1);
  }

  /** Applies one message; a search answers with its neighbours, the rest with nothing. */
  handle(m: IndexMessage): Neighbour[] | undefined {
    switch (m.op) {
      case 'add':
        this.index.add(m.partition, m.label, m.vector);
        return undefined;
      case 'remove':
        this.index.remove(m.label);
        return undefined;
      case 'clear':
        this.index.clear();
        return undefined;
      case 'search':
        if (m.batch) {
          try {
            this.applyBatch(m.batch);
          } catch (err) {
            this.onUpdateError(err);
          }
        }
        try {
          return this.index.search(m.partition, m.vector, m.k);
        } finally {
          this.advance();
        }
      case 'batch':
        this.applyBatch(m);
        return undefined;
    }
    throw new Error(`unknown semantic index message ${JSON.stringify((m as { op?: unknown }).op)}`);
  }

  /** Every update of a batch is applied, each on its own: one that fails does not stop the rest; the first failure is thrown after. */
  private applyBatch(b: IndexBatch): void {
    const d = this.dimensions;
    let at = 0;
    let failure: unknown;
    for (const u of b.updates) {
      try {
        // A copy: the index keeps the vector (for re-scoring), which must not hold the whole batch's buffer.
        if (u.op === 'add') this.handle({ ...u, vector: b.vectors.slice(at * d, ++at * d) });
        else this.handle(u);
      } catch (err) {
        failure ??= err;
      }
      this.advance();
    }
    if (failure !== undefined) throw failure;
  }
}

/**
 * What the worker sends back when an add or remove it was posted fails: such a message gets no
 * answer, so its failure travels on its own, with id 0, which no call has (WorkerClient ignores it).
 */
export interface PostFailure {
  id: 0;
  postError: { message: string; stack?: string };
}

export function postFailure(err: unknown): PostFailure {
  if (!(err instanceof Error)) return { id: 0, postError: { message: String(err) } };
  return { id: 0, postError: err.stack === undefined ? { message: err.message } : { message: err.message, stack: err.stack } };
}

export function isPostFailure(m: unknown): m is PostFailure {
  return typeof m === 'object' && m !== null && (m as { id?: unknown }).id === 0 && 'postError' in m;
}
