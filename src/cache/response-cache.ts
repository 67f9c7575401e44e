// The response cache service: an exact lookup by canonical request, then a semantic lookup (embed the
// last user turn, search its partition's index, demand similarity >= threshold and agreeing guard
// features), and storing answers with what they saved. One instance per process; with the Redis
// store, every instance's index follows the others' writes.
import { hash } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import type { ChatRequest } from '../canonical/chat.js';
import type { Embedder } from './embedders/types.js';
import { decodeAnswer, encodeAnswer, type CachedAnswer, type EntryMeta, type StoredEntry } from './entry.js';
import { extractFeatures, featuresAgree, isCurrent, type CurrentFeatures } from './guards.js';
import { entryKey, exactKey, semanticKey, type KeyOptions } from './keys.js';
import type { CacheStore, InvalidateFilter, StoreEvent } from './stores/types.js';
import type { IndexSettings } from './index-host.js';
import { ThreadedVectorIndex } from './threaded-index.js';
import { PartitionedVectorIndex, type AnnFactory, type SemanticIndex } from './vector-index.js';
import { withTimeout } from '../gateway/timeout.js';

/** Partitions remembered (ResponseCache.partition); the map starts over when it reaches this many. */
const PARTITION_MEMO_MAX = 4096;

export interface SemanticSettings {
  embedder: Embedder;
  /** Cosine similarity a hit needs (default 0.85). */
  threshold: number;
  /** Requests sampled hotter than this skip the semantic cache unless the caller opts in. */
  maxTemperature: number;
  /** Neighbours checked against the guards before giving up (default 4). */
  candidates?: number;
  /** Longest a lookup waits for its embedding before going on with the exact lookup alone, ms; absent: no bound. */
  embedWaitMs?: number;
  annFactory: AnnFactory;
  /** Name of the index implementation, for stats. */
  indexKind?: string;
  /**
   * Runs the index in a worker thread, which builds it from these settings (a factory cannot be
   * posted to a thread); `annFactory` then builds the index in this thread that the cache falls
   * back to if the worker dies. Absent: the index runs in this thread.
   */
  indexThread?: Omit<IndexSettings, 'dimensions'>;
}

export interface ResponseCacheOptions {
  store: CacheStore;
  ttlMs: number;
  compressMinBytes: number;
  semantic?: SemanticSettings;
  /** Reports background failures (a store write that failed, a bad event, the index worker's death). */
  onError?: (err: unknown, what: string) => void;
}

/** The difficulty and aggregation the client asked for (KeyOptions) are part of both keys: test-time scaling runs after the cache. */
export interface LookupOptions extends KeyOptions {
  /** Accept only entries younger than this (request `Cache-Control: max-age`). */
  maxAgeS?: number;
  /** Do not read the cache (`no-cache`); still prepares the probe so the answer can be stored. */
  skipRead?: boolean;
  /** The tenant opted in to semantic hits at any temperature. */
  semanticAnyTemperature?: boolean;
}

/** Everything worked out about a request during lookup, reused when its answer is stored. */
export interface Probe {
  namespace: string;
  model: string;
  key: string;
  semantic?: { partition: string; text: string; features: CurrentFeatures; vector: Float32Array };
}

export interface CacheHit {
  kind: 'exact' | 'semantic';
  answer: CachedAnswer;
  meta: EntryMeta;
  similarity?: number;
}

export interface CacheStats {
  backend: 'memory' | 'redis';
  hits: { exact: number; semantic: number; total: number };
  misses: number;
  hitRate: number;
  entries: number;
  bytes: number;
  evictions: number;
  stores: number;
  saved: { tokens: number; usd: number };
  semantic: {
    enabled: boolean;
    embedder?: string;
    threshold?: number;
    index?: string;
    indexedEntries: number;
    meanSimilarity: number | null;
    guardRejections: Record<string, number>;
  };
}

interface IndexedInfo {
  features: CurrentFeatures;
}

export class ResponseCache {
  private readonly store: CacheStore;
  private index: SemanticIndex | undefined;
  private readonly indexed = new Map<string, IndexedInfo>();
  private readonly semantic: SemanticSettings | undefined;
  /** namespace + context fingerprint → partition: a digest per lookup saved, since the same few recur. */
  private readonly partitions = new Map<string, string>();
  private seenDuringReconcile: Set<string> | undefined;
  private reconcileAgain = false;
  /** Completed index resyncs after lost store events (for tests and diagnostics). */
  reconciles = 0;

