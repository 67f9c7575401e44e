import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { ResponseCache } from '../../cache/response-cache.js';
import { MemoryCacheStore } from '../../cache/stores/memory.js';
import { userRequest } from '../../cache/test-helpers.js';
import { GatewayError, openAiErrorBody } from '../errors.js';
import { cacheAdminRoutes } from './cache-admin.js';

const DEFAULT_ENTRIES: [string, string][] = [['acme', 'gpt-4o'], ['acme', 'claude'], ['globex', 'gpt-4o']];

async function setup(tenant?: { id: string; kind: string }, adminToken?: string, entries = DEFAULT_ENTRIES) {
  const cache = await ResponseCache.create({ store: new MemoryCacheStore({ maxBytes: 1e6 }), ttlMs: 60_000, compressMinBytes: 0 });
  const result = { id: 'x', object: 'chat.completion' as const, created: 1, model: 'm', choices: [], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } };
  for (const [ns, model] of entries) {
    const { probe } = await cache.lookup(ns, userRequest('hi', { model }));
    await cache.put(probe, { kind: 'result', result }, { tokens: 2, costUsd: 0.01 });
  }
  const app = Fastify();
  // What the app's auth hook does: every request carries its tenant.
  if (tenant) app.addHook('onRequest', async (request) => void (request.tenant = tenant as typeof request.tenant));
  app.setErrorHandler((err: GatewayError, _request, reply) => reply.code(err.status).send(openAiErrorBody(err)));
  await app.register(cacheAdminRoutes, adminToken ? { cache, adminToken } : { cache });
  return { app, cache };
}

