// The one configuration schema. Each section is validated by zod; unknown keys are rejected so a
// typo is an error that names its path, not a silently ignored setting. Later capabilities add their
// sections here, each defined beside the code it configures.
import { z } from 'zod';
import { cacheConfigSchema } from '../cache/config.js';
import { capacitySections } from '../capacity/config.js';
import { PROVIDER_TYPES } from '../providers/types.js';
import { inferenceSchema } from '../scaling/config.js';
import { batchingSchema, batchJobsSchema } from '../batching/config.js';

const price = z
  .object({ input: z.number().min(0), output: z.number().min(0), cached_input: z.number().min(0).optional(), cache_write: z.number().min(0).optional(), per_request: z.number().min(0).optional() })
  .strict();

export const serverSchema = z
  .object({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8080),
    /**
     * Largest accepted request body, bytes. 32 MiB, Anthropic's own limit for a Messages request: a
     * gateway in front of it must not refuse what it accepts — a vision conversation resends its
     * images on every turn (docs/decisions.md).
     */
    body_limit_bytes: z.number().int().positive().default(32 * 1024 * 1024),
    /**
     * Longest a client may take to send a whole request, headers and body, ms (Node's
     * requestTimeout; 408 after it); 0: no limit. Without one, a client trickling its body held a
     * connection, and its socket, for as long as it liked.
     */
    request_timeout_ms: z.number().int().min(0).default(300_000),
    /** Drain deadline on SIGTERM, ms, counted from when the listener closes. */
    shutdown_timeout_ms: z.number().int().positive().default(30_000),
    /**
     * On SIGTERM, how long to report not-ready while still serving before the listener closes, ms:
     * the time a load balancer (Kubernetes: the Service endpoints) takes to stop sending here.
     */
    shutdown_delay_ms: z.number().int().min(0).max(600_000).default(0),
    /** Allow binding a non-loopback address with no auth configured (not recommended). */
    allow_unauthenticated: z.boolean().default(false),
    /** Processes sharing the port (`serve --workers`); 0 or unset: the usable core count. */
    workers: z.number().int().min(0).max(1024).optional(),
    /**
     * Requests one kept-alive connection carries before the gateway answers with `Connection: close`
     * and the client reconnects. Unset: 100 under `serve --workers` with more than one worker (a
     * reconnecting client lands on whichever worker accepts first, so the workers' shares of
     * long-lived clients even out), unlimited otherwise; 0: unlimited.
     */
    max_requests_per_connection: z.number().int().min(0).optional(),
    /**
     * Which proxies in front of the gateway to believe about the client's address
     * (`X-Forwarded-For`): true (any), a hop count, or addresses and CIDRs. Per-IP rate limits and
     * API keys' IP allowlists see the client's address only with it; unset, they see the peer's
     * (the load balancer's, behind one).
     */
    trust_proxy: z.union([z.boolean(), z.number().int().min(0), z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
  })
  .strict();

// --- tenancy (docs/tenancy.md): JWT, API keys, rate limits, budgets, webhooks, ledger ---

/** Which JWT claims become tenant fields and limits. */
export const jwtClaimsSchema = z
  .object({
    user: z.string().default('sub'),
    team: z.string().default('team'),
    tenant: z.string().default('tenant'),
    models: z.string().default('models'),
    rpm: z.string().default('rpm'),
    tpm: z.string().default('tpm'),
  })
  .strict();

export const jwtSchema = z
  .object({
    /** The one accepted algorithm; tokens signed otherwise (or `alg: none`) are rejected. */
    algorithm: z.enum(['HS256', 'RS256', 'ES256']).default('HS256'),
    /** HS256 shared secret (at least 32 characters). */
    secret: z.string().min(32, 'an HS256 secret must be at least 32 characters').optional(),
    /** RS256/ES256 public key, PEM (SPKI). */
    public_key: z.string().optional(),
    /** RS256/ES256 key set URL, fetched and cached by jose. */
    jwks_url: z.url().optional(),
    issuer: z.string().optional(),
    audience: z.union([z.string(), z.array(z.string())]).optional(),
    clock_tolerance_s: z.number().int().min(0).default(5),
    /** Reject tokens without `exp`. */
    require_exp: z.boolean().default(true),
    claims: jwtClaimsSchema.default(jwtClaimsSchema.parse({})),
  })
  .strict()
  .superRefine((j, ctx) => {
    if (j.algorithm === 'HS256' && !j.secret) ctx.addIssue({ code: 'custom', path: ['secret'], message: 'HS256 needs `secret` (or JWT_SECRET)' });
    if (j.algorithm !== 'HS256' && !j.public_key && !j.jwks_url) {
      ctx.addIssue({ code: 'custom', path: ['public_key'], message: `${j.algorithm} needs \`public_key\` or \`jwks_url\`` });
    }
  });

export const apiKeysSchema = z
  .object({
    /** Visible start of every generated key; how the authenticator tells keys from tokens. */
    prefix: z.string().regex(/^[a-z][a-z0-9-]{1,15}$/).default('sk-if-'),
    /** How long a replica trusts a looked-up key before reading it again (revocation is immediate with Redis). */
    cache_ttl_ms: z.number().int().min(0).default(5_000),
  })
  .strict();

export const authSchema = z
  .object({
    // Trimmed, as the presented key is (src/server/auth.ts presentedKey): a token with a stray
    // newline or space would otherwise never match.
    tokens: z.array(z.string().trim().min(8, 'tokens must be at least 8 characters')).default([]),
    /** Guards the admin API (`/admin/keys`) and the CLI `inferenceflow keys`; setting it enables API keys. */
    admin_token: z.string().trim().min(16, 'the admin token must be at least 16 characters').optional(),
    jwt: jwtSchema.optional(),
    api_keys: apiKeysSchema.default(apiKeysSchema.parse({})),
  })
  .strict();

export const LIMIT_DIMENSIONS = ['tenant', 'key', 'user', 'team', 'session', 'ip', 'endpoint', 'model'] as const;
export type LimitDimension = (typeof LIMIT_DIMENSIONS)[number];

export const rateRuleSchema = z
  .object({
    name: z.string().regex(/^[\w.-]+$/).optional(),
    /** The counter is kept per value of these dimensions (e.g. [user, endpoint]); requests lacking one skip the rule. */
    per: z.union([z.enum(LIMIT_DIMENSIONS), z.array(z.enum(LIMIT_DIMENSIONS)).min(1)]).default('tenant'),
    requests: z.number().int().positive().optional(),
    tokens: z.number().int().positive().optional(),
    window_s: z.number().positive().default(60),
  })
  .strict()
  .refine((r) => r.requests !== undefined || r.tokens !== undefined, { message: 'a rule needs `requests` or `tokens`' });

export const rateLimitingSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** auto: Redis when `redis.url` is set, else memory. */
    backend: z.enum(['auto', 'memory', 'redis']).default('auto'),
    /** When Redis fails: `open` falls back to the local limiter, `closed` refuses with 503. */
    on_redis_failure: z.enum(['open', 'closed']).default('open'),
    /** Default per-identity request limit per `window_s` (RATE_LIMIT_RPM / RATE_LIMIT_REQUESTS); unset = none. */
    requests: z.number().int().positive().optional(),
    /** Default per-identity token limit per `window_s`; unset = none. */
    tokens: z.number().int().positive().optional(),
    window_s: z.number().positive().default(60),
    /** Completion tokens reserved when a request sets no max_tokens (corrected when usage is known). */
    default_completion_tokens: z.number().int().positive().default(1024),
    /** A concurrency slot whose holder vanished (crash) frees itself after this long. */
    concurrency_lease_s: z.number().positive().default(600),
    rules: z.array(rateRuleSchema).default([]),
  })
  .strict();

