import { afterEach, describe, expect, it } from 'vitest';
import { MemoryCacheStore } from './memory.js';
import { entry, storeContract } from './store-contract.js';
import type { StoreEvent } from './types.js';

const open: MemoryCacheStore[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

describe('MemoryCacheStore', () => {
  storeContract(async ({ maxBytes }) => {
    const s = new MemoryCacheStore({ maxBytes });
    open.push(s);
    await s.start();
    return s;
  });

  it('sweeps expired entries and tells listeners', async () => {
    let now = 1000;
    const s = new MemoryCacheStore({ maxBytes: 1e6, now: () => now });
    const events: StoreEvent[] = [];
    s.subscribe((e) => events.push(e));
    const e = entry('t', 'm', 'h');
    await s.set(e, 100);
    now += 101;
    s.sweep();
    expect(events.at(-1)).toEqual({ op: 'delete', keys: [e.meta.key], reason: 'expired' });
    expect((await s.counters()).entries).toBe(0);
  });

  it('refuses an entry larger than the whole budget rather than emptying the cache for it', async () => {
    const s = new MemoryCacheStore({ maxBytes: 1000 });
    const small = entry('t', 'm', 'small', { bytes: 100 });
    await s.set(small, 60_000);
    await s.set(entry('t', 'm', 'huge', { bytes: 5000 }), 60_000);
    expect(await s.get(small.meta.key)).toBeDefined();
    expect((await s.counters()).entries).toBe(1);
  });
});
