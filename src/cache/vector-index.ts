// Nearest-neighbour search for the semantic cache: one approximate index per partition (tenant,
// model and prompt fingerprint), so a search only ever sees entries that could be valid answers.
// The index is usearch (native HNSW, SIMD) when that optional package is installed, else the
// TypeScript HNSW in hnsw.ts; docs/caching.md records the measurements behind the choice.
import { createRequire } from 'node:module';
import { dot } from './embedders/types.js';
import { HnswIndex, type Neighbour } from './hnsw.js';

export type { Neighbour };

/** What the semantic cache needs from an approximate index. Vectors are normalised. */
export interface AnnIndex {
  readonly size: number;
  add(label: string, vector: Float32Array): void;
  remove(label: string): boolean;
  has(label: string): boolean;
  /** The k most similar entries, most similar first, similarity = cosine. */
  search(query: Float32Array, k: number): Neighbour[];
  /** Removed entries the index still holds (its graph keeps them until rebuilt), where it keeps them. */
  readonly dead?: number;
}

export type AnnFactory = (dimensions: number) => AnnIndex;

export interface IndexTuning {
  connectivity?: number;
  efConstruction?: number;
  efSearch?: number;
  /** How usearch stores vectors in its graph: `i8` (default) or `f16` make every distance cheaper;
   * CompactingAnn re-scores the candidates against the full-precision vectors, so similarities stay
   * exact. The TypeScript HNSW always stores f32. */
  quantization?: 'f32' | 'f16' | 'i8';
}

export function typescriptHnswFactory(t: IndexTuning = {}): AnnFactory {
  return (dimensions) => {
    const opts: ConstructorParameters<typeof HnswIndex>[0] = { dimensions, initialCapacity: 64 };
    if (t.connectivity !== undefined) opts.M = t.connectivity;
    if (t.efConstruction !== undefined) opts.efConstruction = t.efConstruction;
    if (t.efSearch !== undefined) opts.efSearch = t.efSearch;
    return new HnswIndex(opts);
  };
}

interface UsearchMatches {
  keys: BigUint64Array;
  distances: Float32Array;
}
interface UsearchIndexInstance {
  add(key: bigint, vector: Float32Array, threads?: number): void;
  search(vector: Float32Array, k: number, threads: number): UsearchMatches;
  size(): number;
  capacity(): number;
  reserve?(n: number): void;
}
interface UsearchModule {
  Index: new (config: Record<string, unknown>) => UsearchIndexInstance;
}

/**
 * Loads usearch if it is installed (it ships prebuilt binaries; no install script is needed).
 * `from` overrides where it is resolved (benchmarks point it at a scratch install).
 */
export function loadUsearch(from?: string): UsearchModule | undefined {
  try {
    const req = createRequire(from ?? import.meta.url);
    return req(from ? from : 'usearch') as UsearchModule;
  } catch {
    return undefined;
  }
}

/**
 * usearch behind the AnnIndex contract; it keys by uint64, so labels map to counters.
 *
 * A removed entry is only forgotten here, never removed from usearch's graph: usearch's own
 * `remove` can loop forever inside its native code (a soak here at 1,000 req/s, the cache evicting
 * an entry for every one it stored, left the index's thread spinning in `index_dense_gt::remove`
 * for minutes, and others report the same). The graph keeps the dead node until CompactingAnn
 * rebuilds the index from the live vectors (after as many removals as it holds), and a search asks
 * for enough neighbours that `k` live ones come back.
 */
class UsearchAnn implements AnnIndex {
  private readonly index: UsearchIndexInstance;
  private readonly keyOf = new Map<string, bigint>();
  private readonly labelOf = new Map<bigint, string>();
  private next = 1n;
  /** Nodes still in the graph whose entries were removed. */
  dead = 0;

