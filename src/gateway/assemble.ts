// Assembles one gateway process from its configuration: shared connections, the authenticator,
// the chat stages in their order, and the extra route plugins. This is the one place where the
// capabilities are wired together; `serve` and the integration tests both come through here.
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/load.js';
import type { ProviderAdapter } from '../providers/types.js';
import { createTokenAuthenticator, type Authenticator } from '../server/auth.js';
import { providersRoutes } from '../server/routes/providers.js';
import { createRedis, redisResource } from '../store/redis.js';
import { Gateway, type ManagedResource } from './gateway.js';
import type { ChatStage } from './pipeline.js';

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

  const gateway = await Gateway.create({ loaded, log, providers: overrides.providers, stages, resources, redis });

  // Routing status (seed 002 get_provider_status): breaker, latency, in-flight and queue per deployment.
  plugins.push({ plugin: providersRoutes as unknown as FastifyPluginAsync<Record<string, unknown>>, options: { router: gateway.router } });
  return { gateway, authenticator, plugins };
}
