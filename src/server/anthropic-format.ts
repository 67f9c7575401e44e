// Anthropic Messages dialect for the gateway's own `POST /v1/messages`: validate a Messages request
// and turn it into a canonical ChatRequest, and render a canonical result or chunk stream as
// Anthropic's Message object or its exact SSE event sequence. Pure functions: no Fastify, no I/O;
// block and stop-reason rules are shared with the anthropic provider (providers/anthropic-wire.ts).
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { AnthropicContentDelta, CacheControl, ChatChunk, ChatMessage, ChatRequest, ChatResult, FinishReason, ThinkingBlock, Usage } from '../canonical/chat.js';
import { parseToolInput } from '../canonical/convert.js';
import {
  anthropicErrorType,
  anthropicStopReason,
  fromAnthropicToolChoice,
  fromAnthropicTurn,
  type AnthropicStopReason,
  type InboundBlock,
} from '../providers/anthropic-wire.js';
import type { GatewayError } from './errors.js';
import { validationError } from './validation.js';

/** A prompt-cache breakpoint: kept for Anthropic upstreams, ignored by the others. */
const cacheControl = z.object({ type: z.literal('ephemeral'), ttl: z.enum(['5m', '1h']).optional() }).nullish();
const textBlock = z.object({ type: z.literal('text'), text: z.string(), cache_control: cacheControl });
const imageBlock = z.object({
  type: z.literal('image'),
  cache_control: cacheControl,
  source: z.discriminatedUnion('type', [
    z.object({ type: z.literal('base64'), media_type: z.string().min(1), data: z.string() }),
    z.object({ type: z.literal('url'), url: z.url() }),
  ]),
});
const toolUseBlock = z.object({ type: z.literal('tool_use'), id: z.string().min(1), name: z.string().min(1), input: z.unknown(), cache_control: cacheControl });
/**
 * Documents: a base64 PDF, plain text, or content blocks; by URL only for Anthropic deployments,
 * which fetch it themselves (the request then goes to them alone, its turns as sent).
 */
const documentBlock = z.object({
  type: z.literal('document'),
  cache_control: cacheControl,
  source: z.discriminatedUnion('type', [
    z.object({ type: z.literal('base64'), media_type: z.literal('application/pdf'), data: z.string().min(1) }),
    z.object({ type: z.literal('text'), media_type: z.literal('text/plain').optional(), data: z.string() }),
    z.object({ type: z.literal('content'), content: z.union([z.string(), z.array(textBlock)]) }),
    z.object({ type: z.literal('url'), url: z.url() }),
  ]),
  title: z.string().nullish(),
  context: z.string().nullish(),
});
const toolResultBlock = z.object({
  type: z.literal('tool_result'),
  tool_use_id: z.string().min(1),
  content: z.union([z.string(), z.array(z.discriminatedUnion('type', [textBlock, imageBlock, documentBlock]))]).optional(),
  is_error: z.boolean().optional(),
  cache_control: cacheControl,
});
// Clients send earlier thinking back in the history: Claude needs it back, signed and in place
// (the anthropic adapter sends it; other providers never see it).
const thinkingBlock = z.object({ type: z.literal('thinking'), thinking: z.string().optional(), signature: z.string().optional() });
const redactedThinkingBlock = z.object({ type: z.literal('redacted_thinking'), data: z.string().optional() });
/**
 * Blocks of Anthropic's server tools in an assistant turn sent back (web search, web fetch, code
 * execution): passed through to Anthropic deployments as they are, whatever fields they carry.
 */
const SERVER_TOOL_BLOCKS = ['server_tool_use', 'web_search_tool_result', 'web_fetch_tool_result', 'code_execution_tool_result'] as const;
const serverToolBlocks = SERVER_TOOL_BLOCKS.map((type) => z.looseObject({ type: z.literal(type) }));
const contentBlock = z.discriminatedUnion('type', [textBlock, imageBlock, documentBlock, toolUseBlock, toolResultBlock, thinkingBlock, redactedThinkingBlock, ...serverToolBlocks]);

