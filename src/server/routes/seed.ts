// The seeds' own endpoints over the same pipeline as the OpenAI routes: seed 001's `POST /v1/infer`
// and `POST /v1/infer/stream` (SSE), seed 002's `POST /v1/inference` (InferenceRequest ->
// InferenceResponse) and `POST /v1/batch` (one result or error per item; one failure never fails the
// batch). Requests that name no difficulty get `test_time_scaling.default_difficulty` (`auto`: estimated
// from the prompt), seed 000's automatic adjustment.
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { ChatChunk, ChatMessage, ChatRequest, ChatResult } from '../../canonical/chat.js';
import { collectStream } from '../../canonical/convert.js';
import { addSpend, newFacts, type RequestContext, type ResponseFacts } from '../../gateway/context.js';
import type { Gateway } from '../../gateway/gateway.js';
import type { InferenceConfig } from '../../scaling/config.js';
import { GatewayError, openAiErrorBody, toGatewayError } from '../errors.js';
import { factHeaders } from '../headers.js';
import { createRequestContext, parseCacheControl } from '../request-context.js';
import { sendOutcome, type Renderer } from '../respond.js';
import type { SseEvent } from '../sse.js';
import { validationError } from '../validation.js';
import { describeRoute } from './docs.js';
import { inferenceRequestSchema, inferSchema, type InferBody, type InferenceRequestBody, type InferenceResponse } from './seed-schema.js';

export interface SeedRouteOptions {
  gateway: Gateway;
  log: Logger;
  inference: InferenceConfig;
}

