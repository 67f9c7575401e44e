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
import type { ChatStage } from './pipeline.js';
import { createScaling } from '../scaling/setup.js';
import { seedRoutes } from '../server/routes/seed.js';
import { withEmbeddingBatching } from '../batching/embedding-batcher.js';
import { createProviders } from '../providers/registry.js';

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
  // Test-time scaling (seed 000): difficulty -> passes, tokens, deadline; passes combined into one answer.
  let gatewayRef: Gateway | undefined;
  stages.push(await createScaling(config.inference, () => gatewayRef?.catalog));

  const plugins: Assembly['plugins'] = [];

  // Dynamic batching (seed 001): concurrent embedding calls share upstream calls of up to BATCH_MAX_SIZE.
  let providers = overrides.providers ?? (await createProviders(config.providers));
  if (config.batching.enabled) {
    const b = config.batching;
    providers = withEmbeddingBatching(providers, b.provider_types, { maxSize: b.max_size, flushTimeoutMs: b.flush_timeout_ms, maxConcurrency: b.max_concurrency });
  }

  const gateway = await Gateway.create({ loaded, log, providers, stages, resources });
  gatewayRef = gateway;
  // Seed endpoints: /v1/infer, /v1/infer/stream (seed 001), /v1/inference, /v1/batch (seed 002).
  plugins.push({ plugin: seedRoutes as unknown as Assembly['plugins'][number]['plugin'], options: { gateway, log, inference: config.inference } });
  return { gateway, authenticator, plugins };
}
