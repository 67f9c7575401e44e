// The `anthropic` provider: canonical chat over Anthropic's Messages API (POST {base}/v1/messages),
// raw HTTP through UpstreamHttp. Messages and tools are converted by anthropic-wire.ts; this file
// builds the request body, reads the response through a small zod schema and turns the SSE event
// stream into canonical chunks that always end with a usage chunk.
import { z } from 'zod';
import {
  needsAnthropic,
  promptCacheDetails,
  requestedMaxTokens,
  stopList,
  type ChatChunk,
  type ChatRequest,
  type ChatResult,
  type AnthropicContentDelta,
  type FinishReason,
  type Usage,
} from '../canonical/chat.js';
import type { EmbeddingRequest, EmbeddingResult } from '../canonical/embeddings.js';
import type { ProviderConfig } from '../config/schema.js';
import {
  finishReasonFromAnthropic,
  fromAnthropicContent,
  statusForAnthropicErrorType,
  THINKING_SEPARATOR,
  toAnthropicMessages,
  DocumentTypeError,
  toAnthropicToolChoice,
  toAnthropicTools,
  anthropicBetas,
} from './anthropic-wire.js';
import { chatWithChoices } from './choice-fan-out.js';
import { UpstreamError, kindForStatus } from './errors.js';
import { UpstreamHttp } from './http.js';
import { StopSequenceScanner } from './stop-sequences.js';
import { sseEvents } from './stream-parsers.js';
import { countTextTokens } from './tokens.js';
import type { CallOptions, ProviderAdapter } from './types.js';
import { asChatRequest } from './text-completion.js';

export const ANTHROPIC_VERSION = '2023-06-01';
const DEFAULT_BASE_URL = 'https://api.anthropic.com';
const DEFAULT_MAX_TOKENS = 4096;

// Only what is read from a Messages response; anything else the API adds is ignored.
const usageSchema = z.object({
  input_tokens: z.number().nullish(),
  output_tokens: z.number().nullish(),
  cache_creation_input_tokens: z.number().nullish(),
  cache_read_input_tokens: z.number().nullish(),
});
const blockSchema = z.looseObject({
  type: z.string(),
  text: z.string().optional(),
  id: z.string().optional(),
  name: z.string().optional(),
  input: z.unknown().optional(),
  thinking: z.string().optional(),
  signature: z.string().optional(),
  data: z.string().optional(),
});
const messageSchema = z.object({
  id: z.string(),
  model: z.string().optional(),
  content: z.array(blockSchema),
  stop_reason: z.string().nullish(),
  stop_sequence: z.string().nullish(),
  usage: usageSchema,
});
const streamEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('message_start'), message: z.object({ id: z.string(), model: z.string().optional(), usage: usageSchema.optional() }) }),
  z.object({ type: z.literal('content_block_start'), index: z.number(), content_block: blockSchema }),
  z.object({
    type: z.literal('content_block_delta'),
    index: z.number(),
    delta: z.looseObject({
      type: z.string(),
      text: z.string().optional(),
      partial_json: z.string().optional(),
      thinking: z.string().optional(),
      signature: z.string().optional(),
    }),
  }),
  z.object({ type: z.literal('content_block_stop'), index: z.number() }),
  z.object({ type: z.literal('message_delta'), delta: z.object({ stop_reason: z.string().nullish(), stop_sequence: z.string().nullish() }), usage: usageSchema.optional() }),
  z.object({ type: z.literal('message_stop') }),
  z.object({ type: z.literal('ping') }),
  z.object({ type: z.literal('error'), error: z.object({ type: z.string(), message: z.string() }) }),
]);

type AnthropicUsage = z.infer<typeof usageSchema>;

export interface AnthropicOptions {
  /** max_tokens sent when the client gave none (the Messages API requires it). */
  default_max_tokens: number;
  /** Overrides the anthropic-version header. */
  anthropic_version: string;
}

