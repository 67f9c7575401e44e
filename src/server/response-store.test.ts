// The stored-responses store on the real Redis and a Redis Cluster (test/helpers/redis.ts), and in
// memory: what one replica stores another reads, deletes are seen by all, entries expire.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { redisTargets } from '../../test/helpers/redis.js';
import { MAX_ENTRY_BYTES, MemoryResponseStore, RedisResponseStore, type StoredResponse } from './response-store.js';

const targets = await redisTargets();
const runId = randomBytes(6).toString('hex');
afterAll(async () => {
  for (const t of targets) if (t.available) await t.cleanup(`*ifresp:${runId}:*`);
});

const value: StoredResponse = { tenant: 'key:k1', messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }], response: { id: 'resp_1', object: 'response' } };

describe('memory response store', () => {
  it('stores, reads, deletes and expires', async () => {
    const store = new MemoryResponseStore({ ttlMs: 50 });
    expect(await store.put('resp_1', value)).toEqual({ stored: true });
    expect(await store.get('resp_1')).toEqual(value);
    expect(await store.delete('resp_1')).toBe(true);
    expect(await store.get('resp_1')).toBeUndefined();
    await store.put('resp_2', value);
    await new Promise((r) => setTimeout(r, 80));
    expect(await store.get('resp_2')).toBeUndefined();
  });
});

describe.each(targets.map((t) => [t.name, t] as const))('redis response store on %s', (_name, target) => {
  it.skipIf(!target.available)('is shared by replicas: one stores, another reads and deletes; entries expire', async () => {
    const prefix = `ifresp:${runId}:${target.name}:`;
    const a = new RedisResponseStore(target.connect(), prefix);
    const b = new RedisResponseStore(target.connect(), prefix);
    await a.put('resp_1', value);
    expect(await b.get('resp_1')).toEqual(value);
    expect(await b.delete('resp_1')).toBe(true);
    expect(await a.get('resp_1')).toBeUndefined();
    const short = new RedisResponseStore(target.connect(), prefix, 1);
    await short.put('resp_2', value);
    await expect.poll(async () => a.get('resp_2'), { timeout: 3_000, interval: 100 }).toBeUndefined();
  });

  it.skipIf(!target.available)('refuses an entry over the per-entry limit, and says so', async () => {
    const prefix = `ifresp:${runId}:${target.name}:`;
    const store = new RedisResponseStore(target.connect(), prefix);
    const huge: StoredResponse = { ...value, messages: [{ role: 'user', content: 'x'.repeat(MAX_ENTRY_BYTES) }] };
    expect(await store.put('resp_huge', huge)).toMatchObject({ stored: false, reason: expect.stringContaining(`${MAX_ENTRY_BYTES}-byte limit`) });
    expect(await store.get('resp_huge')).toBeUndefined();
    const small = new RedisResponseStore(target.connect(), prefix, 60, 300);
    expect(await small.put('resp_small', value)).toEqual({ stored: true });
    expect(await small.put('resp_big', { ...value, messages: [{ role: 'user', content: 'x'.repeat(300) }] })).toMatchObject({ stored: false });
    expect(await small.get('resp_big')).toBeUndefined();
  });
});

const sized = (tenant: string, chars: number): StoredResponse => ({ ...value, tenant, messages: [{ role: 'user', content: 'x'.repeat(chars) }] });

describe('memory response store budget', () => {
  it('evicts the oldest entries to stay within its byte budget', async () => {
    const big = sized('key:k1', 4_000);
    const store = new MemoryResponseStore({ maxBytes: 10_000 }); // two such entries (their JSON)
    await store.put('r1', big);
    await store.put('r2', big);
    await store.put('r3', big);
    expect(await store.get('r1')).toBeUndefined();
    expect(await store.get('r2')).toEqual(big);
    expect(await store.get('r3')).toEqual(big);
  });

  it('reports an entry over the per-entry limit as not stored, and evicts nothing for it', async () => {
    const store = new MemoryResponseStore({ maxBytes: 100_000, maxEntryBytes: 10_000 });
    const kept = sized('key:k1', 4_000);
    expect(await store.put('r1', kept)).toEqual({ stored: true });
    expect(await store.put('huge', sized('key:k1', 10_000))).toMatchObject({ stored: false, reason: expect.stringContaining('10000-byte limit') });
    expect(await store.get('huge')).toBeUndefined();
    expect(await store.get('r1')).toEqual(kept);
    // The default limit is the shared one, also under the whole budget.
    expect(await new MemoryResponseStore().put('huge', sized('key:k1', MAX_ENTRY_BYTES))).toMatchObject({ stored: false });
    // A rewrite of an id too large to keep drops nothing else, and leaves the old entry as it was.
    expect(await store.put('r1', sized('key:k1', 20_000))).toMatchObject({ stored: false });
    expect(await store.get('r1')).toEqual(kept);
  });

  it('lets a tenant alone use the whole budget, but one tenant cannot evict the others past their fair share', async () => {
    const store = new MemoryResponseStore({ maxBytes: 21_000 }); // five entries of 4,000 characters
    for (let i = 0; i < 5; i++) await store.put(`solo${i}`, sized('key:solo', 4_000));
    for (let i = 0; i < 5; i++) expect(await store.get(`solo${i}`), `solo${i}`).toBeDefined();

    const shared = new MemoryResponseStore({ maxBytes: 21_000 });
    await shared.put('b1', sized('key:b', 4_000));
    await shared.put('b2', sized('key:b', 4_000));
    for (let i = 0; i < 50; i++) await shared.put(`a${i}`, sized('key:a', 4_000));
    // b's two entries survive a's fifty: a, over half the budget, made room from its own oldest.
    expect(await shared.get('b1')).toBeDefined();
    expect(await shared.get('b2')).toBeDefined();
    expect(await shared.get('a49')).toBeDefined();
    expect(await shared.get('a47')).toBeDefined();
    expect(await shared.get('a46')).toBeUndefined();
  });

  it('shares the entry count the same way', async () => {
    const store = new MemoryResponseStore({ maxEntries: 10 });
    for (let i = 0; i < 3; i++) await store.put(`b${i}`, sized('key:b', 10));
    for (let i = 0; i < 100; i++) await store.put(`a${i}`, sized('key:a', 10));
    for (let i = 0; i < 3; i++) expect(await store.get(`b${i}`), `b${i}`).toBeDefined();
    // a keeps its newest seven (what b leaves), dropping its own oldest once over half of ten.
    expect(await store.get('a93')).toBeDefined();
    expect(await store.get('a92')).toBeUndefined();
  });
});
