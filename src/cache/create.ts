// Builds the response cache from its configuration section: the store (memory or Redis), the
// embedder behind the micro-batcher, and the vector index implementation. Heavy optional packages
// are imported here only when the configuration names them.
import type { RedisClient } from '../store/redis.js';
import type { ProviderAdapter } from '../providers/types.js';
import type { CacheConfig } from './config.js';
import { BatchedEmbedder } from './embedders/batched.js';
import type { Embedder } from './embedders/types.js';
import { ResponseCache, type ResponseCacheOptions, type SemanticSettings } from './response-cache.js';
import { MemoryCacheStore } from './stores/memory.js';
import { RedisCacheStore } from './stores/redis.js';
import type { CacheStore } from './stores/types.js';
import { defaultAnnFactory, loadUsearch, typescriptHnswFactory, usearchFactory, type AnnFactory, type IndexTuning } from './vector-index.js';

export interface CacheDeps {
  /** Shared Redis client (backend `redis`); or `redisUrl` to open one. */
  redis?: RedisClient;
  redisUrl?: string;
  /** Redis key prefix, e.g. `inferenceflow:`. */
  keyPrefix?: string;
  /** Providers by name, for `embedder: openai` with `provider:`. */
  providers?: ReadonlyMap<string, ProviderAdapter>;
  /** A ready embedder (tests, or one shared with the semantic router). */
  embedder?: Embedder;
  onError?: (err: unknown, what: string) => void;
}

export async function createEmbedder(cfg: CacheConfig['semantic'], deps: CacheDeps = {}): Promise<Embedder> {
  switch (cfg.embedder) {
    case 'static': {
      const { StaticEmbedder } = await import('./embedders/static.js');
      const opts: { vocabSize: number; cacheDir?: string } = { vocabSize: cfg.vocab_size };
      if (cfg.table_dir) opts.cacheDir = cfg.table_dir;
      return StaticEmbedder.create(opts);
    }
    case 'transformers': {
      const { TransformersEmbedder } = await import('./embedders/transformers.js');
      const model = cfg.model_path ?? cfg.model;
      if (!model) throw new Error('cache.semantic.model_path is required for the transformers embedder');
      return TransformersEmbedder.create({ model, allowRemote: cfg.allow_remote });
    }
    case 'openai': {
      const { OpenAICompatibleEmbedder } = await import('./embedders/openai-compatible.js');
      const model = cfg.model ?? 'text-embedding-3-small';
      if (cfg.provider) {
        const provider = deps.providers?.get(cfg.provider);
        if (!provider) throw new Error(`cache.semantic.provider names unknown provider ${cfg.provider}`);
        return OpenAICompatibleEmbedder.create({ model, provider });
      }
      if (!cfg.base_url) throw new Error('cache.semantic.base_url or cache.semantic.provider is required for the openai embedder');
      const opts: { model: string; baseUrl: string; apiKey?: string } = { model, baseUrl: cfg.base_url };
      if (cfg.api_key) opts.apiKey = cfg.api_key;
      return OpenAICompatibleEmbedder.create(opts);
    }
  }
}

/**
 * The vector index `cache.semantic.index` names, with its tuning: `typescript`, `usearch` (which must
 * be installed; `usearchPath` loads it from elsewhere) or `auto` (usearch when installed).
 */
export function annFromConfig(
  index: Omit<CacheConfig['semantic']['index'], 'thread'>,
  usearchPath?: string,
): { kind: 'usearch' | 'typescript-hnsw'; factory: AnnFactory; tuning: IndexTuning } {
  const tuning: IndexTuning = {
    connectivity: index.connectivity,
    efConstruction: index.ef_construction,
    efSearch: index.ef_search,
    quantization: index.quantization,
  };
  if (index.implementation === 'typescript') return { kind: 'typescript-hnsw', factory: typescriptHnswFactory(tuning), tuning };
  if (index.implementation === 'usearch') {
    const mod = loadUsearch(usearchPath);
    if (!mod) {
      throw new Error(
        usearchPath
          ? `cache.semantic.index.implementation is usearch but usearch could not be loaded from ${usearchPath}`
          : 'cache.semantic.index.implementation is usearch but the usearch package is not installed',
      );
    }
    return { kind: 'usearch', factory: usearchFactory(mod, tuning), tuning };
  }
  return { ...defaultAnnFactory(tuning), tuning };
}

export async function createResponseCache(cfg: CacheConfig, deps: CacheDeps = {}): Promise<ResponseCache> {
  let store: CacheStore;
  // auto: shared when there is a Redis to share it in (a cache per worker or replica answers an
  // invalidation in one of them only, and each runs colder).
  if (cfg.backend === 'redis' || (cfg.backend === 'auto' && (deps.redis !== undefined || deps.redisUrl !== undefined))) {
    const opts: ConstructorParameters<typeof RedisCacheStore>[0] = {
      keyPrefix: deps.keyPrefix ?? 'inferenceflow:',
      maxBytes: cfg.max_bytes,
      maxTtlMs: cfg.ttl_s * 1000,
    };
    if (deps.onError) opts.onError = deps.onError;
    if (deps.redis) opts.client = deps.redis;
    else if (deps.redisUrl) opts.url = deps.redisUrl;
    else throw new Error('cache.backend is redis but no Redis is configured (set REDIS_URL)');
    store = new RedisCacheStore(opts);
  } else {
    store = new MemoryCacheStore({ maxBytes: cfg.max_bytes });
  }
  let semantic: SemanticSettings | undefined;
  if (cfg.semantic.enabled) {
    const inner = deps.embedder ?? (await createEmbedder(cfg.semantic, deps));
    const ann = annFromConfig(cfg.semantic.index);
    // The static embedder answers in microseconds in this process; waiting up to the flush timeout
    // to fill a batch would only add latency. Model and HTTP embedders are batched.
    const embedder =
      cfg.semantic.embedder === 'static' && !deps.embedder
        ? inner
        : new BatchedEmbedder(inner, { maxSize: cfg.batch.max_size, flushTimeoutMs: cfg.batch.flush_timeout_ms });
    semantic = {
      embedder,
      threshold: cfg.semantic.threshold,
      maxTemperature: cfg.semantic.max_temperature,
      candidates: cfg.semantic.candidates,
      embedWaitMs: cfg.semantic.embed_wait_ms,
      annFactory: ann.factory,
      indexKind: ann.kind,
    };
    // The worker builds its own index from the implementation resolved here (so `auto` means the
    // same in both threads); ann.factory stays for the fallback if the worker dies.
    if (cfg.semantic.index.thread) semantic.indexThread = { kind: ann.kind, tuning: ann.tuning };
  }
  const opts: ResponseCacheOptions = {
    store,
    ttlMs: cfg.ttl_s * 1000,
    compressMinBytes: cfg.compress_min_bytes,
  };
  if (semantic) opts.semantic = semantic;
  if (deps.onError) opts.onError = deps.onError;
  return ResponseCache.create(opts);
}
