// Assembles one gateway process from its configuration: shared connections, the authenticator,
// the chat stages in their order, and the extra route plugins. This is the one place where the
// capabilities are wired together; `serve` and the integration tests both come through here.
import type { SpanExporter } from '@opentelemetry/sdk-trace-node';
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/load.js';
import type { Price } from '../providers/pricing.js';
import type { ProviderAdapter } from '../providers/types.js';
import type { Authenticator } from '../server/auth.js';
import { jwtConfigWarnings } from '../server/jwt-auth.js';
import { dashboardRoutes } from '../server/routes/dashboard.js';
import { monitoringRoutes } from '../server/routes/monitoring.js';
import { providersRoutes } from '../server/routes/providers.js';
import { reportRoutingMetrics } from '../routing/metrics-bridge.js';
import { createSharedStateRedis, redisResource, type RedisClient } from '../store/redis.js';
import { createEmbedder, createResponseCache } from '../cache/create.js';
import type { Embedder } from '../cache/embedders/types.js';
import type { ResponseCache } from '../cache/response-cache.js';
import { createCacheStage } from '../cache/stage.js';
import { cacheAdminRoutes } from '../server/routes/cache-admin.js';
import type { Config } from '../config/schema.js';
import { startCollectors } from '../telemetry/collectors.js';
import { separateMetricsPort, startMetricsServer } from '../telemetry/metrics-server.js';
import { tracedStage } from '../telemetry/tracing.js';
import { MeshProvider } from '../providers/mesh.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { Gateway, type ManagedResource } from './gateway.js';
import { createCapacityServices } from '../capacity/service.js';
import { registrySource, type MeshNodeSource } from '../capacity/mesh-devices.js';
import { sampleQueueDepth, trafficRecorderStage } from '../capacity/traffic-stage.js';
import { capacityRoutes } from '../server/routes/capacity.js';
import type { ChatStage } from './pipeline.js';
import { processStatsRoutes } from '../server/routes/process-stats.js';
import { assembleTenancy, type Tenancy } from './tenancy.js';
import { scalingOptions } from '../scaling/setup.js';
import { createScalingStage, plannedUsage } from '../scaling/stage.js';
import { seedRoutes } from '../server/routes/seed.js';
import { withEmbeddingBatching } from '../batching/embedding-batcher.js';
import { createProviders, providerContext } from '../providers/registry.js';
import { assembleBatchJobs } from '../batching/jobs/setup.js';

type Plugin = FastifyPluginAsync<Record<string, unknown>>;

export interface Assembly {
  gateway: Gateway;
  authenticator: Authenticator;
  plugins: { plugin: FastifyPluginAsync<Record<string, unknown>>; options?: Record<string, unknown> }[];
  /** Keys, ledger, SQL store and the signed webhook sender, for capabilities that build on them. */
  tenancy: Tenancy;
  /** Metrics, traces, the stats window: capabilities report here (metrics.cacheHit(…), …). */
  telemetry: Telemetry;
}

export interface AssembleOverrides {
  providers?: Map<string, ProviderAdapter>;
  version?: string;
  /** Span exporter replacing the configured one (tests). */
  spanExporter?: SpanExporter;
}

