// Records every inference request in the ledger — successes, errors, rejections by limits or budget,
// cache hits and streams — when its response is over (the socket-level `close`, which also fires for
// streamed and aborted responses, after the stream's usage has been settled into ctx.facts).
// A request is recorded once it has a RequestContext, i.e. it passed authentication and validation.
import type { FastifyPluginAsync } from 'fastify';
import type { RequestContext } from '../gateway/context.js';
import type { LedgerEntry, LedgerWriter } from '../store/ledger.js';
import { GatewayError } from './errors.js';

export interface LedgerHookOptions {
  ledger: LedgerWriter;
}

declare module 'fastify' {
  interface FastifyRequest {
    ledgerErrorCode?: string;
  }
}

/**
 * The ledger row of one finished request (an HTTP request here, a batch line in the batch runner):
 * who, what the context's facts say it used and cost, and how it ended. `model` is the one the
 * client asked for, used when no deployment answered.
 */
export function ledgerEntry(ctx: RequestContext, at: Date, status: number, errorCode: string | null, model: unknown): LedgerEntry {
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
    latencyMs: Math.round((performance.now() - ctx.startedAt) * 100) / 100,
    cache: f.cache ?? null,
    status,
    errorCode,
  };
}

const plugin: FastifyPluginAsync<LedgerHookOptions> = async (app, { ledger }) => {
  app.addHook('onError', async (request, _reply, error) => {
    request.ledgerErrorCode = error instanceof GatewayError ? error.code : 'internal_error';
  });
  app.addHook('onRequest', async (request, reply) => {
    const at = new Date();
    reply.raw.once('close', () => {
      const ctx = request.ctx;
      if (!ctx) return;
      const status = reply.raw.headersSent ? reply.raw.statusCode : 499;
      const body = request.body as { model?: unknown } | undefined;
      ledger.record(ledgerEntry(ctx, at, status, request.ledgerErrorCode ?? (status >= 400 ? 'error' : null), body?.model));
    });
  });
};
// Not encapsulated: the hooks must see the routes of every other plugin.
(plugin as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;

export const ledgerHook = plugin;
