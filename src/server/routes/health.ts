// Root, liveness and readiness. `/health` says the process is up; `/ready` says it can serve
// (configured Redis/database reachable, at least one provider usable, not shutting down).
import type { FastifyPluginAsync } from 'fastify';
import type { Gateway } from '../../gateway/gateway.js';
import { describeRoute } from './docs.js';

export interface HealthRouteOptions {
  gateway: Gateway;
  version: string;
  /** Every route the app registers (filled as plugins register). */
  routes: readonly string[];
}

export const healthRoutes: FastifyPluginAsync<HealthRouteOptions> = async (app, opts) => {
  const started = Date.now();
  const publicRoute = (summary: string) => ({ ...describeRoute({ summary, tags: ['health'], public: true }), config: { public: true } });

  app.get('/', publicRoute('Service information and endpoint list'), async () => ({
    name: 'inferenceflow',
    version: opts.version,
    description: 'LLM inference gateway: one OpenAI- and Anthropic-compatible API over many providers.',
    simulator: opts.gateway.loaded.simulatorDefault || undefined,
    endpoints: [...new Set(opts.routes)].sort(),
  }));

  const liveness = async () => ({ status: 'ok', uptime_s: Math.round((Date.now() - started) / 1000), version: opts.version });
  app.get('/health', publicRoute('Liveness'), liveness);
  app.get('/v1/health', publicRoute('Liveness (seed 002 path)'), liveness);

  app.get('/ready', publicRoute('Readiness: Redis/database reachable, a provider usable, not draining'), async (_request, reply) => {
    const { ready, checks } = await opts.gateway.readiness();
    reply.code(ready ? 200 : 503);
    return { status: ready ? 'ready' : 'not_ready', checks };
  });
};
