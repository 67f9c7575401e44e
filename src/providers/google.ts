// Google Gemini API adapter (generativelanguage.googleapis.com, v1beta): generateContent,
// streamGenerateContent over SSE, batchEmbedContents and the model list, as raw HTTP over one
// keep-alive pool. Wire shapes and mappings live in google-mapping.ts; this file does the calls,
// the stream state and the Gemini-specific touches on errors (RetryInfo, invalid API keys).
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { ChatChunk, ChatChoice, ChatRequest, ChatResult, ChunkChoice, Usage } from '../canonical/chat.js';
import { embeddingInputs, type EmbeddingRequest, type EmbeddingResult } from '../canonical/embeddings.js';
import type { ProviderConfig } from '../config/schema.js';
import { UpstreamError, kindForStatus, type UpstreamErrorKind } from './errors.js';
import {
  GeminiMappingError,
  ThoughtSignatureCache,
  geminiResponseSchema,
  mapGeminiFinish,
  mapGeminiLogprobs,
  mapGeminiUsage,
  readParts,
  saidNothing,
  toGeminiRequest,
  type GeminiRequest,
  type GeminiCandidate,
  type GeminiResponse,
} from './google-mapping.js';
import { UpstreamHttp, type StreamBody } from './http.js';
import { embedInSlices } from './embedding-slices.js';
import { primeStream } from './stream-priming.js';
import { sseEvents } from './stream-parsers.js';
import { countTextTokens } from './tokens.js';
import type { CallOptions, ProviderAdapter } from './types.js';
import { asChatRequest } from './text-completion.js';

export const GOOGLE_DEFAULT_BASE_URL = 'https://generativelanguage.googleapis.com';

const embedResponseSchema = z.object({ embeddings: z.array(z.object({ values: z.array(z.number()) })) });
const modelListSchema = z.object({
  models: z.array(z.object({ name: z.string() })).optional(),
  nextPageToken: z.string().optional(),
});

/** Inputs per batchEmbedContents call: Gemini answers 400 "at most 100 requests can be in one batch". */
const GEMINI_EMBED_BATCH = 100;

export function createGoogleProvider(name: string, cfg: ProviderConfig): GoogleProvider {
  return new GoogleProvider(name, cfg);
}

export class GoogleProvider implements ProviderAdapter {
  readonly type = 'google' as const;
  /**
   * Off by default: Gemini 2.0 models return log-probabilities, 2.5 models answer 400 "Logprobs is not
   * enabled"; `options.logprobs: true` turns it on for a provider whose models can.
   */
  readonly logprobs: boolean = false;
  /** Documents go inline (`inlineData` with their media type). */
  readonly files = true;
  private readonly http: UpstreamHttp;
  private readonly signatures = new ThoughtSignatureCache();
  private readonly configured: boolean;

  constructor(
    readonly name: string,
    cfg: ProviderConfig,
  ) {
    this.configured = Boolean(cfg.api_key);
    this.http = new UpstreamHttp({
      provider: name,
      baseUrl: cfg.base_url ?? GOOGLE_DEFAULT_BASE_URL,
      headers: { ...(cfg.api_key ? { 'x-goog-api-key': cfg.api_key } : {}), ...cfg.headers },
      maxConnections: cfg.max_connections,
    });
  }

  async chat(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    // A legacy text completion goes through chat here (asChatRequest: what chat cannot do is refused).
    req = asChatRequest(this.name, req);
    const body = this.requestBody(req);
    const res = await this.call(() => this.http.json<unknown>('POST', `${modelPath(req.model)}:generateContent`, body, opts));
    const parsed = geminiResponseSchema.safeParse(res.body);
    if (!parsed.success) throw this.error('malformed', 'answered a generateContent body of an unexpected shape', res.status);
    return this.toResult(parsed.data, req.model);
  }

  async streamChat(req: ChatRequest, opts: CallOptions): Promise<AsyncIterable<ChatChunk>> {
    // A legacy text completion goes through chat here (asChatRequest: what chat cannot do is refused).
    req = asChatRequest(this.name, req);
    const body = this.requestBody(req);
    const res = await this.call(() =>
      this.http.stream('POST', `${modelPath(req.model)}:streamGenerateContent?alt=sse`, body, opts, {
        accept: 'text/event-stream',
      }),
    );
    return primeStream(this.chunks(res.body, req.model));
  }

