// Cohere v2 adapter (api.cohere.com): /v2/chat plain and streamed (SSE events message-start …
// message-end), /v2/embed and the model list, as raw HTTP over one keep-alive pool. Cohere answers
// one choice per call, so n > 1 fans out into parallel calls; a stream cannot, and says so.
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
  type ToolCall,
  type Usage,
} from '../canonical/chat.js';
import { embeddingInputs, type EmbeddingRequest, type EmbeddingResult } from '../canonical/embeddings.js';
import type { ProviderConfig } from '../config/schema.js';
import { chatWithChoices } from './choice-fan-out.js';
import { UpstreamError, type UpstreamErrorKind } from './errors.js';
import { UpstreamHttp, type StreamBody } from './http.js';
import { embedInSlices } from './embedding-slices.js';
import { primeStream } from './stream-priming.js';
import { sseEvents } from './stream-parsers.js';
import { countTextTokens } from './tokens.js';
import type { CallOptions, ProviderAdapter } from './types.js';
import { requestedThinkingBudget } from './thinking.js';
import { asChatRequest } from './text-completion.js';

export const COHERE_DEFAULT_BASE_URL = 'https://api.cohere.com';

const tokensSchema = z.object({ input_tokens: z.number().optional(), output_tokens: z.number().optional() });
const usageSchema = z.object({ billed_units: tokensSchema.nullish(), tokens: tokensSchema.nullish() }).nullish();

const chatResponseSchema = z.object({
  id: z.string().optional(),
  message: z.object({
    content: z.array(z.object({ type: z.string(), text: z.string().optional(), thinking: z.string().optional() })).nullish(),
    tool_calls: z
      .array(
        z.object({
          id: z.string().nullish(),
          function: z.object({ name: z.string(), arguments: z.string().nullish() }),
        }),
      )
      .nullish(),
  }),
  finish_reason: z.string(),
  usage: usageSchema,
});

const streamEventSchema = z.object({
  type: z.string().optional(),
  id: z.string().optional(),
  index: z.number().optional(),
  delta: z
    .object({
      message: z
        .object({
          // message-start carries these as empty arrays; later events as single objects.
          content: z.object({ text: z.string().optional(), thinking: z.string().optional() }).nullish().catch(null),
          tool_calls: z
            .object({
              id: z.string().nullish(),
              function: z.object({ name: z.string().nullish(), arguments: z.string().nullish() }).nullish(),
            })
            .nullish()
            .catch(null),
        })
        .nullish(),
      finish_reason: z.string().nullish(),
      usage: usageSchema,
    })
    .nullish(),
});

const embedResponseSchema = z.object({
  embeddings: z.object({ float: z.array(z.array(z.number())) }),
  meta: z.object({ billed_units: z.object({ input_tokens: z.number().optional() }).nullish() }).nullish(),
});

const modelListSchema = z.object({
  models: z.array(z.object({ name: z.string() })).optional(),
  next_page_token: z.string().nullish(),
});

/** Texts per embed call: Cohere answers 400 "total number of texts must be at most 96". */
const COHERE_EMBED_BATCH = 96;

export function createCohereProvider(name: string, cfg: ProviderConfig): CohereProvider {
  return new CohereProvider(name, cfg);
}

export class CohereProvider implements ProviderAdapter {
  readonly type = 'cohere' as const;
  private readonly http: UpstreamHttp;
  private readonly configured: boolean;

  constructor(
    readonly name: string,
    cfg: ProviderConfig,
  ) {
    this.configured = Boolean(cfg.api_key);
    this.http = new UpstreamHttp({
      provider: name,
      baseUrl: cfg.base_url ?? COHERE_DEFAULT_BASE_URL,
      headers: { ...(cfg.api_key ? { authorization: `Bearer ${cfg.api_key}` } : {}), ...cfg.headers },
      maxConnections: cfg.max_connections,
    });
  }

  async chat(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    // A legacy text completion goes through chat here (asChatRequest: what chat cannot do is refused).
    req = asChatRequest(this.name, req);
    return chatWithChoices(req, opts.signal, (one, signal) => this.chatOnce(one, { ...opts, signal }));
  }

