// The OpenAI-compatible routes: chat completions (JSON and SSE), legacy completions, embeddings and
// models. Each validates its body, strips the gateway's extension fields into the request context,
// and renders the canonical outcome back in OpenAI's shapes.
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import { addUsage, narrowToAllowedTools, type ChatChunk, type ChatMessage, type ChatRequest, type ChatResult, type ChoiceLogprobs, type TextCompletion } from '../../canonical/chat.js';
import { addSpend, deriveContext, newFacts, type ResponseFacts } from '../../gateway/context.js';
import type { Gateway } from '../../gateway/gateway.js';
import { anthropicModel, anthropicModelPage } from '../anthropic-models.js';
import { GatewayError, openAiErrorBody } from '../errors.js';
import { fromLegacyFunctions, toLegacyChunk, toLegacyResult, usesLegacyFunctions } from '../legacy-functions.js';
import { factHeaders } from '../headers.js';
import { createRequestContext, speaksAnthropic } from '../request-context.js';
import { sendOutcome, type Renderer } from '../respond.js';
import type { SseEvent } from '../sse.js';
import { validationError } from '../validation.js';
import { carryPromptTokens } from '../../routing/prompt-tokens.js';
import { describeRoute } from './docs.js';
import { chatCompletionSchema, completionSchema, embeddingSchema } from './openai-schema.js';
import { plainChatBody } from './plain-chat-body.js';

export interface OpenAiRouteOptions {
  gateway: Gateway;
  log: Logger;
}

/**
 * A chat completions body (the route's, a batch line's) validated and made canonical: the gateway's
 * extension fields apart, the deprecated functions API in tools form, and whether the answer goes
 * back in that API's form (the request declared `functions`).
 */
export function parseChatBody(raw: unknown): { req: ChatRequest; ext: { difficulty?: string; priority?: 'low' | 'normal' | 'high'; session_id?: string }; legacyAnswer: boolean } {
  // A plain body has no extension fields and no functions: it is made canonical as it is (one copy, dropping nulls).
  const plain = plainChatBody(raw);
  if (plain) return { req: chatRequestFrom(plain), ext: {}, legacyAnswer: false };
  const parsed = chatCompletionSchema.safeParse(raw);
  if (!parsed.success) throw validationError(parsed.error, raw);
  const { difficulty, priority, session_id, ...rest } = parsed.data;
  const legacy = usesLegacyFunctions(rest);
  const req = chatRequestFrom(allowedToolsChoice(legacy ? fromLegacyFunctions(rest) : rest));
  return { req, ext: { difficulty: difficulty === undefined ? undefined : String(difficulty), priority, session_id }, legacyAnswer: legacy && rest.functions !== undefined };
}

/**
 * `tool_choice: {type: "allowed_tools", allowed_tools: {mode, tools}}` made canonical, so every
 * provider honours it: `tools` narrowed to the allowed ones (in the request's order) and `mode`
 * (`auto` or `required`) as the choice. OpenAI offers it to keep a long tool list (and its prompt
 * cache) unchanged while turns allow different tools; the narrowing costs api.openai.com that cache
 * prefix, and no provider needs more. Naming a tool the request does not define is a 400.
 */
function allowedToolsChoice<T extends { tools?: { function: { name: string } }[] | null; tool_choice?: unknown }>(body: T): T {
  const choice = body.tool_choice as { type?: string; allowed_tools?: { mode: 'auto' | 'required'; tools: { function: { name: string } }[] } } | undefined;
  if (choice?.type !== 'allowed_tools' || !choice.allowed_tools) return body;
  const names = choice.allowed_tools.tools.map((t) => t.function.name);
  const narrowed = narrowToAllowedTools(body.tools ?? [], names);
  if ('undefinedAt' in narrowed) {
    throw new GatewayError('invalid_value', { param: 'tool_choice', message: `tool_choice.allowed_tools names "${names[narrowed.undefinedAt]}", which is not among the request's tools.` });
  }
  return { ...body, tools: narrowed.tools, tool_choice: choice.allowed_tools.mode };
}

