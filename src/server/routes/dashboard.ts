// GET /dashboard: the live status page (src/dashboard/public), served from memory with a strict
// Content-Security-Policy that allows nothing but this origin. The page itself is public; the
// numbers it shows come from /v1/stats, which wants an API key when the gateway has keys.
import type { FastifyPluginAsync } from 'fastify';
import { loadDashboardAssets } from '../../dashboard/assets.js';
import { describeRoute } from './docs.js';

export interface DashboardRouteOptions {
  grafanaUrl?: string;
  pollMs?: number;
}

const CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'self'";

export const dashboardRoutes: FastifyPluginAsync<DashboardRouteOptions> = async (app, opts) => {
  const assets = await loadDashboardAssets({ grafanaUrl: opts.grafanaUrl, pollMs: opts.pollMs });
  const config = { public: true, monitoring: true };
  const send = (name: string) => async (_request: unknown, reply: import('fastify').FastifyReply) => {
    const asset = assets.get(name);
    if (!asset) throw new Error(`dashboard asset ${name} missing`);
    reply.header('content-type', asset.contentType).header('cache-control', 'no-cache').header('content-security-policy', CSP);
    return asset.body;
  };
  app.get('/dashboard', { ...describeRoute({ summary: 'Live status page', tags: ['monitoring'], public: true }), config }, send('index.html'));
  app.get('/dashboard/dashboard.js', { schema: { hide: true }, config }, send('dashboard.js'));
  app.get('/dashboard/dashboard.css', { schema: { hide: true }, config }, send('dashboard.css'));
};
