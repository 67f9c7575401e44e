// Ollama adapter over its native API (default http://127.0.0.1:11434): /api/chat plain and streamed as
// newline-delimited JSON, /api/generate for raw text completions, /api/embed, and the model lists the
// mesh worker publishes — installed (/api/tags) and loaded in memory (/api/ps). One choice per call:
// n > 1 fans out, streams refuse it.
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import {
  messageText,
  requestedMaxTokens,
  stopList,
  type ChatChunk,
  type ChatMessage,
  type ChatRequest,
  type ChatResult,
  type ChunkChoice,
  type FinishReason,
  type TextCompletion,
  type ToolCall,
  type Usage,
} from '../canonical/chat.js';
import { parseToolInput } from '../canonical/convert.js';
import { embeddingInputs, type EmbeddingRequest, type EmbeddingResult } from '../canonical/embeddings.js';
import type { ProviderConfig } from '../config/schema.js';
import { chatWithChoices } from './choice-fan-out.js';
import { parseDataUrl } from './data-url.js';
import { UpstreamError, kindForStatus, type UpstreamErrorKind } from './errors.js';
import { UpstreamHttp, upstreamErrorMessage, type StreamBody } from './http.js';
import { primeStream } from './stream-priming.js';
import { ndjsonLines } from './stream-parsers.js';
import { asChatRequest, completionsOption, refuseRawParameters } from './text-completion.js';
import { rememberBounded } from './remembered.js';
import type { CallOptions, ProviderAdapter } from './types.js';

export const OLLAMA_DEFAULT_BASE_URL = 'http://127.0.0.1:11434';
const READY_TIMEOUT_MS = 1000;
/** Models remembered as unable to think, per provider; the oldest is forgotten beyond it. */
const NO_THINKING_MODELS_MAX = 256;
/**
 * Ollama's refusal of `think` for a model without the thinking capability: 400 with the model name
 * quoted by Go's %q (server/routes.go, ChatHandler and GenerateHandler:
 * `fmt.Sprintf("%q does not support thinking", req.Model)`).
 */
const NO_THINKING = /^".*" does not support thinking$/;

const chatLineSchema = z.object({
  model: z.string().optional(),
  message: z
    .object({
      content: z.string().nullish(),
      /** A thinking model's reasoning (Ollama 0.9+, with `think`), apart from its answer. */
      thinking: z.string().nullish(),
      tool_calls: z
        .array(
          z.object({
            id: z.string().optional(),
            function: z.object({ name: z.string(), arguments: z.union([z.record(z.string(), z.unknown()), z.string()]).nullish() }),
          }),
        )
        .nullish(),
    })
    .nullish(),
  done: z.boolean().optional(),
  done_reason: z.string().nullish(),
  prompt_eval_count: z.number().optional(),
  eval_count: z.number().optional(),
  error: z.string().optional(),
});
type ChatLine = z.infer<typeof chatLineSchema>;

/** A line of /api/generate (the whole answer when not streamed): `response` is the text. */
const generateLineSchema = z.object({
  model: z.string().optional(),
  response: z.string().nullish(),
  done: z.boolean().optional(),
  done_reason: z.string().nullish(),
  prompt_eval_count: z.number().optional(),
  eval_count: z.number().optional(),
  error: z.string().optional(),
});

const embedResponseSchema = z.object({
  embeddings: z.array(z.array(z.number())),
  prompt_eval_count: z.number().optional(),
});
const modelListSchema = z.object({ models: z.array(z.object({ name: z.string().optional(), model: z.string().optional() })).nullish() });

/** Throws on an option Ollama could not take (OllamaProvider's constructor checks them). */
export function createOllamaProvider(name: string, cfg: ProviderConfig): OllamaProvider {
  return new OllamaProvider(name, cfg);
}

/**
 * Ollama's runtime `options` the operator configured for every chat and text completion:
 * `options.model_options` (any of Ollama's options: num_ctx, num_gpu, num_thread, num_batch, …) with
 * `options.num_ctx` as a shorthand. Throws on a value Ollama could not take.
 */