/** Drops null-valued fields: OpenAI accepts `null` for "unset", the canonical model uses absence. */
export function withoutNulls<T extends object>(body: T): T {
  const out: Record<string, unknown> = {};
  for (const k in body) {
    const v = (body as Record<string, unknown>)[k];
    if (v !== null && v !== undefined) out[k] = v;
  }
  return out as T;
}

/**
 * A chat body as the canonical request: top-level nulls dropped, and in an assistant turn sent back
 * as history (Python's `message.model_dump()`) its null fields and response-only `annotations`.
 */
export function chatRequestFrom(body: object): ChatRequest {
  const req = withoutNulls(body) as ChatRequest;
  // The field the client's token limit came in, for an upstream that knows only one of the two (docs/providers.md).
  if (req.max_completion_tokens !== undefined) req.token_limit_field = 'max_completion_tokens';
  else if (req.max_tokens !== undefined) req.token_limit_field = 'max_tokens';
  // Only such a message is copied: the common request keeps its message objects as parsed.
  if (req.messages.some(needsCleaning)) req.messages = req.messages.map((m) => (needsCleaning(m) ? cleanMessage(m) : m));
  return req;
}

function needsCleaning(m: ChatMessage): boolean {
  // A tool turn's `name` (sent by LangChain.js and LangGraph) is accepted and not passed on.
  if (m.role === 'tool') return 'name' in m;
  if (m.role !== 'assistant') return false; // the schema allows nulls and annotations on assistant turns only
  if (Array.isArray(m.content) && m.content.some(isRefusalPart)) return true;
  for (const k in m) if (k === 'annotations' || k === 'reasoning_content' || (k !== 'content' && (m as unknown as Record<string, unknown>)[k] === null)) return true;
  return false;
}

/** OpenAI's `refusal` content part of an assistant turn (the schema admits it there only). */
const isRefusalPart = (p: { type: string }): boolean => p.type === 'refusal';

/**
 * Without `annotations`, `reasoning_content` and null fields (and a tool turn's `name`); `content: null` stays (an
 * assistant turn of tool calls). An assistant turn's refusal parts become its `refusal`, as OpenAI
 * answers it: the canonical content holds text and images only.
 */
function cleanMessage(m: ChatMessage): ChatMessage {
  const clean = { ...withoutNulls(m), content: m.content } as ChatMessage & { annotations?: unknown };
  delete clean.annotations;
  // An answer's thinking text sent back as it came (reasoning_content): not history any upstream reads.
  delete (clean as { reasoning_content?: unknown }).reasoning_content;
  if (m.role === 'tool') delete clean.name;
  if (Array.isArray(m.content) && m.content.some(isRefusalPart)) {
    const parts = m.content as unknown as Array<{ type: string; refusal?: string }>;
    const refusal = parts.filter(isRefusalPart).map((p) => p.refusal ?? '').join('');
    const rest = m.content.filter((p) => !isRefusalPart(p));
    clean.content = rest.length > 0 ? rest : null;
    clean.refusal = [clean.refusal, refusal].filter(Boolean).join('');
  }
  return clean;
}

/** A message or delta carrying what only the Anthropic route reports. */
const anthropicOnly = (m: { thinking_blocks?: unknown; anthropic_content?: unknown }): boolean => m.thinking_blocks !== undefined || m.anthropic_content !== undefined;

/**
 * The OpenAI shape of an answer: without `stop_sequence` and `paused`, Claude's signed `thinking_blocks` and its
 * blocks as sent (`anthropic_content`: server-tool blocks, citations), which only the Anthropic route
 * reports (the thinking's text stays, as `reasoning_content`, and the answer's text as `content`);
 * its message has `refusal`, null when there is none, as the spec's message requires (the openai
 * and simulator adapters set it; others' answers are copied to add it).
 */