export const seedRoutes: FastifyPluginAsync<SeedRouteOptions> = async (app, { gateway, log, inference }) => {
  const defaultModel = inference.default_model ?? gateway.catalog.groupNames()[0] ?? 'default';
  const defaultDifficulty = inference.test_time_scaling.default_difficulty;
  const difficultyOf = (value: string | number | undefined): string => (value === undefined ? defaultDifficulty : String(value).toLowerCase());
  const refuseStream = () => {
    if (!inference.streaming) throw new GatewayError('invalid_value', { param: 'stream', message: 'Streaming is turned off on this gateway (inference.streaming: false).' });
  };

  const infer = (stream: boolean) => async (request: FastifyRequest, reply: FastifyReply) => {
    const parsed = inferSchema.safeParse(request.body);
    if (!parsed.success) throw validationError(parsed.error, request.body);
    const body = parsed.data;
    if (stream || body.stream) refuseStream();
    const ctx = createRequestContext(request, reply, 'infer', log, { difficulty: difficultyOf(body.difficulty), aggregation: body.aggregation, priority: body.priority, session_id: body.session_id });
    request.ctx = ctx;
    const req = inferToChat(body, stream || body.stream === true);
    const outcome = await gateway.handleChat(ctx, req);
    return sendOutcome(reply, ctx, outcome, req.stream === true, inferRenderer(ctx));
  };
  const inferDoc = (summary: string) => describeRoute({ summary, tags: ['seed'], body: inferSchema, description: 'Seed 001: `{model, prompt, params}`. SSE events: `token` ({"text"}) then `done` (the full answer). See docs/compute.md.' });
  app.post('/v1/infer', inferDoc('Run one inference (seed 001)'), infer(false));
  app.post('/v1/infer/stream', inferDoc('Stream one inference as SSE (seed 001)'), infer(true));

  const inferenceDoc = describeRoute({ summary: 'Run one InferenceRequest (seed 002)', tags: ['seed'], body: inferenceRequestSchema, description: 'Answers an InferenceResponse: response, provider, model, latency (ms), tokens_used, cost (USD), cache_hit, request_id, created_at, metadata.' });
  app.post('/v1/inference', inferenceDoc, async (request, reply) => {
    const parsed = inferenceRequestSchema.safeParse(request.body);
    if (!parsed.success) throw validationError(parsed.error, request.body);
    const body = parsed.data;
    if (body.stream) refuseStream();
    const ctx = createRequestContext(request, reply, 'inference', log, { difficulty: difficultyOf(body.difficulty), aggregation: body.aggregation, priority: body.priority, session_id: body.session_id, metadata: body.metadata });
    request.ctx = ctx;
    const req = inferenceToChat(body, defaultModel, inference.temperature);
    // The body has no `model`: the ledger records the one asked for when none answered (a refusal).
    request.ledgerModel = req.model;
    const outcome = await gateway.handleChat(ctx, req);
    return sendOutcome(reply, ctx, outcome, body.stream, inferenceRenderer(ctx, body));
  });

  const batchDoc = describeRoute({ summary: 'Run a list of InferenceRequests (seed 002)', tags: ['seed'], description: 'A JSON array (or {"requests": [...]}); one result or error per item, in order.' });
  app.post('/v1/batch', batchDoc, async (request, reply) => {
    const raw = request.body as unknown;
    const items = Array.isArray(raw) ? raw : raw && typeof raw === 'object' && Array.isArray((raw as { requests?: unknown }).requests) ? (raw as { requests: unknown[] }).requests : undefined;
    if (!items) throw new GatewayError('invalid_type', { param: 'requests', message: 'Send a JSON array of InferenceRequest objects (or {"requests": [...]}).' });
    if (items.length === 0) throw new GatewayError('invalid_value', { param: 'requests', message: 'The batch is empty.' });
    if (items.length > inference.batch.max_items) {
      throw new GatewayError('invalid_value', { param: 'requests', message: `A batch takes at most ${inference.batch.max_items} requests; this one has ${items.length}.` });
    }
    const parent = createRequestContext(request, reply, 'batch', log);
    request.ctx = parent;
    const results: BatchItemResult[] = new Array<BatchItemResult>(items.length);
    const mixed = new Set<NamedFact>();
    let nextIndex = 0;
    const worker = async () => {
      while (nextIndex < items.length) {
        const index = nextIndex++;
        results[index] = await runBatchItem(gateway, parent, request, index, items[index], { model: defaultModel, temperature: inference.temperature, difficultyOf }, mixed);
      }
    };
    // A client that leaves mid-batch closes the response before the items end (those running are
    // cancelled by its signal): the batch owes its items until then, so its ledger row, log line and
    // metrics wait for them and show what their budgets were charged, not $0.
    const run = Promise.all(Array.from({ length: Math.min(inference.batch.concurrency, items.length) }, worker));
    parent.settlements?.track(run);
    await run;
    const failed = results.filter((r) => r.status === 'error').length;
    reply.headers(factHeaders(parent.facts));
    return { object: 'batch.result', request_id: parent.id, total: items.length, succeeded: items.length - failed, failed, results };
  });
};

type BatchItemResult =
  | { index: number; status: 'success'; result: InferenceResponse }
  | { index: number; status: 'error'; error: Record<string, unknown> & { status: number } };

interface ItemDefaults {
  model: string;
  temperature: number;
  difficultyOf: (value: string | number | undefined) => string;
}

type NamedFact = 'model' | 'provider' | 'deployment';

/**
 * Adds what one item spent into the batch request's own facts (its ledger row, its request metrics
 * and log line, its x-inferenceflow-* headers) as the item ends: usage, cost, attempts and upstream
 * latency summed. Who answered is the batch's only while every item that answered agrees; once two
 * differ it is left unset for good (`mixed`): a row or label names one model, provider or deployment,
 * and joined names would be misattributed by /v1/spend and take slots of the bounded labels. Each
 * item's own provider and model are in its result.
 */
function addItemFacts(total: ResponseFacts, f: ResponseFacts, mixed: Set<NamedFact>): void {
  addSpend(total, f);
  for (const name of ['model', 'provider', 'deployment'] as const) {
    const value = f[name];
    if (value === undefined || mixed.has(name) || total[name] === value) continue;
    if (total[name] === undefined) {
      total[name] = value;
    } else {
      delete total[name];
      mixed.add(name);
    }
  }
}