export const budgetSchema = z
  .object({
    limit_usd: z.number().positive(),
    period: z.enum(['day', 'month']).default('month'),
  })
  .strict();

export const budgetsSchema = z
  .object({
    enabled: z.boolean().default(true),
    users: z.record(z.string(), budgetSchema).default({}),
    teams: z.record(z.string(), budgetSchema).default({}),
    default_user: budgetSchema.optional(),
    default_team: budgetSchema.optional(),
    /** Shares of a budget whose crossing sends a `budget.threshold_crossed` webhook. */
    alert_thresholds: z.array(z.number().gt(0).max(1)).default([0.5, 0.8, 1]),
  })
  .strict();

export const webhookEndpointSchema = z
  .object({
    url: z.url(),
    /** Standard Webhooks secret (`whsec_…` base64, or any string); defaults to `webhooks.secret`. */
    secret: z.string().min(16).optional(),
    /** Event types to send; empty = all. */
    events: z.array(z.string()).default([]),
  })
  .strict();

export const webhooksSchema = z
  .object({
    /** Secret of `POST /webhooks/ingest` (WEBHOOK_SECRET); unset disables the route. */
    secret: z.string().min(16, 'a webhook secret must be at least 16 characters').optional(),
    tolerance_s: z.number().int().positive().default(300),
    endpoints: z.array(webhookEndpointSchema).default([]),
    max_attempts: z.number().int().min(1).default(6),
    initial_backoff_ms: z.number().int().positive().default(1_000),
    timeout_ms: z.number().int().positive().default(10_000),
  })
  .strict();

