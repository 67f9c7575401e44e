import { describe, expect, it } from 'vitest';
import { cacheConfigSchema } from './config.js';
import { createResponseCache } from './create.js';
import { BatchedEmbedder } from './embedders/batched.js';
import type { Embedder } from './embedders/types.js';
import { userRequest } from './test-helpers.js';

const fake: Embedder = { id: 'fake', dimensions: 2, embed: async (ts) => ts.map(() => Float32Array.from([1, 0])) };

describe('createResponseCache', () => {
  it('builds a memory-backed cache with defaults from an empty section', async () => {
    const cfg = cacheConfigSchema.parse({ semantic: { enabled: false } });
    expect(cfg).toMatchObject({ backend: 'memory', ttl_s: 3600, batch: { max_size: 32, flush_timeout_ms: 20 } });
    const cache = await createResponseCache(cfg);
    expect((await cache.stats()).backend).toBe('memory');
    expect(cache.semanticEnabled).toBe(false);
    await cache.close();
  });

  it('uses a given embedder behind the micro-batcher and the chosen index', async () => {
    const cfg = cacheConfigSchema.parse({ semantic: { enabled: true, index: { implementation: 'typescript' } } });
    const cache = await createResponseCache(cfg, { embedder: fake });
    const stats = await cache.stats();
    expect(stats.semantic).toMatchObject({ enabled: true, embedder: 'fake', threshold: 0.85, index: 'typescript-hnsw' });
    const { probe } = await cache.lookup('t', userRequest('hello'));
    expect(probe.semantic?.vector).toEqual(Float32Array.from([1, 0]));
    await cache.close();
    expect(new BatchedEmbedder(fake, { maxSize: 2, flushTimeoutMs: 1 }).id).toBe('fake');
  });

  it('serves exact hits only unless semantic lookups are switched on', async () => {
    // Off by default: on prompts it was not tuned on, the static embedder and guards served 4.6% of
    // near misses (bench/cache-eval/heldout.json) — wrong answers, silently.
    const cfg = cacheConfigSchema.parse({});
    expect(cfg.enabled).toBe(true);
    expect(cfg.semantic.enabled).toBe(false);
    const cache = await createResponseCache(cfg, { embedder: fake });
    expect((await cache.stats()).semantic).toMatchObject({ enabled: false });
    const { probe } = await cache.lookup('t', userRequest('hello'));
    expect(probe.semantic).toBeUndefined();
    await cache.close();
  });

  it('refuses a Redis backend without Redis and unknown keys in the section', async () => {
    await expect(createResponseCache(cacheConfigSchema.parse({ backend: 'redis', semantic: { enabled: false } }))).rejects.toThrow(/REDIS_URL/);
    expect(() => cacheConfigSchema.parse({ ttl: 5 })).toThrow();
    expect(() => cacheConfigSchema.parse({ semantic: { threshold: 1.5 } })).toThrow();
  });
});
