// The `openai` provider: OpenAI and every OpenAI-compatible server (vLLM, Together, Groq, LM Studio,
// Ollama's /v1) over raw HTTP. The canonical model is OpenAI's own shape, so requests pass through
// with undefined fields dropped; responses are read through a small zod schema of what we use, and a
// stream always ends with a usage chunk (counted locally when the upstream sends none).
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { promptCacheDetails, requestedMaxTokens, withoutCacheControl, type ChatChunk, type ChatMessage, type ChatRequest, type ChatResult, type ChoiceLogprobs, type CompletionTokensDetails, type FinishReason, type TextCompletion, type TokenLogprob, type Usage } from '../canonical/chat.js';
import type { EmbeddingRequest, EmbeddingResult } from '../canonical/embeddings.js';
import type { ProviderConfig } from '../config/schema.js';
import { UpstreamError, first, isUpstreamError, kindForStatus, upstreamErrorFields } from './errors.js';
import { UpstreamHttp, upstreamErrorMessage, type StreamBody, type UpstreamResponse } from './http.js';
import { sseEvents } from './stream-parsers.js';
import { chatWithChoices, withMissingChoices } from './choice-fan-out.js';
import type { CancelSignal } from './cancel.js';
import { asChatRequest, completionsOption, readTextLogprobs } from './text-completion.js';
import { rememberBounded } from './remembered.js';
import { countPromptTokens, countTextTokens } from './tokens.js';
import type { CallOptions, ForwardRequest, ForwardResponse, ProviderAdapter } from './types.js';

const DEFAULT_BASE_URL = 'https://api.openai.com/v1';

/** A usage count passed on to the client only (audio, predicted outputs): one of another type reads as none rather than failing the answer. */
const extraCount = z.number().nullish().catch(undefined);
const usageSchema = z.object({
  prompt_tokens: z.number(),
  completion_tokens: z.number().nullish(),
  total_tokens: z.number().nullish(),
  // OpenAI's automatic prompt caching; servers that have none send nothing, null or zeros.
  prompt_tokens_details: z.looseObject({ cached_tokens: z.number().nullish(), cache_write_tokens: z.number().nullish(), audio_tokens: extraCount }).nullish(),
  completion_tokens_details: z
    .looseObject({ reasoning_tokens: z.number().nullish(), accepted_prediction_tokens: extraCount, rejected_prediction_tokens: extraCount, audio_tokens: extraCount })
    .nullish(),
});
const toolCallSchema = z.object({
  // Gemini's OpenAI-compatible endpoint sends "" or no id at all: one is made (toolCallId).
  id: z.string().nullish(),
  type: z.literal('function').optional(),
  function: z.object({ name: z.string(), arguments: z.string() }),
});
const topLogprobSchema = z.object({ token: z.string(), logprob: z.number(), bytes: z.array(z.number()).nullish() });
const tokenLogprobSchema = topLogprobSchema.extend({ top_logprobs: z.array(topLogprobSchema).nullish() });
/**
 * `choice.logprobs` when the request asked for them (chat completions and stream chunks alike). A
 * shape of another kind (a server's own) reads as none rather than failing the answer.
 */
const logprobsSchema = z.object({ content: z.array(tokenLogprobSchema).nullish(), refusal: z.array(tokenLogprobSchema).nullish() }).nullish().catch(null);
/**
 * vLLM's `choice.stop_reason`: the stop string that ended the answer, or the id of a stop token (a
 * number), null otherwise. Read only as a string (stopSequence); anything else reads as none.
 */
const stopReasonSchema = z.union([z.string(), z.number()]).nullish().catch(null);
export const completionSchema = z.object({
  id: z.string(),
  created: z.number().nullish(),
  model: z.string().nullish(),
  system_fingerprint: z.string().nullish(),
  service_tier: z.string().nullish().catch(undefined),
  choices: z.array(
    z.object({
      index: z.number().optional(),
      message: z.object({
        content: z.string().nullish(),
        tool_calls: z.array(toolCallSchema).nullish(),
        refusal: z.string().nullish(),
        audio: z.record(z.string(), z.unknown()).nullish(),
        annotations: z.array(z.unknown()).nullish(),
        // The model's thinking as text: vLLM (with a reasoning parser) and DeepSeek; newer vLLM builds name it `reasoning`.
        reasoning_content: z.string().nullish(),
        reasoning: z.string().nullish(),
      }),
      finish_reason: z.string().nullish(),
      stop_reason: stopReasonSchema,
      logprobs: logprobsSchema,
    }),
  ),
  usage: usageSchema.nullish(),
});
export const chunkSchema = z.object({
  id: z.string().nullish(),
  created: z.number().nullish(),
  model: z.string().nullish(),
  system_fingerprint: z.string().nullish(),
  service_tier: z.string().nullish().catch(undefined),
  choices: z.array(
    z.object({
      index: z.number(),
      delta: z
        .object({
          role: z.string().nullish(),
          content: z.string().nullish(),
          refusal: z.string().nullish(),
          audio: z.record(z.string(), z.unknown()).nullish(),
          annotations: z.array(z.unknown()).nullish(),
          reasoning_content: z.string().nullish(),
          reasoning: z.string().nullish(),
          tool_calls: z
            .array(
              z.object({
                index: z.number(),
                id: z.string().nullish(),
                function: z.object({ name: z.string().nullish(), arguments: z.string().nullish() }).nullish(),
              }),
            )
            .nullish(),
        })
        .nullish(),
      finish_reason: z.string().nullish(),
      stop_reason: stopReasonSchema,
      logprobs: logprobsSchema,
    }),
  )
    // Some compatible servers send `choices: null` on the usage chunk.
    .nullish()
    .transform((c) => c ?? []),
  usage: usageSchema.nullish(),
});
const embeddingSchema = z.object({
  data: z.array(z.object({ index: z.number(), embedding: z.union([z.array(z.number()), z.string()]) })),
  model: z.string().nullish(),
  usage: z.object({ prompt_tokens: z.number(), total_tokens: z.number().nullish() }).nullish(),
});
const modelListSchema = z.object({ data: z.array(z.object({ id: z.string() })) });
/**
 * A legacy text completion (`text_completion`), JSON answer and stream chunk alike: `choices[].text`.
 * `logprobs` is read apart: the legacy parallel arrays (OpenAI, vLLM) or chat's `{content: [...]}`
 * (llama.cpp's server).
 */
