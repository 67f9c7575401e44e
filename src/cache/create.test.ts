import { describe, expect, it } from 'vitest';
import { dropRedisPrefix, REDIS_URL, redisAvailable, runId } from '../../test/helpers/services.js';
import { createRedis } from '../store/redis.js';
import { cacheConfigSchema } from './config.js';
import { createResponseCache } from './create.js';
import { BatchedEmbedder } from './embedders/batched.js';
import type { Embedder } from './embedders/types.js';
import { userRequest } from './test-helpers.js';

const haveRedis = await redisAvailable();
const fake: Embedder = { id: 'fake', dimensions: 2, embed: async (ts) => ts.map(() => Float32Array.from([1, 0])) };

describe('createResponseCache', () => {
  it('builds a memory-backed cache with defaults from an empty section when there is no Redis', async () => {
    const cfg = cacheConfigSchema.parse({ semantic: { enabled: false } });
    expect(cfg).toMatchObject({ backend: 'auto', ttl_s: 3600, batch: { max_size: 32, flush_timeout_ms: 20 } });
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

  it.skipIf(!haveRedis)('shares the cache in Redis by default when a Redis is configured (one cache per worker answered an invalidation in one of them only)', async () => {
    const redis = createRedis(REDIS_URL, 'cache-auto-test');
    const prefix = `test:${runId()}:`;
    try {
      const shared = await createResponseCache(cacheConfigSchema.parse({ semantic: { enabled: false } }), { redis, keyPrefix: prefix });
      expect((await shared.stats()).backend).toBe('redis');
      await shared.close();
      const local = await createResponseCache(cacheConfigSchema.parse({ backend: 'memory', semantic: { enabled: false } }), { redis });
      expect((await local.stats()).backend).toBe('memory');
      await local.close();
    } finally {
      redis.disconnect();
      await dropRedisPrefix(prefix);
    }
  });
});
