// The Anthropic-compatible route: POST /v1/messages in JSON and SSE with Anthropic's real event
// sequence, so an unmodified Anthropic SDK client can use any provider behind the gateway. Errors
// on this route use Anthropic's body (the app's error handler reads the route's dialect).
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { Gateway } from '../../gateway/gateway.js';
import { anthropicBetas } from '../../providers/anthropic-wire.js';
import { countPromptTokens } from '../../providers/tokens.js';
import { anthropicErrorFromGateway, anthropicStreamEvents, anthropicToCanonical, canonicalToAnthropicMessage } from '../anthropic-format.js';
import { createRequestContext } from '../request-context.js';
import { sendOutcome } from '../respond.js';
import type { SseEvent } from '../sse.js';

export interface AnthropicRouteOptions {
  gateway: Gateway;
  log: Logger;
}

export const anthropicRoutes: FastifyPluginAsync<AnthropicRouteOptions> = async (app, { gateway, log }) => {
  app.post('/v1/messages', { config: { dialect: 'anthropic' } }, async (request, reply) => {
    const req = anthropicToCanonical(request.body);
    const betas = anthropicBetas(request.headers['anthropic-beta']);
    if (betas.length > 0) req.anthropic_beta = betas;
    const ctx = createRequestContext(request, reply, 'messages', log);
    request.ctx = ctx;
    const outcome = await gateway.handleChat(ctx, req);
    const model = req.model;
    return sendOutcome(reply, ctx, outcome, req.stream === true, {
      json: (result) => canonicalToAnthropicMessage(result, model),
      async *events(chunks) {
        const inputTokens = countPromptTokens(req.messages, req.tools);
        for await (const e of anthropicStreamEvents(chunks, model, inputTokens)) yield { event: e.event, data: JSON.stringify(e.data) } satisfies SseEvent;
      },
      errorEvent: (err) => ({ event: 'error', data: JSON.stringify(anthropicErrorFromGateway(err, request.id)) }),
    });
  });

  // The SDK's messages.countTokens: the same body as a message (no max_tokens), counted with the
  // gateway's tokenizer — exact for OpenAI models, an estimate for others (Claude's tokenizer is not public).
  app.post('/v1/messages/count_tokens', { config: { dialect: 'anthropic' } }, async (request) => {
    const body = request.body && typeof request.body === 'object' ? (request.body as Record<string, unknown>) : {};
    const req = anthropicToCanonical({ max_tokens: 1, ...body, stream: undefined });
    return { input_tokens: countPromptTokens(req.messages, req.tools) };
  });
};