export const ledgerSchema = z
  .object({
    enabled: z.boolean().default(true),
    flush_interval_ms: z.number().int().positive().default(250),
    batch_size: z.number().int().positive().default(200),
    /** Records that could not be written at shutdown go here and are replayed at the next start. */
    spool_path: z.string().default('./data/ledger-spool.jsonl'),
    /**
     * Rows queued in memory at most while the database does not take them: beyond it the oldest go to
     * a spool file (replayed once the database answers), or without a spool path are dropped.
     */
    max_pending_rows: z.number().int().positive().default(50_000),
  })
  .strict();

export const providerSchema = z
  .object({
    type: z.enum(PROVIDER_TYPES),
    // http(s) only: `localhost:8000/v1` parses as a URL of scheme `localhost:`.
    base_url: z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' }).optional(),
    api_key: z.string().optional(),
    api_key_env: z.string().optional(),
    headers: z.record(z.string(), z.string()).optional(),
    /** Attempt timeout of this provider's deployments that set no `timeout_ms` of their own, ms; unset: 600 s. */
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
    /** Time allowed for one attempt (streams: to the first chunk), ms; unset: the provider's `timeout_ms`, else 600 s (src/routing/catalog.ts). */
    timeout_ms: z.number().int().positive().optional(),
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
    consecutive_failures: z.number().int().positive().default(10),
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
    /**
     * Identical in-flight requests of one tenant share one upstream call: `deterministic` only those
     * whose answer should not vary (temperature 0 or a seed), `all` every identical request, `off`.
     */
    dedup: z.enum(['off', 'deterministic', 'all']).default('deterministic'),
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
    /**
     * How long a shared-state command (limits, API keys, budgets, cache, breakers) may wait, queued
     * while Redis is away included, before it fails and the caller's failure policy decides (fail
     * open or closed). Without it a command waited out ioredis's reconnect attempts, up to ~15 s.
     */
    command_timeout_ms: z.number().int().positive().default(2_000),
  })
  .strict();

export const databaseSchema = z
  .object({
    /** postgres://… for a shared ledger; empty means the embedded PGlite file. */
    url: z.string().optional(),
    pglite_path: z.string().default('./data/inferenceflow.pglite'),
    /** Postgres schema for every table (created if missing); tests use one per run. */
    schema: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/).optional(),
  })
  .strict();

