// The one configuration schema. Each section is validated by zod; unknown keys are rejected so a
// typo is an error that names its path, not a silently ignored setting. Later capabilities add their
// sections here, each defined beside the code it configures.
import { z } from 'zod';
import { PROVIDER_TYPES } from '../providers/types.js';

const price = z.object({ input: z.number().min(0), output: z.number().min(0) }).strict();

export const serverSchema = z
  .object({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8080),
    /** Largest accepted request body, bytes. */
    body_limit_bytes: z.number().int().positive().default(4 * 1024 * 1024),
    /** Drain deadline on SIGTERM, ms. */
    shutdown_timeout_ms: z.number().int().positive().default(30_000),
    /** Allow binding a non-loopback address with no auth configured (not recommended). */
    allow_unauthenticated: z.boolean().default(false),
  })
  .strict();

export const authSchema = z
  .object({
    tokens: z.array(z.string().min(8, 'tokens must be at least 8 characters')).default([]),
  })
  .strict();

export const providerSchema = z
  .object({
    type: z.enum(PROVIDER_TYPES),
    base_url: z.url().optional(),
    api_key: z.string().optional(),
    api_key_env: z.string().optional(),
    headers: z.record(z.string(), z.string()).optional(),
    timeout_ms: z.number().int().positive().optional(),
    max_connections: z.number().int().positive().optional(),
    options: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

export const deploymentSchema = z
  .object({
    provider: z.string().min(1),
    model: z.string().min(1),
    /** A name for headers, metrics and breaker keys; defaults to `provider/model`. */
    id: z.string().min(1).optional(),
    weight: z.number().min(0).default(1),
    priority: z.number().int().default(0),
    price: price.optional(),
    timeout_ms: z.number().int().positive().default(30_000),
    context_window: z.number().int().positive().optional(),
    max_concurrency: z.number().int().positive().optional(),
  })
  .strict();

// --- routing (src/routing/): per-group keys and the global `routing:` section -----------------

/** Hedged requests: a second attempt to another deployment once the first is slower than usual. */
export const hedgingSchema = z
  .object({
    enabled: z.boolean().default(false),
    /** Fixed hedge delay, ms; unset means the group's observed latency percentile. */
    delay_ms: z.number().int().positive().optional(),
    /** Which observed latency percentile (0..1) triggers the hedge. */
    percentile: z.number().gt(0).lt(1).default(0.95),
    /** Latency samples the group needs before the percentile is trusted (else no hedge). */
    min_samples: z.number().int().positive().default(20),
  })
  .strict();

/** Semantic routing: labelled example prompts per target (a deployment id of the group or another group). */
export const semanticRouteSchema = z
  .object({
    name: z.string().min(1),
    target: z.string().min(1),
    examples: z.array(z.string().min(1)).min(1),
  })
  .strict();

export const semanticRoutingSchema = z
  .object({
    routes: z.array(semanticRouteSchema).min(1),
    /** Cosine similarity the best example must reach; below it the default target answers. */
    threshold: z.number().min(-1).max(1).default(0.7),
    /** Deployment id or group name used when no route matches; unset means the group's priority order. */
    default: z.string().optional(),
  })
  .strict();

export const retrySchema = z
  .object({
    /** Extra attempts after every eligible deployment was tried once (each spends retry budget). */
    max_retries: z.number().int().min(0).max(10).default(2),
    base_delay_ms: z.number().int().min(0).default(100),
    max_delay_ms: z.number().int().min(0).default(2_000),
  })
  .strict();

export const modelGroupSchema = z
  .object({
    name: z.string().min(1),
    strategy: z
      .enum(['fallback', 'weighted', 'round_robin', 'least_busy', 'latency', 'cost', 'semantic'])
      .default('fallback'),
    deployments: z.array(deploymentSchema).min(1),
    fallbacks: z.array(z.string()).default([]),
    description: z.string().optional(),
    /** Groups tried when the prompt fits no deployment here, or an upstream says it is too long. */
    context_window_fallbacks: z.array(z.string()).default([]),
    /** Groups tried when an upstream refuses the request on content-policy grounds. */
    content_policy_fallbacks: z.array(z.string()).default([]),
    hedging: hedgingSchema.optional(),
    semantic: semanticRoutingSchema.optional(),
    /** Overrides `routing.retry` for this group. */
    retry: retrySchema.partial().optional(),
    /** Requests that may wait for a free deployment slot (max_concurrency); overrides `routing.queue.max_size`. */
    queue_size: z.number().int().min(0).optional(),
  })
  .strict();

export const breakerSchema = z
  .object({
    /** Failure share over the rolling window that opens the breaker (with at least min_requests). */
    failure_rate_threshold: z.number().gt(0).max(1).default(0.5),
    window_ms: z.number().int().positive().default(30_000),
    min_requests: z.number().int().positive().default(10),
    /** Consecutive failures that open the breaker whatever the rate. */
    consecutive_failures: z.number().int().positive().default(5),
    /** Time open before half-open probes are let through, ms. */
    open_ms: z.number().int().positive().default(15_000),
    /** Concurrent probes while half-open; that many successes close it. */
    half_open_probes: z.number().int().positive().default(1),
  })
  .strict();

export const routingSchema = z
  .object({
    breaker: breakerSchema.default(breakerSchema.parse({})),
    retry: retrySchema.default(retrySchema.parse({})),
    /** Retries allowed as a share of recent requests (plus min_per_s), so an outage cannot multiply load. */
    retry_budget: z
      .object({
        ratio: z.number().min(0).max(10).default(0.2),
        min_per_s: z.number().min(0).default(10),
        window_ms: z.number().int().positive().default(10_000),
      })
      .strict()
      .default({ ratio: 0.2, min_per_s: 10, window_ms: 10_000 }),
    /** Whole-request deadline covering every attempt (streams: until the first chunk), ms. */
    deadline_ms: z.number().int().positive().default(120_000),
    /** Longest silence allowed between two chunks of a stream, ms. */
    stream_idle_timeout_ms: z.number().int().positive().default(60_000),
    queue: z
      .object({
        /** Requests per group that may wait for a deployment slot; 0 disables waiting. */
        max_size: z.number().int().min(0).default(256),
        /** Longest wait in the queue before 503, ms (also bounded by the deadline). */
        max_wait_ms: z.number().int().positive().default(30_000),
      })
      .strict()
      .default({ max_size: 256, max_wait_ms: 30_000 }),
    /** Identical in-flight requests of one tenant share one upstream call. */
    dedup: z.boolean().default(true),
    latency: z
      .object({
        /** Weight of the newest sample in the latency EWMA. */
        ewma_alpha: z.number().gt(0).max(1).default(0.3),
        /** Share of `latency` decisions that try a random healthy deployment instead of the fastest. */
        exploration: z.number().min(0).max(1).default(0.05),
      })
      .strict()
      .default({ ewma_alpha: 0.3, exploration: 0.05 }),
    /** How often shared breaker state is re-read from Redis besides pub/sub, ms. */
    breaker_sync_ms: z.number().int().positive().default(1_000),
  })
  .strict();

export const redisSchema = z
  .object({
    url: z.string().optional(),
    key_prefix: z.string().default('inferenceflow:'),
  })
  .strict();

export const databaseSchema = z
  .object({
    /** postgres://… for a shared ledger; empty means the embedded PGlite file. */
    url: z.string().optional(),
    pglite_path: z.string().default('./data/inferenceflow.pglite'),
  })
  .strict();

export const loggingSchema = z
  .object({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

export const configSchema = z
  .object({
    server: serverSchema.default(serverSchema.parse({})),
    auth: authSchema.default(authSchema.parse({})),
    providers: z.record(z.string().min(1), providerSchema).default({}),
    models: z.array(modelGroupSchema).default([]),
    redis: redisSchema.default(redisSchema.parse({})),
    database: databaseSchema.default(databaseSchema.parse({})),
    logging: loggingSchema.default(loggingSchema.parse({})),
    routing: routingSchema.default(routingSchema.parse({})),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type ServerConfig = z.infer<typeof serverSchema>;
export type ProviderConfig = z.infer<typeof providerSchema>;
export type DeploymentConfig = z.infer<typeof deploymentSchema>;
export type ModelGroupConfig = z.infer<typeof modelGroupSchema>;
export type RoutingConfig = z.infer<typeof routingSchema>;
export type BreakerConfig = z.infer<typeof breakerSchema>;
export type RetryConfig = z.infer<typeof retrySchema>;
export type HedgingConfig = z.infer<typeof hedgingSchema>;
export type SemanticRoutingConfig = z.infer<typeof semanticRoutingSchema>;
