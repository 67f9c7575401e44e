// Admin endpoints of the response cache (seed 002 get_cache_stats and invalidate_cache): statistics,
// and invalidation by namespace, model and request-hash pattern. With an admin token these routes take it (and
// only it). Without one, a gateway with no authentication (one local operator) may read the
// statistics and invalidate anything, while an authenticated tenant may only invalidate its own
// namespace and may not read the statistics (they count every tenant's namespace): a tenant key must
// neither clear nor observe another tenant's cache.
import type { FastifyPluginAsync } from 'fastify';
import { presentedKey } from '../auth.js';
import { adminTokenCheck } from './admin-keys.js';
import { z } from 'zod';
import type { ResponseCache } from '../../cache/response-cache.js';
import { GatewayError, openAiErrorBody } from '../errors.js';

export interface CacheAdminOptions {
  cache: ResponseCache;
  /** When set, these routes take the admin token (not tenant keys); otherwise normal auth applies, scoped to the caller's namespace. */
  adminToken?: string;
}

const invalidateBody = z
  .object({
    namespace: z.string().min(1).optional(),
    model: z.string().min(1).optional(),
    /**
     * Glob over the request hash, the last part of `<namespace>:<model>:<hash>`, ANDed with namespace
     * and model. Namespaces and models are stored escaped, so a glob over the whole key written as
     * the operator sees them (`key:key_abc:*`) would match nothing: they are selected by name instead.
     */
    pattern: z
      .string()
      .min(1)
      .refine((p) => !p.includes(':'), {
        message: 'pattern matches the request hash (the part after the last ":") only; select a tenant or model with "namespace" and "model"',
      })
      .optional(),
  })
  .strict()
  .refine((b) => b.namespace !== undefined || b.model !== undefined || b.pattern !== undefined, {
    message: 'give at least one of namespace, model or pattern (use pattern "*" to clear everything)',
  });

export const cacheAdminRoutes: FastifyPluginAsync<CacheAdminOptions> = async (app, opts) => {
  const { cache } = opts;
  if (opts.adminToken) {
    const isAdmin = adminTokenCheck(opts.adminToken);
    app.addHook('onRoute', (route) => {
      route.config = { ...(route.config as object), skipAuth: true };
    });
    app.addHook('preHandler', async (request) => {
      if (!presentedKey(request.headers)) throw new GatewayError('missing_api_key');
      if (!isAdmin(request)) throw new GatewayError('invalid_api_key', { message: 'The admin token is not valid.' });
    });
  }

  app.get('/v1/cache/stats', async (request) => {
    const tenant = request.tenant;
    if (!opts.adminToken && tenant && tenant.kind !== 'anonymous') {
      // The statistics are aggregated over every namespace and cannot be scoped to one tenant.
      throw new GatewayError('permission_denied', { message: 'The cache statistics cover every tenant and need the admin token (auth.admin_token).' });
    }
    return cache.stats();
  });

  app.post('/v1/cache/invalidate', async (request, reply) => {
    const parsed = invalidateBody.safeParse(request.body ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const opts: { message: string; param?: string } = { message: issue?.message ?? 'invalid body' };
      if (issue?.path.length) opts.param = issue.path.join('.');
      const err = new GatewayError('invalid_request', opts);
      return reply.code(err.status).send(openAiErrorBody(err));
    }
    const filter: Parameters<ResponseCache['invalidate']>[0] = {};
    const tenant = request.tenant;
    if (!opts.adminToken && tenant && tenant.kind !== 'anonymous') {
      // A tenant, not an administrator: its own entries only (cache namespaces are tenant ids).
      if (parsed.data.pattern !== undefined) throw new GatewayError('permission_denied', { param: 'pattern', message: 'Invalidating by pattern needs the admin token (auth.admin_token).' });
      if (parsed.data.namespace !== undefined && parsed.data.namespace !== tenant.id) {
        throw new GatewayError('permission_denied', { param: 'namespace', message: 'A tenant may only invalidate its own cache namespace.' });
      }
      filter.namespace = tenant.id;
    }
    if (parsed.data.namespace !== undefined) filter.namespace = parsed.data.namespace;
    if (parsed.data.model !== undefined) filter.model = parsed.data.model;
    if (parsed.data.pattern !== undefined) filter.pattern = parsed.data.pattern;
    const deleted = await cache.invalidate(filter);
    return { deleted, filter };
  });
};