export async function assemble(loaded: LoadedConfig, log: Logger, overrides: AssembleOverrides = {}): Promise<Assembly> {
  const { config } = loaded;
  const resources: ManagedResource[] = [];
  const redis = config.redis.url ? createSharedStateRedis({ ...config.redis, url: config.redis.url }) : undefined;
  if (redis) resources.push(redisResource(redis));

  // Telemetry first: every capability below may report to it (telemetry.metrics.<record…>).
  const version = overrides.version ?? '0.0.0';
  const telemetry = Telemetry.create(config.monitoring, { version, spanExporter: overrides.spanExporter });
  resources.push({ name: 'telemetry', check: async () => true, close: () => telemetry.close() });
  const metricsPort = separateMetricsPort(config.monitoring.metrics, config.server.port);
  if (metricsPort !== undefined) {
    resources.push(await startMetricsServer(telemetry.metrics, { host: config.server.host, port: metricsPort, token: config.monitoring.metrics.token }));
  } else if (config.monitoring.metrics.enabled && config.monitoring.metrics.port !== undefined) {
    log.info({ port: config.monitoring.metrics.port }, 'the metrics port is the API port: /metrics is served there, with no separate listener');
  }

  // Tenancy (docs/tenancy.md): tokens + API keys + JWT, limits, budgets, ledger, webhooks.
  // Cost estimates need the catalog, which the Gateway builds below: reached through a late binding.
  const built: { gateway?: Gateway } = {};
  // Test-time scaling's options are made first: admission reserves what a request's plan may use
  // (every pass and the judge), planned as the scaling stage will plan it.
  const scaling = await scalingOptions(config.inference, () => built.gateway?.catalog);
  const tenancy = await assembleTenancy({
    config,
    log,
    redis,
    priceOf: (model, deployment) => (built.gateway ? priceOf(built.gateway, model, deployment) : undefined),
    plannedUsage: (ctx, req, promptTokens) => plannedUsage(scaling, ctx, req, promptTokens),
    onUsageEstimated: telemetry.usageEstimated,
    // Requests a limit or budget refuses, 429 and 402 (`inference_rate_limited_total`, by refusing limit).
    onRefused: (limit) => telemetry.metrics.rateLimited(limit),
    hedges: (model) => (built.gateway ? hedges(built.gateway, model) : false),
    promptPerChoice: (model) => scaling.promptPerChoice?.(model) ?? false,
  });
  resources.push(...tenancy.resources);
  // A Redis outage meets API-key revocation markers as it meets the limiter: fail open or closed.
  tenancy.keys?.onRedisFailure(config.rate_limiting.on_redis_failure, log);
  // A JWT key from an identity provider without an audience or issuer to check accepts too much.
  for (const warning of config.auth.jwt ? jwtConfigWarnings(config.auth.jwt) : []) log.warn(warning);
  // The ledger's queue and row counts, read at each scrape (inference_ledger_*).
  if (tenancy.ledger) telemetry.metrics.watchLedger(tenancy.ledger);
  const authenticator = tenancy.authenticator;

  // Chat stages, outermost first (the executor is the terminal handler).
  // Admission (rate limits, budgets) comes first: before any cache lookup or routing.
  // Each stage spans its part of the request (`limits`, `cache`, `scaling`) when tracing records it.
  telemetry.metrics.declare('limits');
  const admission = tracedStage('limits', tenancy.admission);
  const stages: ChatStage[] = [admission];

  const plugins: Assembly['plugins'] = [...tenancy.plugins];

  // Providers before the embedder and the cache: `cache.semantic.provider` embeds with one of them.
  // Dynamic batching (seed 001): concurrent embedding calls share upstream calls of up to BATCH_MAX_SIZE.
  // Providers get the gateway's Redis and `clusters.mesh` too (the `mesh` provider uses both).
  const unbatched = overrides.providers ?? (await createProviders(config.providers, providerContext(config)));
  let providers = unbatched;
  if (config.batching.enabled) {
    const b = config.batching;
    // BATCH_MAX_SIZE / BATCH_FLUSH_TIMEOUT_MS set cache.batch; they govern this batcher too unless `batching:` says otherwise.
    const maxSize = b.max_size ?? config.cache.batch.max_size;
    const flushTimeoutMs = b.flush_timeout_ms ?? config.cache.batch.flush_timeout_ms;
    providers = withEmbeddingBatching(providers, b.provider_types, { maxSize, flushTimeoutMs, maxConcurrency: b.max_concurrency });
  }

  // Semantic routing (docs/routing.md) embeds prompts with the semantic cache's embedder: built once,
  // shared with the cache, and only when a model group routes by content. An embedder on one of the
  // providers calls it without the embedding batcher: the embedder batches its own lookups already.
  const embedder = await createRoutingEmbedder(config, log, unbatched);

  // Response cache (docs/caching.md): exact and semantic, after admission so limits still count.
  if (config.cache.enabled) {
    const cache = await createCacheService(config, redis, log, unbatched, embedder);
    if (cache) {
      resources.push({ name: 'cache', check: async () => true, close: () => cache.close() });
      stages.push(tracedStage('cache', countCacheOutcome(createCacheStage({ cache }), telemetry)));
      plugins.push(routePlugin(cacheAdminRoutes, { cache, adminToken: config.auth.admin_token }));
    }
  }
  // Test-time scaling (seed 000): difficulty -> passes, tokens, deadline; passes combined into one
  // answer. Inside the cache: a hit skips every pass, and the passes never answer each other.
  stages.push(tracedStage('scaling', createScalingStage(scaling)));

  // Capacity: GPU pool allocation and the forecasting autoscaler (GET /v1/cluster, /v1/scaling).
  const capacity = await createCapacityServices({
    clusters: config.clusters,
    scaling: config.scaling,
    cost: config.cost_optimization,
    redis,
    keyPrefix: config.redis.key_prefix,
    logger: log,
  });
  resources.push({ name: 'capacity', check: async () => true, close: () => capacity.close() });
  stages.unshift(trafficRecorderStage(capacity.recorder));
  plugins.push({ plugin: capacityRoutes as Plugin, options: { allocator: capacity.allocator, autoscaler: capacity.autoscaler } });

  // GET /debug/process: memory, event-loop delay and open descriptors for soak tests (bench/soak.ts).
  plugins.push({ plugin: processStatsRoutes as Plugin });

  const gateway = await Gateway.create({ loaded, log, providers, stages, resources, attemptObserver: telemetry, redis, embedder, admission });
  built.gateway = gateway;
  // Model and deployment labels take the catalog's names only (a client's passthrough name is `passthrough`).
  telemetry.metrics.useCatalog(gateway.catalog);
  // Routing (docs/routing.md): breaker changes, retries, fallbacks, hedges and queue depth to metrics;
  // GET /v1/providers (seed 002 get_provider_status) for each deployment's breaker, latency and load.
  reportRoutingMetrics(gateway.router, telemetry.metrics);
  // The same queue depth feeds the autoscaler (scaling.per_replica.queue_depth).
  const stopQueueSampling = sampleQueueDepth(capacity.recorder, gateway.router);
  resources.push({ name: 'queue-depth-sampler', check: async () => true, close: async () => stopQueueSampling() });
  plugins.push(routePlugin(providersRoutes, { router: gateway.router }));
  // Seed endpoints: /v1/infer, /v1/infer/stream (seed 001), /v1/inference, /v1/batch (seed 002).
  plugins.push(routePlugin(seedRoutes, { gateway, log, inference: config.inference }));
  // Batch API (/v1/files, /v1/batches): jobs in the SQL store (shared with tenancy when it opened one),
  // resumed at start-up; `batch.*` events go to batch_jobs.webhook, else to the tenancy webhook sender.
  const batchJobs = await assembleBatchJobs({ config, log, gateway, sql: tenancy.sql, ledger: tenancy.ledger, keys: tenancy.keys, notifier: config.batch_jobs.webhook || !tenancy.webhooks.configured ? undefined : tenancy.webhooks });
  if (batchJobs) {
    resources.push(batchJobs.resource);
    plugins.push(batchJobs.plugin);
  }
  // Gauges read every few seconds: GPU pool devices and mesh node health.
  const meshProviders = [...gateway.providers.values()].filter((p): p is MeshProvider => p instanceof MeshProvider);
  // clusters.from_mesh: the GPU pool follows the GPUs of the routable mesh nodes, read from the node
  // registry the mesh providers watch, else from the registry on the gateway's Redis (clusters.mesh).
  const meshSources: MeshNodeSource[] = meshProviders.length > 0 ? meshProviders : redis ? [registrySource(redis, config.clusters.mesh)] : [];
  await capacity.followMesh(meshSources);
  const collectors = startCollectors(telemetry.metrics, { allocator: capacity.allocator, mesh: meshProviders });
  resources.push({ name: 'collectors', check: async () => true, close: async () => collectors.stop() });
  // Operational routes: /metrics, /v1/metrics, /v1/stats, /dashboard.
  plugins.push(routePlugin(monitoringRoutes, { telemetry, gateway, version }));
  if (config.monitoring.dashboard.enabled) plugins.push(routePlugin(dashboardRoutes, { grafanaUrl: config.monitoring.dashboard.grafana_url }));
  return { gateway, authenticator, plugins, tenancy, telemetry };
}