export function openAiResult(r: ChatResult): ChatResult {
  let clean = true;
  for (const c of r.choices) if (c.stop_sequence !== undefined || c.paused !== undefined || anthropicOnly(c.message) || c.message.refusal === undefined) clean = false;
  if (clean) return r;
  return {
    ...r,
    choices: r.choices.map(({ stop_sequence: _stop, paused: _paused, ...c }) => {
      const { thinking_blocks: _t, anthropic_content: _a, ...message } = c.message;
      return { ...c, message: { ...message, refusal: message.refusal ?? null } };
    }),
  };
}

/** The OpenAI shape of a stream chunk: without what only the Anthropic route reports (as openAiResult). */
export function openAiChunk(chunk: ChatChunk): ChatChunk {
  let clean = true;
  for (const c of chunk.choices) if (c.stop_sequence !== undefined || c.paused !== undefined || anthropicOnly(c.delta)) clean = false;
  if (clean) return chunk;
  return {
    ...chunk,
    choices: chunk.choices.map(({ stop_sequence: _stop, paused: _paused, ...c }) => {
      if (!anthropicOnly(c.delta)) return c;
      const { thinking_blocks: _t, anthropic_content: _a, ...delta } = c.delta;
      return { ...c, delta };
    }),
  };
}

/** `legacyFunctions`: the request declared `functions`, so tool calls go back as `function_call`. */
export function chatRenderer(includeUsage: boolean, legacyFunctions = false): Renderer<ChatResult> {
  if (legacyFunctions) {
    return {
      json: (r) => toLegacyResult(openAiResult(r)),
      events: (chunks) => chatEvents(mapChunks(chunks, toLegacyChunk), includeUsage),
      errorEvent: (err) => ({ data: JSON.stringify(openAiErrorBody(err)) }),
    };
  }
  return {
    json: openAiResult,
    events: (chunks) => chatEvents(chunks, includeUsage),
    errorEvent: (err) => ({ data: JSON.stringify(openAiErrorBody(err)) }),
  };
}

async function* chatEvents(chunks: AsyncIterable<ChatChunk>, includeUsage: boolean): AsyncGenerator<SseEvent> {
  for await (const chunk of chunks) {
    if (chunk.usage && chunk.choices.length === 0) {
      if (includeUsage) yield { data: JSON.stringify(chunk) };
      continue;
    }
    const c = openAiChunk(chunk);
    yield { data: JSON.stringify(includeUsage ? { ...c, usage: null } : withoutUsage(c)) };
  }
  yield { data: '[DONE]' };
}

async function* mapChunks(chunks: AsyncIterable<ChatChunk>, fn: (c: ChatChunk) => ChatChunk): AsyncGenerator<ChatChunk> {
  for await (const c of chunks) yield fn(c);
}

function withoutUsage(chunk: ChatChunk): ChatChunk {
  if (chunk.usage === undefined) return chunk;
  const { usage: _usage, ...rest } = chunk;
  return rest;
}