const textCompletionSchema = z.object({
  id: z.string().nullish(),
  created: z.number().nullish(),
  model: z.string().nullish(),
  system_fingerprint: z.string().nullish(),
  choices: z
    .array(
      z.object({
        index: z.number().nullish(),
        text: z.string().nullish(),
        finish_reason: z.string().nullish(),
        stop_reason: stopReasonSchema,
        logprobs: z.unknown().optional(),
      }),
    )
    .nullish()
    .transform((c) => c ?? []),
  usage: usageSchema.nullish(),
});
type TextCompletionChoice = z.infer<typeof textCompletionSchema>['choices'][number];

/**
 * The models api.openai.com still serves at `/v1/completions` (its other models answer 404 there):
 * gpt-3.5-turbo-instruct, davinci-002 and babbage-002, their dated versions and fine-tunes (`ft:…`).
 */
const OPENAI_COMPLETION_MODELS = /^(?:ft:)?(?:gpt-3\.5-turbo-instruct|davinci-002|babbage-002)(?:$|[-:])/;

type StreamChunk = z.infer<typeof chunkSchema>;
type Completion = z.infer<typeof completionSchema>;

const optional = (v: unknown, type: 'string' | 'number') => v === undefined || v === null || typeof v === type;
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The common stream chunk (text deltas, finish reason, usage; no log-probabilities) checked by hand: chunkSchema's parse
 * allocated ~2 KB per chunk, the largest share of a stream's garbage. Anything else (tool calls,
 * `choices: null`, a wrong type) returns undefined and goes through chunkSchema, which also words the
 * errors. Accepts only what chunkSchema accepts; unknown keys are left in place and never read.
 */
export function plainChunk(json: unknown): StreamChunk | undefined {
  if (!isRecord(json) || !Array.isArray(json.choices)) return undefined;
  if (!optional(json.id, 'string') || !optional(json.created, 'number') || !optional(json.model, 'string') || !optional(json.system_fingerprint, 'string')) return undefined;
  if (!optional(json.service_tier, 'string')) return undefined;
  for (const choice of json.choices as unknown[]) {
    if (!isRecord(choice) || typeof choice.index !== 'number' || !optional(choice.finish_reason, 'string')) return undefined;
    if (choice.logprobs !== undefined && choice.logprobs !== null) return undefined;
    const d = choice.delta;
    if (d === undefined || d === null) continue;
    if (!isRecord(d) || (d.tool_calls !== undefined && d.tool_calls !== null)) return undefined;
    if (!optional(d.role, 'string') || !optional(d.content, 'string') || !optional(d.refusal, 'string')) return undefined;
    if (!optional(d.reasoning_content, 'string') || !optional(d.reasoning, 'string')) return undefined;
  }
  if (!plainUsage(json.usage)) return undefined;
  return json as StreamChunk;
}

/**
 * The common chat completion (text answers, no tool calls or log-probabilities) checked by hand, as plainChunk does for
 * stream chunks: completionSchema's parse was ~2% of the core path's CPU. Anything else returns
 * undefined and goes through the schema, which also words the errors. Accepts only what
 * completionSchema accepts; unknown keys are left in place and never read.
 */
export function plainCompletion(json: unknown): Completion | undefined {
  if (!isRecord(json) || typeof json.id !== 'string' || !Array.isArray(json.choices)) return undefined;
  if (!optional(json.created, 'number') || !optional(json.model, 'string') || !optional(json.system_fingerprint, 'string') || !optional(json.service_tier, 'string')) return undefined;
  for (const choice of json.choices as unknown[]) {
    if (!isRecord(choice) || (choice.index !== undefined && typeof choice.index !== 'number') || !optional(choice.finish_reason, 'string')) return undefined;
    if (choice.logprobs !== undefined && choice.logprobs !== null) return undefined;
    const m = choice.message;
    // vLLM sends `tool_calls: []` on every text answer: only a non-empty list leaves the fast path.
    if (!isRecord(m) || !emptyList(m.tool_calls)) return undefined;
    if (!optional(m.content, 'string') || !optional(m.refusal, 'string')) return undefined;
    if (!optional(m.reasoning_content, 'string') || !optional(m.reasoning, 'string')) return undefined;
    // Audio and annotations are read by the schema; OpenAI sends `annotations: []` on every message,
    // which answerMessage drops, so only a non-empty list leaves the fast path.
    if ((m.audio !== undefined && m.audio !== null) || !emptyList(m.annotations)) return undefined;
  }
  if (!plainUsage(json.usage)) return undefined;
  return json as Completion;
}

/**
 * Canonical fields buildBody does not copy as they are: set from the request in OpenAI's form
 * (messages, tools, the token limit's field, stream and stream_options), or not OpenAI parameters at
 * all (the Anthropic route's top_k, thinking and beta list, which OpenAI refuses).
 */
const REWRITTEN_FIELDS = new Set(['messages', 'tools', 'max_tokens', 'max_completion_tokens', 'token_limit_field', 'stream', 'stream_options', 'top_k', 'thinking', 'anthropic_beta', 'anthropic_tools', 'anthropic_messages', 'text_completion']);

/** Absent, null or an empty array. */
function emptyList(v: unknown): boolean {
  return v === undefined || v === null || (Array.isArray(v) && v.length === 0);
}

/** A usage object usageSchema accepts, or none. */
function plainUsage(u: unknown): boolean {
  if (u === undefined || u === null) return true;
  return (
    isRecord(u) &&
    typeof u.prompt_tokens === 'number' &&
    optional(u.completion_tokens, 'number') &&
    optional(u.total_tokens, 'number') &&
    plainDetails(u.prompt_tokens_details, 'cached_tokens', 'cache_write_tokens', 'audio_tokens') &&
    plainDetails(u.completion_tokens_details, 'reasoning_tokens', 'accepted_prediction_tokens', 'rejected_prediction_tokens', 'audio_tokens')
  );
}

/** A usage details object whose read counts are numbers or absent, or none. */
function plainDetails(d: unknown, ...counts: string[]): boolean {
  return d === undefined || d === null || (isRecord(d) && counts.every((k) => optional(d[k], 'number')));
}