const outputFormat = z.object({ type: z.literal('json_schema'), schema: z.record(z.string(), z.unknown()) });

/** The Messages API request as the gateway accepts it. Unknown keys are ignored. */
export const anthropicMessagesRequestSchema = z.object({
  model: z.string().min(1),
  max_tokens: z.number().int().positive(),
  messages: z
    .array(z.object({ role: z.enum(['user', 'assistant']), content: z.union([z.string(), z.array(contentBlock)]) }))
    .min(1),
  system: z.union([z.string(), z.array(textBlock)]).optional(),
  stop_sequences: z.array(z.string()).optional(),
  temperature: z.number().min(0).max(1).optional(),
  top_p: z.number().min(0).max(1).optional(),
  top_k: z.number().int().min(0).optional(),
  tools: z
    .array(
      z.union([
        z.object({
          type: z.literal('custom').optional(),
          name: z.string().min(1),
          description: z.string().optional(),
          input_schema: z.record(z.string(), z.unknown()),
          cache_control: cacheControl,
        }),
        // Anthropic-defined tools (bash_20250124, text_editor_20250728, web_search_20250305, …): a
        // versioned type and a name, and whatever fields that tool takes, passed on as they are.
        z.looseObject({ type: z.string().regex(/^[a-z][a-z0-9_]*_\d{8}$/, 'a custom tool or an Anthropic-defined tool type (name_YYYYMMDD)'), name: z.string().min(1) }),
      ]),
    )
    .optional(),
  tool_choice: z
    .discriminatedUnion('type', [
      z.object({ type: z.enum(['auto', 'any']), disable_parallel_tool_use: z.boolean().optional() }),
      z.object({ type: z.literal('tool'), name: z.string().min(1), disable_parallel_tool_use: z.boolean().optional() }),
      z.object({ type: z.literal('none') }),
    ])
    .optional(),
  metadata: z.object({ user_id: z.string().nullish() }).optional(),
  /** Extended thinking: passed on to Anthropic upstreams as given, ignored by the others. */
  thinking: z
    .discriminatedUnion('type', [z.object({ type: z.literal('enabled'), budget_tokens: z.number().int().positive() }), z.object({ type: z.literal('disabled') })])
    .optional(),
  stream: z.boolean().optional(),
  /** Structured outputs: `output_config.format` (GA) or the beta's `output_format`; other output_config fields are ignored. */
  output_config: z.object({ format: outputFormat.nullish() }).nullish(),
  output_format: outputFormat.nullish(),
});

export type AnthropicMessagesRequest = z.infer<typeof anthropicMessagesRequestSchema>;

/** A block only Anthropic reads: a server tool's, or a document by URL. */
function anthropicOnlyBlock(block: { type: string; source?: unknown }): boolean {
  return (SERVER_TOOL_BLOCKS as readonly string[]).includes(block.type) || (block.type === 'document' && (block.source as { type?: string } | undefined)?.type === 'url');
}

/**
 * Validates a Messages request and converts it. Throws GatewayError with `param` set to the path of
 * the first problem (`messages.0.content.1.type`).
 */