/** A typed route plugin with its options, as an Assembly plugin entry. */
function routePlugin<O extends object>(plugin: FastifyPluginAsync<O>, options: O): Assembly['plugins'][number] {
  return { plugin: plugin as unknown as Assembly['plugins'][number]['plugin'], options: options as Record<string, unknown> };
}

/**
 * The price of the deployment `deployment` names when it is known — in the model's group, else in any
 * group (a fallback may have served) — otherwise the highest among the deployments that may answer
 * the model: its group's and those of the groups routing may fall back to (a call that fails on its
 * group is answered there, at that price) — each of input, output and the per_request fee at its
 * highest, so what is reserved covers whichever deployment answers.
 */
function priceOf(gateway: Gateway, model: string, deployment?: string): Price | undefined {
  try {
    const groups = gateway.catalog.reachable(model);
    if (deployment !== undefined) {
      const served =
        groups[0]?.deployments.find((d) => d.id === deployment) ??
        gateway.catalog
          .groupNames()
          .flatMap((name) => gateway.catalog.get(name)?.deployments ?? [])
          .find((d) => d.id === deployment);
      if (served) return served.price;
    }
    let best: Price | undefined;
    for (const g of groups) {
      for (const d of g.deployments) {
        const p = d.price;
        if (!best) best = p;
        else if (p !== best) {
          const fee = Math.max(best.per_request ?? 0, p.per_request ?? 0);
          best = { input: Math.max(best.input, p.input), output: Math.max(best.output, p.output), ...(fee > 0 ? { per_request: fee } : {}) };
        }
      }
    }
    return best;
  } catch {
    return undefined;
  }
}