/**
 * A tool call's id as the upstream gave it, or one made here when it gave none or an empty one (Gemini's
 * OpenAI-compatible endpoint): the client sends it back with the tool's result, and an empty id is
 * refused there (by OpenAI's API, by Anthropic's, and by this gateway's own routes).
 */
function toolCallId(id: string | null | undefined): string {
  return id || `call_${randomUUID().replaceAll('-', '')}`;
}

/** An answer's message in the canonical shape: tool calls only when there are some; `refusal` always, null when none (as OpenAI sends it). */
function answerMessage(m: Completion['choices'][number]['message']): ChatResult['choices'][number]['message'] {
  const out: ChatResult['choices'][number]['message'] = { role: 'assistant', content: m.content ?? null, refusal: m.refusal || null };
  if (m.tool_calls?.length) out.tool_calls = m.tool_calls.map((t) => ({ id: toolCallId(t.id), type: 'function' as const, function: t.function }));
  if (m.audio) out.audio = m.audio;
  if (m.annotations?.length) out.annotations = m.annotations;
  const reasoning = m.reasoning_content || m.reasoning;
  if (reasoning) out.reasoning_content = reasoning;
  return out;
}

/**
 * The canonical stop_sequence of a choice that stopped on a stop string vLLM names (`stop_reason`, a
 * string; a number is a stop token's id, not a sequence), or nothing.
 */
function stopSequenceOf(finish: FinishReason | null, stopReason: unknown): string | undefined {
  return finish === 'stop' && typeof stopReason === 'string' && stopReason ? stopReason : undefined;
}

export function finishReasonFromOpenAI(reason: string | null | undefined): FinishReason | null {
  switch (reason) {
    case 'stop':
    case 'length':
    case 'tool_calls':
    case 'content_filter':
      return reason;
    case 'function_call':
      return 'tool_calls';
    case null:
    case undefined:
      return null;
    default:
      // Compatible servers invent their own ("eos", "abort"); treat them as a normal stop.
      return 'stop';
  }
}

export interface OpenAIOptions {
  /**
   * Send `stream_options.include_usage` on streams (default true). Turn off only for an old
   * compatible server that rejects the field; usage is then counted locally.
   */
  stream_include_usage: boolean;
  /**
   * Send `developer` messages as `system`. Default: on for every base URL except api.openai.com,
   * since most compatible servers only know the older role.
   */
  developer_as_system: boolean;
  /**
   * The field every token limit goes out in, whichever the client used: `options.max_tokens_field`,
   * or `max_completion_tokens` for api.openai.com (its o-series and gpt-5 models reject `max_tokens`),
   * `max_tokens` for Ollama's /v1 (isOllamaV1: it drops `max_completion_tokens` unread).
   * Unset (any other host): the field the client used (`token_limit_field`: an Azure, OpenRouter or
   * LiteLLM endpoint in front of a reasoning model refuses `max_tokens`, and a server that knows only
   * `max_tokens` gets what its client sent), and `max_tokens` — what every compatible server reads —
   * for a limit the gateway set (the Anthropic and Responses routes').
   */
  max_tokens_field?: 'max_tokens' | 'max_completion_tokens';
  /**
   * How a legacy text completion (`POST /v1/completions`) reaches this server: `native`, its raw
   * prompt to `{base}/completions`; `chat`, as one user message to `/chat/completions`. Unset: native
   * for every base URL except api.openai.com, where only OPENAI_COMPLETION_MODELS are (its other
   * models exist at /chat/completions only).
   */
  completions?: 'native' | 'chat';
  /**
   * How `n > 1` reaches this server: `native`, as `n` in one call (an answer with fewer choices —
   * a server that ignores `n` — is completed by single-choice calls); `fan_out`, as n single-choice
   * calls from the start (a server that refuses `n`, as llama-server does), and a stream with
   * `n > 1` is refused (`unsupported`). Unset: `fan_out` for Ollama's /v1 (isOllamaV1), else `native`.
   */
  choices?: 'native' | 'fan_out';
}

/**
 * Ollama's OpenAI-compatible API by its address: port 11434 (Ollama's own; no other server of this
 * kind uses it) and a path under /v1. It reads only `max_tokens` and ignores `n`.
 */
export function isOllamaV1(baseUrl: string): boolean {
  const url = new URL(baseUrl);
  return url.port === '11434' && /^\/v1(?:\/|$)/.test(url.pathname);
}

export function createOpenAIProvider(name: string, cfg: ProviderConfig): OpenAIProvider {
  const options = cfg.options ?? {};
  const official = new URL(cfg.base_url ?? DEFAULT_BASE_URL).hostname === 'api.openai.com';
  const ollama = isOllamaV1(cfg.base_url ?? DEFAULT_BASE_URL);
  const completions = completionsOption(name, options);
  const choices = options.choices ?? (ollama ? 'fan_out' : 'native');
  if (choices !== 'native' && choices !== 'fan_out') {
    throw new Error(`provider ${name}: options.choices must be "native" or "fan_out", not ${JSON.stringify(choices)}`);
  }
  const field = options.max_tokens_field;
  if (field !== undefined && field !== 'max_tokens' && field !== 'max_completion_tokens') {
    throw new Error(`provider ${name}: options.max_tokens_field must be "max_tokens" or "max_completion_tokens", not ${JSON.stringify(field)}`);
  }
  return new OpenAIProvider(name, cfg, {
    ...(completions ? { completions } : {}),
    choices,
    stream_include_usage: options.stream_include_usage !== false,
    developer_as_system: typeof options.developer_as_system === 'boolean' ? options.developer_as_system : !official,
    // Ollama's /v1 reads only max_tokens: a client's max_completion_tokens would not bound the answer.
    ...(field ? { max_tokens_field: field } : official ? { max_tokens_field: 'max_completion_tokens' as const } : ollama ? { max_tokens_field: 'max_tokens' as const } : {}),
  });
}

