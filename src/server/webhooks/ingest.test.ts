import Fastify from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { openSql } from '../../store/sql.js';
import { memoryReplayGuard, webhookIngestRoutes } from './ingest.js';
import { signWebhook } from './signature.js';

const SECRET = `whsec_${Buffer.from('a test secret of enough length').toString('base64')}`;
const sql = await openSql({ pglitePath: 'memory://' });
afterAll(async () => {
  await sql.close();
});

describe('webhook ingestion', () => {
  it('accepts the retry of an event it could not store (the replay guard forgets it), and stores a redelivery only once', async () => {
    const app = Fastify();
    await app.register(webhookIngestRoutes, { secret: SECRET, toleranceS: 300, replay: memoryReplayGuard(), sql });
    const body = JSON.stringify({ type: 'order.paid', data: { id: 1 } });
    const headers = { 'content-type': 'application/json', ...signWebhook(SECRET, 'msg_retry_1', body) };
    const deliver = () => app.inject({ method: 'POST', url: '/webhooks/ingest', headers, payload: body });
    // The database cannot take the event the first time.
    await sql.query('ALTER TABLE webhook_events RENAME TO webhook_events_away');
    const failed = await deliver();
    await sql.query('ALTER TABLE webhook_events_away RENAME TO webhook_events');
    expect(failed.statusCode).toBeGreaterThanOrEqual(500);
    const retried = await deliver();
    expect(retried.statusCode).toBe(202);
    expect(await sql.query(`SELECT id, type FROM webhook_events WHERE id = 'msg_retry_1'`)).toEqual([{ id: 'msg_retry_1', type: 'order.paid' }]);
    const again = await deliver();
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual({ received: true, id: 'msg_retry_1', type: 'order.paid', duplicate: true });
    expect(await sql.query(`SELECT count(*)::int AS n FROM webhook_events WHERE id = 'msg_retry_1'`)).toEqual([{ n: 1 }]);
    await app.close();
  });

  it('answers a redelivery 2xx also when the replay guard has forgotten it (a restart): the table holds it once', async () => {
    const body = JSON.stringify({ type: 'order.paid', data: { id: 2 } });
    const headers = { 'content-type': 'application/json', ...signWebhook(SECRET, 'msg_restart_1', body) };
    for (const expected of [202, 200]) {
      const app = Fastify();
      await app.register(webhookIngestRoutes, { secret: SECRET, toleranceS: 300, replay: memoryReplayGuard(), sql });
      expect((await app.inject({ method: 'POST', url: '/webhooks/ingest', headers, payload: body })).statusCode).toBe(expected);
      await app.close();
    }
    expect(await sql.query(`SELECT count(*)::int AS n FROM webhook_events WHERE id = 'msg_restart_1'`)).toEqual([{ n: 1 }]);
  });

  it('does not answer 2xx to a redelivery while the first is not stored yet, so the sender retries', async () => {
    const replay = memoryReplayGuard();
    await replay.firstSeen('msg_inflight_1', 600); // the first delivery is being stored
    const app = Fastify();
    await app.register(webhookIngestRoutes, { secret: SECRET, toleranceS: 300, replay, sql });
    const body = JSON.stringify({ type: 'order.paid', data: { id: 3 } });
    const res = await app.inject({ method: 'POST', url: '/webhooks/ingest', headers: { 'content-type': 'application/json', ...signWebhook(SECRET, 'msg_inflight_1', body) }, payload: body });
    expect(res.statusCode).toBe(409);
    await app.close();
  });

  it('stores a signed event whose JSON holds a \\u0000 (which jsonb refuses) instead of answering 500 to every retry', async () => {
    const app = Fastify();
    await app.register(webhookIngestRoutes, { secret: SECRET, toleranceS: 300, replay: memoryReplayGuard(), sql });
    const body = JSON.stringify({ type: 'note\u0000.added', data: { text: 'a\u0000b', literal: '\\u0000' } });
    const res = await app.inject({ method: 'POST', url: '/webhooks/ingest', headers: { 'content-type': 'application/json', ...signWebhook(SECRET, 'msg_nul_1', body) }, payload: body });
    expect(res.statusCode).toBe(202);
    expect(await sql.query(`SELECT type, payload FROM webhook_events WHERE id = 'msg_nul_1'`)).toEqual([{ type: 'note\ufffd.added', payload: { type: 'note\ufffd.added', data: { text: 'a\ufffdb', literal: '\\u0000' } } }]);
    await app.close();
  });

  it('stores a signed event holding an unpaired surrogate (which jsonb refuses) as U+FFFD', async () => {
    const app = Fastify();
    await app.register(webhookIngestRoutes, { secret: SECRET, toleranceS: 300, replay: memoryReplayGuard(), sql });
    const body = '{"type":"note.added","data":{"text":"a\\uD800b","pair":"\\ud83d\\ude00"}}';
    const res = await app.inject({ method: 'POST', url: '/webhooks/ingest', headers: { 'content-type': 'application/json', ...signWebhook(SECRET, 'msg_surrogate_1', body) }, payload: body });
    expect(res.statusCode).toBe(202);
    expect(await sql.query(`SELECT payload FROM webhook_events WHERE id = 'msg_surrogate_1'`)).toEqual([{ payload: { type: 'note.added', data: { text: 'a\ufffdb', pair: '\u{1F600}' } } }]);
    await app.close();
  });

  it('refuses a signed event nesting deeper than any request may (400), storing nothing', async () => {
    const app = Fastify();
    app.setErrorHandler((err: { status?: number; code?: string }, _req, reply) => reply.code(err.status ?? 500).send({ code: err.code }));
    await app.register(webhookIngestRoutes, { secret: SECRET, toleranceS: 300, replay: memoryReplayGuard(), sql });
    const body = `{"type":"note.added","data":${'['.repeat(12_000)}${']'.repeat(12_000)}}`;
    const res = await app.inject({ method: 'POST', url: '/webhooks/ingest', headers: { 'content-type': 'application/json', ...signWebhook(SECRET, 'msg_deep_1', body) }, payload: body });
    expect([res.statusCode, res.json()]).toEqual([400, { code: 'invalid_request' }]);
    expect(await sql.query(`SELECT id FROM webhook_events WHERE id = 'msg_deep_1'`)).toEqual([]);
    await app.close();
  });
});