describe('cache admin routes', () => {
  it('reports statistics', async () => {
    const { app } = await setup();
    const res = await app.inject({ method: 'GET', url: '/v1/cache/stats' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ backend: 'memory', entries: 3, misses: 3, hits: { exact: 0, semantic: 0 }, stores: 3 });
  });

  it('without an admin token, refuses the cross-tenant statistics to an authenticated tenant', async () => {
    for (const kind of ['token', 'key', 'jwt']) {
      const { app } = await setup({ id: 'acme', kind });
      const res = await app.inject({ method: 'GET', url: '/v1/cache/stats' });
      expect([res.statusCode, res.json().error.code]).toEqual([403, 'permission_denied']);
      expect(res.json().error).toMatchObject({ type: 'permission_error', message: expect.stringContaining('auth.admin_token') });
      // Nothing of the aggregate leaks into the refusal.
      expect(res.json()).not.toHaveProperty('entries');
    }
  });

  it('without any authentication (the anonymous tenant), reports the statistics', async () => {
    const { app } = await setup({ id: 'anonymous', kind: 'anonymous' });
    const res = await app.inject({ method: 'GET', url: '/v1/cache/stats' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ backend: 'memory', entries: 3 });
  });

  it('with an admin token, the statistics take that token and only it', async () => {
    const { app } = await setup({ id: 'acme', kind: 'key' }, 'admin-secret');
    const missing = await app.inject({ method: 'GET', url: '/v1/cache/stats' });
    expect([missing.statusCode, missing.json().error.code]).toEqual([401, 'missing_api_key']);
    const tenantKey = await app.inject({ method: 'GET', url: '/v1/cache/stats', headers: { authorization: 'Bearer sk-acme' } });
    expect([tenantKey.statusCode, tenantKey.json().error.code]).toEqual([401, 'invalid_api_key']);
    const admin = await app.inject({ method: 'GET', url: '/v1/cache/stats', headers: { authorization: 'Bearer admin-secret' } });
    expect(admin.statusCode).toBe(200);
    expect(admin.json()).toMatchObject({ backend: 'memory', entries: 3 });
  });

  it('invalidates by namespace, model or pattern', async () => {
    const { app } = await setup();
    let res = await app.inject({ method: 'POST', url: '/v1/cache/invalidate', payload: { model: 'gpt-4o' } });
    expect(res.json()).toMatchObject({ deleted: 2 });
    res = await app.inject({ method: 'POST', url: '/v1/cache/invalidate', payload: { pattern: '*' } });
    expect(res.json()).toMatchObject({ deleted: 1 });
  });

  it('without an admin token, a tenant invalidates its own namespace only', async () => {
    const { app, cache } = await setup({ id: 'acme', kind: 'key' });
    const everything = await app.inject({ method: 'POST', url: '/v1/cache/invalidate', payload: { pattern: '*' } });
    expect([everything.statusCode, everything.json().error.code]).toEqual([403, 'permission_denied']);
    const foreign = await app.inject({ method: 'POST', url: '/v1/cache/invalidate', payload: { namespace: 'globex' } });
    expect([foreign.statusCode, foreign.json().error.code]).toEqual([403, 'permission_denied']);
    // "model" alone means that model in the caller's namespace: globex's gpt-4o entry stays.
    const own = await app.inject({ method: 'POST', url: '/v1/cache/invalidate', payload: { model: 'gpt-4o' } });
    expect(own.json()).toMatchObject({ deleted: 1, filter: { namespace: 'acme', model: 'gpt-4o' } });
    expect((await cache.stats()).entries).toBe(2);
  });

  it('with real tenant ids and model names (colons in both), a pattern combines with namespace and model', async () => {
    const entries: [string, string][] = [['key:key_abc', 'llama3:8b'], ['key:key_abc', 'gpt-4o'], ['key:key_def', 'llama3:8b']];
    const { app, cache } = await setup(undefined, undefined, entries);
    const hit = async (ns: string, model: string) => (await cache.lookup(ns, userRequest('hi', { model }))).hit !== undefined;
    // Scoped to one tenant: the other tenant's entries stay (the pattern used to replace the scope).
    let res = await app.inject({ method: 'POST', url: '/v1/cache/invalidate', payload: { namespace: 'key:key_abc', model: 'llama3:8b', pattern: '*' } });
    expect(res.json()).toEqual({ deleted: 1, filter: { namespace: 'key:key_abc', model: 'llama3:8b', pattern: '*' } });
    expect([await hit('key:key_abc', 'llama3:8b'), await hit('key:key_abc', 'gpt-4o'), await hit('key:key_def', 'llama3:8b')]).toEqual([false, true, true]);
    res = await app.inject({ method: 'POST', url: '/v1/cache/invalidate', payload: { namespace: 'key:key_abc', pattern: '*' } });
    expect(res.json()).toMatchObject({ deleted: 1 });
    expect(await hit('key:key_def', 'llama3:8b')).toBe(true);
    // A pattern that does not match the request hash deletes nothing.
    res = await app.inject({ method: 'POST', url: '/v1/cache/invalidate', payload: { model: 'llama3:8b', pattern: 'no-such-hash*' } });
    expect(res.json()).toMatchObject({ deleted: 0 });
    res = await app.inject({ method: 'POST', url: '/v1/cache/invalidate', payload: { model: 'llama3:8b' } });
    expect(res.json()).toMatchObject({ deleted: 1 });
    expect((await cache.stats()).entries).toBe(0);
  });

  it('refuses a pattern written over the whole key (it could only match nothing)', async () => {
    const { app, cache } = await setup(undefined, undefined, [['key:key_abc', 'llama3:8b']]);
    for (const pattern of ['key:key_abc:*', '*:llama3:8b:*']) {
      const res = await app.inject({ method: 'POST', url: '/v1/cache/invalidate', payload: { pattern } });
      expect([res.statusCode, res.json().error.code, res.json().error.param]).toEqual([400, 'invalid_request', 'pattern']);
      expect(res.json().error.message).toContain('"namespace"');
    }
    expect((await cache.stats()).entries).toBe(1);
  });

  it('rejects an empty or unknown filter with the OpenAI error shape', async () => {
    const { app } = await setup();
    const res = await app.inject({ method: 'POST', url: '/v1/cache/invalidate', payload: {} });
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_request' });
    const typo = await app.inject({ method: 'POST', url: '/v1/cache/invalidate', payload: { namspace: 'acme' } });
    expect(typo.statusCode).toBe(400);
  });
});