export class OpenAIProvider implements ProviderAdapter {
  readonly type = 'openai' as const;
  readonly logprobs = true;
  get fansOutChoices(): boolean {
    return this.options.choices === 'fan_out';
  }
  /**
   * `file` parts pass through as they are. On by default for api.openai.com only: most compatible
   * servers answer 400 or drop the part; `options.files: true` turns it on for one that reads them.
   */
  readonly files: boolean;
  private readonly official: boolean;
  private readonly http: UpstreamHttp;
  /**
   * Models whose server turned out to have no `/completions` (a hosted chat API: Groq, Mistral,
   * Gemini's and Anthropic's OpenAI compatibility, a proxy in front of OpenAI's chat models) while
   * chat answered: their text completions go through chat from then on. Only with
   * `options.completions` unset; bounded, the oldest forgotten first.
   */
  private readonly chatOnly = new Set<string>();

  constructor(
    readonly name: string,
    cfg: ProviderConfig,
    readonly options: OpenAIOptions,
  ) {
    this.official = new URL(cfg.base_url ?? DEFAULT_BASE_URL).hostname === 'api.openai.com';
    this.files = this.official;
    this.http = new UpstreamHttp({
      provider: name,
      baseUrl: cfg.base_url ?? DEFAULT_BASE_URL,
      maxConnections: cfg.max_connections,
      headers: { ...(cfg.api_key ? { authorization: `Bearer ${cfg.api_key}` } : {}), ...cfg.headers },
    });
  }

  /** The /chat/completions body: the canonical request minus undefined fields. */
  buildBody(req: ChatRequest, stream: boolean): Record<string, unknown> {
    const body: Record<string, unknown> = {};
    // for…in, not Object.entries: no [key, value] array per field (a request's own keys, from JSON or a spread).
    // The fields set below are skipped here rather than copied and deleted (a delete can turn the
    // body into a slow dictionary-mode object just before it is serialised).
    for (const key in req) {
      if (REWRITTEN_FIELDS.has(key)) continue;
      const value = (req as unknown as Record<string, unknown>)[key];
      if (value !== undefined) body[key] = value;
    }
    body.messages = req.messages.map((m) => this.wireMessage(m));
    const limit = requestedMaxTokens(req);
    if (limit !== undefined) body[this.options.max_tokens_field ?? req.token_limit_field ?? 'max_tokens'] = limit;
    // Prompt-cache breakpoints are not OpenAI's (it caches by itself): tools without them.
    if (req.tools) body.tools = withoutCacheControl(req.tools);
    if (stream) {
      body.stream = true;
      if (this.options.stream_include_usage) body.stream_options = { include_usage: true };
    }
    return body;
  }

