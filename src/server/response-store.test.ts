// The stored-responses store on the real Redis and a Redis Cluster (test/helpers/redis.ts), and in
// memory: what one replica stores another reads, deletes are seen by all, entries expire.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { redisTargets } from '../../test/helpers/redis.js';
import { MemoryResponseStore, RedisResponseStore, type StoredResponse } from './response-store.js';

const targets = await redisTargets();
const runId = randomBytes(6).toString('hex');
afterAll(async () => {
  for (const t of targets) if (t.available) await t.cleanup(`*ifresp:${runId}:*`);
});

const value: StoredResponse = { tenant: 'key:k1', messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }], response: { id: 'resp_1', object: 'response' } };

describe('memory response store', () => {
  it('stores, reads, deletes and expires', async () => {
    const store = new MemoryResponseStore(50);
    await store.put('resp_1', value);
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
});

describe('memory response store budget', () => {
  it('evicts the oldest entries to stay within its byte budget, and skips an entry larger than it', async () => {
    const big: StoredResponse = { ...value, messages: [{ role: 'user', content: 'x'.repeat(4_000) }] };
    const store = new MemoryResponseStore(60_000, 20_000); // about two such entries (UTF-16 bytes)
    await store.put('r1', big);
    await store.put('r2', big);
    await store.put('r3', big);
    expect(await store.get('r1')).toBeUndefined();
    expect(await store.get('r3')).toEqual(big);
    await store.put('huge', { ...value, messages: [{ role: 'user', content: 'x'.repeat(20_000) }] });
    expect(await store.get('huge')).toBeUndefined();
    // …and storing nothing for it evicted nothing.
    expect(await store.get('r3')).toEqual(big);
  });
});
