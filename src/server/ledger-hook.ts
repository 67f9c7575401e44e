// Records every inference request in the ledger — successes, errors, rejections by limits or budget,
// cache hits and streams — once its response is over (the socket-level `close`, which also fires for
// streamed and aborted responses) and what the request owes has been settled: a stream abandoned by
// its client is settled (its usage counted from the text that went out, its reservations corrected)
// after that `close`, so the row waits for it (ctx.settlements) and shows what the budget was charged.
// A response that did not finish is status 499 client_closed_request, as in the access log.
// A request is recorded once it has a RequestContext, i.e. it passed authentication and validation.
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { SETTLEMENT_WAIT_MS, afterSettlement, type RequestContext } from '../gateway/context.js';
import type { LedgerEntry, LedgerWriter } from '../store/ledger.js';
import { GatewayError } from './errors.js';

export interface LedgerHookOptions {
  ledger: Pick<LedgerWriter, 'record' | 'recordAfter' | 'recorded'>;
  /** How long a row waits for its request's settlement (SETTLEMENT_WAIT_MS). */
  settlementWaitMs?: number;
}

declare module 'fastify' {
  interface FastifyRequest {
    ledgerErrorCode?: string;
    /**
     * The model the client asked for, as its route resolved it (seed 002's `model_preference`, or
     * the default model): recorded when no deployment answered, e.g. a request refused before routing.
     * Unset, the body's `model` is used.
     */
    ledgerModel?: string;
    /**
     * The status of the error that ended a response whose head (200) had gone out already: a stream
     * that failed after it started. Its ledger row, log line and request metrics carry it (as a
     * client that left is 499), so the failure counts as one.
     */
    failedStatus?: number;
  }
}

/** The status a finished response is recorded with: 499 when it did not finish, a stream's failure's when it failed after it started. */
export function recordedStatus(request: FastifyRequest, reply: FastifyReply): number {
  // Cut before its end: by the client (499), unless the upstream failed first (a forwarded body that
  // broke off, which ends the answer unfinished: its error's status).
  if (!reply.raw.writableFinished) return request.failedStatus ?? 499;
  return request.failedStatus ?? reply.raw.statusCode;
}

/**
 * The ledger row of one finished request (an HTTP request here, a batch line in the batch runner):
 * who, what the context's facts say it used and cost, and how it ended. `model` is the one the
 * client asked for, used when no deployment answered.
 */
export function ledgerEntry(ctx: RequestContext, at: Date, status: number, errorCode: string | null, model: unknown, endedAt = performance.now()): LedgerEntry {
  const f = ctx.facts;
  const t = ctx.tenant;
  return {
    requestId: ctx.id,
    ts: at,
    tenantId: t.id,
    tenantKind: t.kind,
    keyId: t.keyId ?? null,
    userId: t.userId ?? null,
    teamId: t.teamId ?? null,
    endpoint: ctx.endpoint,
    model: f.model ?? (typeof model === 'string' ? model : null),
    provider: f.provider ?? null,
    deployment: f.deployment ?? null,
    promptTokens: f.usage?.prompt_tokens ?? 0,
    completionTokens: f.usage?.completion_tokens ?? 0,
    costUsd: f.costUsd,
    latencyMs: Math.round((endedAt - ctx.startedAt) * 100) / 100,
    cache: f.cache ?? null,
    status,
    errorCode,
  };
}


const plugin: FastifyPluginAsync<LedgerHookOptions> = async (app, { ledger, settlementWaitMs = SETTLEMENT_WAIT_MS }) => {
  app.addHook('onError', async (request, _reply, error) => {
    request.ledgerErrorCode = error instanceof GatewayError ? error.code : 'internal_error';
  });
  app.addHook('onRequest', async (request, reply) => {
    const at = new Date();
    reply.raw.once('close', () => {
      const ctx = request.ctx;
      if (!ctx) return;
      const endedAt = performance.now();
      // 499 (nginx's "client closed request") when the client left before the response was complete.
      const status = recordedStatus(request, reply);
      const errorCode = status === 499 ? 'client_closed_request' : (request.ledgerErrorCode ?? (status >= 400 ? 'error' : null));
      const model = request.ledgerModel ?? (request.body as { model?: unknown } | undefined)?.model;
      const entry = () => ledgerEntry(ctx, at, status, errorCode, model, endedAt);
      const settled = afterSettlement(ctx, settlementWaitMs, () =>
        ctx.log.warn({ waitedMs: settlementWaitMs }, 'ledger: the request did not settle in time; recording it as it stands'),
      );
      if (!settled) ledger.record(entry());
      else ledger.recordAfter(settled, entry);
    });
  });
  // Rows still waiting for their settlement are written before the ledger closes.
  app.addHook('onClose', () => ledger.recorded());
};
// Not encapsulated: the hooks must see the routes of every other plugin.
(plugin as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;

export const ledgerHook = plugin;
