// Assembles one gateway process from its configuration: shared connections, the authenticator,
// the chat stages in their order, and the extra route plugins. This is the one place where the
// capabilities are wired together; `serve` and the integration tests both come through here.
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/load.js';
import type { Price } from '../providers/pricing.js';
import type { ProviderAdapter } from '../providers/types.js';
import type { Authenticator } from '../server/auth.js';
import { createRedis, redisResource } from '../store/redis.js';
import { Gateway, type ManagedResource } from './gateway.js';
import type { ChatStage } from './pipeline.js';
import { assembleTenancy, type Tenancy } from './tenancy.js';

export interface Assembly {
  gateway: Gateway;
  authenticator: Authenticator;
  plugins: { plugin: FastifyPluginAsync<Record<string, unknown>>; options?: Record<string, unknown> }[];
  /** Keys, ledger, SQL store and the signed webhook sender, for capabilities that build on them. */
  tenancy: Tenancy;
}

export interface AssembleOverrides {
  providers?: Map<string, ProviderAdapter>;
}

export async function assemble(loaded: LoadedConfig, log: Logger, overrides: AssembleOverrides = {}): Promise<Assembly> {
  const { config } = loaded;
  const resources: ManagedResource[] = [];
  const redis = config.redis.url ? createRedis(config.redis.url, 'main') : undefined;
  if (redis) resources.push(redisResource(redis));

  // Tenancy (docs/tenancy.md): tokens + API keys + JWT, limits, budgets, ledger, webhooks.
  // Cost estimates need the catalog, which the Gateway builds below: reached through a late binding.
  const built: { gateway?: Gateway } = {};
  const tenancy = await assembleTenancy({ config, log, redis, priceOf: (model) => (built.gateway ? highestPrice(built.gateway, model) : undefined) });
  resources.push(...tenancy.resources);
  const authenticator = tenancy.authenticator;

  // Chat stages, outermost first (the executor is the terminal handler).
  // Admission (rate limits, budgets) comes first: before any cache lookup or routing.
  const stages: ChatStage[] = [tenancy.admission];

  const plugins: Assembly['plugins'] = [...tenancy.plugins];

  const gateway = await Gateway.create({ loaded, log, providers: overrides.providers, stages, resources });
  built.gateway = gateway;
  return { gateway, authenticator, plugins, tenancy };
}

function highestPrice(gateway: Gateway, model: string): Price | undefined {
  try {
    let best: Price | undefined;
    for (const d of gateway.catalog.resolve(model).deployments) if (!best || d.price.input + d.price.output > best.input + best.output) best = d.price;
    return best;
  } catch {
    return undefined;
  }
}
