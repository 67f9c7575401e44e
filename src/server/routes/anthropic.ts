// The Anthropic-compatible route: POST /v1/messages in JSON and SSE with Anthropic's real event
// sequence, so an unmodified Anthropic SDK client can use any provider behind the gateway. Errors
// on this route use Anthropic's body (the app's error handler reads the route's dialect).
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { Gateway } from '../../gateway/gateway.js';
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
      errorEvent: (err) => ({ event: 'error', data: JSON.stringify(anthropicErrorFromGateway(err)) }),
    });
  });
};