  private constructor(private readonly opts: ResponseCacheOptions) {
    this.store = opts.store;
    this.semantic = opts.semantic;
    const s = this.semantic;
    if (!s) return;
    const dimensions = s.embedder.dimensions;
    this.index = s.indexThread
      ? new ThreadedVectorIndex(
          { ...s.indexThread, dimensions },
          { onFailure: (err) => this.indexFailed(err), onError: (err) => this.opts.onError?.(err, 'cache index update') },
        )
      : new PartitionedVectorIndex(dimensions, s.annFactory);
  }

  /** Builds the service: follows the store's changes, then rebuilds the index from its entries. */
  static async create(opts: ResponseCacheOptions): Promise<ResponseCache> {
    const cache = new ResponseCache(opts);
    try {
      opts.store.subscribe((e) => cache.onStoreEvent(e));
      await opts.store.start();
      if (cache.index) {
        for await (const { meta, vector } of opts.store.scanVectors()) cache.indexEntry(meta, vector);
      }
    } catch (err) {
      // The index's worker thread would otherwise outlive the cache that failed to start.
      await cache.index?.close?.();
      throw err;
    }
    return cache;
  }

  get semanticEnabled(): boolean {
    return this.semantic !== undefined;
  }

  /** Entries in this process's vector index. */
  get indexedEntries(): number {
    return this.index?.size ?? 0;
  }

  /** The thread the vector index runs in, while it runs in one (tests stop it to see the cache fall back). */
  get indexWorker(): Worker | undefined {
    return this.index instanceof ThreadedVectorIndex ? this.index.worker : undefined;
  }

  /**
   * The exact part of a request's probe, from the request alone: worked out before anything is
   * awaited, so an answer can be stored (and replace a bad entry) whatever the lookup then meets.
   */
  probe(namespace: string, req: ChatRequest, opts: KeyOptions = {}): Probe {
    return { namespace, model: req.model, key: entryKey(namespace, req.model, exactKey(req, opts)) };
  }

  async lookup(namespace: string, req: ChatRequest, opts: LookupOptions = {}): Promise<{ probe: Probe; hit?: CacheHit }> {
    const probe = this.probe(namespace, req, opts);
    const hit = await this.read(probe, req, opts);
    return hit ? { probe, hit } : { probe };
  }

  /**
   * Looks up the request `probe` was made for, exactly, then semantically, adding the semantic part
   * to the probe. Rejects only when the exact read fails (the store is down). The semantic part's
   * failures (the embedder down or slower than `embedWaitMs`, the index) are reported and leave the
   * probe without it: the answer is still stored for exact lookups. An entry whose payload cannot be
   * read is dropped and counts as a miss, so the fresh answer takes its place.
   */
  async read(probe: Probe, req: ChatRequest, opts: LookupOptions = {}): Promise<CacheHit | undefined> {
    const minCreatedAt = opts.maxAgeS !== undefined ? Date.now() - opts.maxAgeS * 1000 : 0;
    if (!opts.skipRead) {
      const entry = await this.store.get(probe.key);
      if (entry && entry.meta.createdAt >= minCreatedAt) {
        const hit = await this.hit('exact', entry);
        if (hit) return hit;
      }
    }
    const s = this.semantic;
    const temperature = req.temperature ?? 1;
    const sk = s && (temperature <= s.maxTemperature || opts.semanticAnyTemperature) ? semanticKey(req, opts) : undefined;
    if (s && sk && this.index) {
      try {
        const vector = await this.embed(s, sk.text);
        if (vector) {
          const partition = this.partition(probe.namespace, sk.fingerprint);
          probe.semantic = { partition, text: sk.text, features: extractFeatures(sk.text), vector };
          if (!opts.skipRead) {
            const hit = await this.semanticLookup(probe, minCreatedAt);
            if (hit) return hit;
          }
        }
      } catch (err) {
        this.opts.onError?.(err, 'cache semantic lookup');
      }
    }
    if (!opts.skipRead) this.store.incrementStats({ misses: 1 });
    return undefined;
  }

