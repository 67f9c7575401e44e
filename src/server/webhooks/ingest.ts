// POST /webhooks/ingest (seed 001): accepts Standard Webhooks-signed events. The raw body is kept for
// the HMAC; a stale timestamp or a bad signature is 401; accepted events are stored (202). A webhook
// id seen before (checked in Redis or memory first, and by the events table's primary key for good)
// is stored once: its redelivery is answered 200 `duplicate: true`, since a sender retries on any
// other status until it disables the endpoint.
import { eq } from 'drizzle-orm';
import type { FastifyPluginAsync } from 'fastify';
import type { RedisClient } from '../../store/redis.js';
import { mayHoldUnstorable, storableJson, type SqlDatabase } from '../../store/sql.js';
import { webhookEvents } from '../../store/tables.js';
import { GatewayError } from '../errors.js';
import { verifyWebhook, type VerifyFailure } from './signature.js';
import { MAX_JSON_DEPTH, nestedDeeperThan } from '../json-depth.js';

export interface ReplayGuard {
  /** True the first time an id is seen within `ttlS`. */
  firstSeen(id: string, ttlS: number): Promise<boolean>;
  /** Forgets an id whose event could not be stored, so the sender's retry is accepted. */
  forget(id: string): Promise<void>;
}

export function redisReplayGuard(redis: RedisClient, prefix: string): ReplayGuard {
  return {
    async firstSeen(id, ttlS) {
      return (await redis.set(`${prefix}webhook-seen:${id}`, '1', 'EX', ttlS, 'NX')) === 'OK';
    },
    async forget(id) {
      await redis.del(`${prefix}webhook-seen:${id}`);
    },
  };
}

export function memoryReplayGuard(): ReplayGuard {
  const seen = new Map<string, number>();
  return {
    async firstSeen(id, ttlS) {
      const now = Date.now();
      if (seen.size > 100_000) for (const [k, exp] of seen) if (exp <= now) seen.delete(k);
      const exp = seen.get(id);
      if (exp !== undefined && exp > now) return false;
      seen.set(id, now + ttlS * 1000);
      return true;
    },
    async forget(id) {
      seen.delete(id);
    },
  };
}

export interface IngestRouteOptions {
  secret: string;
  toleranceS: number;
  replay: ReplayGuard;
  sql?: SqlDatabase;
}

const MESSAGES: Record<VerifyFailure, string> = {
  missing_headers: 'The webhook-id, webhook-timestamp and webhook-signature headers are required.',
  bad_timestamp: 'webhook-timestamp must be Unix seconds.',
  stale: 'webhook-timestamp is too far from now (replayed or delayed).',
  bad_signature: 'The webhook signature does not match the body.',
};

export const webhookIngestRoutes: FastifyPluginAsync<IngestRouteOptions> = async (app, opts) => {
  // Encapsulated here: the HMAC is over the bytes as sent, so this route parses JSON itself.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  // The signature, not a tenant credential, authenticates the sender.
  app.post('/webhooks/ingest', { config: { skipAuth: true } }, async (request, reply) => {
    const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const checked = verifyWebhook(opts.secret, request.headers, raw, opts.toleranceS);
    if (!checked.ok) throw new GatewayError('invalid_signature', { message: MESSAGES[checked.reason] });
    const text = raw.toString('utf8');
    if (nestedDeeperThan(text, MAX_JSON_DEPTH)) throw new GatewayError('invalid_request', { message: `The event nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels.` });
    let payload: unknown;
    try {
      payload = JSON.parse(text);
    } catch {
      throw new GatewayError('invalid_json');
    }
    // jsonb and text refuse a NUL character (`\u0000`) and an unpaired surrogate (`\ud800`): stored
    // as U+FFFD, or the insert fails and the sender's every retry of a correctly signed event would be
    // answered 500. Only a body holding such an escape (in either case) is rewritten.
    if (mayHoldUnstorable(text)) payload = JSON.parse(storableJson(payload));
    const { id, timestampS } = checked.webhook;
    const type = payload && typeof payload === 'object' && typeof (payload as { type?: unknown }).type === 'string' ? (payload as { type: string }).type : null;
    // A redelivery of an event already received: a success, or the sender keeps retrying it.
    const duplicate = () => {
      reply.code(200);
      return { received: true, id, type, duplicate: true };
    };
    // Older than twice the tolerance cannot pass the timestamp check, so the guard may forget it then.
    if (!(await opts.replay.firstSeen(id, opts.toleranceS * 2))) {
      // Seen, but not stored (yet): the first delivery is still being stored, or storing it failed and
      // the guard could not forget it. Not a success: the sender retries, and gets 200 once it is in.
      if (opts.sql && (await opts.sql.db.select({ id: webhookEvents.id }).from(webhookEvents).where(eq(webhookEvents.id, id)).limit(1)).length === 0) {
        throw new GatewayError('duplicate_webhook', { message: 'This webhook id is being received; retry later.' });
      }
      return duplicate();
    }
    if (opts.sql) {
      let inserted: { id: string }[];
      try {
        inserted = await opts.sql.db
          .insert(webhookEvents)
          .values({ id, signedAt: new Date(timestampS * 1000), type, payload })
          .onConflictDoNothing()
          .returning({ id: webhookEvents.id });
      } catch (err) {
        // Not stored: the sender will retry, and the retry must not be taken for a replay.
        await opts.replay.forget(id).catch(() => undefined);
        throw err;
      }
      if (inserted.length === 0) return duplicate();
    }
    reply.code(202);
    return { received: true, id, type };
  });
};
