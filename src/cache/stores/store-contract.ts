// Behaviour both cache stores must show, run by memory.test.ts and redis.test.ts against each.
import { expect, it } from 'vitest';
import { entryBytes, type EntryMeta, type StoredEntry } from '../entry.js';
import { entryKey } from '../keys.js';
import type { CacheStore, StoreEvent } from './types.js';

export function entry(ns: string, model: string, hash: string, opts: { bytes?: number; vector?: Float32Array } = {}): StoredEntry {
  const meta: EntryMeta = { key: entryKey(ns, model, hash), namespace: ns, model, createdAt: Date.now(), tokens: 10, costUsd: 0.001 };
  const e: StoredEntry = { meta, payload: Buffer.alloc(opts.bytes ?? 100, 0x61) };
  if (opts.vector) {
    e.vector = opts.vector;
    meta.semantic = { partition: 'p', embedder: 'test', features: { numbers: [], quoted: [], entities: [], negations: 0, units: [], polar: [], language: 'latin:en', content: [] } };
  }
  return e;
}

export function storeContract(make: (opts: { maxBytes: number }) => Promise<CacheStore>, skip: () => boolean = () => false): void {
  // Each case skips (with the reason printed by the caller) when the backing service is unreachable.
  const test = (name: string, fn: () => Promise<void>) =>
    it(name, async (ctx) => {
      if (skip()) return ctx.skip();
      await fn();
    });

  test('returns what was set, byte for byte, and nothing for unknown keys', async () => {
    const s = await make({ maxBytes: 1e6 });
    const e = entry('t1', 'm', 'h1', { vector: Float32Array.from([0.6, 0.8]) });
    await s.set(e, 60_000);
    const got = await s.get(e.meta.key);
    expect(got?.meta).toEqual(e.meta);
    expect(got?.payload.equals(e.payload)).toBe(true);
    expect(Array.from(got?.vector ?? [])).toEqual([Float32Array.from([0.6])[0], Float32Array.from([0.8])[0]]);
    expect(await s.get(entryKey('t2', 'm', 'h1'))).toBeUndefined();
  });

  test('expires entries after their TTL', async () => {
    const s = await make({ maxBytes: 1e6 });
    const e = entry('t1', 'm', 'short');
    await s.set(e, 50);
    expect(await s.get(e.meta.key)).toBeDefined();
    await new Promise((r) => setTimeout(r, 120));
    expect(await s.get(e.meta.key)).toBeUndefined();
  });

  test('evicts the least recently used entries when over the byte budget', async () => {
    const s = await make({ maxBytes: 3000 });
    const events: StoreEvent[] = [];
    s.subscribe((ev) => events.push(ev));
    const a = entry('t', 'm', 'a', { bytes: 800 });
    const b = entry('t', 'm', 'b', { bytes: 800 });
    const c = entry('t', 'm', 'c', { bytes: 800 });
    await s.set(a, 60_000);
    await s.set(b, 60_000);
    await s.set(c, 60_000);
    // Touch a, so b is now the coldest.
    await new Promise((r) => setTimeout(r, 5));
    expect(await s.get(a.meta.key)).toBeDefined();
    await s.set(entry('t', 'm', 'd', { bytes: 800 }), 60_000);
    expect(await s.get(b.meta.key)).toBeUndefined();
    expect(await s.get(a.meta.key)).toBeDefined();
    expect(await s.get(c.meta.key)).toBeDefined();
    const counters = await s.counters();
    expect(counters.evictions).toBe(1);
    expect(counters.entries).toBe(3);
    expect(counters.bytes).toBeLessThanOrEqual(3000);
    expect(events).toContainEqual({ op: 'delete', keys: [b.meta.key], reason: 'evicted' });
  });

  test('charges a semantic entry what a replica spends on it (vector copies and index overhead), as entryBytes counts', async () => {
    const s = await make({ maxBytes: 1e6 });
    const plain = entry('t', 'm', 'plain', { bytes: 500 });
    const semantic = entry('t', 'm', 'semantic', { bytes: 500, vector: new Float32Array(384).fill(0.05) });
    await s.set(plain, 60_000);
    expect((await s.counters()).bytes).toBe(entryBytes(plain));
    await s.set(semantic, 60_000);
    expect((await s.counters()).bytes).toBe(entryBytes(plain) + entryBytes(semantic));
    // The budget bounds every replica's index, not only the payloads: far more than the vector itself.
    expect(entryBytes(semantic)).toBeGreaterThan(500 + 2 * 384 * 4 + JSON.stringify(semantic.meta).length);
  });

  test('invalidates by namespace, by model and by a glob over the hash', async () => {
    const s = await make({ maxBytes: 1e6 });
    const keys = [entry('acme', 'gpt-4o', 'x'), entry('acme', 'gpt-4o-mini', 'y'), entry('globex', 'gpt-4o', 'z'), entry('globex', 'claude', 'w')];
    for (const e of keys) await s.set(e, 60_000);
    expect(await s.invalidate({ namespace: 'acme', model: 'gpt-4o' })).toBe(1);
    expect(await s.get(keys[0]!.meta.key)).toBeUndefined();
    expect(await s.get(keys[1]!.meta.key)).toBeDefined();
    expect(await s.invalidate({ model: 'gpt-4o' })).toBe(1);
    expect(await s.get(keys[2]!.meta.key)).toBeUndefined();
    expect(await s.invalidate({ namespace: 'globex', pattern: 'w*' })).toBe(1);
    expect(await s.get(keys[3]!.meta.key)).toBeUndefined();
    expect(await s.invalidate({ namespace: 'acme' })).toBe(1);
    expect((await s.counters()).entries).toBe(0);
  });

  test('lists entries with vectors for index rebuilds', async () => {
    const s = await make({ maxBytes: 1e6 });
    await s.set(entry('t', 'm', 'with', { vector: Float32Array.from([1, 0]) }), 60_000);
    await s.set(entry('t', 'm', 'without'), 60_000);
    const seen: string[] = [];
    for await (const { meta } of s.scanVectors()) seen.push(meta.key);
    expect(seen).toEqual([entryKey('t', 'm', 'with')]);
  });

  test('keeps hit statistics', async () => {
    const s = await make({ maxBytes: 1e6 });
    s.incrementStats({ exact_hits: 2, usd_saved: 0.25 });
    s.incrementStats({ exact_hits: 1, usd_saved: 0.5 });
    expect(await s.readStats()).toMatchObject({ exact_hits: 3, usd_saved: 0.75 });
  });
}
