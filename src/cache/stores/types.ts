// The contract both cache stores meet (in-memory LRU by bytes, and Redis shared by replicas), and the
// change events that keep every replica's vector index in step with the store.
import type { EntryMeta, StoredEntry } from '../entry.js';

export interface InvalidateFilter {
  namespace?: string;
  model?: string;
  /** Glob (`*`, `?`, `[…]`) over the request hash, the key's last part; ANDed with namespace and model. */
  pattern?: string;
}

export type StoreEvent =
  | { op: 'add'; meta: EntryMeta; vector?: Float32Array }
  | { op: 'delete'; keys: string[]; reason: 'evicted' | 'expired' | 'invalidated' }
  /** Changes were lost (this replica fell behind the trimmed change stream): reconcile with scanVectors. */
  | { op: 'resync' };

export interface StoreCounters {
  entries: number;
  bytes: number;
  evictions: number;
}

/** Hit and miss counters; shared across replicas when the store is. */
export type StatCounters = Record<string, number>;

export interface CacheStore {
  readonly kind: 'memory' | 'redis';
  /** The entry if present and unexpired; marks it recently used. */
  get(key: string): Promise<StoredEntry | undefined>;
  /** Stores (or replaces) an entry for `ttlMs`, evicting least recently used entries over budget. */
  set(entry: StoredEntry, ttlMs: number): Promise<void>;
  delete(keys: string[]): Promise<number>;
  /** Deletes matching entries; returns how many. */
  invalidate(filter: InvalidateFilter): Promise<number>;
  /** Every live entry carrying a vector, for rebuilding the index at start. */
  scanVectors(): AsyncIterable<{ meta: EntryMeta; vector: Float32Array }>;
  /** Adds (or removes, when not listening) the listener for adds and deletes, local and remote. */
  subscribe(listener: (e: StoreEvent) => void): void;
  /** Starts following other replicas' writes (Redis); resolves once following. */
  start(): Promise<void>;
  counters(): Promise<StoreCounters>;
  incrementStats(delta: StatCounters): void;
  readStats(): Promise<StatCounters>;
  clearStats(): Promise<void>;
  close(): Promise<void>;
}

/** Turns an invalidation filter into one glob over entry keys (namespace and model escaped as stored). */
export function filterGlob(f: InvalidateFilter, escape: (s: string) => string): string {
  const ns = f.namespace !== undefined ? escapeGlob(escape(f.namespace)) : '*';
  const model = f.model !== undefined ? escapeGlob(escape(f.model)) : '*';
  return `${ns}:${model}:${f.pattern ?? '*'}`;
}

function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}