export const openAiRoutes: FastifyPluginAsync<OpenAiRouteOptions> = async (app, { gateway, log }) => {
  const chatDoc = describeRoute({
    summary: 'Create a chat completion',
    description: 'OpenAI Chat Completions, JSON or SSE (`stream: true`). Gateway extensions: `difficulty`, `priority`, `session_id`.',
    tags: ['openai'],
    body: chatCompletionSchema,
  });
  app.post('/v1/chat/completions', chatDoc, async (request, reply) => {
    const { req, ext, legacyAnswer } = parseChatBody(request.body);
    const ctx = createRequestContext(request, reply, 'chat', log, { ...ext, metadata: req.metadata });
    request.ctx = ctx;
    const outcome = await gateway.handleChat(ctx, req);
    return sendOutcome(reply, ctx, outcome, req.stream === true, chatRenderer(req.stream_options?.include_usage === true, legacyAnswer));
  });

  const completionDoc = describeRoute({
    summary: 'Create a (legacy) text completion',
    description: 'The raw prompt goes to deployments that complete raw text (OpenAI-compatible servers, Ollama, local); other providers get it as one user message. `suffix`, `echo` with `logprobs` and `best_of` above 1 need the former; a prompt of token ids (an array of integers, or of such arrays) goes only to OpenAI-compatible servers that complete raw text.',
    tags: ['openai'],
    body: completionSchema,
  });
  app.post('/v1/completions', completionDoc, async (request, reply) => {
    const parsed = completionSchema.safeParse(request.body);
    if (!parsed.success) throw validationError(parsed.error, request.body);
    const { difficulty, priority, session_id, prompt, suffix, echo, best_of: bestOf, logprobs, ...rest } = parsed.data;
    const wantsLogprobs = logprobs !== undefined && logprobs !== null;
    // Each prompt as text, or as token ids (a prompt of ids has no text the gateway knows).
    const prompts: (string | number[])[] = typeof prompt === 'string' ? [prompt] : typeof prompt[0] === 'number' ? [prompt as number[]] : (prompt as string[] | number[][]);
    // No default length (OpenAI's legacy API has 16): an absent max_tokens leaves the budget to the
    // difficulty level when the request is scaled, as on /v1/inference (docs/compute.md).
    // `logprobs` as chat's pair too, so the request is routed only to deployments that return them.
    const body = { ...withoutNulls(rest), ...(wantsLogprobs ? { logprobs: true, top_logprobs: logprobs } : {}) };
    if (body.stream && prompts.length > 1) {
      throw new GatewayError('invalid_value', { param: 'prompt', message: 'Streaming takes a single prompt.' });
    }
    const best = bestOf ?? 1;
    if (best > 1 && body.stream) throw new GatewayError('invalid_value', { param: 'best_of', message: '`best_of` cannot be used with `stream`.' });
    if (bestOf != null && best < (body.n ?? 1)) throw new GatewayError('invalid_value', { param: 'best_of', message: '`best_of` must be at least `n`.' });
    // The prompt as raw text beside its user message: deployments that complete raw text send it as
    // it is, the others serve the message through chat and refuse what only the former can do.
    const raw = (p: string | number[]): TextCompletion => ({
      ...(typeof p === 'string' ? { prompt: p } : { prompt: '', prompt_ids: p }),
      ...(suffix ? { suffix } : {}),
      ...(echo ? { echo: true } : {}),
      ...(wantsLogprobs ? { logprobs } : {}),
      ...(best > 1 ? { best_of: best } : {}),
    });
    const ctx = createRequestContext(request, reply, 'completions', log, { difficulty, priority, session_id });
    request.ctx = ctx;
    const includeUsage = body.stream_options?.include_usage === true;
    /**
     * One prompt's canonical request: its text as the user message; a prompt of token ids has an
     * empty one (it is never sent: only deployments that take the ids answer it) and its ids' count
     * as its prompt tokens, for limits, budgets and context windows.
     */
    const requestFor = (p: string | number[], stream: false | undefined): ChatRequest => {
      const req = { ...body, ...(stream !== undefined ? { stream } : {}), messages: [{ role: 'user', content: typeof p === 'string' ? p : '' }], text_completion: raw(p) } as ChatRequest;
      if (typeof p !== 'string') carryPromptTokens(req, p.length);
      return req;
    };
    // The text put in front of an echoed answer whose deployment did not echo it (ids: the deployment always does).
    const echoed = (p: string | number[]) => (typeof p === 'string' ? p : '');
    if (prompts.length === 1) {
      const p = prompts[0] as string | number[];
      const req = requestFor(p, undefined);
      const outcome = await gateway.handleChat(ctx, req);
      return sendOutcome(reply, ctx, outcome, req.stream === true, completionRenderer(includeUsage, echo ? echoed(p) : undefined));
    }
    // Several prompts: one call each, choices numbered across prompts as OpenAI does. Each call is
    // admitted, limited and charged on its own facts (a shared one would charge each settle the
    // running total), which then add up into the request's for its headers and its ledger row. The
    // request counts once against request-rate limits, as at OpenAI (several prompts in one request
    // is how a client fits more work under its RPM): the first call takes it, the rest tokens only.
    const results: ChatResult[] = [];
    const counted = { ...ctx.options, requestCounted: true };
    for (const [i, p] of prompts.entries()) {
      const facts = newFacts();
      try {
        const part = deriveContext(ctx, i === 0 ? { facts } : { facts, options: counted });
        const outcome = await gateway.handleChat(part, requestFor(p, false));
        if (outcome.kind !== 'result') throw new Error('expected a JSON outcome');
        // Each prompt in front of its own choices, whether its deployment echoed it or not.
        results.push(echo ? withPromptInFront(outcome.result, echoed(p)) : outcome.result);
      } finally {
        addFacts(ctx.facts, facts);
      }
    }
    const merged: ChatResult = {
      ...(results[0] as ChatResult),
      choices: results.flatMap((r) => r.choices).map((c, index) => ({ ...c, index })),
      usage: results.reduce((u, r) => addUsage(u, r.usage), { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }),
    };
    return sendOutcome(reply, ctx, { kind: 'result', result: merged }, false, completionRenderer(includeUsage));
  });

  app.post('/v1/embeddings', describeRoute({ summary: 'Create embeddings', tags: ['openai'], body: embeddingSchema }), async (request, reply) => {
    const parsed = embeddingSchema.safeParse(request.body);
    if (!parsed.success) throw validationError(parsed.error, request.body);
    const ctx = createRequestContext(request, reply, 'embeddings', log);
    request.ctx = ctx;
    const result = await gateway.embed(ctx, parsed.data);
    reply.headers(factHeaders(ctx.facts));
    if (parsed.data.encoding_format === 'base64') {
      return { ...result, data: result.data.map((d) => ({ ...d, embedding: Array.isArray(d.embedding) ? floatsToBase64(d.embedding) : d.embedding })) };
    }
    return result;
  });

  // Both APIs' model routes share these paths: a caller sending `anthropic-version` (the Anthropic
  // SDK) gets Anthropic's shapes, answers and errors alike (anthropic-models.ts).
  const modelsRoute = (summary: string) => ({ ...describeRoute({ summary, tags: ['openai', 'anthropic'] }), config: { dialect: 'by-header' as const } });

  app.get('/v1/models', modelsRoute('List models'), async (request, reply) => {
    const ctx = createRequestContext(request, reply, 'models', log);
    const models = await gateway.listModels(ctx);
    if (speaksAnthropic(request)) return anthropicModelPage(models, request.query as Record<string, unknown>);
    return { object: 'list', data: models };
  });

  app.get<{ Params: { id: string } }>('/v1/models/*', modelsRoute('Retrieve a model (ids may contain slashes)'), async (request, reply) => {
    const id = (request.params as Record<string, string>)['*'] ?? '';
    const ctx = createRequestContext(request, reply, 'models', log);
    const model = (await gateway.listModels(ctx)).find((m) => m.id === id);
    if (!model) throw new GatewayError('model_not_found', { param: 'model', message: `The model "${id}" does not exist.` });
    return speaksAnthropic(request) ? anthropicModel(model) : model;
  });
};