async function runBatchItem(
  gateway: Gateway,
  parent: RequestContext,
  request: FastifyRequest,
  index: number,
  item: unknown,
  defaults: ItemDefaults,
  mixed: Set<NamedFact>,
): Promise<BatchItemResult> {
  let ctx: RequestContext | undefined;
  try {
    const parsed = inferenceRequestSchema.safeParse(item);
    if (!parsed.success) throw validationError(parsed.error, item);
    const body = { ...parsed.data, stream: false };
    ctx = itemContext(parent, request, index, body, defaults.difficultyOf(body.difficulty));
    const outcome = await gateway.handleChat(ctx, inferenceToChat(body, defaults.model, defaults.temperature));
    const result = outcome.kind === 'result' ? outcome.result : await collectStream(outcome.stream);
    return { index, status: 'success', result: toInferenceResponse(ctx, result, body) };
  } catch (err) {
    const e = toGatewayError(err);
    if (e.status >= 500) parent.log.warn({ index, code: e.code, err: e.message }, 'batch item failed');
    return { index, status: 'error', error: { ...openAiErrorBody(e).error, status: e.status } };
  } finally {
    // Whatever the item spent counts for the batch, also when it fails after spending.
    if (ctx) addItemFacts(parent.facts, ctx.facts, mixed);
  }
}

/**
 * A batch item's own context: its own id, options and facts; the batch's tenant and signal. The
 * item's `aggregation` wins over the batch request's `x-inferenceflow-aggregation` header.
 */
function itemContext(parent: RequestContext, request: FastifyRequest, index: number, body: InferenceRequestBody, difficulty: string): RequestContext {
  return {
    ...parent,
    id: `${parent.id}:${index}`,
    startedAt: performance.now(),
    endpoint: 'batch',
    log: parent.log.child({ item: index }),
    options: {
      priority: body.priority,
      cache: parseCacheControl(request.headers),
      metadata: body.metadata,
      difficulty,
      ...((body.aggregation ?? parent.options.aggregation) ? { aggregation: body.aggregation ?? parent.options.aggregation } : {}),
      ...(body.session_id ? { sessionId: body.session_id } : {}),
    },
    facts: newFacts(),
  };
}

function inferToChat(body: InferBody, stream: boolean): ChatRequest {
  const p = body.params;
  const messages: ChatMessage[] = body.system ? [{ role: 'system', content: body.system }] : [];
  messages.push({ role: 'user', content: body.prompt });
  const req: ChatRequest = { model: body.model, messages, stream };
  if (p.max_new_tokens !== undefined) req.max_tokens = p.max_new_tokens;
  if (p.temperature !== undefined) req.temperature = p.temperature;
  if (p.do_sample === false) req.temperature = 0;
  if (p.top_p !== undefined) req.top_p = p.top_p;
  if (p.top_k !== undefined) req.top_k = p.top_k;
  if (p.stop !== undefined) req.stop = p.stop;
  if (p.seed !== undefined) req.seed = p.seed;
  if (p.presence_penalty !== undefined) req.presence_penalty = p.presence_penalty;
  if (p.frequency_penalty !== undefined) req.frequency_penalty = p.frequency_penalty;
  if (stream) req.stream_options = { include_usage: true };
  return req;
}

function inferenceToChat(body: InferenceRequestBody, defaultModel: string, defaultTemperature: number): ChatRequest {
  const req: ChatRequest = {
    model: body.model_preference ?? defaultModel,
    messages: [{ role: 'user', content: body.prompt }],
    temperature: body.temperature ?? defaultTemperature,
    stream: body.stream,
  };
  // Unset max_tokens takes the difficulty level's budget (the seed's fixed default of 1000 would
  // defeat seed 000's per-level token budgets).
  if (body.max_tokens != null) req.max_tokens = body.max_tokens;
  if (body.user_id) req.user = body.user_id;
  if (body.stream) req.stream_options = { include_usage: true };
  return req;
}