export function createAnthropicProvider(name: string, cfg: ProviderConfig): AnthropicProvider {
  const options = cfg.options ?? {};
  return new AnthropicProvider(name, cfg, {
    default_max_tokens: typeof options.default_max_tokens === 'number' ? options.default_max_tokens : DEFAULT_MAX_TOKENS,
    anthropic_version: typeof options.anthropic_version === 'string' ? options.anthropic_version : ANTHROPIC_VERSION,
  });
}

export class AnthropicProvider implements ProviderAdapter {
  readonly type = 'anthropic' as const;
  /** PDF and plain-text documents (document blocks). */
  readonly files = ['application/pdf', 'text/plain'] as const;
  private readonly http: UpstreamHttp;
  private readonly configured: boolean;
  /** The betas the provider's own `headers` turn on (`anthropic-beta`); a request's are added to them. */
  private readonly betas: string[];
  /** The header for a request that adds no betas of its own, built once. */
  private readonly ownBetaHeader: Record<string, string> | undefined;

  constructor(
    readonly name: string,
    cfg: ProviderConfig,
    readonly options: AnthropicOptions,
  ) {
    this.configured = Boolean(cfg.api_key) || Boolean(cfg.base_url);
    // The configured anthropic-beta (in whatever case it was written) is kept apart, so a request's
    // betas join it in one header rather than a second one beside it.
    const headers: Record<string, string> = {};
    const betas: string[] = [];
    for (const [k, v] of Object.entries(cfg.headers ?? {})) {
      if (k.toLowerCase() === 'anthropic-beta') betas.push(v);
      else headers[k] = v;
    }
    this.betas = anthropicBetas(betas);
    this.ownBetaHeader = this.betas.length > 0 ? { 'anthropic-beta': this.betas.join(',') } : undefined;
    this.http = new UpstreamHttp({
      provider: name,
      baseUrl: cfg.base_url ?? DEFAULT_BASE_URL,
      maxConnections: cfg.max_connections,
      headers: {
        'anthropic-version': options.anthropic_version,
        ...(cfg.api_key ? { 'x-api-key': cfg.api_key } : {}),
        ...headers,
      },
    });
  }

  /** The request's `anthropic-beta` header: the provider's betas and the client's, each once; none without any. */
  private betaHeader(req: ChatRequest): Record<string, string> | undefined {
    if (req.anthropic_beta === undefined || req.anthropic_beta.length === 0) return this.ownBetaHeader;
    const all = anthropicBetas(req.anthropic_beta, [...this.betas]);
    return all.length > 0 ? { 'anthropic-beta': all.join(',') } : undefined;
  }

  private messages(messages: ChatRequest['messages']): ReturnType<typeof toAnthropicMessages> {
    try {
      return toAnthropicMessages(messages);
    } catch (err) {
      if (err instanceof DocumentTypeError) throw new UpstreamError({ provider: this.name, kind: 'unsupported', message: `${this.name}: ${err.message}` });
      throw err;
    }
  }