/**
 * Facts of one of several calls made for a request, added into the request's: cost, attempts,
 * latency and usage summed; who answered, the last call's; a cache hit only if every call was one.
 */
function addFacts(total: ResponseFacts, f: ResponseFacts): void {
  addSpend(total, f);
  if (f.savedUsd !== undefined) total.savedUsd = (total.savedUsd ?? 0) + f.savedUsd;
  if (f.cache !== undefined) total.cache = total.cache === undefined || total.cache === f.cache ? f.cache : 'miss';
  if (f.provider !== undefined) total.provider = f.provider;
  if (f.model !== undefined) total.model = f.model;
  if (f.deployment !== undefined) total.deployment = f.deployment;
  if (f.route !== undefined) total.route = f.route;
  if (f.headers) total.headers = { ...total.headers, ...f.headers };
}

/** A legacy completion's id: the chat answer's, with the `cmpl-` prefix legacy clients expect. */
const completionId = (chatId: string) => chatId.replace(/^chatcmpl-/, 'cmpl-');

/** A result whose choices' text begins with the prompt (`echo`): as it is when its deployment echoed it. */
function withPromptInFront(r: ChatResult, prompt: string): ChatResult {
  if (r.prompt_echoed) return r;
  return { ...r, prompt_echoed: true, choices: r.choices.map((c) => ({ ...c, message: { ...c.message, content: prompt + (c.message.content ?? '') } })) };
}