  async streamChat(req: ChatRequest, opts: CallOptions): Promise<AsyncIterable<ChatChunk>> {
    // A legacy text completion goes through chat here (asChatRequest: what chat cannot do is refused).
    req = asChatRequest(this.name, req);
    if ((req.n ?? 1) > 1) throw this.error('unsupported', 'cannot stream more than one choice (n > 1)');
    const res = await this.http.stream('POST', '/v2/chat', toCohereRequest(req, true), opts, { accept: 'text/event-stream' });
    return primeStream(this.chunks(res.body, req.model));
  }

  async embed(req: EmbeddingRequest, opts: CallOptions): Promise<EmbeddingResult> {
    const texts = embeddingInputs(req.input);
    if (!texts) throw this.error('bad_request', 'embeds text inputs only, not token arrays');
    const answer = await embedInSlices(texts, COHERE_EMBED_BATCH, async (slice) => {
      const body = {
        model: req.model,
        texts: slice,
        input_type: 'search_document',
        embedding_types: ['float'],
        ...(req.dimensions ? { output_dimension: req.dimensions } : {}),
      };
      const res = await this.http.json<unknown>('POST', '/v2/embed', body, opts);
      const parsed = embedResponseSchema.safeParse(res.body);
      if (!parsed.success || parsed.data.embeddings.float.length !== slice.length) {
        throw this.error('malformed', 'answered an embed body of an unexpected shape', res.status);
      }
      const tokens = parsed.data.meta?.billed_units?.input_tokens ?? slice.reduce((sum, t) => sum + countTextTokens(t), 0);
      return { items: parsed.data.embeddings.float, tokens };
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
    let pageToken: string | null | undefined;
    for (let page = 0; page < 20; page++) {
      const query = `page_size=1000${pageToken ? `&page_token=${encodeURIComponent(pageToken)}` : ''}`;
      const res = await this.http.json<unknown>('GET', `/v1/models?${query}`, undefined, opts);
      const parsed = modelListSchema.safeParse(res.body);
      if (!parsed.success) throw this.error('malformed', 'answered a model list of an unexpected shape', res.status);
      for (const m of parsed.data.models ?? []) names.push(m.name);
      pageToken = parsed.data.next_page_token;
      if (!pageToken) break;
    }
    return names;
  }

  /** Configured with a key; not probed, so a Cohere outage never unreadies the whole gateway. */
  async ready(): Promise<boolean> {
    return this.configured;
  }

  async close(): Promise<void> {
    await this.http.close();
  }

  private async chatOnce(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    const res = await this.http.json<unknown>('POST', '/v2/chat', toCohereRequest(req, false), opts);
    const parsed = chatResponseSchema.safeParse(res.body);
    if (!parsed.success) throw this.error('malformed', 'answered a chat body of an unexpected shape', res.status);
    const body = parsed.data;
    const text = (body.message.content ?? []).map((c) => (c.type === 'text' ? (c.text ?? '') : '')).join('');
    // A reasoning model's thinking items (on by default for those models): the canonical reasoning_content.
    const reasoning = (body.message.content ?? []).map((c) => (c.type === 'thinking' ? (c.thinking ?? '') : '')).join('');
    const toolCalls: ToolCall[] = (body.message.tool_calls ?? []).map((c) => ({
      id: c.id || `call_${randomUUID()}`,
      type: 'function',
      function: { name: c.function.name, arguments: c.function.arguments || '{}' },
    }));
    const finish = this.finish(body.finish_reason, true);
    return {
      id: `chatcmpl-${body.id ?? randomUUID()}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: req.model,
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: text || (toolCalls.length > 0 ? null : ''),
            ...(reasoning ? { reasoning_content: reasoning } : {}),
            ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
          },
          finish_reason: finish,
          logprobs: null,
        },
      ],
      usage: mapCohereUsage(body.usage),
    };
  }

  private async *chunks(body: StreamBody, model: string): AsyncGenerator<ChatChunk> {
    let id = `chatcmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const chunk = (choices: ChunkChoice[], usage?: Usage): ChatChunk => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices,
      ...(usage ? { usage } : {}),
    });
    const delta = (d: ChunkChoice['delta']): ChatChunk => chunk([{ index: 0, delta: d, finish_reason: null }]);
    let yielded = false;
    let started = false;
    // Cohere numbers tool calls by its own content index; the canonical index counts tool calls.
    const toolIndex = new Map<number, number>();
    try {
      for await (const event of sseEvents(body)) {
        if (!event.data) continue;
        let json: unknown;
        try {
          json = JSON.parse(event.data);
        } catch (cause) {
          throw this.error('malformed', 'streamed an event that is not JSON', 0, !yielded, cause);
        }
        const parsed = streamEventSchema.safeParse(json);
        if (!parsed.success) throw this.error('malformed', 'streamed an event of an unexpected shape', 0, !yielded);
        const e = parsed.data;
        const type = e.type ?? event.event;
        const message = e.delta?.message;
        if (!started && type !== undefined) {
          started = true;
          if (e.id) id = `chatcmpl-${e.id}`;
          yield delta({ role: 'assistant', content: '' });
          yielded = true;
        }
        switch (type) {
          case 'content-start':
          case 'content-delta': {
            const text = message?.content?.text;
            if (text) yield delta({ content: text });
            const thinking = message?.content?.thinking;
            if (thinking) yield delta({ reasoning_content: thinking });
            break;
          }
          case 'tool-call-start': {
            const call = message?.tool_calls;
            const index = toolIndex.size;
            toolIndex.set(e.index ?? index, index);
            yield delta({
              tool_calls: [
                {
                  index,
                  id: call?.id || `call_${randomUUID()}`,
                  type: 'function',
                  function: { name: call?.function?.name ?? '', arguments: call?.function?.arguments ?? '' },
                },
              ],
            });
            break;
          }
          case 'tool-call-delta': {
            const args = message?.tool_calls?.function?.arguments;
            // A delta belongs to the call its index names, or else to the call opened last.
            const index = (e.index !== undefined ? toolIndex.get(e.index) : undefined) ?? Math.max(0, toolIndex.size - 1);
            if (args) yield delta({ tool_calls: [{ index, function: { arguments: args } }] });
            break;
          }
          case 'message-end': {
            const finish = this.finish(e.delta?.finish_reason ?? 'COMPLETE', false);
            yield chunk([{ index: 0, delta: {}, finish_reason: finish }]);
            yield chunk([], mapCohereUsage(e.delta?.usage));
            return;
          }
          // message-start, tool-plan-delta (the model's plan, not answer text), *-end, citations: nothing to forward.
          default:
            break;
        }
      }
      throw this.error('stream_interrupted', 'stream ended before message-end', 0, !yielded);
    } finally {
      body.destroy();
    }
  }

  /** COMPLETE/STOP_SEQUENCE stop, MAX_TOKENS length, TOOL_CALL tool_calls, ERROR_TOXIC filtered; ERROR fails. */
  private finish(reason: string, retryable: boolean): FinishReason {
    switch (reason) {
      case 'MAX_TOKENS':
      case 'ERROR_LIMIT':
        return 'length';
      case 'TOOL_CALL':
        return 'tool_calls';
      case 'ERROR_TOXIC':
        return 'content_filter';
      case 'ERROR':
        throw this.error('server', 'ended the generation with finish_reason ERROR', 0, retryable);
      case 'TIMEOUT':
        throw this.error('timeout', 'ended the generation with finish_reason TIMEOUT', 0, retryable);
      default:
        return 'stop';
    }
  }

  private error(kind: UpstreamErrorKind, message: string, status = 0, retryable?: boolean, cause?: unknown): UpstreamError {
    return new UpstreamError({ provider: this.name, kind, message: `${this.name} ${message}`, status, retryable, cause });
  }
}

/** Billed units are what the tenant pays for; raw token counts stand in when a reply lacks them. */
function mapCohereUsage(u: z.infer<typeof usageSchema>): Usage {
  const counts = u?.billed_units ?? u?.tokens;
  const prompt = counts?.input_tokens ?? 0;
  const completion = counts?.output_tokens ?? 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

export function toCohereRequest(req: ChatRequest, stream: boolean): Record<string, unknown> {
  const body: Record<string, unknown> = { model: req.model, messages: req.messages.map(toCohereMessage), stream };
  let tools = req.tools ?? [];
  const choice = req.tool_choice;
  // Cohere has REQUIRED and NONE but no named choice: a named tool is the only one offered, and required.
  if (choice && typeof choice === 'object') tools = tools.filter((t) => t.function.name === choice.function.name);
  if (tools.length > 0) {
    body.tools = tools.map((t) => ({
      type: 'function',
      function: {
        name: t.function.name,
        ...(t.function.description ? { description: t.function.description } : {}),
        parameters: t.function.parameters ?? { type: 'object', properties: {} },
      },
    }));
    if (choice === 'required' || (choice && typeof choice === 'object')) body.tool_choice = 'REQUIRED';
    else if (choice === 'none') body.tool_choice = 'NONE';
  }
  const max = requestedMaxTokens(req);
  if (max !== undefined) body.max_tokens = max;
  if (req.temperature !== undefined) body.temperature = req.temperature;
  // Cohere v2 takes p in 0.01..0.99 and both penalties in 0..1 (OpenAI: top_p 0..1, penalties
  // -2..2) and answers 400 outside them: values are clamped, so a negative penalty becomes none.
  if (req.top_p !== undefined) body.p = clamp(req.top_p, 0.01, 0.99);
  // Cohere's k runs 0..500.
  if (req.top_k !== undefined) body.k = clamp(req.top_k, 0, 500);
  const stop = stopList(req.stop);
  if (stop.length > 0) body.stop_sequences = stop;
  if (req.seed !== undefined) body.seed = req.seed;
  if (req.frequency_penalty !== undefined) body.frequency_penalty = clamp(req.frequency_penalty, 0, 1);
  if (req.presence_penalty !== undefined) body.presence_penalty = clamp(req.presence_penalty, 0, 1);
  // Cohere refuses response_format beside tools ("not supported when used in combination with the
  // documents or tools parameters"): with tools of the request's own it is left out, as for Gemini.
  const format = body.tools ? undefined : req.response_format;
  if (format?.type === 'json_object') body.response_format = { type: 'json_object' };
  else if (format?.type === 'json_schema') {
    body.response_format = { type: 'json_object', ...(format.json_schema.schema ? { json_schema: format.json_schema.schema } : {}) };
  }
  const thinking = cohereThinking(req);
  if (thinking) body.thinking = thinking;
  return body;
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

function toCohereMessage(m: ChatMessage): Record<string, unknown> {
  switch (m.role) {
    case 'system':
    case 'developer':
      return { role: 'system', content: messageText(m.content) };
    case 'user':
      if (typeof m.content === 'string' || m.content == null) return { role: 'user', content: m.content ?? '' };
      return {
        role: 'user',
        content: m.content.map((p) => {
          // Only with `options.files: true` does the router send documents here: a 400, not a crash.
          if (p.type === 'file') throw new UpstreamError({ provider: 'cohere', kind: 'unsupported', message: 'cohere: documents cannot be sent to Cohere chat' });
          return p.type === 'text' ? { type: 'text', text: p.text } : { type: 'image_url', image_url: { url: p.image_url.url } };
        }),
      };
    case 'assistant': {
      const out: Record<string, unknown> = { role: 'assistant' };
      const text = messageText(m.content);
      const calls = m.tool_calls?.length ? m.tool_calls : undefined;
      // Cohere refuses text beside tool calls ("text content is not allowed when tool_calls are
      // provided"): the text before a call is its `tool_plan` (a history from another provider).
      if (text) out[calls ? 'tool_plan' : 'content'] = text;
      if (calls) {
        out.tool_calls = calls.map((c) => ({
          id: c.id,
          type: 'function',
          function: { name: c.function.name, arguments: c.function.arguments },
        }));
      }
      return out;
    }
    case 'tool':
      return { role: 'tool', tool_call_id: m.tool_call_id ?? '', content: messageText(m.content) };
  }
}

/**
 * Cohere's `thinking` from what the client asked for: the Anthropic route's `thinking` (its budget as
 * `token_budget`), else OpenAI's `reasoning_effort` (`none` turns thinking off, a level is a budget).
 * Nothing asked: the model's default (reasoning models think).
 */
export function cohereThinking(req: ChatRequest): Record<string, unknown> | undefined {
  const budget = requestedThinkingBudget(req);
  if (budget === undefined) return undefined;
  return budget === 0 ? { type: 'disabled' } : { type: 'enabled', token_budget: budget };
}