function configuredModelOptions(name: string, options: Record<string, unknown> | undefined): Record<string, unknown> {
  const raw = options?.model_options;
  if (raw !== undefined && (raw === null || typeof raw !== 'object' || Array.isArray(raw))) {
    throw new Error(`provider ${name}: options.model_options must be a map of Ollama options (num_ctx, num_gpu, num_thread, …)`);
  }
  const out: Record<string, unknown> = { ...(raw as Record<string, unknown> | undefined) };
  for (const [key, value] of Object.entries(out)) {
    const scalar = typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean';
    if (!scalar && !Array.isArray(value)) throw new Error(`provider ${name}: options.model_options.${key} must be a number, string, boolean or list`);
  }
  const numCtx = options?.num_ctx;
  if (numCtx !== undefined) {
    if (out.num_ctx !== undefined) throw new Error(`provider ${name}: set num_ctx once, as options.num_ctx or options.model_options.num_ctx`);
    out.num_ctx = numCtx;
  }
  if (out.num_ctx !== undefined && !(typeof out.num_ctx === 'number' && Number.isInteger(out.num_ctx) && out.num_ctx > 0)) {
    throw new Error(`provider ${name}: num_ctx must be a positive whole number of tokens, not ${JSON.stringify(out.num_ctx)}`);
  }
  return out;
}

export class OllamaProvider implements ProviderAdapter {
  readonly type = 'ollama' as const;
  private readonly http: UpstreamHttp;
  /**
   * How long Ollama keeps a model in memory after a call ('5m', '1h', seconds, -1 for ever), sent only
   * when configured: a request's keep_alive overrides the server's own OLLAMA_KEEP_ALIVE (default 5m).
   */
  private readonly keepAlive: string | number | undefined;
  /** Runtime options (num_ctx, num_gpu, …) sent under the request's own sampling options. */
  private readonly modelOptions: Record<string, unknown>;
  /** Models this Ollama refused `think` for (insertion order: the oldest is forgotten first). */
  private readonly noThinking = new Set<string>();
  /**
   * How a legacy text completion (`POST /v1/completions`) reaches Ollama: `native` (default), its raw
   * prompt to /api/generate; `chat`, as one user message to /api/chat (`options.completions`).
   */
  readonly completions: 'native' | 'chat';

  constructor(
    readonly name: string,
    cfg: ProviderConfig,
  ) {
    this.completions = completionsOption(name, cfg.options) ?? 'native';
    const keepAlive = cfg.options?.keep_alive;
    if (keepAlive !== undefined && typeof keepAlive !== 'string' && typeof keepAlive !== 'number') {
      throw new Error(`provider ${name}: options.keep_alive must be a duration ("30m", "24h"), seconds or -1, not ${JSON.stringify(keepAlive)}`);
    }
    this.keepAlive = keepAlive;
    this.modelOptions = configuredModelOptions(name, cfg.options);
    this.http = new UpstreamHttp({
      provider: name,
      baseUrl: cfg.base_url ?? OLLAMA_DEFAULT_BASE_URL,
      // Plain Ollama needs no key; one behind an authenticating proxy (or Ollama's cloud) does.
      headers: { ...(cfg.api_key ? { authorization: `Bearer ${cfg.api_key}` } : {}), ...cfg.headers },
      maxConnections: cfg.max_connections,
    });
  }

  async chat(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    const t = this.rawText(req);
    if (t) return chatWithChoices(req, opts.signal, (one, signal) => this.generateOnce(one, t, { ...opts, signal }));
    req = asChatRequest(this.name, req);
    return chatWithChoices(req, opts.signal, (one, signal) => this.chatOnce(one, { ...opts, signal }));
  }

  async streamChat(req: ChatRequest, opts: CallOptions): Promise<AsyncIterable<ChatChunk>> {
    const t = this.rawText(req);
    if (!t) req = asChatRequest(this.name, req);
    if ((req.n ?? 1) > 1) throw this.error('unsupported', 'cannot stream more than one choice (n > 1)');
    if (t) {
      const res = await this.http.stream('POST', '/api/generate', this.generateBody(req, t, true), opts);
      return primeStream(this.generateChunks(res.body, req.model));
    }
    const res = await this.withoutThinkingIfRefused(req, true, (body) => this.http.stream('POST', '/api/chat', body, opts));
    return primeStream(this.chunks(res.body, req.model));
  }