export function anthropicToCanonical(body: unknown): ChatRequest {
  const parsed = anthropicMessagesRequestSchema.safeParse(body);
  if (!parsed.success) throw validationError(parsed.error, body);
  const b = parsed.data;
  const messages: ChatMessage[] = [];
  if (Array.isArray(b.system) && b.system.some((s) => s.cache_control)) {
    // A breakpoint in the system prompt: one system message per block, so the breakpoint stays after
    // its block (the anthropic adapter sends them as blocks again; others join them as before).
    for (const s of b.system) messages.push({ role: 'system', content: s.cache_control ? [{ type: 'text', text: s.text, cache_control: s.cache_control }] : s.text });
  } else {
    const system = typeof b.system === 'string' ? b.system : b.system?.map((s) => s.text).join('\n\n');
    if (system) messages.push({ role: 'system', content: system });
  }
  for (const turn of b.messages) messages.push(...fromAnthropicTurn(turn.role, turn.content as string | InboundBlock[]));
  // max_completion_tokens, as the Responses route does: OpenAI's reasoning models (o-series, gpt-5)
  // refuse max_tokens, and every adapter reads either field (requestedMaxTokens).
  const req: ChatRequest = { model: b.model, messages, max_completion_tokens: b.max_tokens };
  if (b.temperature !== undefined) req.temperature = b.temperature;
  if (b.top_p !== undefined) req.top_p = b.top_p;
  if (b.top_k !== undefined) req.top_k = b.top_k;
  if (b.stop_sequences?.length) req.stop = b.stop_sequences;
  if (b.metadata?.user_id) req.user = b.metadata.user_id;
  if (b.stream !== undefined) req.stream = b.stream;
  if (b.thinking) req.thinking = b.thinking;
  // Blocks only Anthropic reads (server tools' blocks, a document by URL): the turns go to Anthropic as
  // the client sent them, and the request to Anthropic deployments alone.
  if (b.messages.some((t) => Array.isArray(t.content) && t.content.some(anthropicOnlyBlock))) {
    req.anthropic_messages = (body as { messages: unknown[] }).messages;
  }
  if (b.tools?.length) {
    const functions: NonNullable<ChatRequest['tools']> = [];
    const native: NonNullable<ChatRequest['anthropic_tools']> = [];
    for (const [position, t] of b.tools.entries()) {
      if ('input_schema' in t && (t.type === undefined || t.type === 'custom')) {
        const custom = t as { name: string; description?: string; input_schema: Record<string, unknown>; cache_control?: CacheControl | null };
        functions.push({
          type: 'function',
          function: { name: custom.name, ...(custom.description ? { description: custom.description } : {}), parameters: custom.input_schema },
          ...(custom.cache_control ? { cache_control: custom.cache_control } : {}),
        });
      } else native.push({ position, tool: t as Record<string, unknown> });
    }
    if (functions.length) req.tools = functions;
    if (native.length) req.anthropic_tools = native;
  }
  // A tool_choice (and its disable_parallel_tool_use) with no tool to choose from is dropped:
  // OpenAI-compatible upstreams refuse it ("only allowed when 'tools' are specified").
  if (req.tools || req.anthropic_tools) Object.assign(req, fromAnthropicToolChoice(b.tool_choice));
  // Structured outputs become the canonical response format, which every provider applies (the
  // Anthropic and Gemini adapters not beside the client's own tools: docs/providers.md).
  const format = b.output_config?.format ?? b.output_format;
  if (format) req.response_format = { type: 'json_schema', json_schema: { name: 'output', schema: format.schema, strict: true } };
  return req;
}

export interface AnthropicMessageObject {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  /** Claude's blocks as it sent them (anthropic_content: server-tool blocks, citations) are passed on as they are. */
  content: ({ type: 'text'; text: string; citations: null } | { type: 'tool_use'; id: string; name: string; input: unknown } | ThinkingBlock | Record<string, unknown>)[];
  stop_reason: AnthropicStopReason;
  stop_sequence: string | null;
  usage: AnthropicUsage;
}

/**
 * Anthropic's usage. The cache counts are always there, as in Anthropic's answers. Where the
 * upstream reported its prompt cache (Anthropic, OpenAI, Gemini), they are its counts and
 * `input_tokens` is the rest of the prompt, as Anthropic counts; where it did not, they are null and
 * `input_tokens` is the whole prompt (a client summing the fields gets the prompt's total, not NaN).
 */