  /** Stores an answer under the probe's key (and vector); `saved` is what a later hit saves. */
  async put(probe: Probe, answer: CachedAnswer, saved: { tokens: number; costUsd: number }): Promise<void> {
    const meta: EntryMeta = {
      key: probe.key,
      namespace: probe.namespace,
      model: probe.model,
      createdAt: Date.now(),
      tokens: saved.tokens,
      costUsd: saved.costUsd,
    };
    const entry: StoredEntry = { meta, payload: await encodeAnswer(answer, this.opts.compressMinBytes) };
    if (probe.semantic && this.semantic) {
      meta.semantic = { partition: probe.semantic.partition, embedder: this.semantic.embedder.id, features: probe.semantic.features };
      entry.vector = probe.semantic.vector;
    }
    await this.store.set(entry, this.opts.ttlMs);
    this.store.incrementStats({ stores: 1 });
  }

  async invalidate(filter: InvalidateFilter): Promise<number> {
    return this.store.invalidate(filter);
  }

  async stats(): Promise<CacheStats> {
    const [c, s] = await Promise.all([this.store.counters(), this.store.readStats()]);
    const exact = s.exact_hits ?? 0;
    const semantic = s.semantic_hits ?? 0;
    const misses = s.misses ?? 0;
    const total = exact + semantic;
    const guardRejections: Record<string, number> = {};
    for (const [k, v] of Object.entries(s)) if (k.startsWith('guard_')) guardRejections[k.slice('guard_'.length)] = v;
    const out: CacheStats = {
      backend: this.store.kind,
      hits: { exact, semantic, total },
      misses,
      hitRate: total + misses > 0 ? total / (total + misses) : 0,
      entries: c.entries,
      bytes: c.bytes,
      evictions: c.evictions,
      stores: s.stores ?? 0,
      saved: { tokens: s.tokens_saved ?? 0, usd: s.usd_saved ?? 0 },
      semantic: {
        enabled: this.semantic !== undefined,
        indexedEntries: this.indexedEntries,
        meanSimilarity: semantic > 0 ? (s.similarity_sum ?? 0) / semantic : null,
        guardRejections,
      },
    };
    if (this.semantic) {
      out.semantic.embedder = this.semantic.embedder.id;
      out.semantic.threshold = this.semantic.threshold;
      if (this.semantic.indexKind) out.semantic.index = this.semantic.indexKind;
    }
    return out;
  }

  async resetStats(): Promise<void> {
    await this.store.clearStats();
  }

  async close(): Promise<void> {
    try {
      await this.index?.close?.();
    } finally {
      await this.store.close();
    }
  }

  private partition(namespace: string, fingerprint: string): string {
    // The embedder id is part of the partition: vectors from different models never meet.
    const input = `${namespace}\u0000${fingerprint}\u0000${this.semantic?.embedder.id ?? ''}`;
    let p = this.partitions.get(input);
    if (p === undefined) {
      p = hash('sha256', input, 'base64url').slice(0, 24);
      // Bounded: a caller varying its context on every request must not grow this without end.
      if (this.partitions.size >= PARTITION_MEMO_MAX) this.partitions.clear();
      this.partitions.set(input, p);
    }
    return p;
  }

  private async semanticLookup(probe: Probe, minCreatedAt: number): Promise<CacheHit | undefined> {
    const s = this.semantic as SemanticSettings;
    const q = probe.semantic as NonNullable<Probe['semantic']>;
    const found = await (this.index as SemanticIndex).search(q.partition, q.vector, s.candidates ?? 4);
    for (const n of found) {
      if (n.similarity < s.threshold) break;
      const info = this.indexed.get(n.label);
      if (!info) continue;
      const verdict = featuresAgree(q.features, info.features);
      if (!verdict.ok) {
        this.store.incrementStats({ [`guard_${verdict.reason}`]: 1 });
        continue;
      }
      const entry = await this.store.get(n.label);
      if (!entry) {
        // Expired or evicted where we did not hear of it: forget it here too.
        this.unindex(n.label);
        continue;
      }
      if (entry.meta.createdAt < minCreatedAt) continue;
      const hit = await this.hit('semantic', entry, n.similarity);
      if (hit) return hit;
    }
    return undefined;
  }