  /**
   * The request's text completion when it goes to /api/generate (not with `completions: chat`).
   * Ollama has no echo (the route puts the prompt in front), no prompt log-probabilities and no best_of.
   */
  private rawText(req: ChatRequest): TextCompletion | undefined {
    const t = req.text_completion;
    if (!t || this.completions === 'chat') return undefined;
    refuseRawParameters(this.name, t, ['prompt_ids', 'logprobs', 'best_of', 'no_tokens'], req.max_tokens);
    return t;
  }

  /**
   * The /api/generate body of a text completion. Without a suffix `raw: true`: the prompt reaches the
   * model as it is, no template around it. With one, the model's own template builds the
   * fill-in-the-middle prompt from `prompt` and `suffix` (Ollama ignores `suffix` in raw mode; a
   * model without the insert capability answers 400).
   */
  private generateBody(req: ChatRequest, t: TextCompletion, stream: boolean): Record<string, unknown> {
    const body: Record<string, unknown> = { model: req.model, prompt: t.prompt, stream };
    if (t.suffix) body.suffix = t.suffix;
    else body.raw = true;
    const options = this.sampling(req);
    if (Object.keys(options).length > 0) body.options = options;
    if (this.keepAlive !== undefined) body.keep_alive = this.keepAlive;
    return body;
  }