export interface AnthropicUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number | null;
  cache_read_input_tokens: number | null;
  /** Present in Anthropic's usage and nullable there; null here: the canonical usage does not carry them. */
  cache_creation: null;
  server_tool_use: null;
  service_tier: null;
}

/** The prompt's share of Anthropic's usage: input_tokens and the two cache counts. */
function promptUsage(u: Pick<Usage, 'prompt_tokens' | 'prompt_tokens_details'>): Pick<AnthropicUsage, 'input_tokens' | 'cache_creation_input_tokens' | 'cache_read_input_tokens'> {
  const d = u.prompt_tokens_details;
  if (!d) return { input_tokens: u.prompt_tokens, cache_creation_input_tokens: null, cache_read_input_tokens: null };
  const read = d.cached_tokens;
  const written = d.cache_write_tokens ?? 0;
  return { input_tokens: Math.max(0, u.prompt_tokens - read - written), cache_creation_input_tokens: written, cache_read_input_tokens: read };
}

const usage = (u: Pick<Usage, 'prompt_tokens' | 'prompt_tokens_details'>, output: number): AnthropicUsage => ({
  ...promptUsage(u),
  output_tokens: output,
  cache_creation: null,
  server_tool_use: null,
  service_tier: null,
});

/** A canonical result as Anthropic's Message object (the first choice; Messages has no `n`). */
export function canonicalToAnthropicMessage(result: ChatResult, model: string): AnthropicMessageObject {
  const choice = result.choices[0];
  const message = choice?.message;
  const native = message?.anthropic_content;
  let content: AnthropicMessageObject['content'];
  let refused = false;
  let calledTools: boolean;
  if (native) {
    // Claude's answer as it sent it (server-tool blocks and citations in place), when the adapter kept it.
    content = native.map((b) => ({ ...b }));
    calledTools = native.some((b) => b.type === 'tool_use');
  } else {
    // The upstream's thinking blocks first, in order, signatures kept (a client sends them back); thinking
    // text without blocks (an OpenAI-compatible upstream's reasoning_content) as one unsigned block.
    content = message?.thinking_blocks?.map((b) => ({ ...b })) ?? [];
    if (!message?.thinking_blocks && message?.reasoning_content) content.push(unsignedThinking(message.reasoning_content));
    // `citations` is always there in Anthropic's text blocks (null: the gateway requests none).
    if (message?.content) content.push({ type: 'text', text: message.content, citations: null });
    // An upstream refusal (OpenAI's message.refusal) is the answer's text, and the stop reason says so.
    if (message?.refusal) {
      content.push({ type: 'text', text: message.refusal, citations: null });
      refused = true;
    }
    for (const call of message?.tool_calls ?? []) {
      content.push({ type: 'tool_use', id: call.id || `toolu_${randomBytes(12).toString('hex')}`, name: call.function.name, input: parseToolInput(call.function.arguments) });
    }
    calledTools = Boolean(message?.tool_calls?.length);
  }
  return {
    id: messageId(result.id),
    type: 'message',
    role: 'assistant',
    model,
    content,
    stop_reason: choice?.paused ? 'pause_turn' : stopReason(choice?.finish_reason, choice?.stop_sequence, refused, calledTools),
    stop_sequence: choice?.stop_sequence ?? null,
    usage: usage(result.usage, result.usage.completion_tokens),
  };
}

export interface AnthropicSseEvent {
  event: string;
  data: Record<string, unknown>;
}

/**
 * A canonical chunk stream as Anthropic's SSE events: message_start, then for each thinking, text or
 * tool_use block content_block_start / content_block_delta… / content_block_stop, then message_delta (stop
 * reason, output tokens) and message_stop. Only choice 0 is rendered. If the chunk stream throws, the
 * open block is closed and the error is thrown on, for the stream's writer to end it with Anthropic's
 * mid-stream `error` event (routes/anthropic.ts, errorEvent).
 */
