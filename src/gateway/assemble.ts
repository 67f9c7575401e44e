// Assembles one gateway process from its configuration: shared connections, the authenticator,
// the chat stages in their order, and the extra route plugins. This is the one place where the
// capabilities are wired together; `serve` and the integration tests both come through here.
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/load.js';
import type { ProviderAdapter } from '../providers/types.js';
import { createTokenAuthenticator, type Authenticator } from '../server/auth.js';
import { createRedis, redisResource } from '../store/redis.js';
import { Gateway, type ManagedResource } from './gateway.js';
import { createCapacityServices } from '../capacity/service.js';
import type { TrafficRecorder } from '../capacity/traffic.js';
import { capacityRoutes } from '../server/routes/capacity.js';
import { observeStream, type ChatStage } from './pipeline.js';
import { processStatsRoutes } from '../server/routes/process-stats.js';

type Plugin = FastifyPluginAsync<Record<string, unknown>>;

export interface Assembly {
  gateway: Gateway;
  authenticator: Authenticator;
  plugins: { plugin: FastifyPluginAsync<Record<string, unknown>>; options?: Record<string, unknown> }[];
}

export interface AssembleOverrides {
  providers?: Map<string, ProviderAdapter>;
}

export async function assemble(loaded: LoadedConfig, log: Logger, overrides: AssembleOverrides = {}): Promise<Assembly> {
  const { config } = loaded;
  const resources: ManagedResource[] = [];
  const redis = config.redis.url ? createRedis(config.redis.url, 'main') : undefined;
  if (redis) resources.push(redisResource(redis));

  const authenticator = createTokenAuthenticator(config.auth.tokens);

  // Chat stages, outermost first (the executor is the terminal handler).
  const stages: ChatStage[] = [];

  const plugins: Assembly['plugins'] = [];

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

  const gateway = await Gateway.create({ loaded, log, providers: overrides.providers, stages, resources });
  return { gateway, authenticator, plugins };
}

/** Feeds the autoscaler's traffic series: one request and its tokens per answered chat. */
function trafficRecorderStage(recorder: TrafficRecorder): ChatStage {
  return async function recordTraffic(ctx, req, next) {
    const outcome = await next(ctx, req);
    if (outcome.kind === 'result') {
      recorder.recordRequest(outcome.result.usage.total_tokens);
      return outcome;
    }
    let tokens = 0;
    const stream = observeStream(
      outcome.stream,
      (chunk) => {
        if (chunk.usage) tokens = chunk.usage.total_tokens;
      },
      () => recorder.recordRequest(tokens),
    );
    return { kind: 'stream', stream };
  };
}