  private wireMessage(m: ChatMessage): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const key in m) {
      // Prompt-cache breakpoints, signed thinking blocks and native tool results are Anthropic's; OpenAI refuses the unknown fields.
      if (key === 'cache_control' || key === 'thinking_blocks' || key === 'tool_result') continue;
      const value = (m as unknown as Record<string, unknown>)[key];
      if (value !== undefined) out[key] = value;
    }
    if (m.role === 'developer' && this.options.developer_as_system) out.role = 'system';
    if (Array.isArray(m.content)) out.content = withoutCacheControl(m.content);
    return out;
  }

  /** Whether a legacy text completion for this (upstream) model goes to `/completions` as raw text (OpenAIOptions.completions). */
  completesRawText(model: string): boolean {
    if (this.options.completions) return this.options.completions === 'native';
    return (!this.official || OPENAI_COMPLETION_MODELS.test(model)) && !this.chatOnly.has(model);
  }

  /**
   * A raw-text completion whose `/completions` call failed because the server has no such endpoint
   * for the model (404, 405, or a 400 saying the operation is not supported), when the choice was
   * the default's, not the operator's: answered through chat instead, and the model remembered as
   * chat-only once chat has answered. Otherwise the failure as it was. Without this, a legacy call to
   * a hosted chat API would fail, and its 404s would count against the deployment's breaker.
   */
  private async viaChatIfNoEndpoint<T>(req: ChatRequest, native: () => Promise<T>, chat: (req: ChatRequest) => Promise<T>): Promise<T> {
    try {
      return await native();
    } catch (err) {
      if (this.options.completions !== undefined || !noCompletionsEndpoint(err)) throw err;
      const answer = await chat(asChatRequest(this.name, req));
      rememberBounded(this.chatOnly, req.model, CHAT_ONLY_MODELS_KEPT);
      return answer;
    }
  }

  /**
   * The legacy `/completions` body of a text completion: the raw prompt and what the Completions API
   * takes (CreateCompletionRequest), nothing else. The token limit goes as `max_tokens`, the only
   * field that API has; legacy `logprobs` as its integer.
   */
  buildCompletionBody(req: ChatRequest, t: TextCompletion, stream: boolean): Record<string, unknown> {
    const body: Record<string, unknown> = { model: req.model, prompt: t.prompt_ids ?? t.prompt };
    if (t.suffix !== undefined) body.suffix = t.suffix;
    // Echo only for what only the upstream has, the prompt's log-probabilities or the text of a prompt
    // of token ids: the route puts the prompt in front otherwise, and llama.cpp's server refuses `echo` (HTTP 500).
    if (upstreamEchoes(t)) body.echo = true;
    if (t.logprobs !== undefined) body.logprobs = t.logprobs;
    if (t.best_of !== undefined && t.best_of > 1) body.best_of = t.best_of;
    const limit = requestedMaxTokens(req);
    if (limit !== undefined) body.max_tokens = limit;
    for (const key of ['temperature', 'top_p', 'n', 'stop', 'seed', 'user', 'presence_penalty', 'frequency_penalty', 'logit_bias'] as const) {
      if (req[key] !== undefined) body[key] = req[key];
    }
    if (stream) {
      body.stream = true;
      if (this.options.stream_include_usage) body.stream_options = { include_usage: true };
    }
    return body;
  }

  /** Not an async function: a one-choice call (the common one) returns chatOnce's promise as it is. */
  chat(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    if ((req.n ?? 1) === 1) return this.chatOnce(req, opts);
    const once = (one: ChatRequest, signal: CancelSignal) => this.chatOnce(one, { ...opts, signal });
    if (this.options.choices === 'fan_out') return chatWithChoices(req, opts.signal, once);
    return this.chatOnce(req, opts).then((answer) => withMissingChoices(req, answer, opts.signal, once));
  }

  /** One chat (or raw-text completion) call, `n` sent as the request has it. */
  private async chatOnce(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    const t = req.text_completion;
    if (t && this.completesRawText(req.model)) return this.viaChatIfNoEndpoint(req, () => this.completeText(req, t, opts), (chat) => this.chatOnce(chat, opts));
    if (t) req = asChatRequest(this.name, req);
    const res = await this.http.json<unknown>('POST', '/chat/completions', this.buildBody(req, false), opts);
    let c = plainCompletion(res.body);
    if (!c) {
      const refused = this.errorAnswer(res.body, 'choices');
      if (refused) throw refused;
      const parsed = completionSchema.safeParse(res.body);
      if (!parsed.success) throw this.malformed('a chat completion', parsed.error, res.body);
      c = parsed.data;
    }
    const result: ChatResult = {
      id: c.id,
      object: 'chat.completion',
      created: c.created ?? Math.floor(Date.now() / 1000),
      model: c.model ?? req.model,
      choices: c.choices.map((choice, i) => {
        const finish = finishReasonFromOpenAI(choice.finish_reason);
        const out: ChatResult['choices'][number] = {
          index: choice.index ?? i,
          message: answerMessage(choice.message),
          finish_reason: finish ?? 'stop',
          logprobs: req.logprobs ? toLogprobs(choice.logprobs) : null,
        };
        const stop = stopSequenceOf(finish, choice.stop_reason);
        if (stop) out.stop_sequence = stop;
        return out;
      }),
      usage: c.usage ? toUsage(c.usage) : estimateUsage(req, c.choices.map((ch) => (ch.message.reasoning_content || ch.message.reasoning || '') + (ch.message.content ?? '') + (ch.message.tool_calls ? JSON.stringify(ch.message.tool_calls) : ''))),
    };
    if (c.system_fingerprint) result.system_fingerprint = c.system_fingerprint;
    if (c.service_tier) result.service_tier = c.service_tier;
    return result;
  }

  async streamChat(req: ChatRequest, opts: CallOptions): Promise<AsyncIterable<ChatChunk>> {
    if (this.options.choices === 'fan_out' && (req.n ?? 1) > 1) {
      throw new UpstreamError({ provider: this.name, kind: 'unsupported', message: `${this.name} cannot stream more than one choice (n > 1; options.choices: fan_out)` });
    }
    const t = req.text_completion;
    if (t && this.completesRawText(req.model)) {
      return this.viaChatIfNoEndpoint(
        req,
        async () => this.textChunks(await this.eventBody(await this.http.stream('POST', '/completions', this.buildCompletionBody(req, t, true), opts, { accept: 'text/event-stream' })), req, t),
        (chat) => this.streamChat(chat, opts),
      );
    }
    if (t) req = asChatRequest(this.name, req);
    const res = await this.http.stream('POST', '/chat/completions', this.buildBody(req, true), opts, { accept: 'text/event-stream' });
    return this.chunks(await this.eventBody(res), req);
  }

  /** A text completion at `/completions`, answered in the canonical shape (the text as the message's content). */
  private async completeText(req: ChatRequest, t: TextCompletion, opts: CallOptions): Promise<ChatResult> {
    const res = await this.http.json<unknown>('POST', '/completions', this.buildCompletionBody(req, t, false), opts);
    const refused = this.errorAnswer(res.body, 'choices');
    if (refused) throw refused;
    const parsed = textCompletionSchema.safeParse(res.body);
    if (!parsed.success) throw this.malformed('a text completion', parsed.error, res.body);
    const c = parsed.data;
    const result: ChatResult = {
      id: c.id ?? `cmpl-${randomUUID()}`,
      object: 'chat.completion',
      created: c.created ?? Math.floor(Date.now() / 1000),
      model: c.model ?? req.model,
      choices: c.choices.map((choice, i) => {
        const finish = finishReasonFromOpenAI(choice.finish_reason);
        const out: ChatResult['choices'][number] = {
          index: choice.index ?? i,
          message: { role: 'assistant', content: choice.text ?? '', refusal: null },
          finish_reason: finish ?? 'stop',
          logprobs: null,
        };
        if (req.logprobs) textChoiceLogprobs(choice, out);
        const stop = stopSequenceOf(finish, choice.stop_reason);
        if (stop) out.stop_sequence = stop;
        return out;
      }),
      usage: c.usage ? toUsage(c.usage) : estimateTextUsage(t, c.choices.map((ch) => ch.text ?? '')),
    };
    if (c.system_fingerprint) result.system_fingerprint = c.system_fingerprint;
    // Only when the text does begin with the prompt: a server may ignore `echo` (Ollama's /v1 has no
    // such field), and the route then puts the prompt in front itself.
    if (upstreamEchoes(t) && c.choices.every((ch) => (ch.text ?? '').startsWith(t.prompt))) result.prompt_echoed = true;
    return result;
  }

  /** A text completion's SSE stream (`text_completion` chunks) as canonical chunks, ending with the usage chunk. */
  private async *textChunks(body: StreamBody, req: ChatRequest, t: TextCompletion): AsyncGenerator<ChatChunk> {
    let id = '';
    let created = Math.floor(Date.now() / 1000);
    let model = req.model;
    let fingerprint: string | undefined;
    let usage: Usage | undefined;
    let done = false;
    let produced = false;
    const output = new Map<number, string>();
    const finished = new Set<number>();
    // Whether the server echoed the prompt, from each choice's first text (as for a JSON answer).
    let echoed = upstreamEchoes(t);
    try {
      for await (const sse of sseEvents(body)) {
        if (sse.data === '[DONE]') {
          done = true;
          break;
        }
        const json = this.streamEvent(sse.data, produced);
        const parsed = textCompletionSchema.safeParse(json);
        if (!parsed.success) throw this.malformed('a text completion chunk', parsed.error, json, !produced);
        const c = parsed.data;
        id = c.id ?? id;
        created = c.created ?? created;
        model = c.model ?? model;
        fingerprint = c.system_fingerprint ?? fingerprint;
        // llama.cpp's server sends a running usage on every chunk: the last one counts.
        if (c.usage) usage = toUsage(c.usage);
        if (c.choices.length === 0) continue;
        const out: ChatChunk = {
          id,
          object: 'chat.completion.chunk',
          created,
          model,
          choices: c.choices.map((choice, i) => {
            const index = choice.index ?? i;
            const text = choice.text ?? '';
            // The prompt may come whole or split over the first pieces.
            if (echoed && text && !output.has(index) && !text.startsWith(t.prompt) && !t.prompt.startsWith(text)) echoed = false;
            if (text) output.set(index, (output.get(index) ?? '') + text);
            const finish = finishReasonFromOpenAI(choice.finish_reason);
            if (finish) finished.add(index);
            const piece: ChatChunk['choices'][number] = { index, delta: { content: text }, finish_reason: finish };
            if (req.logprobs) textChoiceLogprobs(choice, piece);
            const stop = stopSequenceOf(finish, choice.stop_reason);
            if (stop) piece.stop_sequence = stop;
            return piece;
          }),
        };
        if (fingerprint) out.system_fingerprint = fingerprint;
        if (echoed) out.prompt_echoed = true;
        produced = true;
        yield out;
      }
    } finally {
      body.destroy();
    }
    const cut = this.unfinished(req, done, finished, produced);
    if (cut) throw cut;
    const final: ChatChunk = { id, object: 'chat.completion.chunk', created, model, choices: [], usage: usage ?? estimateTextUsage(t, [...output.values()]) };
    if (fingerprint) final.system_fingerprint = fingerprint;
    if (echoed) final.prompt_echoed = true;
    yield final;
  }

  /**
   * One SSE event's data as JSON, for chat and text-completion streams alike: not JSON is
   * `malformed`, an error event mid-stream (`{"error": {...}}`, checked by hand: it is asked of every
   * chunk) is raised as the error it reports; both retryable while nothing was `produced`.
   */
  private streamEvent(data: string, produced: boolean): unknown {
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch (cause) {
      throw new UpstreamError({ provider: this.name, kind: 'malformed', message: `${this.name} sent a stream event that is not JSON`, body: data.slice(0, 300), cause, retryable: !produced });
    }
    if (isRecord(json) && json.error != null) throw this.streamError(json, produced);
    return json;
  }

  private async *chunks(body: StreamBody, req: ChatRequest): AsyncGenerator<ChatChunk> {
    let id = '';
    let created = Math.floor(Date.now() / 1000);
    let model = req.model;
    let fingerprint: string | undefined;
    let serviceTier: string | undefined;
    let usage: Usage | undefined;
    let done = false;
    let produced = false;
    // Output text per choice, to count completion tokens if the upstream reports no usage.
    const output = new Map<number, string>();
    const finished = new Set<number>();
    // The choices, and their tool calls (`choice:index`), whose first delta has gone out.
    const started = new Set<number>();
    const toolsStarted = new Set<string>();
    try {
      for await (const sse of sseEvents(body)) {
        if (sse.data === '[DONE]') {
          done = true;
          break;
        }
        const json = this.streamEvent(sse.data, produced);
        let c = plainChunk(json);
        if (!c) {
          const parsed = chunkSchema.safeParse(json);
          if (!parsed.success) throw this.malformed('a stream chunk', parsed.error, json, !produced);
          c = parsed.data;
        }
        id = c.id ?? id;
        created = c.created ?? created;
        model = c.model ?? model;
        fingerprint = c.system_fingerprint ?? fingerprint;
        serviceTier = c.service_tier ?? serviceTier;
        if (c.usage) usage = toUsage(c.usage);
        if (c.choices.length === 0) continue; // the usage chunk; re-sent last, after every choice chunk
        const out: ChatChunk = {
          id,
          object: 'chat.completion.chunk',
          created,
          model,
          choices: c.choices.map((choice) => {
            const d = choice.delta ?? {};
            const delta: ChatChunk['choices'][number]['delta'] = {};
            // A choice's first delta says its role, whether or not the upstream did (some servers
            // and proxies leave it out; OpenAI's SDKs refuse a stream whose choice has none).
            if (d.role === 'assistant' || !started.has(choice.index)) {
              delta.role = 'assistant';
              started.add(choice.index);
            }
            if (d.content != null) delta.content = d.content;
            if (d.refusal != null) delta.refusal = d.refusal;
            if (d.audio) delta.audio = d.audio;
            if (d.annotations?.length) delta.annotations = d.annotations;
            const reasoning = d.reasoning_content || d.reasoning;
            if (reasoning) delta.reasoning_content = reasoning;
            if (d.tool_calls?.length) {
              delta.tool_calls = d.tool_calls.map((t) => {
                // A call's first delta carries its id (made here if the upstream sent none) and type.
                const key = `${choice.index}:${t.index}`;
                const first = !toolsStarted.has(key);
                if (first) toolsStarted.add(key);
                return {
                  index: t.index,
                  ...(first || t.id ? { id: first ? toolCallId(t.id) : (t.id as string), type: 'function' as const } : {}),
                  ...(t.function ? { function: dropNullish(t.function) } : {}),
                };
              });
            }
            const text = (reasoning ?? '') + (d.content ?? '') + (d.tool_calls ?? []).map((t) => (t.function?.name ?? '') + (t.function?.arguments ?? '')).join('');
            if (text) output.set(choice.index, (output.get(choice.index) ?? '') + text);
            const finish = finishReasonFromOpenAI(choice.finish_reason);
            if (finish) finished.add(choice.index);
            const logprobs = req.logprobs ? toLogprobs(choice.logprobs) : null;
            const out: ChatChunk['choices'][number] = logprobs ? { index: choice.index, delta, finish_reason: finish, logprobs } : { index: choice.index, delta, finish_reason: finish };
            const stop = stopSequenceOf(finish, choice.stop_reason);
            if (stop) out.stop_sequence = stop;
            return out;
          }),
        };
        if (fingerprint) out.system_fingerprint = fingerprint;
        if (serviceTier) out.service_tier = serviceTier;
        produced = true;
        yield out;
      }
    } finally {
      body.destroy();
    }
    const cut = this.unfinished(req, done, finished, produced);
    if (cut) throw cut;
    const final: ChatChunk = {
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [],
      usage: usage ?? estimateUsage(req, [...output.values()]),
    };
    if (fingerprint) final.system_fingerprint = fingerprint;
    if (serviceTier) final.service_tier = serviceTier;
    yield final;
  }

  async embed(req: EmbeddingRequest, opts: CallOptions): Promise<EmbeddingResult> {
    const body: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(req)) if (value !== undefined) body[key] = value;
    const res = await this.http.json<unknown>('POST', '/embeddings', body, opts);
    const refused = this.errorAnswer(res.body, 'data');
    if (refused) throw refused;
    const parsed = embeddingSchema.safeParse(res.body);
    if (!parsed.success) throw this.malformed('an embeddings response', parsed.error, res.body);
    const e = parsed.data;
    const prompt = e.usage?.prompt_tokens ?? 0;
    return {
      object: 'list',
      data: e.data.map((d) => ({ object: 'embedding', index: d.index, embedding: d.embedding })),
      model: e.model ?? req.model,
      usage: { prompt_tokens: prompt, total_tokens: e.usage?.total_tokens ?? prompt },
    };
  }

  /** Audio, images and moderations: the body as it came (its model replaced), the answer as it comes. */
  forward(req: ForwardRequest, opts: CallOptions): Promise<ForwardResponse> {
    return this.http.raw('POST', req.path, req.body, req.contentType, opts, req.accept ? { accept: req.accept } : undefined);
  }

  async listModels(opts: CallOptions): Promise<string[]> {
    const res = await this.http.json<unknown>('GET', '/models', undefined, opts);
    const refused = this.errorAnswer(res.body, 'data');
    if (refused) throw refused;
    const parsed = modelListSchema.safeParse(res.body);
    if (!parsed.success) throw this.malformed('a model list', parsed.error, res.body);
    return parsed.data.data.map((m) => m.id);
  }

  /** Configured is all we can check without a paid call (local servers need no key). */
  async ready(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {
    await this.http.close();
  }

  /**
   * A stream's end before every choice asked for finished: `stream_interrupted`, whether it closed
   * without `[DONE]` or with one (a proxy or an older llama-server cutting the stream), retryable
   * while nothing reached the caller. Some compatible servers end without `[DONE]`, and usage may come
   * after the finishing chunk: the end is fine once each of the n choices has its finish reason.
   */
  private unfinished(req: ChatRequest, done: boolean, finished: ReadonlySet<number>, produced: boolean): UpstreamError | undefined {
    const expected = Math.max(1, req.n ?? 1);
    if (finished.size >= expected) return undefined;
    const open = expected - finished.size;
    const message = done
      ? `${this.name} sent [DONE] before ${expected === 1 ? 'the answer' : `${open} of ${expected} choices`} finished (no finish_reason)`
      : `${this.name} stream ended before [DONE]`;
    return new UpstreamError({ provider: this.name, kind: 'stream_interrupted', message, retryable: !produced });
  }

  private streamError(body: unknown, produced: boolean): UpstreamError {
    return this.errorInBody(body, 'stream error', produced);
  }

  /**
   * An error a server answered with HTTP 200: a body whose top-level `error` is set and that has no
   * `answer` member (`choices`, or an embeddings or model list's `data`) — LM Studio answers a route
   * it does not serve so (`{"error": "Unexpected endpoint or method. (POST /chat/completions)"}`,
   * lmstudio-bug-tracker#618). Raised with the server's message and classified as that body would be
   * with the status it implies (errorInBody), not as an answer we could not read (`malformed`, retried).
   */
  private errorAnswer(body: unknown, answer: 'choices' | 'data'): UpstreamError | undefined {
    if (!isRecord(body) || body.error == null || body[answer] !== undefined) return undefined;
    return this.errorInBody(body, 'answered 200 with an error');
  }

  /**
   * A stream request answered with a JSON body instead of events (`content-type: application/json`):
   * read whole; an error body is raised as errorAnswer raises it (before any chunk, so a retry stays
   * possible where its kind allows one), anything else is read as events as before.
   */
  private async eventBody(res: UpstreamResponse<StreamBody>): Promise<StreamBody> {
    if (!/^\s*application\/(?:[\w.+-]+\+)?json\b/i.test(first(res.headers['content-type']) ?? '')) return res.body;
    const parts: Uint8Array[] = [];
    try {
      for await (const part of res.body) parts.push(part);
    } finally {
      res.body.destroy();
    }
    const text = Buffer.concat(parts);
    let json: unknown;
    try {
      json = JSON.parse(text.toString('utf8'));
    } catch {
      // not JSON after all: read as events below
    }
    const refused = this.errorAnswer(json, 'choices');
    if (refused) throw refused;
    return {
      async *[Symbol.asyncIterator]() {
        yield text;
      },
      destroy: () => undefined,
    };
  }

  /**
   * An `{"error": …}` body that came with a 200 (a stream's error event, an error answer): classified
   * by kindForStatus with the status it implies — its numeric `code` when that is an HTTP status,
   * else one its `type`/`code` (or a route-not-found message) names, else 500.
   */
  private errorInBody(body: unknown, what: string, produced = false): UpstreamError {
    const err = (body as { error: unknown }).error;
    const message = upstreamErrorMessage(body) ?? 'unknown error';
    const code = err && typeof err === 'object' ? (err as { code?: unknown; type?: unknown }) : {};
    const status = typeof code.code === 'number' && code.code >= 400 && code.code < 600 ? code.code : statusForErrorType(`${String(code.type ?? '')} ${String(code.code ?? '')}`, message);
    return new UpstreamError({
      provider: this.name,
      kind: kindForStatus(status, message, body),
      status,
      message: `${this.name} ${what}: ${message}`,
      body,
      // Retrying is only safe while nothing has reached the client.
      ...(produced ? { retryable: false } : {}),
    });
  }

  private malformed(what: string, error: z.ZodError, body: unknown, retryable?: boolean): UpstreamError {
    const issue = error.issues[0];
    const where = issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'unexpected shape';
    return new UpstreamError({
      provider: this.name,
      kind: 'malformed',
      message: `${this.name} sent ${what} we could not read (${where})`,
      body,
      ...(retryable === undefined ? {} : { retryable }),
    });
  }
}