export async function* anthropicStreamEvents(
  chunks: AsyncIterable<ChatChunk>,
  model: string,
  inputTokensHint: number,
): AsyncGenerator<AnthropicSseEvent> {
  let started = false;
  let blockIndex = -1;
  type OpenBlock = { kind: 'text' } | { kind: 'tool'; toolIndex: number } | { kind: 'thinking' } | { kind: 'native' };
  // Assigned in openBlock and close: `as` keeps the checker from taking it for null from here on.
  let open = null as OpenBlock | null;
  /** Claude's blocks as sent (delta.anthropic_content): once they come, they are the answer and the portable fields are not rendered. */
  let native = false;
  let nativeCalledTool = false;
  const blockOfNative = new Map<number, number>();
  const blockOfTool = new Map<number, number>();
  /**
   * Tool calls of a portable stream (an OpenAI-compatible upstream's deltas), kept whole until the
   * answer ends and then sent one block each, in order, with their arguments as parseToolInput reads
   * them (as a JSON answer gives them): arguments a small model got wrong ('{"a":1}}', 'ls -la')
   * streamed as they came broke the Anthropic SDK's partial-JSON parser mid-stream, and deltas of
   * parallel calls that interleave would land after their block's content_block_stop.
   */
  const pendingTools = new Map<number, { id?: string; name: string; args: string }>();
  const blockOfThinking = new Map<number, number>();
  let finish: FinishReason | null = null;
  let stopSequence: string | undefined;
  let paused = false;
  let refused = false;
  let promptCount: Usage | undefined;
  let outputTokens: number | undefined;

  function* start(id: string): Generator<AnthropicSseEvent> {
    if (started) return;
    started = true;
    yield {
      event: 'message_start',
      data: {
        type: 'message_start',
        message: {
          id: messageId(id),
          type: 'message',
          role: 'assistant',
          model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: usage({ prompt_tokens: inputTokensHint }, 0),
        },
      },
    };
  }
  function* close(): Generator<AnthropicSseEvent> {
    if (!open) return;
    open = null;
    yield { event: 'content_block_stop', data: { type: 'content_block_stop', index: blockIndex } };
  }
  /** Closes the open block and begins the next with `block` (as nativeBlockEvents streams it); returns its index. */
  function* openBlock(kind: OpenBlock, block: Record<string, unknown>): Generator<AnthropicSseEvent, number> {
    yield* close();
    open = kind;
    yield* nativeBlockEvents(++blockIndex, block);
    return blockIndex;
  }

  try {
    for await (const chunk of chunks) {
      yield* start(chunk.id);
      if (chunk.usage) {
        promptCount = chunk.usage;
        outputTokens = chunk.usage.completion_tokens;
      }
      const choice = chunk.choices.find((c) => c.index === 0);
      if (!choice) continue;
      if (choice.finish_reason) finish = choice.finish_reason;
      if (choice.stop_sequence) stopSequence = choice.stop_sequence;
      if (choice.paused) paused = true;
      for (const piece of choice.delta.anthropic_content ?? []) {
        native = true;
        const index = blockOfNative.get(piece.index);
        if (piece.block) {
          if (piece.block.type === 'tool_use') nativeCalledTool = true;
          blockOfNative.set(piece.index, yield* openBlock({ kind: 'native' }, piece.block));
        } else if (index !== undefined) {
          yield* nativeDeltaEvents(index, piece);
        }
      }
      if (native) continue;
      const { content, refusal, tool_calls: toolCalls, reasoning_content: reasoning, thinking_blocks: thinking } = choice.delta;
      // Thinking text without blocks (an OpenAI-compatible upstream's reasoning_content): unsigned
      // thinking, into the thinking block that is open, or a new one whenever another block came in between.
      if (!thinking && reasoning) {
        if (open?.kind !== 'thinking') yield* openBlock({ kind: 'thinking' }, unsignedThinking(''));
        yield* nativeDeltaEvents(blockIndex, { index: blockIndex, thinking: reasoning });
      }
      // Thinking blocks, as Anthropic streams them: a start with empty thinking and signature, then
      // thinking_delta and signature_delta events (a redacted block comes whole in its start).
      for (const piece of thinking ?? []) {
        let index = blockOfThinking.get(piece.index);
        if (index === undefined) {
          const block = piece.type === 'redacted_thinking' ? { type: 'redacted_thinking', data: piece.data ?? '' } : unsignedThinking('');
          index = yield* openBlock({ kind: 'thinking' }, block);
          blockOfThinking.set(piece.index, index);
        }
        yield* nativeDeltaEvents(index, { index, thinking: piece.thinking, signature: piece.signature });
      }
      // A streamed refusal (OpenAI's delta.refusal) is text too; the message then ends with stop_reason refusal.
      if (refusal) refused = true;
      for (const text of [content, refusal]) {
        if (!text) continue;
        if (open?.kind !== 'text') yield* openBlock({ kind: 'text' }, { type: 'text', text: '', citations: null });
        yield* nativeDeltaEvents(blockIndex, { index: blockIndex, text });
      }
      for (const call of toolCalls ?? []) {
        let tool = pendingTools.get(call.index);
        if (!tool) pendingTools.set(call.index, (tool = { name: '', args: '' }));
        if (call.id) tool.id ??= call.id;
        if (call.function?.name) tool.name += call.function.name;
        if (call.function?.arguments) tool.args += call.function.arguments;
      }
    }
    for (const [toolIndex, tool] of [...pendingTools].sort((a, b) => a[0] - b[0])) {
      const id = tool.id || `toolu_${randomBytes(12).toString('hex')}`;
      const index = yield* openBlock({ kind: 'tool', toolIndex }, { type: 'tool_use', id, name: tool.name, input: {} });
      blockOfTool.set(toolIndex, index);
      yield { event: 'content_block_delta', data: { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: JSON.stringify(parseToolInput(tool.args)) } } };
    }
  } catch (err) {
    // The blocks begun are closed; the failure goes on to whoever writes the stream (writeSse's
    // onError), which renders it as an `error` event with the gateway's error mapping and logs it —
    // the same type, message and code the error would have had before the stream began.
    yield* start('');
    yield* close();
    throw err;
  }
  yield* start('');
  yield* close();
  yield {
    event: 'message_delta',
    data: {
      type: 'message_delta',
      delta: { stop_reason: paused ? 'pause_turn' : stopReason(finish, stopSequence, refused, blockOfTool.size > 0 || nativeCalledTool), stop_sequence: stopSequence ?? null },
      // The upstream's count replaces the hint sent in message_start (the SDK takes it from here),
      // the prompt cache's counts with it where the upstream reported them.
      usage: { ...(promptCount ? withoutNulls(promptUsage(promptCount)) : {}), output_tokens: outputTokens ?? 0 },
    },
  };
  yield { event: 'message_stop', data: { type: 'message_stop' } };
}

