// GET /v1/providers (seed 002 `get_provider_status`): each deployment's breaker state, latency EWMA,
// in-flight count, recent error rate and queue length, plus the routing counters. Authenticated
// like the API: it reveals which upstreams are configured.
import type { FastifyPluginAsync } from 'fastify';
import type { Router } from '../../routing/router.js';

export interface ProvidersRouteOptions {
  router: Router;
}

export const providersRoutes: FastifyPluginAsync<ProvidersRouteOptions> = async (app, { router }) => {
  app.get('/v1/providers', async () => router.status());
};
