// The admin API for virtual keys, guarded by the admin token (auth.admin_token): create (the
// plaintext key is shown once), list, show and revoke. `inferenceflow keys` talks to these routes.
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { ApiKeyStore } from '../../limits/keys.js';
import { createKeySchema } from '../../limits/keys.js';
import { presentedKey, presentedTokenCheck } from '../auth.js';
import { GatewayError } from '../errors.js';
import { validationError } from '../validation.js';

export interface AdminRouteOptions {
  keys: ApiKeyStore;
  adminToken: string;
}

/** A check of the admin token in constant time; used by the admin routes and /v1/spend. */
export function adminTokenCheck(adminToken: string | undefined): (request: FastifyRequest) => boolean {
  const check = adminToken ? presentedTokenCheck(adminToken) : undefined;
  return (request) => check?.(request.headers) ?? false;
}

export const adminKeyRoutes: FastifyPluginAsync<AdminRouteOptions> = async (app, { keys, adminToken }) => {
  const isAdmin = adminTokenCheck(adminToken);
  // Skipped by the tenant authenticator: the admin token is checked here instead.
  const config = { skipAuth: true };
  app.addHook('preHandler', async (request) => {
    if (!presentedKey(request.headers)) throw new GatewayError('missing_api_key');
    if (!isAdmin(request)) throw new GatewayError('invalid_api_key', { message: 'The admin token is not valid.' });
  });

  app.post('/admin/keys', { config }, async (request, reply) => {
    const parsed = createKeySchema.safeParse(request.body ?? {});
    if (!parsed.success) throw validationError(parsed.error, request.body);
    const { key, record } = await keys.create(parsed.data);
    reply.code(201);
    return { ...record, key };
  });

  app.get('/admin/keys', { config }, async () => ({ object: 'list', data: await keys.list() }));

  app.get<{ Params: { id: string } }>('/admin/keys/:id', { config }, async (request) => {
    const record = await keys.get(request.params.id);
    if (!record) throw new GatewayError('not_found', { message: `No key with id "${request.params.id}".` });
    return record;
  });

  const revoke = async (request: FastifyRequest<{ Params: { id: string } }>) => {
    const record = await keys.revoke(request.params.id);
    if (!record) throw new GatewayError('not_found', { message: `No key with id "${request.params.id}".` });
    return record;
  };
  app.post<{ Params: { id: string } }>('/admin/keys/:id/revoke', { config }, revoke);
  app.delete<{ Params: { id: string } }>('/admin/keys/:id', { config }, revoke);
};