/** Gateway facts shared by both seed response shapes. */
function factsMetadata(ctx: RequestContext, result: ChatResult): Record<string, unknown> {
  const f = ctx.facts;
  const choice = result.choices[0];
  return {
    usage: result.usage,
    finish_reason: choice?.finish_reason ?? null,
    deployment: f.deployment ?? null,
    cache: f.cache ?? 'miss',
    ...(f.similarity !== undefined ? { similarity: f.similarity } : {}),
    upstream_latency_ms: round2(f.latencyMs ?? 0),
    passes: f.passes ?? 1,
    ...(f.scaling ? { scaling: f.scaling } : {}),
    ...(f.route ? { route: f.route } : {}),
  };
}

export function toInferenceResponse(ctx: RequestContext, result: ChatResult, body: Pick<InferenceRequestBody, 'user_id' | 'priority' | 'metadata'>): InferenceResponse {
  const f = ctx.facts;
  const cacheHit = f.cache === 'exact' || f.cache === 'semantic';
  return {
    response: result.choices[0]?.message.content ?? '',
    provider: f.provider ?? (cacheHit ? 'cache' : 'unknown'),
    model: f.model ?? result.model,
    latency: round2(performance.now() - ctx.startedAt),
    tokens_used: result.usage.total_tokens,
    cost: f.costUsd,
    cache_hit: cacheHit,
    request_id: ctx.id,
    created_at: new Date().toISOString(),
    metadata: {
      ...factsMetadata(ctx, result),
      user_id: body.user_id ?? ctx.tenant.userId ?? ctx.tenant.id,
      priority: body.priority,
      request_metadata: body.metadata,
    },
  };
}

function inferenceRenderer(ctx: RequestContext, body: InferenceRequestBody): Renderer<InferenceResponse> {
  return {
    json: (result) => toInferenceResponse(ctx, result, body),
    events: (chunks) => tokenEvents(chunks, (result) => toInferenceResponse(ctx, result, body)),
    errorEvent: (err) => ({ event: 'error', data: JSON.stringify(openAiErrorBody(err)) }),
  };
}

/** Seed 001's answer: the generated text plus what it took. */
function inferResponse(ctx: RequestContext, result: ChatResult): Record<string, unknown> {
  const f = ctx.facts;
  return {
    id: ctx.id,
    object: 'inference',
    created: Math.floor(Date.now() / 1000),
    model: f.model ?? result.model,
    provider: f.provider ?? null,
    output: result.choices[0]?.message.content ?? '',
    finish_reason: result.choices[0]?.finish_reason ?? null,
    usage: result.usage,
    latency_ms: round2(performance.now() - ctx.startedAt),
    cost_usd: f.costUsd,
    cache: f.cache ?? 'miss',
    passes: f.passes ?? 1,
    ...(f.scaling ? { scaling: f.scaling } : {}),
  };
}

function inferRenderer(ctx: RequestContext): Renderer<Record<string, unknown>> {
  return {
    json: (result) => inferResponse(ctx, result),
    events: (chunks) => tokenEvents(chunks, (result) => inferResponse(ctx, result)),
    errorEvent: (err) => ({ event: 'error', data: JSON.stringify(openAiErrorBody(err)) }),
  };
}

/**
 * The seeds' SSE dialect: `event: token` with `{"text"}` per piece of text as it arrives, then one
 * `event: done` whose data is the full response object (facts are final by then).
 */
async function* tokenEvents(chunks: AsyncIterable<ChatChunk>, final: (result: ChatResult) => unknown): AsyncGenerator<SseEvent> {
  const seen: ChatChunk[] = [];
  for await (const chunk of chunks) {
    seen.push(chunk);
    for (const c of chunk.choices) {
      if (c.index === 0 && c.delta.content) yield { event: 'token', data: JSON.stringify({ text: c.delta.content }) };
    }
  }
  const result = await collectStream(iterateAll(seen));
  yield { event: 'done', data: JSON.stringify(final(result)) };
}

async function* iterateAll(chunks: ChatChunk[]): AsyncGenerator<ChatChunk> {
  yield* chunks;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