/** Whether a call for `model` may be hedged: its group or a group it may fall back to hedges. */
function hedges(gateway: Gateway, model: string): boolean {
  try {
    return gateway.catalog.reachable(model).some((g) => g.hedging?.enabled === true);
  } catch {
    return false;
  }
}

/**
 * The response cache, or none when its semantic half cannot load (an optional embedder package
 * missing): then the exact cache runs alone and the log says why.
 */
async function createCacheService(config: Config, redis: RedisClient | undefined, log: Logger, providers: ReadonlyMap<string, ProviderAdapter>, embedder?: Embedder): Promise<ResponseCache | undefined> {
  // Background failures (a store write, a lost index worker the cache fell back from) are logged;
  // the request that caused none of them is not failed for them.
  const onError = (err: unknown, what: string) => log.warn({ err: err instanceof Error ? err.message : String(err), what }, 'cache: background failure');
  const deps = { redis, keyPrefix: config.redis.key_prefix, onError, providers, ...(embedder ? { embedder } : {}) };
  try {
    return await createResponseCache(config.cache, deps);
  } catch (err) {
    if (!config.cache.semantic.enabled) throw err;
    log.warn({ err: (err as Error).message }, 'semantic cache unavailable; serving the exact cache only');
    return createResponseCache({ ...config.cache, semantic: { ...config.cache.semantic, enabled: false } }, deps);
  }
}

/** The embedder for `strategy: semantic` groups (cache.semantic settings); none when no group needs it or it cannot load. */
async function createRoutingEmbedder(config: Config, log: Logger, providers: ReadonlyMap<string, ProviderAdapter>): Promise<Embedder | undefined> {
  if (!config.models.some((g) => g.strategy === 'semantic')) return undefined;
  try {
    return await createEmbedder(config.cache.semantic, { providers });
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'semantic routing unavailable (no embedder); semantic groups use priority order');
    return undefined;
  }
}

/** Counts cache hits by kind (with the dollars they saved) and misses, from the facts the stage set. */
function countCacheOutcome(stage: ChatStage, telemetry: Telemetry): ChatStage {
  telemetry.metrics.declare('cache');
  return async function cache(ctx, req, next) {
    // Counted however the request ends: a miss whose upstream call then failed is still a miss.
    try {
      return await stage(ctx, req, next);
    } finally {
      const kind = ctx.facts.cache;
      if (kind === 'exact' || kind === 'semantic') telemetry.metrics.cacheHit(kind, ctx.facts.savedUsd ?? 0);
      else if (kind === 'miss') telemetry.metrics.cacheMiss();
    }
  };
}