  constructor(mod: UsearchModule, dimensions: number, t: IndexTuning) {
    this.index = new mod.Index({
      dimensions,
      metric: 'ip',
      quantization: t.quantization ?? 'i8',
      connectivity: t.connectivity ?? 16,
      expansion_add: t.efConstruction ?? 128,
      expansion_search: t.efSearch ?? 64,
      multi: false,
    });
  }
  get size(): number {
    return this.keyOf.size;
  }
  has(label: string): boolean {
    return this.keyOf.has(label);
  }
  add(label: string, vector: Float32Array): void {
    this.remove(label);
    const key = this.next++;
    this.keyOf.set(label, key);
    this.labelOf.set(key, label);
    // One thread: usearch's default (0) sizes a thread pool per call, which for one vector costs
    // more than the insert.
    this.index.add(key, vector, 1);
  }
  remove(label: string): boolean {
    const key = this.keyOf.get(label);
    if (key === undefined) return false;
    this.keyOf.delete(label);
    this.labelOf.delete(key);
    this.dead++;
    return true;
  }
  search(query: Float32Array, k: number): Neighbour[] {
    const live = this.keyOf.size;
    if (live === 0) return [];
    const total = live + this.dead;
    // Dead nodes take candidates' places in proportion to their share (about half at most:
    // CompactingAnn rebuilds once there are as many dead as live, and at least 64), and
    // near-duplicates of a query (its evicted older copies) most of all: three times the
    // proportional count, and four more. Up to usearch's ef_search this costs about what k does.
    const want = this.dead === 0 ? Math.min(k, live) : Math.min(total, 3 * Math.ceil((k * total) / live) + 4);
    const m = this.index.search(query, want, 1);
    const out: Neighbour[] = [];
    for (let i = 0; i < m.keys.length && out.length < k; i++) {
      const label = this.labelOf.get(m.keys[i] as bigint);
      // Inner-product distance is 1 - dot.
      if (label !== undefined) out.push({ label, similarity: 1 - (m.distances[i] as number) });
    }
    return out;
  }
}

export function usearchFactory(mod: UsearchModule, t: IndexTuning = {}): AnnFactory {
  return (dimensions) => new UsearchAnn(mod, dimensions, t);
}

/** usearch when installed, else the TypeScript HNSW; says which through `kind`. */
export function defaultAnnFactory(t: IndexTuning = {}): { kind: 'usearch' | 'typescript-hnsw'; factory: AnnFactory } {
  const mod = loadUsearch();
  return mod ? { kind: 'usearch', factory: usearchFactory(mod, t) } : { kind: 'typescript-hnsw', factory: typescriptHnswFactory(t) };
}

/**
 * A partition holding fewer entries is searched exactly (a dot product per entry, ~10 µs at 128 of
 * 256 dimensions) and has no approximate index: an index costs ~50 KB however few entries it holds
 * (usearch's, or the TypeScript HNSW's first allocation), and every conversation's later turns and
 * every request with a system prompt of its own is a partition of its own — one such index each
 * multiplied the cache's memory ~15-fold past the entries' bytes that `max_bytes` counts.
 */
export const EXACT_SEARCH_UP_TO = 128;

/** Longest stretch a rebuild runs before yielding to requests, ms. */
const REBUILD_SLICE_MS = 2;

/**
 * Rebuilds an index in the background once it holds as many removed entries as live ones (at least
 * `minRemovals`, default 64; counted by the index itself where it keeps them, as usearch's does).
 * A cache at its byte budget removes an entry for every one it adds, and neither index copes with
 * that for long: the TypeScript HNSW keeps every deleted node (memory and search cost grow without
 * bound), and so does UsearchAnn — usearch 2.x's own `remove` slows down and can spin at 100% CPU
 * forever (a 10-minute soak hung both workers in it, and later the index's thread), so it is never
 * called. The rebuild adds the live vectors to a fresh index in slices of REBUILD_SLICE_MS, applies
 * adds and removes to both meanwhile, and swaps when done; searches use the old index until then.
 */
export class CompactingAnn implements AnnIndex {
  /** The approximate index, once the partition has EXACT_SEARCH_UP_TO entries; until then searches are exact. */
  private current: AnnIndex | undefined;
  private next: AnnIndex | undefined;
  private readonly vectors = new Map<string, Float32Array>();
  private removedSinceBuild = 0;
  /** Completed rebuilds (the first build of a partition that grew past exact search included). */
  rebuilds = 0;

  constructor(
    private readonly make: () => AnnIndex,
    private readonly minRemovals = 64,
    private readonly exactUpTo = EXACT_SEARCH_UP_TO,
  ) {
    if (exactUpTo <= 0) this.current = make();
  }