/**
 * One of Claude's blocks as Anthropic streams it: content_block_start with the block emptied (text
 * '', thinking and signature '', a tool's input {}), then what it holds as deltas — citations_delta
 * before the text's text_delta, input_json_delta, thinking_delta, signature_delta. A block with
 * nothing to stream (a `web_search_tool_result`, a redacted thinking block) comes whole in its start.
 * A live stream's starts are empty already; a replayed (cached) answer's are whole.
 */
function* nativeBlockEvents(index: number, block: Record<string, unknown>): Generator<AnthropicSseEvent> {
  const start = (content_block: Record<string, unknown>): AnthropicSseEvent => ({ event: 'content_block_start', data: { type: 'content_block_start', index, content_block } });
  switch (block.type) {
    case 'text': {
      const citations = Array.isArray(block.citations) ? block.citations : undefined;
      yield start({ ...block, text: '', ...(citations ? { citations: [] } : {}) });
      for (const citation of citations ?? []) yield* nativeDeltaEvents(index, { index, citation });
      if (typeof block.text === 'string' && block.text) yield* nativeDeltaEvents(index, { index, text: block.text });
      return;
    }
    case 'thinking':
      yield start({ ...block, thinking: '', signature: '' });
      if (typeof block.thinking === 'string' && block.thinking) yield* nativeDeltaEvents(index, { index, thinking: block.thinking });
      if (typeof block.signature === 'string' && block.signature) yield* nativeDeltaEvents(index, { index, signature: block.signature });
      return;
    case 'tool_use':
    case 'server_tool_use':
    case 'mcp_tool_use': {
      yield start({ ...block, input: {} });
      const input = block.input;
      if (input && typeof input === 'object' && Object.keys(input).length > 0) yield* nativeDeltaEvents(index, { index, partial_json: JSON.stringify(input) });
      return;
    }
    default:
      yield start(block);
  }
}

