// Operational endpoints: Prometheus metrics at /metrics and /v1/metrics (seed 001, 002), optionally
// behind their own bearer token, and the rolling performance summary at /v1/stats (seed 002
// `get_performance_summary`), which the dashboard polls. With `serve --workers N` both report the
// whole cluster (telemetry/cluster-metrics.ts). None of them counts as API traffic.
import type { FastifyPluginAsync } from 'fastify';
import type { Gateway } from '../../gateway/gateway.js';
import { metricsAuthorizer } from '../../telemetry/metrics-server.js';
import type { Telemetry } from '../../telemetry/telemetry.js';
import { presentedKey } from '../auth.js';
import { GatewayError } from '../errors.js';
import { describeRoute } from './docs.js';

export interface MonitoringRouteOptions {
  telemetry: Telemetry;
  gateway: Gateway;
  version: string;
}

export const monitoringRoutes: FastifyPluginAsync<MonitoringRouteOptions> = async (app, { telemetry, gateway, version }) => {
  const { metrics, settings } = telemetry;

  if (settings.metrics.enabled) {
    const metricsRoute = {
      ...describeRoute({
        summary: 'Prometheus metrics',
        description: 'Prometheus text exposition. Public unless `METRICS_TOKEN` is set, then it wants that bearer token.',
        tags: ['monitoring'],
        public: !settings.metrics.token,
      }),
      config: { public: true, monitoring: true },
    };
    const authorized = metricsAuthorizer(settings.metrics.token);
    const handler = async (request: { headers: Record<string, string | string[] | undefined> }, reply: import('fastify').FastifyReply) => {
      if (!authorized(request.headers)) {
        throw new GatewayError(presentedKey(request.headers) ? 'invalid_api_key' : 'missing_api_key');
      }
      reply.header('content-type', metrics.contentType).header('cache-control', 'no-store');
      return metrics.render();
    };
    app.get('/metrics', metricsRoute, handler);
    app.get('/v1/metrics', metricsRoute, handler);
  }

  app.get(
    '/v1/stats',
    {
      ...describeRoute({
        summary: 'Performance summary',
        description:
          'Latency p50/p95/p99, throughput, error rate by provider, cache hit rate and savings, cost per request, queue depth, ' +
          'breakers, limits, mesh nodes and the GPU pool over the rolling window (`monitoring.stats.window_s`), with per-second series. ' +
          'With `serve --workers N` it covers every worker, and `workers` says how many answered (`answered`, `stale`, `missing`).',
        tags: ['monitoring'],
      }),
      config: { monitoring: true },
    },
    async (_request, reply) => {
      // With `serve --workers N`: the whole cluster, summarised by the primary from every worker's window (503 if it cannot answer).
      const summary = await telemetry.clusterSummary();
      reply.header('cache-control', 'no-store');
      return {
        ...summary,
        gateway: {
          version,
          providers: [...gateway.providers.keys()].sort(),
          model_groups: gateway.catalog.groupNames(),
          simulator: gateway.loaded.simulatorDefault,
        },
        links: { grafana: settings.dashboard.grafana_url ?? null, metrics: settings.metrics.enabled ? '/metrics' : null, docs: settings.docs.enabled ? '/docs' : null },
      };
    },
  );
};