/** The canonical log-probabilities (bytes null when absent), or null when the upstream sent none. */
function toLogprobs(lp: z.infer<typeof logprobsSchema> | null | undefined): ChoiceLogprobs | null {
  if (!lp) return null;
  const tokens = (list: z.infer<typeof tokenLogprobSchema>[]): TokenLogprob[] =>
    list.map((t) => ({
      token: t.token,
      logprob: t.logprob,
      bytes: t.bytes ?? null,
      top_logprobs: (t.top_logprobs ?? []).map((a) => ({ token: a.token, logprob: a.logprob, bytes: a.bytes ?? null })),
    }));
  return { content: lp.content ? tokens(lp.content) : null, ...(lp.refusal ? { refusal: tokens(lp.refusal) } : {}) };
}

function toUsage(u: z.infer<typeof usageSchema>): Usage {
  const completion = u.completion_tokens ?? 0;
  const usage: Usage = { prompt_tokens: u.prompt_tokens, completion_tokens: completion, total_tokens: u.total_tokens ?? u.prompt_tokens + completion };
  const pd = u.prompt_tokens_details;
  const cache = promptCacheDetails(pd?.cached_tokens, pd?.cache_write_tokens);
  if (cache || pd?.audio_tokens != null) {
    usage.prompt_tokens_details = cache ?? { cached_tokens: 0 };
    if (pd?.audio_tokens != null) usage.prompt_tokens_details.audio_tokens = pd.audio_tokens;
  }
  const cd = u.completion_tokens_details;
  if (cd && (cd.reasoning_tokens != null || cd.accepted_prediction_tokens != null || cd.rejected_prediction_tokens != null || cd.audio_tokens != null)) {
    const details: CompletionTokensDetails = { reasoning_tokens: cd.reasoning_tokens ?? 0 };
    // Passed on to the client as the upstream sent them (OpenAI's Predicted Outputs and audio), only those it sent.
    if (cd.accepted_prediction_tokens != null) details.accepted_prediction_tokens = cd.accepted_prediction_tokens;
    if (cd.rejected_prediction_tokens != null) details.rejected_prediction_tokens = cd.rejected_prediction_tokens;
    if (cd.audio_tokens != null) details.audio_tokens = cd.audio_tokens;
    usage.completion_tokens_details = details;
  }
  return usage;
}

