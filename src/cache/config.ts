// The `cache:` configuration section and its environment variables (seed 001 CACHE_BACKEND, seed 002
// CACHE_TTL and SIMILARITY_THRESHOLD). The lead adds `cache: cacheConfigSchema.default(...)` to the
// schema and CACHE_ENV_VARS to the env table.
import { z } from 'zod';
import type { EnvVar } from '../config/env.js';

export const semanticCacheSchema = z
  .object({
    enabled: z.boolean().default(false),
    /** Cosine similarity a semantic hit needs. */
    threshold: z.number().min(0).max(1).default(0.85),
    embedder: z.enum(['static', 'transformers', 'openai']).default('static'),
    /** transformers: a local model folder or hub id; openai: the embedding model name. */
    model_path: z.string().optional(),
    model: z.string().optional(),
    /** transformers: allow hub downloads (default offline). */
    allow_remote: z.boolean().default(false),
    /** openai: base URL of an OpenAI-compatible server, or `provider` naming a configured provider. */
    base_url: z.string().optional(),
    api_key: z.string().optional(),
    provider: z.string().optional(),
    /** static: most frequent words kept in the compact table, and where it is cached on disk. */
    vocab_size: z.number().int().min(1000).max(341_479).default(50_000),
    table_dir: z.string().optional(),
    /** Requests with a higher temperature (absent counts as 1) skip semantic lookup unless the tenant opts in. */
    max_temperature: z.number().min(0).default(1),
    /** Nearest neighbours checked against the guards. */
    candidates: z.number().int().min(1).max(32).default(4),
    /**
     * Longest a lookup waits for its prompt's embedding, ms; past it the request goes on with the
     * exact lookup alone (a down HTTP embedder would otherwise hold every miss for its 10 s timeout).
     */
    embed_wait_ms: z.number().int().positive().default(1000),
    index: z
      .object({
        implementation: z.enum(['auto', 'usearch', 'typescript']).default('auto'),
        connectivity: z.number().int().min(4).max(64).default(16),
        ef_construction: z.number().int().min(8).default(48),
        ef_search: z.number().int().min(8).default(64),
        /** usearch's in-graph vector precision; candidates are re-scored at full precision. */
        quantization: z.enum(['f32', 'f16', 'i8']).default('i8'),
        /** Search and insert in a worker thread, off the event loop; false keeps the index in the gateway's thread. */
        thread: z.boolean().default(true),
      })
      .strict()
      .default({ implementation: 'auto', connectivity: 16, ef_construction: 48, ef_search: 64, quantization: 'i8', thread: true }),
  })
  .strict();

export const cacheConfigSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** auto: Redis when `redis.url` is set (shared by every worker and replica), else memory — as rate_limiting.backend. */
    backend: z.enum(['auto', 'memory', 'redis']).default('auto'),
    /** Entry lifetime, seconds. */
    ttl_s: z.number().int().positive().default(3600),
    /** Memory budget (memory: this process; redis: the shared total), bytes. */
    max_bytes: z.number().int().positive().default(256 * 1024 * 1024),
    /** Payloads at least this large are gzip-compressed; 0 turns compression off. */
    compress_min_bytes: z.number().int().min(0).default(2048),
    semantic: semanticCacheSchema.default(semanticCacheSchema.parse({})),
    batch: z
      .object({
        max_size: z.number().int().positive().default(32),
        flush_timeout_ms: z.number().min(0).default(20),
      })
      .strict()
      .default({ max_size: 32, flush_timeout_ms: 20 }),
  })
  .strict();

export type CacheConfig = z.infer<typeof cacheConfigSchema>;

export const CACHE_ENV_VARS: readonly EnvVar[] = [
  { name: 'CACHE_BACKEND', path: 'cache.backend', kind: 'string', default: 'auto', description: 'Response cache store: `auto` (Redis when `REDIS_URL` is set, else memory), `memory` (this process) or `redis` (shared; needs `REDIS_URL`).' },
  { name: 'CACHE_TTL', path: 'cache.ttl_s', kind: 'int', default: '3600', description: 'Response cache entry lifetime, seconds.' },
  { name: 'CACHE_MAX_BYTES', path: 'cache.max_bytes', kind: 'int', default: '268435456', description: 'Response cache memory budget, bytes; least recently used entries go first.' },
  { name: 'SIMILARITY_THRESHOLD', path: 'cache.semantic.threshold', kind: 'number', default: '0.85', description: 'Cosine similarity a semantic cache hit needs.' },
  { name: 'SEMANTIC_CACHE_ENABLED', path: 'cache.semantic.enabled', kind: 'bool', default: 'false', description: 'Semantic (similar-prompt) cache lookups on or off.' },
  { name: 'CACHE_EMBEDDER', path: 'cache.semantic.embedder', kind: 'string', default: 'static', description: 'Embedder for the semantic cache: `static`, `transformers` or `openai`.' },
  { name: 'BATCH_MAX_SIZE', path: 'cache.batch.max_size', kind: 'int', default: '32', description: 'Largest micro-batch of embedding calls (seed 001).' },
  { name: 'BATCH_FLUSH_TIMEOUT_MS', path: 'cache.batch.flush_timeout_ms', kind: 'number', default: '20', description: 'Longest wait to fill a micro-batch, ms (seed 001).' },
];
