// Assembles one gateway process from its configuration: shared connections, the authenticator,
// the chat stages in their order, and the extra route plugins. This is the one place where the
// capabilities are wired together; `serve` and the integration tests both come through here.
import type { SpanExporter } from '@opentelemetry/sdk-trace-node';
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { LoadedConfig } from '../config/load.js';
import type { ProviderAdapter } from '../providers/types.js';
import { createTokenAuthenticator, type Authenticator } from '../server/auth.js';
import { dashboardRoutes } from '../server/routes/dashboard.js';
import { monitoringRoutes } from '../server/routes/monitoring.js';
import { createRedis, redisResource } from '../store/redis.js';
import { startMetricsServer } from '../telemetry/metrics-server.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { Gateway, type ManagedResource } from './gateway.js';
import type { ChatStage } from './pipeline.js';

export interface Assembly {
  gateway: Gateway;
  authenticator: Authenticator;
  plugins: { plugin: FastifyPluginAsync<Record<string, unknown>>; options?: Record<string, unknown> }[];
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
  const redis = config.redis.url ? createRedis(config.redis.url, 'main') : undefined;
  if (redis) resources.push(redisResource(redis));

  // Telemetry first: every capability below may report to it (telemetry.metrics.<record…>).
  const version = overrides.version ?? '0.0.0';
  const telemetry = Telemetry.create(config.monitoring, { version, spanExporter: overrides.spanExporter });
  resources.push({ name: 'telemetry', check: async () => true, close: () => telemetry.close() });
  if (config.monitoring.metrics.enabled && config.monitoring.metrics.port !== undefined) {
    const { port, token } = config.monitoring.metrics;
    resources.push(await startMetricsServer(telemetry.metrics, { host: config.server.host, port, token }));
  }

  const authenticator = createTokenAuthenticator(config.auth.tokens);

  // Chat stages, outermost first (the executor is the terminal handler).
  const stages: ChatStage[] = [];

  const plugins: Assembly['plugins'] = [];

  const gateway = await Gateway.create({ loaded, log, providers: overrides.providers, stages, resources, attemptObserver: telemetry });
  // Operational routes: /metrics, /v1/metrics, /v1/stats, /dashboard.
  plugins.push(routePlugin(monitoringRoutes, { telemetry, gateway, version }));
  if (config.monitoring.dashboard.enabled) plugins.push(routePlugin(dashboardRoutes, { grafanaUrl: config.monitoring.dashboard.grafana_url }));
  return { gateway, authenticator, plugins, telemetry };
}

/** A typed route plugin with its options, as an Assembly plugin entry. */
function routePlugin<O extends object>(plugin: FastifyPluginAsync<O>, options: O): Assembly['plugins'][number] {
  return { plugin: plugin as unknown as Assembly['plugins'][number]['plugin'], options: options as Record<string, unknown> };
}
