// Sends a gateway outcome in whichever form the client asked for: a JSON body with fact headers, or
// an SSE stream whose events a route adapter renders in its own dialect. A stream outcome for a JSON
// client is collected; a JSON outcome (a cache hit, an aggregated answer) for a streaming client is
// replayed as chunks.
import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyReply } from 'fastify';
import type { ChatChunk, ChatResult } from '../canonical/chat.js';
import { collectStream, iterate, resultToChunks } from '../canonical/convert.js';
import type { RequestContext } from '../gateway/context.js';
import type { ChatOutcome } from '../gateway/pipeline.js';
import { toGatewayError, type GatewayError } from './errors.js';
import { factHeaders, streamTrailers } from './headers.js';
import { writeSse, type SseEvent } from './sse.js';

export interface Renderer<J> {
  json(result: ChatResult): J;
  events(chunks: AsyncIterable<ChatChunk>): AsyncIterable<SseEvent>;
  errorEvent(err: GatewayError): SseEvent;
}

/**
 * What a route handler returns: the JSON body (at once for a JSON outcome, so the common answer
 * makes no promise here), or a promise of it for a collected stream; undefined once a stream was written.
 */
export function sendOutcome<J>(reply: FastifyReply, ctx: RequestContext, outcome: ChatOutcome, wantStream: boolean, render: Renderer<J>): J | Promise<J | undefined> {
  if (!wantStream) {
    if (outcome.kind === 'result') return jsonAnswer(reply, ctx, outcome.result, render);
    return collectStream(outcome.stream).then((result) => jsonAnswer(reply, ctx, result, render));
  }
  return sendStream(reply, ctx, outcome, render);
}

function jsonAnswer<J>(reply: FastifyReply, ctx: RequestContext, result: ChatResult, render: Renderer<J>): J {
  reply.headers(factHeaders(ctx.facts));
  return render.json(result);
}

/**
 * An answer that broke off after its head went out (as 200): logged as `what`, and its failure
 * recorded for the ledger row, the log line and the request metrics. Returns it as a GatewayError.
 */
export function recordBrokenAnswer(reply: FastifyReply, ctx: RequestContext, err: unknown, what: string): GatewayError {
  const e = toGatewayError(err);
  ctx.log.warn({ code: e.code, err: e.message }, what);
  reply.request.ledgerErrorCode = e.code;
  reply.request.failedStatus = e.status;
  return e;
}

async function sendStream<J>(reply: FastifyReply, ctx: RequestContext, outcome: ChatOutcome, render: Renderer<J>): Promise<undefined> {
  const chunks = outcome.kind === 'stream' ? outcome.stream : iterate(resultToChunks(outcome.result));
  // Headers set on the reply before this point (x-request-id and x-inferenceflow-worker in the
  // onRequest hook) go with the head writeSse writes itself: after hijack Fastify sends nothing.
  // Made before the hijack: a throw here is still answered by the error handler, after it nothing would be.
  const headers = { ...(reply.getHeaders() as OutgoingHttpHeaders), 'x-request-id': ctx.id, ...factHeaders(ctx.facts, false) };
  reply.hijack();
  await writeSse(reply.raw, render.events(chunks), {
    headers,
    trailers: () => streamTrailers(ctx.facts),
    onError: (err) => render.errorEvent(recordBrokenAnswer(reply, ctx, err, 'stream failed after it started')),
  });
  return undefined;
}
