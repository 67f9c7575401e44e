// OpenAI's Responses API (POST /v1/responses) over any provider behind the gateway: the official
// SDK's `client.responses.create` (JSON and stream) works unmodified. Responses are stored unless
// `store: false` (response-store.ts: Redis when configured, else this process), so
// `previous_response_id` continues a conversation and GET / DELETE /v1/responses/{id} work (GET with
// `stream=true` replays the stored answer as its event stream), as do GET /v1/responses/{id}/input_items
// and POST /v1/responses/input_tokens (the gateway's tokenizer), within the tenant that made them. `truncation: "auto"` drops the oldest turns to fit the model's context
// window when its deployments declare one.
import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { z } from 'zod';
import { requestedMaxTokens, type ChatMessage } from '../../canonical/chat.js';
import { ANONYMOUS } from '../../gateway/context.js';
import type { Gateway } from '../../gateway/gateway.js';
import { countMessageTokens, countPromptTokens } from '../../providers/tokens.js';
import { carryPromptTokens } from '../../routing/prompt-tokens.js';
import { GatewayError } from '../errors.js';
import { createRequestContext } from '../request-context.js';
import { sendOutcome } from '../respond.js';
import { MAX_ENTRY_BYTES, RESPONSE_TTL_S, type StoredResponse } from '../response-store.js';
import {
  ResponseEventWriter,
  assistantTurn,
  canonicalToResponse,
  createResponseSchema,
  inputItemIds,
  inputItemsOf,
  replayEvents,
  responsesToCanonical,
  tokenCountsSchema,
  tokenCountsToCanonical,
  truncateConversation,
  type ResponseObject,
} from '../responses-format.js';
import { writeSse, type SseEvent } from '../sse.js';
import { validationError } from '../validation.js';
import { describeRoute } from './docs.js';

export interface ResponsesRouteOptions {
  gateway: Gateway;
  log: Logger;
}

const tenantOf = (request: FastifyRequest) => (request.tenant ?? ANONYMOUS).id;

/**
 * A stored entry as this route writes it, with where the request's own input is in `messages`
 * (`from` to `to`) and its items' ids, for GET /v1/responses/{id}/input_items (the stores keep the
 * whole JSON value; an entry written before this was kept lists no items).
 */
type StoredEntry = StoredResponse & { input?: { from: number; to: number; ids: string[] } };

/** GET /v1/responses/{id}/input_items's query, as OpenAI's listInputItems defines it. */
const inputItemsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).optional(),
  order: z.enum(['asc', 'desc']).optional(),
  after: z.string().optional(),
  include: z.unknown().optional(),
});

/** GET /v1/responses/{id}'s query: `stream=true` replays the stored response as its event stream. */
const retrieveQuery = z.object({
  stream: z.enum(['true', 'false']).optional(),
  starting_after: z.coerce.number().int().min(-1).optional(),
  include_obfuscation: z.enum(['true', 'false']).optional(),
  include: z.unknown().optional(),
});

async function* events(source: Iterable<SseEvent>): AsyncGenerator<SseEvent> {
  yield* source;
}

/**
 * The largest context window among the model's deployments (routing may pick any that fits), or
 * undefined when one declares none (it takes any prompt) or the model is unknown (handleChat says so).
 */
function contextWindowOf(gateway: Gateway, model: string): number | undefined {
  let deployments;
  try {
    deployments = gateway.catalog.resolve(model).deployments;
  } catch {
    return undefined;
  }
  let window = 0;
  for (const d of deployments) {
    if (d.contextWindow === undefined) return undefined;
    window = Math.max(window, d.contextWindow);
  }
  return window || undefined;
}

