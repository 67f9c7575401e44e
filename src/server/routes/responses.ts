// OpenAI's Responses API (POST /v1/responses), stateless, over any provider behind the gateway: the
// official SDK's `client.responses.create` (JSON and stream) works unmodified. Nothing is stored:
// GET and DELETE of a response id answer 404 saying so.
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { Gateway } from '../../gateway/gateway.js';
import { GatewayError } from '../errors.js';
import { createRequestContext } from '../request-context.js';
import { sendOutcome } from '../respond.js';
import { ResponseEventWriter, canonicalToResponse, createResponseSchema, responsesToCanonical } from '../responses-format.js';
import { describeRoute } from './docs.js';

export interface ResponsesRouteOptions {
  gateway: Gateway;
  log: Logger;
}

export const responsesRoutes: FastifyPluginAsync<ResponsesRouteOptions> = async (app, { gateway, log }) => {
  const doc = describeRoute({
    summary: 'Create a model response (OpenAI Responses API, stateless)',
    description: 'Input items become a chat conversation for whichever provider serves the model; JSON or SSE (`stream: true`) with the Responses event sequence. `previous_response_id`, `conversation` and hosted tools are refused: nothing is stored.',
    tags: ['openai'],
    body: createResponseSchema,
  });
  app.post('/v1/responses', doc, async (request, reply) => {
    const { body, req, echo } = responsesToCanonical(request.body);
    const ctx = createRequestContext(request, reply, 'responses', log, { difficulty: body.difficulty, priority: body.priority, session_id: body.session_id, metadata: body.metadata });
    request.ctx = ctx;
    const outcome = await gateway.handleChat(ctx, req);
    const writer = new ResponseEventWriter(echo);
    return sendOutcome(reply, ctx, outcome, req.stream === true, {
      json: (result) => canonicalToResponse(result, echo),
      events: (chunks) => writer.events(chunks),
      errorEvent: (err) => writer.error(err),
    });
  });

  const notStored = (id: string) =>
    new GatewayError('not_found', { param: 'response_id', message: `No response "${id}": this gateway does not store responses (they are answered with store: false).` });
  app.get<{ Params: { id: string } }>('/v1/responses/:id', async (request) => {
    throw notStored(request.params.id);
  });
  app.delete<{ Params: { id: string } }>('/v1/responses/:id', async (request) => {
    throw notStored(request.params.id);
  });
};