  /** The Messages API request body for a canonical request (exported through the class for tests). */
  buildBody(req: ChatRequest, stream: boolean, json = jsonTool(req)): Record<string, unknown> {
    // Turns holding blocks only Anthropic reads (server tools', a document by URL) go as the client
    // sent them: then only the system prompt is converted.
    const sent = req.anthropic_messages;
    const { system, messages: converted } = this.messages(sent ? req.messages.filter((m) => m.role === 'system' || m.role === 'developer') : req.messages);
    const messages = sent ?? converted;
    const tools = json ? [json] : allTools(req);
    // Anthropic refuses a stop sequence that is only whitespace ("each stop sequence must contain
    // non-whitespace"), which OpenAI clients send (stop: ["\n"]): those are left out of the request
    // and applied here to the answer's text (whitespaceStops).
    const stop = stopList(req.stop).filter((s) => s.trim() !== '');
    // One call of the forced tool: with parallel calls a streamed answer would be two objects back to
    // back. With thinking on the tool is offered, not forced (Anthropic refuses forcing it there).
    const thinking = req.thinking?.type === 'enabled';
    const toolChoice = json ? { type: thinking ? 'auto' : 'tool', ...(thinking ? {} : { name: JSON_TOOL }), disable_parallel_tool_use: true } : tools ? toAnthropicToolChoice(req.tool_choice, req.parallel_tool_calls) : undefined;
    const format = nativeFormat(req);
    const body: Record<string, unknown> = {
      model: req.model,
      max_tokens: requestedMaxTokens(req) ?? this.options.default_max_tokens,
      messages,
      system,
      // OpenAI's temperature runs 0..2, Anthropic's 0..1: clamp instead of letting the upstream 400.
      temperature: req.temperature === undefined ? undefined : Math.min(1, req.temperature),
      // Newer Claude models refuse temperature and top_p together: with both, temperature alone is sent.
      top_p: req.temperature === undefined ? req.top_p : undefined,
      top_k: req.top_k,
      stop_sequences: stop.length > 0 ? stop : undefined,
      tools,
      tool_choice: toolChoice,
      // Extended thinking as the client asked (the Anthropic route's `thinking`).
      thinking: req.thinking,
      output_config: format ? { format } : undefined,
      metadata: req.user ? { user_id: req.user } : undefined,
      stream: stream || undefined,
    };
    for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key];
    return body;
  }

  async chat(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    // A legacy text completion goes through chat here (asChatRequest: what chat cannot do is refused).
    req = asChatRequest(this.name, req);
    // The Messages API has no `n`: n calls in parallel, choices numbered, usage summed.
    return chatWithChoices(req, opts.signal, (one, signal) => this.chatOnce(one, { ...opts, signal }));
  }

  private async chatOnce(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    const json = jsonTool(req);
    const res = await this.http.json<unknown>('POST', '/v1/messages', this.buildBody(req, false, json), opts, this.betaHeader(req));
    const parsed = messageSchema.safeParse(res.body);
    if (!parsed.success) throw this.malformed('a Messages response', parsed.error, res.body);
    const msg = parsed.data;
    const read = fromAnthropicContent(msg.content);
    const { thinking, reasoning } = read;
    let { text, toolCalls } = read;
    let finish = finishReasonFromAnthropic(msg.stop_reason) ?? 'stop';
    let stopSequence = msg.stop_sequence ?? undefined;
    const scanner = json ? undefined : whitespaceStops(req);
    // Claude's content as sent (server-tool blocks, citations), for the Anthropic route.
    const native = nativeContent(req, json, scanner) ? msg.content : undefined;
    if (scanner && text) {
      // A whitespace-only stop the upstream could not apply: the answer ends before it, and nothing
      // generated after it (a later tool call included) is part of the answer.
      const kept = scanner.push(text);
      if (scanner.stopped) {
        text = kept;
        toolCalls = [];
        finish = 'stop';
        stopSequence = scanner.matched;
      }
    }
    if (json) {
      // JSON mode: the forced tool's input is the answer.
      const answer = toolCalls.find((c) => c.function.name === JSON_TOOL);
      text = answer ? answer.function.arguments : text;
      toolCalls = [];
      if (finish === 'tool_calls') finish = 'stop';
    }
    return {
      id: msg.id,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: msg.model ?? req.model,
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: text,
            ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
            ...(reasoning !== undefined ? { reasoning_content: reasoning } : {}),
            ...(thinking.length > 0 ? { thinking_blocks: thinking } : {}),
            ...(native ? { anthropic_content: native } : {}),
          },
          finish_reason: finish,
          logprobs: null,
          ...(stopSequence ? { stop_sequence: stopSequence } : {}),
          ...(msg.stop_reason === 'pause_turn' ? { paused: true as const } : {}),
        },
      ],
      usage: toUsage(msg.usage),
    };
  }

  async streamChat(req: ChatRequest, opts: CallOptions): Promise<AsyncIterable<ChatChunk>> {
    // A legacy text completion goes through chat here (asChatRequest: what chat cannot do is refused).
    req = asChatRequest(this.name, req);
    if ((req.n ?? 1) > 1) {
      throw new UpstreamError({ provider: this.name, kind: 'unsupported', message: `${this.name}: Anthropic cannot stream more than one choice (n > 1)` });
    }
    const json = jsonTool(req);
    const res = await this.http.stream('POST', '/v1/messages', this.buildBody(req, true, json), opts, { accept: 'text/event-stream', ...this.betaHeader(req) });
    const scanner = json ? undefined : whitespaceStops(req);
    return this.chunks(res.body, req.model, json !== undefined, scanner, nativeContent(req, json, scanner));
  }

  private async *chunks(
    body: AsyncIterable<Uint8Array> & { destroy(err?: Error): void },
    requestedModel: string,
    jsonMode = false,
    /** Whitespace-only stops, applied to the text here: on one the stream ends, the upstream call is cut. */
    scanner?: StopSequenceScanner,
    /** Also stream every block as Anthropic sent it (`delta.anthropic_content`), for the Anthropic route. */
    native = false,
  ): AsyncGenerator<ChatChunk> {
    const created = Math.floor(Date.now() / 1000);
    let id = '';
    let model = requestedModel;
    let usage: AnthropicUsage = {};
    let finish: FinishReason | null = null;
    let produced = false;
    let stopped = false;
    // Anthropic numbers content blocks across text and tool_use; OpenAI numbers tool calls alone.
    const toolIndexOfBlock = new Map<number, number>();
    const toolStartInput = new Map<number, unknown>();
    const toolGotDelta = new Set<number>();
    // Thinking blocks, numbered 0, 1, … apart from text and tool calls, as the canonical deltas number them.
    const thinkingIndexOfBlock = new Map<number, number>();
    /** Whether thinking text has gone out: the next thinking block's text follows a separator. */
    let reasoningSent = false;
    let reasoningSeparator = false;
    const reasoningOut = (text: string): string => {
      const out = reasoningSeparator ? THINKING_SEPARATOR + text : text;
      reasoningSeparator = false;
      reasoningSent = true;
      return out;
    };
    /** JSON mode: whether the forced tool's (first) call has started; later calls are not streamed. */
    let jsonBlockSeen = false;
    /** With a scanner: the text that went out, to count the output tokens of a stream cut at a stop. */
    let emitted = '';
    /** The text chunk for `text`, passed through the scanner when there is one ('' = nothing to send). */
    const textOut = (text: string): string => {
      if (!scanner) return text;
      const out = scanner.push(text);
      emitted += out;
      return out;
    };
    const chunk = (choices: ChatChunk['choices'], extra: Partial<ChatChunk> = {}): ChatChunk => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices,
      ...extra,
    });
    try {
      for await (const sse of sseEvents(body)) {
        let json: unknown;
        try {
          json = JSON.parse(sse.data);
        } catch (cause) {
          throw new UpstreamError({ provider: this.name, kind: 'malformed', message: `${this.name} sent a stream event that is not JSON`, body: sse.data.slice(0, 300), cause, retryable: !produced });
        }
        const parsed = streamEventSchema.safeParse(json);
        if (!parsed.success) {
          // Event types added after this adapter was written are skipped, as Anthropic's versioning policy asks.
          const type = (json as { type?: unknown } | null)?.type;
          if (typeof type === 'string' && !streamEventSchema.options.some((o) => o.shape.type.value === type)) continue;
          throw this.malformed('a stream event', parsed.error, json, !produced);
        }
        const event = parsed.data;
        const piece = native ? nativePiece(event) : undefined;
        if (piece) yield chunk([{ index: 0, delta: { anthropic_content: [piece] }, finish_reason: null }]);
        switch (event.type) {
          case 'message_start':
            id = event.message.id;
            model = event.message.model ?? model;
            usage = { ...event.message.usage };
            produced = true;
            yield chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]);
            break;
          case 'content_block_start': {
            const block = event.content_block;
            if (block.type === 'text' && block.text) {
              const out = textOut(block.text);
              if (out) yield chunk([{ index: 0, delta: { content: out }, finish_reason: null }]);
            } else if (block.type === 'thinking' || block.type === 'redacted_thinking') {
              const index = thinkingIndexOfBlock.size;
              thinkingIndexOfBlock.set(event.index, index);
              if (block.type === 'redacted_thinking') {
                yield chunk([{ index: 0, delta: { thinking_blocks: [{ index, type: 'redacted_thinking', data: block.data ?? '' }] }, finish_reason: null }]);
                break;
              }
              reasoningSeparator = reasoningSent;
              const first = block.thinking ?? '';
              yield chunk([
                {
                  index: 0,
                  delta: { ...(first ? { reasoning_content: reasoningOut(first) } : {}), thinking_blocks: [{ index, type: 'thinking', thinking: first, signature: block.signature ?? '' }] },
                  finish_reason: null,
                },
              ]);
            } else if (block.type === 'tool_use' && jsonMode) {
              // JSON mode: the forced tool's input streams as the answer's text (its first call only).
              if (!jsonBlockSeen) {
                jsonBlockSeen = true;
                toolIndexOfBlock.set(event.index, -1);
                toolStartInput.set(event.index, block.input);
              }
            } else if (block.type === 'tool_use') {
              const toolIndex = toolIndexOfBlock.size;
              toolIndexOfBlock.set(event.index, toolIndex);
              toolStartInput.set(event.index, block.input);
              yield chunk([
                {
                  index: 0,
                  delta: { tool_calls: [{ index: toolIndex, id: block.id ?? `toolu_${event.index}`, type: 'function', function: { name: block.name ?? '', arguments: '' } }] },
                  finish_reason: null,
                },
              ]);
            }
            break;
          }
          case 'content_block_delta': {
            const d = event.delta;
            if (d.type === 'text_delta' && d.text) {
              const out = textOut(d.text);
              if (out) yield chunk([{ index: 0, delta: { content: out }, finish_reason: null }]);
            } else if (d.type === 'thinking_delta' && d.thinking) {
              const index = thinkingIndexOfBlock.get(event.index);
              if (index === undefined) break;
              yield chunk([{ index: 0, delta: { reasoning_content: reasoningOut(d.thinking), thinking_blocks: [{ index, type: 'thinking', thinking: d.thinking }] }, finish_reason: null }]);
            } else if (d.type === 'signature_delta' && d.signature) {
              const index = thinkingIndexOfBlock.get(event.index);
              if (index === undefined) break;
              yield chunk([{ index: 0, delta: { thinking_blocks: [{ index, type: 'thinking', signature: d.signature }] }, finish_reason: null }]);
            } else if (d.type === 'input_json_delta' && d.partial_json) {
              const toolIndex = toolIndexOfBlock.get(event.index);
              if (toolIndex === undefined) break;
              toolGotDelta.add(event.index);
              if (toolIndex < 0) yield chunk([{ index: 0, delta: { content: d.partial_json }, finish_reason: null }]);
              else yield chunk([{ index: 0, delta: { tool_calls: [{ index: toolIndex, function: { arguments: d.partial_json } }] }, finish_reason: null }]);
            }
            break;
          }
          case 'content_block_stop': {
            // The end of a text block: text held back as the possible start of a stop goes out.
            const held = scanner?.flush();
            if (held) {
              emitted += held;
              yield chunk([{ index: 0, delta: { content: held }, finish_reason: null }]);
            }
            // No argument text was streamed for this tool block: a tool without input (Anthropic sends
            // input {} and one empty input_json_delta), or a proxy that put the whole input in
            // content_block_start. The start input is then the arguments, `{}` at the least, as the
            // non-streamed answer gives them.
            const toolIndex = toolIndexOfBlock.get(event.index);
            if (toolIndex === undefined || toolGotDelta.has(event.index)) break;
            const input = toolStartInput.get(event.index);
            const whole = JSON.stringify(input && typeof input === 'object' ? input : {});
            // JSON mode (toolIndex -1): the forced tool's input is the answer's text.
            if (toolIndex < 0) yield chunk([{ index: 0, delta: { content: whole }, finish_reason: null }]);
            else yield chunk([{ index: 0, delta: { tool_calls: [{ index: toolIndex, function: { arguments: whole } }] }, finish_reason: null }]);
            break;
          }
          case 'message_delta':
            // message_delta usage is cumulative; fields it carries replace the message_start values.
            for (const [k, v] of Object.entries(event.usage ?? {})) if (v != null) usage[k as keyof AnthropicUsage] = v;
            finish = finishReasonFromAnthropic(event.delta.stop_reason) ?? finish;
            if (jsonMode && finish === 'tool_calls') finish = 'stop';
            if (finish) {
              yield chunk([
                {
                  index: 0,
                  delta: {},
                  finish_reason: finish,
                  ...(event.delta.stop_sequence ? { stop_sequence: event.delta.stop_sequence } : {}),
                  ...(event.delta.stop_reason === 'pause_turn' ? { paused: true as const } : {}),
                },
              ]);
            }
            break;
          case 'message_stop':
            stopped = true;
            break;
          case 'ping':
            break;
          case 'error': {
            const status = statusForAnthropicErrorType(event.error.type);
            const kind = event.error.type === 'overloaded_error' ? 'overloaded' : kindForStatus(status, event.error.message);
            throw new UpstreamError({
              provider: this.name,
              kind,
              status,
              message: `${this.name} stream error (${event.error.type}): ${event.error.message}`,
              body: event,
              // Retrying is only safe while nothing has reached the client.
              ...(produced ? { retryable: false } : {}),
            });
          }
        }
        if (scanner?.stopped) {
          // A whitespace-only stop was reached: the answer ends here and the rest is not generated
          // for nothing. Usage: the prompt as Anthropic counted it, the output counted from the text
          // sent plus the stop itself (the upstream's final count never comes).
          usage = { ...usage, output_tokens: Math.max(usage.output_tokens ?? 0, countTextTokens(emitted) + 1) };
          yield chunk([{ index: 0, delta: {}, finish_reason: 'stop', ...(scanner.matched ? { stop_sequence: scanner.matched } : {}) }]);
          stopped = true;
        }
        if (stopped) break;
      }
    } finally {
      body.destroy();
    }
    if (!stopped && finish === null) {
      throw new UpstreamError({ provider: this.name, kind: 'stream_interrupted', message: `${this.name} stream ended before message_stop`, retryable: !produced });
    }
    yield chunk([], { usage: toUsage(usage) });
  }

  async embed(_req: EmbeddingRequest, _opts: CallOptions): Promise<EmbeddingResult> {
    throw new UpstreamError({ provider: this.name, kind: 'unsupported', message: `${this.name}: Anthropic has no embeddings API` });
  }

  async listModels(opts: CallOptions): Promise<string[]> {
    const res = await this.http.json<unknown>('GET', '/v1/models?limit=1000', undefined, opts);
    const parsed = z.object({ data: z.array(z.object({ id: z.string() })) }).safeParse(res.body);
    if (!parsed.success) throw this.malformed('a model list', parsed.error, res.body);
    return parsed.data.data.map((m) => m.id);
  }

  async ready(): Promise<boolean> {
    return this.configured;
  }

  async close(): Promise<void> {
    await this.http.close();
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

function toUsage(u: AnthropicUsage): Usage {
  // Cached prompt tokens are still prompt tokens; Anthropic reports them beside input_tokens.
  const prompt = (u.input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0) + (u.cache_read_input_tokens ?? 0);
  const completion = u.output_tokens ?? 0;
  const usage: Usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  const cache = promptCacheDetails(u.cache_read_input_tokens, u.cache_creation_input_tokens);
  if (cache) usage.prompt_tokens_details = cache;
  return usage;
}

/**
 * The request's tools in the client's order: its function tools converted, Anthropic-defined ones
 * (bash, text_editor, web_search, …) as given, each at its position; none when there are none.
 */
function allTools(req: ChatRequest): Record<string, unknown>[] | undefined {
  const functions: Record<string, unknown>[] = req.tools?.length ? (toAnthropicTools(req.tools) as unknown as Record<string, unknown>[]) : [];
  if (!req.anthropic_tools?.length) return functions.length > 0 ? functions : undefined;
  const out = [...functions];
  for (const { position, tool } of [...req.anthropic_tools].sort((a, b) => a.position - b.position)) out.splice(Math.min(position, out.length), 0, tool);
  return out;
}

/**
 * Whether the answer's content goes on as Claude sent it (`anthropic_content`): for a request only
 * Anthropic can take (Anthropic-defined tools such as web search, native turns), whose answer may
 * hold server-tool blocks and citations. Not in JSON mode (the answer is the forced tool's input)
 * nor with a whitespace-only stop the gateway applies to the text itself.
 */
function nativeContent(req: ChatRequest, json: unknown, scanner: StopSequenceScanner | undefined): boolean {
  return needsAnthropic(req) && json === undefined && scanner === undefined;
}

/** A stream event as a piece of `anthropic_content`: a block's start, or what a delta adds to it. */
function nativePiece(event: { type: string; index?: number; content_block?: Record<string, unknown>; delta?: Record<string, unknown> }): AnthropicContentDelta | undefined {
  if (event.index === undefined) return undefined;
  if (event.type === 'content_block_start' && event.content_block) return { index: event.index, block: event.content_block };
  if (event.type !== 'content_block_delta' || !event.delta) return undefined;
  const d = event.delta;
  switch (d.type) {
    case 'text_delta':
      return typeof d.text === 'string' ? { index: event.index, text: d.text } : undefined;
    case 'input_json_delta':
      return typeof d.partial_json === 'string' ? { index: event.index, partial_json: d.partial_json } : undefined;
    case 'citations_delta':
      return d.citation !== undefined ? { index: event.index, citation: d.citation } : undefined;
    case 'thinking_delta':
      return typeof d.thinking === 'string' ? { index: event.index, thinking: d.thinking } : undefined;
    case 'signature_delta':
      return typeof d.signature === 'string' ? { index: event.index, signature: d.signature } : undefined;
    default:
      return undefined;
  }
}

/** The tool JSON mode forces: its input is the answer. */
const JSON_TOOL = 'json_response';

/**
 * JSON mode for the Messages API, which has none: `response_format` json_object or json_schema, on
 * a request without tools of its own, becomes one tool whose input schema is the requested one,
 * forced with tool_choice; the tool's input is returned as the message text. With the client's own
 * tools the format is not applied (a forced tool would stop them being called).
 */
function jsonTool(req: ChatRequest): { name: string; description: string; input_schema: Record<string, unknown> } | undefined {
  const f = req.response_format;
  if (!f || f.type === 'text' || req.tools?.length || req.anthropic_tools?.length || nativeFormat(req)) return undefined;
  if (f.type === 'json_object') return { name: JSON_TOOL, description: 'Give the answer as a JSON object.', input_schema: { type: 'object' } };
  // A root object, as OpenAI's structured outputs require too; Anthropic wants the type said.
  const schema = f.json_schema.schema ?? {};
  const input_schema = schema.type === undefined ? { type: 'object', ...schema } : schema;
  const about = f.json_schema.description ? `: ${f.json_schema.description}` : '';
  return { name: JSON_TOOL, description: `Give the answer as JSON (${f.json_schema.name}${about}).`, input_schema };
}

/**
 * Anthropic's own structured output (`output_config.format`) for a JSON schema asked with extended
 * thinking on: Anthropic refuses a forced tool beside thinking ("Thinking may not be enabled when
 * tool_choice forces tool use"), so there the schema goes natively and the answer's text is the JSON.
 */
function nativeFormat(req: ChatRequest): { type: 'json_schema'; schema: Record<string, unknown> } | undefined {
  const f = req.response_format;
  if (f?.type !== 'json_schema' || req.thinking?.type !== 'enabled' || req.tools?.length || req.anthropic_tools?.length) return undefined;
  const schema = f.json_schema.schema ?? {};
  return { type: 'json_schema', schema: schema.type === undefined ? { type: 'object', ...schema } : schema };
}

/** A scanner for the request's whitespace-only stop sequences (the ones not sent upstream), if any. */
function whitespaceStops(req: ChatRequest): StopSequenceScanner | undefined {
  const stops = stopList(req.stop).filter((s) => s !== '' && s.trim() === '');
  return stops.length > 0 ? new StopSequenceScanner(stops) : undefined;
}