export const responsesRoutes: FastifyPluginAsync<ResponsesRouteOptions> = async (app, { gateway, log }) => {
  const store = gateway.responses;
  /** A stored response, if it exists and belongs to this tenant (another tenant's reads as missing). */
  const ownStored = async (id: string, tenant: string): Promise<StoredEntry | undefined> => {
    const stored: StoredEntry | undefined = await store.get(id);
    return stored && stored.tenant === tenant ? stored : undefined;
  };
  /** The conversation a `previous_response_id` continues (none without one); 404 when it is not the caller's. */
  const previousMessages = async (id: string | null | undefined, tenant: string): Promise<ChatMessage[]> => {
    if (!id) return [];
    const previous = await ownStored(id, tenant);
    if (!previous) throw new GatewayError('previous_response_not_found', { param: 'previous_response_id', message: `Previous response with id '${id}' not found.` });
    return previous.messages;
  };
  const doc = describeRoute({
    summary: 'Create a model response (OpenAI Responses API)',
    description: `Input items become a chat conversation for whichever provider serves the model; JSON or SSE (\`stream: true\`) with the Responses event sequence. Stored for ${RESPONSE_TTL_S / 3600} h unless \`store: false\` (an entry over ${MAX_ENTRY_BYTES / 1024 / 1024} MiB is not stored and answers \`store: false\`), so \`previous_response_id\` continues a conversation; \`truncation: "auto"\` drops the oldest turns to fit the model's context window. \`conversation\` objects and hosted tools are refused.`,
    tags: ['openai'],
    body: createResponseSchema,
  });

  app.post('/v1/responses', doc, async (request, reply) => {
    const { body, req, echo, instructions, input } = responsesToCanonical(request.body);
    const tenant = tenantOf(request);
    // The earlier conversation goes between this request's instructions and its input (the earlier
    // instructions are not carried over, as in OpenAI's API).
    const history = await previousMessages(body.previous_response_id, tenant);
    if (history.length > 0) {
      // A response that ended in function calls continues with their outputs, as OpenAI requires.
      const calls = history[history.length - 1]?.tool_calls ?? [];
      const answered = new Set(input.filter((m) => m.role === 'tool').map((m) => m.tool_call_id));
      const missing = calls.find((c) => !answered.has(c.id));
      if (missing) throw new GatewayError('invalid_value', { param: 'input', message: `No tool output found for function call ${missing.id}.` });
    }
    const lead = instructions ? [instructions] : [];
    let conversation = [...history, ...input];
    const inputCount = input.length;
    const window = body.truncation === 'auto' ? contextWindowOf(gateway, req.model) : undefined;
    /** The prompt's tokens, when truncation counted them. */
    let promptTokens: number | undefined;
    if (window !== undefined) {
      // As routing counts it (routing/eligibility.ts): the prompt with its tools, plus max tokens.
      // The count is a sum over messages: each is tokenized once, and a tail's count is a suffix sum.
      const leadTokens = countPromptTokens(lead, req.tools);
      const budget = window - (requestedMaxTokens(req) ?? 0) - leadTokens;
      const fromEnd = [0];
      for (let i = conversation.length - 1; i >= 0; i--) fromEnd.push((fromEnd[fromEnd.length - 1] as number) + countMessageTokens(conversation[i] as ChatMessage));
      conversation = truncateConversation(conversation, (tail) => (fromEnd[tail.length] as number) <= budget);
      // countPromptTokens is that same sum, so the kept prompt's count is known without tokenizing it again.
      promptTokens = leadTokens + (fromEnd[conversation.length] as number);
    }
    // What is stored is what the model saw: a truncated chain stays within the window.
    req.messages = [...lead, ...conversation];
    // Admission's reservation and routing's context-window check use this count (src/routing/prompt-tokens.ts).
    if (promptTokens !== undefined) carryPromptTokens(req, promptTokens);
    const ctx = createRequestContext(request, reply, 'responses', log, { difficulty: body.difficulty, priority: body.priority, session_id: body.session_id, metadata: body.metadata });
    request.ctx = ctx;
    const outcome = await gateway.handleChat(ctx, req);

    // Stored before the client hears of the response, so an immediate continuation (on any replica)
    // finds it; an entry the store refused (too large) or a failed write answers store: false.
    const save = async (response: ResponseObject) => {
      if (!echo.store) return;
      const answer = assistantTurn(response.output);
      const messages = [...conversation, ...(answer ? [answer] : [])];
      // The input is the conversation's tail (truncation may have cut into it, never after it).
      const input = { from: Math.max(0, conversation.length - inputCount), to: conversation.length, ids: inputItemIds(body.input) };
      const entry: StoredEntry = { tenant, messages, response, input };
      let reason: string | undefined;
      try {
        const put = await store.put(response.id, entry);
        if (!put.stored) reason = put.reason;
      } catch (err) {
        reason = (err as Error).message;
      }
      if (reason === undefined) return;
      ctx.log.warn({ err: reason, response: response.id }, 'could not store a response');
      response.store = false;
    };
    const writer = new ResponseEventWriter(echo, save);
    return sendOutcome(reply, ctx, outcome, req.stream === true, {
      json: async (result) => {
        const response = canonicalToResponse(result, echo);
        await save(response);
        return response;
      },
      events: (chunks) => writer.events(chunks),
      errorEvent: (err) => writer.error(err),
    });
  });

  const notFound = (id: string) => new GatewayError('not_found', { param: 'response_id', message: `No response with id '${id}' (responses are kept ${RESPONSE_TTL_S / 3600} h, and not at all with store: false).` });
  app.get<{ Params: { id: string } }>(
    '/v1/responses/:id',
    describeRoute({ summary: 'Retrieve a stored response (`stream=true`: replayed as its event stream, `starting_after` a sequence number)', tags: ['openai'] }),
    async (request, reply) => {
      const parsed = retrieveQuery.safeParse(request.query ?? {});
      if (!parsed.success) throw validationError(parsed.error, request.query);
      const stored = await ownStored(request.params.id, tenantOf(request));
      if (!stored) throw notFound(request.params.id);
      if (parsed.data.stream !== 'true') return stored.response;
      // The whole answer is known: its events go out at once, as a streamed create would have sent them.
      const before = reply.getHeaders() as OutgoingHttpHeaders;
      reply.hijack();
      await writeSse(reply.raw, events(replayEvents(stored.response, parsed.data.starting_after)), { headers: before, onError: () => undefined });
      return undefined;
    },
  );
  app.get<{ Params: { id: string } }>('/v1/responses/:id/input_items', describeRoute({ summary: "List a stored response's input items", tags: ['openai'] }), async (request) => {
    const parsed = inputItemsQuery.safeParse(request.query ?? {});
    if (!parsed.success) throw validationError(parsed.error, request.query);
    const { limit = 20, order = 'desc', after } = parsed.data;
    const stored = await ownStored(request.params.id, tenantOf(request));
    if (!stored) throw notFound(request.params.id);
    const items = stored.input ? inputItemsOf(stored.messages.slice(stored.input.from, stored.input.to), stored.input.ids) : [];
    if (order === 'desc') items.reverse();
    let from = 0;
    if (after !== undefined) {
      const at = items.findIndex((item) => item.id === after);
      if (at < 0) throw new GatewayError('invalid_value', { param: 'after', message: `No input item with id '${after}' in response '${request.params.id}'.` });
      from = at + 1;
    }
    const data = items.slice(from, from + limit);
    return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null, has_more: from + limit < items.length };
  });
  app.post('/v1/responses/input_tokens', describeRoute({ summary: 'Count the input tokens of a Responses request', tags: ['openai'], body: tokenCountsSchema }), async (request) => {
    const { previous_response_id, instructions, input, tools } = tokenCountsToCanonical(request.body);
    const history = await previousMessages(previous_response_id, tenantOf(request));
    // Counted as routing and /v1/messages/count_tokens count a prompt: the gateway's tokenizer.
    const messages = [...(instructions ? [instructions] : []), ...history, ...input];
    return { object: 'response.input_tokens', input_tokens: countPromptTokens(messages, tools.length ? tools : undefined) };
  });
  app.delete<{ Params: { id: string } }>('/v1/responses/:id', describeRoute({ summary: 'Delete a stored response', tags: ['openai'] }), async (request) => {
    const stored = await ownStored(request.params.id, tenantOf(request));
    if (!stored) throw notFound(request.params.id);
    await store.delete(request.params.id);
    return { id: request.params.id, object: 'response', deleted: true };
  });
};