/**
 * A text completion choice's log-probabilities on its canonical choice: the legacy parallel arrays as
 * `text_logprobs`, or chat's `{content: [...]}` (llama.cpp's server) as `logprobs`.
 */
function textChoiceLogprobs(choice: TextCompletionChoice, out: { logprobs?: ChoiceLogprobs | null; text_logprobs?: ChatResult['choices'][number]['text_logprobs'] }): void {
  const legacy = readTextLogprobs(choice.logprobs);
  if (legacy) {
    out.text_logprobs = legacy;
    return;
  }
  const chat = toLogprobs(logprobsSchema.parse(choice.logprobs));
  if (chat?.content) out.logprobs = chat;
}

/** Models kept as chat-only per provider (OpenAIProvider.chatOnly). */
const CHAT_ONLY_MODELS_KEPT = 256;

/**
 * A `/completions` call refused because the server does not serve that endpoint for the model:
 * 404 (Groq's `unknown_url`, OpenAI's "This is a chat model and not supported in the
 * v1/completions endpoint", a proxy without the route), 405, or a 400 saying the operation is not
 * supported (Azure's `OperationNotSupported`).
 */
const MODEL_DOES_NOT_EXIST = /\bmodel\b.*\bdoes not exist\b/i;

function noCompletionsEndpoint(err: unknown): boolean {
  if (!isUpstreamError(err)) return false;
  const { code } = upstreamErrorFields(err.body);
  // A model the server does not have (OpenAI's model_not_found, vLLM's "The model `x` does not
  // exist") is missing at chat too: that 404 is the answer, not a reason for a second call.
  if (err.status === 404) return code !== 'model_not_found' && !MODEL_DOES_NOT_EXIST.test(err.message);
  if (err.status === 405) return true;
  // Only a refusal of the completion operation itself, not of one of the request's parameters
  // ("Unsupported value: 'temperature' …"), which chat would not cure.
  if (err.status !== 400) return false;
  return code === 'OperationNotSupported' || (/\bcompletions?\b/i.test(err.message) && /\b(?:operation|endpoint)\b[^.]*\b(?:not supported|does not work)\b/i.test(err.message));
}

