// The embedded cache store: a Map in least-recently-used order, bounded by bytes, with per-entry
// expiry. Expired entries are dropped when read and by a periodic sweep; going over budget evicts
// from the cold end. Everything is in this process; nothing survives a restart.
import { entryBytes, type StoredEntry } from '../entry.js';
import { escapePart, globToRegExp } from '../keys.js';
import { filterGlob, type CacheStore, type InvalidateFilter, type StatCounters, type StoreCounters, type StoreEvent } from './types.js';

interface Slot {
  entry: StoredEntry;
  bytes: number;
  expiresAt: number;
}

export interface MemoryStoreOptions {
  maxBytes: number;
  /** How often expired entries are swept, ms (default 30 s). */
  sweepIntervalMs?: number;
  now?: () => number;
}

export class MemoryCacheStore implements CacheStore {
  readonly kind = 'memory' as const;
  private readonly slots = new Map<string, Slot>();
  private bytes = 0;
  private evictions = 0;
  private readonly listeners = new Set<(e: StoreEvent) => void>();
  private readonly stats: StatCounters = {};
  private readonly now: () => number;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly opts: MemoryStoreOptions) {
    this.now = opts.now ?? Date.now;
  }

  async start(): Promise<void> {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => this.sweep(), this.opts.sweepIntervalMs ?? 30_000);
    this.sweeper.unref();
  }

  async get(key: string): Promise<StoredEntry | undefined> {
    const slot = this.slots.get(key);
    if (!slot) return undefined;
    if (slot.expiresAt <= this.now()) {
      this.drop([key], 'expired');
      return undefined;
    }
    // Re-insert to move it to the hot end of the Map's insertion order.
    this.slots.delete(key);
    this.slots.set(key, slot);
    return slot.entry;
  }

  async set(entry: StoredEntry, ttlMs: number): Promise<void> {
    const key = entry.meta.key;
    const bytes = entryBytes(entry);
    if (bytes > this.opts.maxBytes) return;
    const old = this.slots.get(key);
    if (old) {
      this.slots.delete(key);
      this.bytes -= old.bytes;
    }
    this.slots.set(key, { entry, bytes, expiresAt: this.now() + ttlMs });
    this.bytes += bytes;
    this.emit(entry.vector ? { op: 'add', meta: entry.meta, vector: entry.vector } : { op: 'add', meta: entry.meta });
    if (this.bytes > this.opts.maxBytes) {
      const evicted: string[] = [];
      for (const [k, slot] of this.slots) {
        if (this.bytes <= this.opts.maxBytes) break;
        this.slots.delete(k);
        this.bytes -= slot.bytes;
        evicted.push(k);
      }
      this.evictions += evicted.length;
      this.emit({ op: 'delete', keys: evicted, reason: 'evicted' });
    }
  }

  async delete(keys: string[]): Promise<number> {
    return this.drop(keys, 'invalidated');
  }

  async invalidate(filter: InvalidateFilter): Promise<number> {
    const re = globToRegExp(filterGlob(filter, escapePart));
    const keys = [...this.slots.keys()].filter((k) => re.test(k));
    return this.drop(keys, 'invalidated');
  }

  async *scanVectors(): AsyncIterable<{ meta: StoredEntry['meta']; vector: Float32Array }> {
    const now = this.now();
    for (const slot of this.slots.values()) {
      if (slot.entry.vector && slot.expiresAt > now) yield { meta: slot.entry.meta, vector: slot.entry.vector };
    }
  }

  subscribe(listener: (e: StoreEvent) => void): void {
    this.listeners.add(listener);
  }

  async counters(): Promise<StoreCounters> {
    return { entries: this.slots.size, bytes: this.bytes, evictions: this.evictions };
  }

  incrementStats(delta: StatCounters): void {
    for (const [k, v] of Object.entries(delta)) this.stats[k] = (this.stats[k] ?? 0) + v;
  }

  async readStats(): Promise<StatCounters> {
    return { ...this.stats };
  }

  async clearStats(): Promise<void> {
    for (const k of Object.keys(this.stats)) delete this.stats[k];
    this.evictions = 0;
  }

  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /** Drops expired entries now (the timer calls this). */
  sweep(): void {
    const now = this.now();
    const expired: string[] = [];
    for (const [k, slot] of this.slots) if (slot.expiresAt <= now) expired.push(k);
    this.drop(expired, 'expired');
  }

  private drop(keys: string[], reason: 'expired' | 'invalidated'): number {
    const gone: string[] = [];
    for (const k of keys) {
      const slot = this.slots.get(k);
      if (!slot) continue;
      this.slots.delete(k);
      this.bytes -= slot.bytes;
      gone.push(k);
    }
    if (gone.length) this.emit({ op: 'delete', keys: gone, reason });
    return gone.length;
  }

  private emit(e: StoreEvent): void {
    for (const l of this.listeners) l(e);
  }
}