  get size(): number {
    return this.vectors.size;
  }
  /** Whether the approximate index has been built (a small partition is searched exactly without one). */
  get indexed(): boolean {
    return this.current !== undefined;
  }
  has(label: string): boolean {
    return this.vectors.has(label);
  }
  add(label: string, vector: Float32Array): void {
    if (this.vectors.has(label)) this.remove(label);
    this.vectors.set(label, vector);
    this.current?.add(label, vector);
    this.next?.add(label, vector);
    // Grown past exact search: the index is built in the background, searched once complete.
    if (!this.current && !this.next && this.vectors.size >= this.exactUpTo) this.rebuild();
  }
  remove(label: string): boolean {
    if (!this.vectors.delete(label)) return false;
    if (!this.current) {
      if (this.next?.has(label)) this.next.remove(label);
      return true;
    }
    this.current.remove(label);
    if (this.next?.has(label)) this.next.remove(label);
    // The index's own count of what it still holds when it keeps one (usearch: it counts the nodes
    // removed while a rebuild ran too, which land in the new index), else the removals since the last build.
    ++this.removedSinceBuild;
    if ((this.current.dead ?? this.removedSinceBuild) >= Math.max(this.minRemovals, this.vectors.size) && !this.next) this.rebuild();
    return true;
  }
  /**
   * The index's candidates, re-scored against the stored full-precision vectors: a quantized index
   * (usearch i8/f16) finds the neighbours, the similarity a threshold is compared with is exact.
   * A partition without an index yet is searched exactly.
   */
  search(query: Float32Array, k: number): Neighbour[] {
    if (!this.current) return this.exact(query, k);
    const found = this.current.search(query, k);
    for (const n of found) {
      const v = this.vectors.get(n.label);
      if (v) n.similarity = dot(query, v);
    }
    return found.length > 1 ? found.sort((a, b) => b.similarity - a.similarity) : found;
  }
  private exact(query: Float32Array, k: number): Neighbour[] {
    const best: Neighbour[] = [];
    for (const [label, v] of this.vectors) {
      const similarity = dot(query, v);
      if (best.length === k && similarity <= (best[k - 1] as Neighbour).similarity) continue;
      let i = best.length;
      while (i > 0 && (best[i - 1] as Neighbour).similarity < similarity) i--;
      best.splice(i, 0, { label, similarity });
      if (best.length > k) best.pop();
    }
    return best;
  }
  /** Stops a running rebuild (the index is being dropped). */
  dispose(): void {
    this.next = undefined;
  }

  private rebuild(): void {
    const next = (this.next = this.make());
    const labels = [...this.vectors.keys()];
    let i = 0;
    const step = () => {
      if (this.next !== next) return;
      const start = performance.now();
      while (i < labels.length && performance.now() - start < REBUILD_SLICE_MS) {
        const label = labels[i++] as string;
        const vector = this.vectors.get(label);
        if (vector && !next.has(label)) next.add(label, vector);
      }
      if (i < labels.length) {
        setImmediate(step);
        return;
      }
      this.current = next;
      this.next = undefined;
      this.removedSinceBuild = 0;
      this.rebuilds++;
    };
    setImmediate(step);
  }
}

/**
 * What the response cache needs from its partitioned index: PartitionedVectorIndex in this thread,
 * or ThreadedVectorIndex (threaded-index.ts), whose searches are answered by a worker thread. What
 * the cache reads synchronously (size, has, partitions) is answered in this thread either way.
 */
export interface SemanticIndex {
  readonly size: number;
  readonly partitions: number;
  has(label: string): boolean;
  add(partition: string, label: string, vector: Float32Array): void;
  remove(label: string): boolean;
  search(partition: string, query: Float32Array, k?: number): Neighbour[] | Promise<Neighbour[]>;
  clear(): void;
  /** Releases what the index holds outside this heap (a worker thread). */
  close?(): Promise<void>;
}

/** One index per partition; labels are unique across partitions. */
export class PartitionedVectorIndex implements SemanticIndex {
  private readonly parts = new Map<string, CompactingAnn>();
  private readonly partOf = new Map<string, string>();

  constructor(
    private readonly dimensions: number,
    private readonly factory: AnnFactory,
  ) {}

  get size(): number {
    return this.partOf.size;
  }
  get partitions(): number {
    return this.parts.size;
  }
  has(label: string): boolean {
    return this.partOf.has(label);
  }

  add(partition: string, label: string, vector: Float32Array): void {
    if (vector.length !== this.dimensions) return;
    const prev = this.partOf.get(label);
    if (prev !== undefined && prev !== partition) this.remove(label);
    let idx = this.parts.get(partition);
    if (!idx) {
      idx = new CompactingAnn(() => this.factory(this.dimensions));
      this.parts.set(partition, idx);
    }
    idx.add(label, vector);
    this.partOf.set(label, partition);
  }

  remove(label: string): boolean {
    const partition = this.partOf.get(label);
    if (partition === undefined) return false;
    this.partOf.delete(label);
    const idx = this.parts.get(partition);
    if (!idx) return false;
    idx.remove(label);
    // An empty partition frees its graph (and stops a rebuild in progress).
    if (idx.size === 0) {
      idx.dispose();
      this.parts.delete(partition);
    }
    return true;
  }

  search(partition: string, query: Float32Array, k = 1): Neighbour[] {
    // Exact search would score any length; an index refuses it, and the cache never sends one.
    if (query.length !== this.dimensions) throw new RangeError(`a query of ${query.length} dimensions for an index of ${this.dimensions}`);
    const idx = this.parts.get(partition);
    return idx ? idx.search(query, k) : [];
  }

  clear(): void {
    for (const p of this.parts.values()) p.dispose();
    this.parts.clear();
    this.partOf.clear();
  }
}