/**
 * The legacy completions shape of an answer. `echo`: the prompt, put in front of each choice's text
 * unless the deployment already did (`prompt_echoed`: a raw-text completion with `echo`). A choice's
 * `logprobs` are the upstream's legacy ones as sent (`text_logprobs`), else chat's rewritten.
 */
function completionRenderer(includeUsage: boolean, echo?: string): Renderer<unknown> {
  return {
    json: (r) => ({
      id: completionId(r.id),
      object: 'text_completion',
      created: r.created,
      model: r.model,
      choices: r.choices.map((c) => ({
        text: (echo !== undefined && !r.prompt_echoed ? echo : '') + (c.message.content ?? ''),
        index: c.index,
        logprobs: c.text_logprobs ?? legacyLogprobs(c.logprobs, 0),
        finish_reason: c.finish_reason,
      })),
      usage: r.usage,
      ...(r.system_fingerprint ? { system_fingerprint: r.system_fingerprint } : {}),
    }),
    async *events(chunks) {
      // The choices whose first piece went out (each starts with the echoed prompt).
      const started = new Set<number>();
      // Per choice, where its next piece starts in the text (the legacy logprobs' text_offset).
      const offsets = new Map<number, number>();
      // A stream keeps one id: worked out from its first chunk, not on every chunk.
      let id: string | undefined;
      for await (const chunk of chunks) {
        id ??= completionId(chunk.id);
        if (chunk.usage && chunk.choices.length === 0) {
          if (includeUsage) yield { data: JSON.stringify({ id, object: 'text_completion', created: chunk.created, model: chunk.model, choices: [], usage: chunk.usage }) };
          continue;
        }
        for (const c of chunk.choices) {
          const piece = c.delta.content ?? '';
          if (!piece && !c.finish_reason && !c.text_logprobs) continue;
          const offset = offsets.get(c.index) ?? 0;
          offsets.set(c.index, offset + piece.length);
          const front = echo !== undefined && !chunk.prompt_echoed && !started.has(c.index) ? echo : '';
          yield {
            data: JSON.stringify({
              id,
              object: 'text_completion',
              created: chunk.created,
              model: chunk.model,
              choices: [{ text: front + piece, index: c.index, logprobs: c.text_logprobs ?? legacyLogprobs(c.logprobs, offset), finish_reason: c.finish_reason }],
              // As on the chat route: with include_usage every chunk but the last carries `usage: null`.
              ...(includeUsage ? { usage: null } : {}),
            }),
          };
          started.add(c.index);
        }
      }
      yield { data: '[DONE]' };
    },
    errorEvent: (err) => ({ data: JSON.stringify(openAiErrorBody(err)) }),
  };
}

/** The legacy completions shape of log-probabilities: parallel arrays, alternatives as token → logprob maps. */
export function legacyLogprobs(lp: ChoiceLogprobs | null | undefined, startOffset: number) {
  const tokens = lp?.content;
  if (!tokens) return null;
  const textOffset: number[] = [];
  let offset = startOffset;
  for (const t of tokens) {
    textOffset.push(offset);
    offset += t.token.length;
  }
  return {
    tokens: tokens.map((t) => t.token),
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: tokens.some((t) => t.top_logprobs.length > 0) ? tokens.map((t) => Object.fromEntries(t.top_logprobs.map((a) => [a.token, a.logprob]))) : null,
    text_offset: textOffset,
  };
}

function floatsToBase64(values: number[]): string {
  return Buffer.from(new Float32Array(values).buffer).toString('base64');
}