  /**
   * The lookup's embedding, waiting at most `embedWaitMs`: a slow or failing embedder (an HTTP
   * embedder's own timeout is 10 s) must not hold every miss that long. The race keeps a late
   * embedding's failure handled.
   */
  private async embed(s: SemanticSettings, text: string): Promise<Float32Array | undefined> {
    const embedding = s.embedder.embed([text]).then(([v]) => v);
    if (s.embedWaitMs === undefined) return embedding;
    return withTimeout(embedding, s.embedWaitMs, `the embedder took longer than ${s.embedWaitMs} ms; looked up exactly only`);
  }

  /** The hit, or undefined when the entry's payload cannot be read: then the entry is dropped. */
  private async hit(kind: 'exact' | 'semantic', entry: StoredEntry, similarity?: number): Promise<CacheHit | undefined> {
    let answer: CachedAnswer;
    try {
      answer = await decodeAnswer(entry.payload);
    } catch (err) {
      this.opts.onError?.(err, 'cache entry unreadable');
      // Deleted before the request goes on as a miss, so this request's answer is not the one deleted.
      this.unindex(entry.meta.key);
      await this.store.delete([entry.meta.key]).catch((e: unknown) => this.opts.onError?.(e, 'cache delete'));
      return undefined;
    }
    const delta: Record<string, number> = {
      [`${kind}_hits`]: 1,
      tokens_saved: entry.meta.tokens,
      usd_saved: entry.meta.costUsd,
    };
    if (similarity !== undefined) delta.similarity_sum = similarity;
    this.store.incrementStats(delta);
    const hit: CacheHit = { kind, answer, meta: entry.meta };
    if (similarity !== undefined) hit.similarity = similarity;
    return hit;
  }

  private onStoreEvent(e: StoreEvent): void {
    try {
      if (e.op === 'add') {
        if (e.vector) this.indexEntry(e.meta, e.vector);
      } else if (e.op === 'delete') {
        for (const k of e.keys) this.unindex(k);
      } else {
        this.reconcile();
      }
    } catch (err) {
      this.opts.onError?.(err, 'cache index update');
    }
  }

  /**
   * After lost store events: indexes the store's entries this index lacks and drops what it holds
   * that the store no longer has. Adds that arrive meanwhile are kept (they are recorded in
   * `seenDuringReconcile`, as the scan may already have passed them). One pass at a time; a resync
   * during a pass runs another after it.
   */
  private reconcile(): void {
    if (!this.index) return;
    if (this.seenDuringReconcile) {
      this.reconcileAgain = true;
      return;
    }
    const seen = (this.seenDuringReconcile = new Set<string>());
    void (async () => {
      for await (const { meta, vector } of this.store.scanVectors()) {
        seen.add(meta.key);
        if (!this.indexed.has(meta.key)) this.indexEntry(meta, vector);
      }
      for (const key of [...this.indexed.keys()]) if (!seen.has(key)) this.unindex(key);
    })()
      .catch((err: unknown) => this.opts.onError?.(err, 'cache index resync'))
      .finally(() => {
        this.seenDuringReconcile = undefined;
        this.reconciles++;
        if (this.reconcileAgain) {
          this.reconcileAgain = false;
          this.reconcile();
        }
      });
  }

  /**
   * The index worker died: serve from an index in this thread instead, built again from the store
   * (what the worker held is gone with it, so nothing counts as indexed until the store says so).
   * Lookups meanwhile miss what is not re-indexed yet; none fails.
   */
  private indexFailed(err: Error): void {
    const s = this.semantic as SemanticSettings;
    this.opts.onError?.(err, 'cache index worker');
    this.index = new PartitionedVectorIndex(s.embedder.dimensions, s.annFactory);
    this.indexed.clear();
    this.reconcile();
  }

  private indexEntry(meta: EntryMeta, vector: Float32Array): void {
    const s = this.semantic;
    if (!s || !this.index || !meta.semantic || meta.semantic.embedder !== s.embedder.id) return;
    // Features of other guard rules never agree (featuresAgree): indexed, such an entry would only
    // take a candidate's place from one that can answer. It still answers exact lookups.
    if (!isCurrent(meta.semantic.features)) return;
    this.index.add(meta.semantic.partition, meta.key, vector);
    this.indexed.set(meta.key, { features: meta.semantic.features });
    this.seenDuringReconcile?.add(meta.key);
  }

  private unindex(key: string): void {
    this.index?.remove(key);
    this.indexed.delete(key);
  }
}