export const loggingSchema = z
  .object({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

const TRACES_SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;

/** Metrics, traces, the stats window, the dashboard, /docs and alert thresholds (seed 000 `monitoring:`). */
export const monitoringSchema = z
  .object({
    metrics: z
      .object({
        enabled: z.boolean().default(true),
        /** Also serve /metrics on this separate port (seed 002 PROMETHEUS_PORT); unset means only on the API port. */
        port: z.number().int().min(0).max(65535).optional(),
        /** When set, /metrics wants `Authorization: Bearer <token>`; trimmed, as the presented key is (a secret file's newline). */
        token: z.string().trim().min(8, 'the metrics token must be at least 8 characters').optional(),
        /** Distinct values kept per free-form label (model, provider, …) before the rest read `other`. */
        max_label_values: z.number().int().positive().default(100),
        /** Node.js process metrics (CPU, memory, event loop) too. */
        process_metrics: z.boolean().default(true),
      })
      .strict()
      .default({ enabled: true, max_label_values: 100, process_metrics: true }),
    stats: z
      .object({ window_s: z.number().int().min(10).max(3600).default(300) })
      .strict()
      .default({ window_s: 300 }),
    tracing: z
      .object({
        enabled: z.boolean().default(true),
        service_name: z.string().min(1).default('inferenceflow'),
        /** OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces. */
        otlp_endpoint: z.url().optional(),
        exporter: z.enum(['otlp', 'console', 'none']).optional(),
        sampler: z.enum(TRACES_SAMPLERS).default('parentbased_always_on'),
        sampler_arg: z.number().min(0).max(1).optional(),
      })
      .strict()
      .default({ enabled: true, service_name: 'inferenceflow', sampler: 'parentbased_always_on' }),
    dashboard: z
      .object({ enabled: z.boolean().default(true), grafana_url: z.url().optional() })
      .strict()
      .default({ enabled: true }),
    docs: z.object({ enabled: z.boolean().default(true) }).strict().default({ enabled: true }),
    /** Thresholds the dashboard and /v1/stats flag (deploy/alerts.yml ships the same as Prometheus rules). */
    alerts: z
      .object({
        error_rate: z.number().min(0).max(1).default(0.05),
        p95_latency_ms: z.number().positive().default(2000),
        queue_depth: z.number().int().min(0).default(100),
      })
      .strict()
      .default({ error_rate: 0.05, p95_latency_ms: 2000, queue_depth: 100 }),
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
    // Response cache, exact and semantic: src/cache/config.ts
    cache: cacheConfigSchema.default(cacheConfigSchema.parse({})),
    // Capacity (GPU pools, autoscaler, spot/on-demand mix): src/capacity/config.ts
    ...capacitySections,
    rate_limiting: rateLimitingSchema.default(rateLimitingSchema.parse({})),
    budgets: budgetsSchema.default(budgetsSchema.parse({})),
    webhooks: webhooksSchema.default(webhooksSchema.parse({})),
    ledger: ledgerSchema.default(ledgerSchema.parse({})),
    monitoring: monitoringSchema.default(monitoringSchema.parse({})),
    // Test-time scaling and the seed endpoints' defaults: src/scaling/config.ts
    inference: inferenceSchema.default(inferenceSchema.parse({})),
    // Micro-batching and batch jobs: src/batching/config.ts
    batching: batchingSchema.default(batchingSchema.parse({})),
    batch_jobs: batchJobsSchema.default(batchJobsSchema.parse({})),
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
export type JwtConfig = z.infer<typeof jwtSchema>;
export type RateLimitingConfig = z.infer<typeof rateLimitingSchema>;
export type RateRuleConfig = z.infer<typeof rateRuleSchema>;
export type BudgetsConfig = z.infer<typeof budgetsSchema>;
export type BudgetConfig = z.infer<typeof budgetSchema>;
export type WebhooksConfig = z.infer<typeof webhooksSchema>;
export type LedgerConfig = z.infer<typeof ledgerSchema>;
export type MonitoringConfig = z.infer<typeof monitoringSchema>;