  private async generateOnce(req: ChatRequest, t: TextCompletion, opts: CallOptions): Promise<ChatResult> {
    const res = await this.http.json<unknown>('POST', '/api/generate', this.generateBody(req, t, false), opts);
    const parsed = generateLineSchema.safeParse(res.body);
    if (!parsed.success) throw this.error('malformed', 'answered a generate body of an unexpected shape', res.status);
    const line = parsed.data;
    if (line.error !== undefined) throw this.lineError(line.error, true);
    return {
      id: `cmpl-${randomUUID()}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: line.model ?? req.model,
      choices: [{ index: 0, message: { role: 'assistant', content: line.response ?? '' }, finish_reason: mapOllamaFinish(line.done_reason, false), logprobs: null }],
      usage: mapOllamaUsage(line),
    };
  }

  private async *generateChunks(body: StreamBody, model: string): AsyncGenerator<ChatChunk> {
    const id = `cmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const chunk = (choices: ChunkChoice[], usage?: Usage): ChatChunk => ({ id, object: 'chat.completion.chunk', created, model, choices, ...(usage ? { usage } : {}) });
    let yielded = false;
    try {
      for await (const text of ndjsonLines(body)) {
        const line = this.streamedLine(text, generateLineSchema, 'a generate line', yielded);
        if (line.response || !yielded) {
          yield chunk([{ index: 0, delta: yielded ? { content: line.response ?? '' } : { role: 'assistant', content: line.response ?? '' }, finish_reason: null }]);
          yielded = true;
        }
        if (line.done) {
          yield chunk([{ index: 0, delta: {}, finish_reason: mapOllamaFinish(line.done_reason, false) }]);
          yield chunk([], mapOllamaUsage(line));
          return;
        }
      }
      throw this.error('stream_interrupted', 'stream ended before the done line', 0, !yielded);
    } finally {
      body.destroy();
    }
  }

  async embed(req: EmbeddingRequest, opts: CallOptions): Promise<EmbeddingResult> {
    const input = embeddingInputs(req.input);
    if (!input) throw this.error('bad_request', 'embeds text inputs only, not token arrays');
    const body = {
      model: req.model,
      input,
      ...(this.keepAlive !== undefined ? { keep_alive: this.keepAlive } : {}),
      ...(req.dimensions ? { dimensions: req.dimensions } : {}),
      // The runtime options reach the embedding model too: num_ctx bounds what /api/embed reads of
      // an input before truncating it (Ollama's `truncate`, on by default).
      ...(Object.keys(this.modelOptions).length > 0 ? { options: this.modelOptions } : {}),
    };
    const res = await this.http.json<unknown>('POST', '/api/embed', body, opts);
    const parsed = embedResponseSchema.safeParse(res.body);
    if (!parsed.success || parsed.data.embeddings.length !== input.length) {
      throw this.error('malformed', 'answered an embed body of an unexpected shape', res.status);
    }
    const tokens = parsed.data.prompt_eval_count ?? 0;
    return {
      object: 'list',
      data: parsed.data.embeddings.map((embedding, index) => ({ object: 'embedding', index, embedding })),
      model: req.model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  }

  async listModels(opts: CallOptions): Promise<string[]> {
    return this.listInstalled(opts);
  }

  /** Models pulled onto this Ollama (GET /api/tags). */
  async listInstalled(opts: CallOptions = this.probeOptions()): Promise<string[]> {
    return this.modelNames('/api/tags', opts);
  }

  /** Models loaded in memory right now (GET /api/ps): the ones that answer without a cold start. */
  async listLoaded(opts: CallOptions = this.probeOptions()): Promise<string[]> {
    return this.modelNames('/api/ps', opts);
  }

  /** Reachable: GET /api/version answers within about a second. */
  async ready(): Promise<boolean> {
    try {
      await this.http.json<unknown>('GET', '/api/version', undefined, this.probeOptions());
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.http.close();
  }

  private probeOptions(): CallOptions {
    return { signal: new AbortController().signal, timeoutMs: READY_TIMEOUT_MS, requestId: `ready-${randomUUID()}` };
  }

  private async modelNames(path: string, opts: CallOptions): Promise<string[]> {
    const res = await this.http.json<unknown>('GET', path, undefined, opts);
    const parsed = modelListSchema.safeParse(res.body);
    if (!parsed.success) throw this.error('malformed', `answered ${path} with a body of an unexpected shape`, res.status);
    return (parsed.data.models ?? []).flatMap((m) => {
      const n = m.name ?? m.model;
      return n ? [n] : [];
    });
  }

  private async chatOnce(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    const res = await this.withoutThinkingIfRefused(req, false, (body) => this.http.json<unknown>('POST', '/api/chat', body, opts));
    const parsed = chatLineSchema.safeParse(res.body);
    if (!parsed.success) throw this.error('malformed', 'answered a chat body of an unexpected shape', res.status);
    const line = parsed.data;
    if (line.error !== undefined) throw this.lineError(line.error, true);
    const toolCalls = readToolCalls(line);
    return {
      id: `chatcmpl-${randomUUID()}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: line.model ?? req.model,
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: line.message?.content || (toolCalls.length > 0 ? null : ''),
            ...(line.message?.thinking ? { reasoning_content: line.message.thinking } : {}),
            ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
          },
          finish_reason: mapOllamaFinish(line.done_reason, toolCalls.length > 0),
          logprobs: null,
        },
      ],
      usage: mapOllamaUsage(line),
    };
  }

  private async *chunks(body: StreamBody, model: string): AsyncGenerator<ChatChunk> {
    const id = `chatcmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const chunk = (choices: ChunkChoice[], usage?: Usage): ChatChunk => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices,
      ...(usage ? { usage } : {}),
    });
    let yielded = false;
    let toolCount = 0;
    try {
      for await (const text of ndjsonLines(body)) {
        const line = this.streamedLine(text, chatLineSchema, 'a line', yielded);
        const delta: ChunkChoice['delta'] = yielded ? {} : { role: 'assistant' };
        const content = line.message?.content;
        if (content || !yielded) delta.content = content ?? '';
        const thinking = line.message?.thinking;
        if (thinking) delta.reasoning_content = thinking;
        const calls = readToolCalls(line);
        if (calls.length > 0) {
          delta.tool_calls = calls.map((c) => ({ index: toolCount++, id: c.id, type: 'function' as const, function: c.function }));
        }
        if (Object.keys(delta).length > 0) {
          yield chunk([{ index: 0, delta, finish_reason: null }]);
          yielded = true;
        }
        if (line.done) {
          yield chunk([{ index: 0, delta: {}, finish_reason: mapOllamaFinish(line.done_reason, toolCount > 0) }]);
          yield chunk([], mapOllamaUsage(line));
          return;
        }
      }
      throw this.error('stream_interrupted', 'stream ended before the done line', 0, !yielded);
    } finally {
      body.destroy();
    }
  }

  private requestBody(req: ChatRequest, stream: boolean): Record<string, unknown> {
    const body: Record<string, unknown> = { model: req.model, messages: this.toMessages(req.messages), stream };
    let tools = req.tools ?? [];
    const choice = req.tool_choice;
    // Ollama has no tool_choice: 'none' offers no tools, a named choice offers only that one.
    if (choice === 'none') tools = [];
    else if (choice && typeof choice === 'object') tools = tools.filter((t) => t.function.name === choice.function.name);
    if (tools.length > 0) {
      body.tools = tools.map((t) => ({
        type: 'function',
        function: {
          name: t.function.name,
          ...(t.function.description ? { description: t.function.description } : {}),
          parameters: t.function.parameters ?? { type: 'object', properties: {} },
        },
      }));
    }
    const format = req.response_format;
    if (format?.type === 'json_object') body.format = 'json';
    else if (format?.type === 'json_schema') body.format = format.json_schema.schema ?? 'json';
    const options = this.sampling(req);
    if (Object.keys(options).length > 0) body.options = options;
    const think = ollamaThink(req);
    // A model known not to think is asked without `think` on; off is harmless and stays.
    if (think !== undefined && (think === false || !this.noThinking.has(req.model))) body.think = think;
    if (this.keepAlive !== undefined) body.keep_alive = this.keepAlive;
    return body;
  }

  /**
   * Sends a chat body; when Ollama refuses its `think` because the model cannot think (400 "\"llama3.2\"
   * does not support thinking", before any answer, streamed or not), sends it once more without
   * `think` and remembers the model, so its later requests leave `think` off. Thinking is a wish, not
   * a requirement: Anthropic clients such as Claude Code ask for it whatever the model, and Ollama's
   * own Anthropic endpoint relaxes it the same way (server/routes.go ChatHandler: "Set think to nil
   * when being used with Anthropic API to connect to tools like claude code").
   */
  private async withoutThinkingIfRefused<T>(req: ChatRequest, stream: boolean, send: (body: Record<string, unknown>) => Promise<T>): Promise<T> {
    const body = this.requestBody(req, stream);
    try {
      return await send(body);
    } catch (err) {
      if (body.think === undefined || body.think === false || !refusesThinking(err)) throw err;
      rememberBounded(this.noThinking, req.model, NO_THINKING_MODELS_MAX);
      delete body.think;
      return send(body);
    }
  }

  /**
   * Ollama's `options`: the configured runtime options (`num_ctx`, `num_gpu`, …), then the request's
   * sampling parameters over them (empty when neither sets any).
   */
  private sampling(req: ChatRequest): Record<string, unknown> {
    const options: Record<string, unknown> = { ...this.modelOptions };
    const max = requestedMaxTokens(req);
    if (max !== undefined) options.num_predict = max;
    if (req.temperature !== undefined) options.temperature = req.temperature;
    if (req.top_p !== undefined) options.top_p = req.top_p;
    if (req.top_k !== undefined) options.top_k = req.top_k;
    if (req.seed !== undefined) options.seed = req.seed;
    const stop = stopList(req.stop);
    if (stop.length > 0) options.stop = stop;
    if (req.presence_penalty !== undefined) options.presence_penalty = req.presence_penalty;
    if (req.frequency_penalty !== undefined) options.frequency_penalty = req.frequency_penalty;
    return options;
  }

  private toMessages(messages: ChatMessage[]): Record<string, unknown>[] {
    const toolNames = new Map<string, string>();
    return messages.map((m) => {
      switch (m.role) {
        case 'system':
        case 'developer':
          return { role: 'system', content: messageText(m.content) };
        case 'user': {
          const out: Record<string, unknown> = { role: 'user', content: messageText(m.content) };
          const images: string[] = [];
          if (Array.isArray(m.content)) {
            for (const p of m.content) {
              if (p.type !== 'image_url') continue;
              const inline = parseDataUrl(p.image_url.url);
              if (!inline) throw this.error('bad_request', 'takes images as base64 data: URLs only, not links');
              images.push(inline.data);
            }
          }
          if (images.length > 0) out.images = images;
          return out;
        }
        case 'assistant': {
          const out: Record<string, unknown> = { role: 'assistant', content: messageText(m.content) };
          if (m.tool_calls && m.tool_calls.length > 0) {
            out.tool_calls = m.tool_calls.map((c) => {
              toolNames.set(c.id, c.function.name);
              return { function: { name: c.function.name, arguments: parseToolInput(c.function.arguments) } };
            });
          }
          return out;
        }
        case 'tool': {
          const name = (m.tool_call_id && toolNames.get(m.tool_call_id)) || m.name;
          return { role: 'tool', content: messageText(m.content), ...(name ? { tool_name: name } : {}) };
        }
      }
    });
  }

  /**
   * One NDJSON line of a stream, parsed by `schema`; an `{"error": …}` line is raised as the error it
   * reports. Retryable while nothing was yielded (`yielded` false).
   */
  private streamedLine<S extends z.ZodType<{ error?: string }>>(text: string, schema: S, what: string, yielded: boolean): z.infer<S> {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (cause) {
      throw this.error('malformed', 'streamed a line that is not JSON', 0, !yielded, cause);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) throw this.error('malformed', `streamed ${what} of an unexpected shape`, 0, !yielded);
    const line = parsed.data as z.infer<S>;
    if (line.error !== undefined) throw this.lineError(line.error, !yielded);
    return line;
  }

  /** An `{"error": "..."}` body or line: classified by its text, since the HTTP status was 200. */
  private lineError(message: string, retryable: boolean): UpstreamError {
    const byText = kindForStatus(400, message);
    const kind: UpstreamErrorKind = byText === 'bad_request' ? 'server' : byText;
    return this.error(kind, `reported an error: ${message}`, 0, kind === 'server' ? retryable : false);
  }

  private error(kind: UpstreamErrorKind, message: string, status = 0, retryable?: boolean, cause?: unknown): UpstreamError {
    return new UpstreamError({ provider: this.name, kind, message: `${this.name} ${message}`, status, retryable, cause });
  }
}

/** Ollama's 400 for `think` sent to a model without the thinking capability. */
function refusesThinking(err: unknown): boolean {
  if (!(err instanceof UpstreamError) || err.status !== 400) return false;
  return NO_THINKING.test(upstreamErrorMessage(err.body) ?? '');
}

/** Ollama gives arguments as objects and no ids; the canonical model wants JSON strings and ids. */
function readToolCalls(line: ChatLine): ToolCall[] {
  return (line.message?.tool_calls ?? []).map((c) => ({
    id: c.id || `call_${randomUUID()}`,
    type: 'function' as const,
    function: {
      name: c.function.name,
      arguments: typeof c.function.arguments === 'string' ? c.function.arguments : JSON.stringify(c.function.arguments ?? {}),
    },
  }));
}

function mapOllamaFinish(reason: string | null | undefined, calledTools: boolean): FinishReason {
  if (calledTools) return 'tool_calls';
  return reason === 'length' ? 'length' : 'stop';
}

function mapOllamaUsage(line: { prompt_eval_count?: number; eval_count?: number }): Usage {
  const prompt = line.prompt_eval_count ?? 0;
  const completion = line.eval_count ?? 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/**
 * Ollama's `think` from what the client asked for: the Anthropic route's `thinking` (on or off), else
 * OpenAI's `reasoning_effort` — `none` turns thinking off, any other level on; gpt-oss models, the
 * ones Ollama gives levels to, get the level itself (low, medium, high). Nothing asked: the model's
 * own default.
 */
export function ollamaThink(req: ChatRequest): boolean | 'low' | 'medium' | 'high' | undefined {
  if (req.thinking) return req.thinking.type === 'enabled';
  const effort = req.reasoning_effort;
  if (effort === undefined) return undefined;
  if (effort === 'none') return false;
  if (!/^gpt-oss/i.test(req.model)) return true;
  return effort === 'minimal' || effort === 'low' ? 'low' : effort === 'medium' ? 'medium' : 'high';
}