  async embed(req: EmbeddingRequest, opts: CallOptions): Promise<EmbeddingResult> {
    const inputs = embeddingInputs(req.input);
    if (!inputs) throw this.error('bad_request', 'embeds text inputs only, not token arrays');
    const model = modelResource(req.model);
    const answer = await embedInSlices(inputs, GEMINI_EMBED_BATCH, async (slice) => {
      const body = {
        requests: slice.map((text) => ({
          model,
          content: { parts: [{ text }] },
          ...(req.dimensions ? { outputDimensionality: req.dimensions } : {}),
        })),
      };
      const res = await this.call(() => this.http.json<unknown>('POST', `/v1beta/${model}:batchEmbedContents`, body, opts));
      const parsed = embedResponseSchema.safeParse(res.body);
      if (!parsed.success || parsed.data.embeddings.length !== slice.length) {
        throw this.error('malformed', 'answered a batchEmbedContents body of an unexpected shape', res.status);
      }
      // Gemini reports no token counts for embeddings; the local tokenizer's estimate stands in.
      return { items: parsed.data.embeddings.map((e) => e.values), tokens: slice.reduce((sum, text) => sum + countTextTokens(text), 0) };
    });
    const tokens = answer.tokens;
    return {
      object: 'list',
      data: answer.items.map((embedding, index) => ({ object: 'embedding', index, embedding })),
      model: req.model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  }

  async listModels(opts: CallOptions): Promise<string[]> {
    const names: string[] = [];
    let pageToken: string | undefined;
    // Pages are followed to the end, with a bound in case the upstream keeps handing out tokens.
    for (let page = 0; page < 20; page++) {
      const query = `pageSize=1000${pageToken ? `&pageToken=${encodeURIComponent(pageToken)}` : ''}`;
      const res = await this.call(() => this.http.json<unknown>('GET', `/v1beta/models?${query}`, undefined, opts));
      const parsed = modelListSchema.safeParse(res.body);
      if (!parsed.success) throw this.error('malformed', 'answered a model list of an unexpected shape', res.status);
      for (const m of parsed.data.models ?? []) names.push(m.name.replace(/^models\//, ''));
      pageToken = parsed.data.nextPageToken;
      if (!pageToken) break;
    }
    return names;
  }

  /** Configured with a key. Not probed over the network: a Google blip must not unready the gateway. */
  async ready(): Promise<boolean> {
    return this.configured;
  }

  async close(): Promise<void> {
    await this.http.close();
  }

  private requestBody(req: ChatRequest): GeminiRequest {
    try {
      return toGeminiRequest(req, this.signatures);
    } catch (err) {
      if (err instanceof GeminiMappingError) throw this.error('bad_request', err.message);
      throw err;
    }
  }

  private toResult(body: GeminiResponse, model: string): ChatResult {
    const candidates = body.candidates ?? [];
    if (candidates.length === 0) {
      const reason = body.promptFeedback?.blockReason;
      if (reason) throw this.error('content_policy', `blocked the prompt (${reason})`);
      throw this.error('malformed', 'answered with no candidates');
    }
    const read = candidates.map((c) => readParts(c.content?.parts, this.signatures));
    const broken = (c: GeminiCandidate, i: number) => saidNothing(read[i] as ReturnType<typeof readParts>, c.finishReason);
    // Every candidate's function call broke (one, unless n > 1): retryable (kind malformed), since the
    // same request usually gets a well-formed call next time. With good candidates beside it, a
    // broken one is an empty choice, as before.
    if (candidates.every(broken)) {
      throw this.error('malformed', `answered ${candidates[0]?.finishReason}: the model's function call could not be used`, 200);
    }
    const choices: ChatChoice[] = candidates.map((c, i) => {
      const { text, reasoning, toolCalls } = read[i] as ReturnType<typeof readParts>;
      return {
        index: c.index ?? i,
        message: {
          role: 'assistant',
          content: text || (toolCalls.length > 0 ? null : ''),
          ...(reasoning ? { reasoning_content: reasoning } : {}),
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
        },
        finish_reason: mapGeminiFinish(c.finishReason, toolCalls.length > 0) ?? 'stop',
        logprobs: mapGeminiLogprobs(c.logprobsResult),
      };
    });
    return {
      id: `chatcmpl-${body.responseId ?? randomUUID()}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: body.modelVersion ?? model,
      choices,
      usage: mapGeminiUsage(body.usageMetadata),
    };
  }

  private async *chunks(body: StreamBody, model: string): AsyncGenerator<ChatChunk> {
    const stream = new GeminiStreamState(model, this.signatures, this.name);
    try {
      for await (const event of sseEvents(body)) {
        if (!event.data || event.data === '[DONE]') continue;
        let json: unknown;
        try {
          json = JSON.parse(event.data);
        } catch (cause) {
          throw this.error('malformed', 'streamed an event that is not JSON', 0, !stream.yielded, cause);
        }
        const streamed = (json as { error?: { code?: number; message?: string; status?: string } }).error;
        if (streamed) throw this.streamedError(streamed, stream.yielded);
        const parsed = geminiResponseSchema.safeParse(json);
        if (!parsed.success) throw this.error('malformed', 'streamed an event of an unexpected shape', 0, !stream.yielded);
        const blocked = parsed.data.promptFeedback?.blockReason;
        if (blocked && !parsed.data.candidates?.length) throw this.error('content_policy', `blocked the prompt (${blocked})`);
        for (const chunk of stream.accept(parsed.data)) yield chunk;
      }
      if (!stream.complete()) {
        throw this.error('stream_interrupted', 'stream ended before a finish reason', 0, !stream.yielded);
      }
      yield stream.usageChunk();
    } finally {
      body.destroy();
    }
  }

  /**
   * An `{error}` event in the stream, classed as the same error in an HTTP error body is (status,
   * then what Gemini's body says). Before the first chunk it stays as retryable as its kind; once
   * something was yielded it is never retried.
   */
  private streamedError(e: { code?: number; message?: string; status?: string }, yielded: boolean): UpstreamError {
    const status = typeof e.code === 'number' ? e.code : 0;
    const message = e.message ?? e.status ?? 'unknown';
    const err = refineGoogleError(
      new UpstreamError({ provider: this.name, kind: kindForStatus(status, message), status, message: `${this.name} streamed an error: ${message}`, body: { error: e } }),
    );
    if (!yielded) return err;
    return new UpstreamError({ provider: err.provider, kind: err.kind, status: err.status, message: err.message, retryAfterMs: err.retryAfterMs, body: err.body, retryable: false });
  }

  /** Runs one HTTP call and sharpens UpstreamHttp's error with what Gemini's error body says. */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw err instanceof UpstreamError ? refineGoogleError(err) : err;
    }
  }

  private error(kind: UpstreamErrorKind, message: string, status = 0, retryable?: boolean, cause?: unknown): UpstreamError {
    return new UpstreamError({ provider: this.name, kind, message: `${this.name} ${message}`, status, retryable, cause });
  }
}

/** Turns the pieces of a streamed answer into canonical chunks, per candidate (n > 1 streams too). */
class GeminiStreamState {
  yielded = false;
  private id = `chatcmpl-${randomUUID()}`;
  private model: string;
  private usage: Usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly candidates = new Map<number, { toolCalls: number; finished: boolean }>();
  private sawFirst = false;

  constructor(
    model: string,
    private readonly signatures: ThoughtSignatureCache,
    private readonly provider: string,
  ) {
    this.model = model;
  }

  accept(res: GeminiResponse): ChatChunk[] {
    if (!this.sawFirst) {
      this.sawFirst = true;
      if (res.responseId) this.id = `chatcmpl-${res.responseId}`;
      if (res.modelVersion) this.model = res.modelVersion;
    }
    if (res.usageMetadata) this.usage = mapGeminiUsage(res.usageMetadata);
    const out: ChatChunk[] = [];
    for (const [position, c] of (res.candidates ?? []).entries()) {
      const index = c.index ?? position;
      const existing = this.candidates.get(index);
      const first = existing === undefined;
      const state = existing ?? { toolCalls: 0, finished: false };
      if (first) this.candidates.set(index, state);
      const read = readParts(c.content?.parts, this.signatures);
      const { text, reasoning, toolCalls } = read;
      if (!this.yielded && saidNothing(read, c.finishReason)) {
        // A candidate that ends so having said nothing (thoughts alone are not an answer), before
        // anything went to the client (a candidate that said something earlier made a chunk that
        // went), fails the stream retryably (an empty "stop" would be taken as the answer). Once
        // chunks went out (the other candidates of n > 1) it ends as an empty choice, as before.
        throw new UpstreamError({ provider: this.provider, kind: 'malformed', message: `${this.provider} answered ${c.finishReason}: the model's function call could not be used`, status: 200, retryable: true });
      }
      if (first || text || reasoning || toolCalls.length > 0) {
        // Content goes with text, and on the first chunk (empty) unless it carries tool calls: a
        // thought-only or call-only piece carries no answer text.
        const delta: ChunkChoice['delta'] = first ? { role: 'assistant' } : {};
        if (text || (first && toolCalls.length === 0)) delta.content = text;
        if (reasoning) delta.reasoning_content = reasoning;
        if (toolCalls.length > 0) {
          delta.tool_calls = toolCalls.map((call) => ({
            index: state.toolCalls++,
            id: call.id,
            type: 'function' as const,
            function: { name: call.function.name, arguments: call.function.arguments },
          }));
        }
        const logprobs = mapGeminiLogprobs(c.logprobsResult);
        out.push(this.chunk([logprobs ? { index, delta, finish_reason: null, logprobs } : { index, delta, finish_reason: null }]));
      }
      const finish = mapGeminiFinish(c.finishReason, state.toolCalls > 0);
      if (finish && !state.finished) {
        state.finished = true;
        out.push(this.chunk([{ index, delta: {}, finish_reason: finish }]));
      }
    }
    if (out.length > 0) this.yielded = true;
    return out;
  }

  /** Every candidate that started has finished (an empty stream is not complete). */
  complete(): boolean {
    if (this.candidates.size === 0) return false;
    for (const c of this.candidates.values()) if (!c.finished) return false;
    return true;
  }

  usageChunk(): ChatChunk {
    return { ...this.chunk([]), usage: this.usage };
  }

  private chunk(choices: ChunkChoice[]): ChatChunk {
    return { id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model, choices };
  }
}

/** `models/gemini-2.0-flash` for a bare name; tuned models (`tunedModels/x`) pass through. */
function modelResource(model: string): string {
  return model.includes('/') ? model : `models/${model}`;
}

function modelPath(model: string): string {
  return `/v1beta/${modelResource(model)}`;
}

interface GoogleErrorBody {
  error?: { status?: string; message?: string; details?: { '@type'?: string; retryDelay?: string; reason?: string }[] };
}

/**
 * Gemini says more in its body than the status line: a 429's wait is in RetryInfo.retryDelay ("34s")
 * rather than Retry-After, a bad key is a 400 with reason API_KEY_INVALID, a project or region the
 * API will not serve a 400 FAILED_PRECONDITION, and an oversized prompt is a 400 saying the input
 * token count exceeds the maximum.
 */
export function refineGoogleError(err: UpstreamError): UpstreamError {
  const body = (err.body && typeof err.body === 'object' ? err.body : {}) as GoogleErrorBody;
  const details = Array.isArray(body.error?.details) ? body.error.details : [];
  let retryAfterMs = err.retryAfterMs;
  if (retryAfterMs === undefined) {
    const delay = details.find((d) => typeof d.retryDelay === 'string')?.retryDelay;
    const m = delay ? /^(\d+(?:\.\d+)?)s$/.exec(delay) : null;
    if (m) retryAfterMs = Math.ceil(Number(m[1]) * 1000);
  }
  let kind = err.kind;
  if (details.some((d) => d.reason === 'API_KEY_INVALID')) kind = 'auth';
  // "User location is not supported for the API use", "… free tier is not available in your
  // country": this deployment cannot serve from where it runs, whatever the request — its own fault.
  else if (err.status === 400 && body.error?.status === 'FAILED_PRECONDITION') kind = 'auth';
  else if (err.status === 400 && /token count.*exceeds|exceeds the maximum number of tokens/i.test(body.error?.message ?? '')) {
    kind = 'context_length';
  }
  if (kind === err.kind && retryAfterMs === err.retryAfterMs) return err;
  return new UpstreamError({
    provider: err.provider,
    kind,
    message: err.message,
    status: err.status,
    retryAfterMs,
    body: err.body,
    cause: err.cause,
  });
}