/** Whether `echo` goes upstream: with legacy `logprobs` only, for the prompt's log-probabilities (the answer then begins with the prompt). */
function upstreamEchoes(t: TextCompletion): boolean {
  return t.echo === true && (t.logprobs !== undefined || t.prompt_ids !== undefined);
}

/** Local token counts of a text completion whose upstream reported none (its prompt, and suffix, as text). */
function estimateTextUsage(t: TextCompletion, outputs: readonly string[]): Usage {
  const prompt = (t.prompt_ids?.length ?? 0) + countTextTokens(t.prompt + (t.suffix ?? ''));
  const completion = outputs.reduce((sum, text) => sum + countTextTokens(text), 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** Local token counts for an upstream that reported none. */
function estimateUsage(req: ChatRequest, outputs: readonly string[]): Usage {
  const prompt = countPromptTokens(req.messages, req.tools);
  const completion = outputs.reduce((sum, text) => sum + countTextTokens(text), 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** The status an error `type`/`code` pair (or its message) implies when it arrives inside a 200 body or stream. */
function statusForErrorType(type: string, message: string): number {
  // An exhausted account (OpenAI's insufficient_quota, as code or type) is what its HTTP 429 is; kindForStatus tells it from a rate limit.
  if (/\binsufficient_quota\b|rate.?limit/i.test(type)) return 429;
  if (/invalid_request|context_length/i.test(type)) return 400;
  if (/auth/i.test(type)) return 401;
  if (/overloaded|unavailable/i.test(type)) return 503;
  // LM Studio's answer to a path it does not serve (a base_url without /v1): what a 404 says.
  if (/^unexpected endpoint or method\b/i.test(message)) return 404;
  return 500;
}

function dropNullish(f: { name?: string | null; arguments?: string | null }): { name?: string; arguments?: string } {
  const out: { name?: string; arguments?: string } = {};
  if (f.name != null) out.name = f.name;
  if (f.arguments != null) out.arguments = f.arguments;
  return out;
}