/** A piece added to one of Claude's blocks, as Anthropic's content_block_delta. */
function* nativeDeltaEvents(index: number, piece: AnthropicContentDelta): Generator<AnthropicSseEvent> {
  const delta = (d: Record<string, unknown>): AnthropicSseEvent => ({ event: 'content_block_delta', data: { type: 'content_block_delta', index, delta: d } });
  if (piece.citation !== undefined) yield delta({ type: 'citations_delta', citation: piece.citation });
  if (piece.text) yield delta({ type: 'text_delta', text: piece.text });
  if (piece.partial_json) yield delta({ type: 'input_json_delta', partial_json: piece.partial_json });
  if (piece.thinking) yield delta({ type: 'thinking_delta', thinking: piece.thinking });
  if (piece.signature) yield delta({ type: 'signature_delta', signature: piece.signature });
}

/**
 * Thinking text no signature came with, as a thinking block: `signature` is a string in the SDKs'
 * types (and empty in Anthropic's own content_block_start), so it is there, empty.
 */
function unsignedThinking(thinking: string): ThinkingBlock {
  return { type: 'thinking', thinking, signature: '' };
}

function withoutNulls<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null)) as Partial<T>;
}

/** Serialises one event as SSE text, the way Anthropic frames it. */
export function formatAnthropicSse(e: AnthropicSseEvent): string {
  return `event: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`;
}

/**
 * Anthropic's stop reason for a canonical finish: `refusal` when the upstream refused, `stop_sequence`
 * when one matched, and `tool_use` whenever the answer calls a tool — OpenAI ends a call it was made
 * to make (a named `tool_choice`, `required`) with finish_reason `stop`, and an Anthropic client's
 * agent loop runs tools on `stop_reason === 'tool_use'`.
 */
function stopReason(finish: FinishReason | null | undefined, stopSequence: string | undefined, refused: boolean, calledTools: boolean): AnthropicStopReason {
  if (refused) return 'refusal';
  if (stopSequence) return 'stop_sequence';
  if (calledTools && (finish === 'stop' || finish === null || finish === undefined)) return 'tool_use';
  return anthropicStopReason(finish);
}

function messageId(id: string): string {
  if (id.startsWith('msg_')) return id;
  return `msg_${randomBytes(12).toString('hex')}`;
}

export { anthropicErrorType };

/**
 * A GatewayError as Anthropic's error body, with the gateway's stable `code` beside Anthropic's
 * fields (docs/errors.md) and the request's id as `request_id`, as Anthropic sends it; the status
 * stays the GatewayError's. Every Anthropic-dialect error uses it: the error handler, the not-found
 * handler and a stream's error event.
 */
export function anthropicErrorFromGateway(
  err: GatewayError,
  requestId: string | null = null,
): { type: 'error'; error: { type: string; message: string; code: string }; request_id: string | null } {
  return { type: 'error', error: { type: anthropicErrorType(err.status), message: err.message, code: err.code }, request_id: requestId };
}
