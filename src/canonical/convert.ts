// Conversions between a whole chat result and a stream of chunks, used wherever one side wants the
// other form: a cache hit replayed as a stream, a stream collected for a JSON client, aggregated
// passes streamed once chosen. One folder and one replay, so every field (refusals, tool calls, stop
// sequences, log-probabilities) survives both directions alike.
import { joinTextLogprobs, type AnthropicContentDelta, type ChatChoice, type ChatChunk, type ChatResult, type TextLogprobs, type ThinkingBlock, type ThinkingBlockDelta, type TokenLogprob, type ToolCall, type Usage } from './chat.js';

interface ChoiceAcc {
  content: string;
  hasContent: boolean;
  refusal?: string;
  calls: Map<number, ToolCall>;
  finish: ChatChoice['finish_reason'];
  stopSequence?: string;
  paused?: boolean;
  logprobs?: { content: TokenLogprob[] | null; refusal?: TokenLogprob[] };
  /** A raw-text upstream's legacy log-probabilities, joined piece by piece. */
  textLogprobs?: TextLogprobs;
  /** OpenAI's streamed audio: `data` and `transcript` arrive in pieces, the other fields whole. */
  audio?: Record<string, unknown>;
  annotations?: unknown[];
  reasoning?: string;
  thinking?: Map<number, ThinkingBlock>;
  /** Claude's blocks as sent (`anthropic_content`), by index; `json` the input JSON streamed so far. */
  native?: Map<number, { block: Record<string, unknown>; json: string }>;
}

/** Adds a streamed piece of `anthropic_content` to its block (opened by the piece that gives it). */
function foldNative(blocks: Map<number, { block: Record<string, unknown>; json: string }>, d: AnthropicContentDelta): void {
  if (d.block) blocks.set(d.index, { block: structuredClone(d.block), json: '' });
  const entry = blocks.get(d.index);
  if (!entry) return;
  const b = entry.block;
  if (d.text !== undefined) b.text = (typeof b.text === 'string' ? b.text : '') + d.text;
  if (d.thinking !== undefined) b.thinking = (typeof b.thinking === 'string' ? b.thinking : '') + d.thinking;
  if (d.signature !== undefined) b.signature = (typeof b.signature === 'string' ? b.signature : '') + d.signature;
  if (d.citation !== undefined) b.citations = [...(Array.isArray(b.citations) ? b.citations : []), d.citation];
  if (d.partial_json !== undefined) entry.json += d.partial_json;
}

/** The folded blocks in order, streamed input JSON parsed into `input` (a tool without input keeps its start's). */
function nativeBlocks(blocks: Map<number, { block: Record<string, unknown>; json: string }>): Record<string, unknown>[] {
  return [...blocks.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([, { block, json }]) => {
      if (!json) return block;
      return { ...block, input: parseToolInput(json) };
    });
}

/**
 * A tool call's arguments (a JSON string) as the object Anthropic's `input` and Ollama's
 * `arguments` must be: the parsed object, `{}` for none, `{ value }` for JSON that is not an object,
 * `{ _raw }` for arguments that do not parse (a broken string must not throw).
 */
export function parseToolInput(args: string): Record<string, unknown> {
  if (!args) return {};
  try {
    const parsed: unknown = JSON.parse(args);
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : { value: parsed };
  } catch {
    return { _raw: args };
  }
}

/** Adds a streamed thinking piece to its block (opened by its first piece). */
function foldThinking(blocks: Map<number, ThinkingBlock>, d: ThinkingBlockDelta): void {
  let block = blocks.get(d.index);
  if (!block) {
    block = d.type === 'redacted_thinking' ? { type: 'redacted_thinking', data: '' } : { type: 'thinking', thinking: '', signature: '' };
    blocks.set(d.index, block);
  }
  if (block.type === 'redacted_thinking') block.data += d.data ?? '';
  else {
    block.thinking += d.thinking ?? '';
    block.signature += d.signature ?? '';
  }
}

/** Adds one streamed audio delta to what came before it: text fields joined, the rest replaced. */
function foldAudio(acc: Record<string, unknown> | undefined, delta: Record<string, unknown>): Record<string, unknown> {
  const out = { ...acc };
  for (const [k, v] of Object.entries(delta)) {
    out[k] = (k === 'data' || k === 'transcript') && typeof v === 'string' && typeof out[k] === 'string' ? (out[k] as string) + v : v;
  }
  return out;
}

/** Folds stream chunks, in order, into the result a non-streaming call would have returned. */
class ChunkFolder {
  private id = '';
  private created = 0;
  private model = '';
  private fingerprint: string | undefined;
  private serviceTier: string | undefined;
  private usage: Usage | undefined;
  private promptEchoed = false;
  private readonly choices = new Map<number, ChoiceAcc>();

  add(chunk: ChatChunk): void {
    this.id ||= chunk.id;
    if (chunk.prompt_echoed) this.promptEchoed = true;
    this.created ||= chunk.created;
    this.model ||= chunk.model;
    this.fingerprint ??= chunk.system_fingerprint;
    this.serviceTier ??= chunk.service_tier;
    if (chunk.usage) this.usage = chunk.usage;
    for (const c of chunk.choices) {
      let acc = this.choices.get(c.index);
      if (!acc) {
        acc = { content: '', hasContent: false, calls: new Map(), finish: null };
        this.choices.set(c.index, acc);
      }
      if (typeof c.delta.content === 'string') {
        acc.content += c.delta.content;
        acc.hasContent ||= c.delta.content.length > 0;
      }
      if (typeof c.delta.refusal === 'string') acc.refusal = (acc.refusal ?? '') + c.delta.refusal;
      if (c.delta.audio) acc.audio = foldAudio(acc.audio, c.delta.audio);
      if (c.delta.annotations?.length) (acc.annotations ??= []).push(...c.delta.annotations);
      if (typeof c.delta.reasoning_content === 'string') acc.reasoning = (acc.reasoning ?? '') + c.delta.reasoning_content;
      for (const t of c.delta.thinking_blocks ?? []) foldThinking((acc.thinking ??= new Map()), t);
      for (const p of c.delta.anthropic_content ?? []) foldNative((acc.native ??= new Map()), p);
      for (const tc of c.delta.tool_calls ?? []) {
        const call = acc.calls.get(tc.index) ?? { id: '', type: 'function' as const, function: { name: '', arguments: '' } };
        if (tc.id) call.id = tc.id;
        if (tc.function?.name) call.function.name += tc.function.name;
        if (tc.function?.arguments) call.function.arguments += tc.function.arguments;
        acc.calls.set(tc.index, call);
      }
      if (c.logprobs) {
        acc.logprobs ??= { content: null };
        if (c.logprobs.content) (acc.logprobs.content ??= []).push(...c.logprobs.content);
        if (c.logprobs.refusal) (acc.logprobs.refusal ??= []).push(...c.logprobs.refusal);
      }
      if (c.text_logprobs) acc.textLogprobs = joinTextLogprobs(acc.textLogprobs, c.text_logprobs);
      if (c.finish_reason) acc.finish = c.finish_reason;
      if (c.stop_sequence) acc.stopSequence = c.stop_sequence;
      if (c.paused) acc.paused = true;
    }
  }

  result(): ChatResult {
    const choices: ChatChoice[] = [...this.choices.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([index, acc]) => ({
        index,
        message: {
          role: 'assistant',
          // A tool-call answer reports null content (its opening role chunk carried "").
          content: acc.hasContent || (acc.calls.size === 0 && acc.refusal === undefined && acc.audio === undefined) ? acc.content : null,
          ...(acc.calls.size ? { tool_calls: [...acc.calls.entries()].sort((a, b) => a[0] - b[0]).map(([, c]) => c) } : {}),
          // Always present, as on OpenAI's answers (null without one): the OpenAI route need not copy the answer to add it.
          refusal: acc.refusal ?? null,
          ...(acc.audio ? { audio: acc.audio } : {}),
          ...(acc.annotations ? { annotations: acc.annotations } : {}),
          ...(acc.reasoning !== undefined ? { reasoning_content: acc.reasoning } : {}),
          ...(acc.thinking?.size ? { thinking_blocks: [...acc.thinking.entries()].sort((a, b) => a[0] - b[0]).map(([, b]) => b) } : {}),
          ...(acc.native ? { anthropic_content: nativeBlocks(acc.native) } : {}),
        },
        finish_reason: acc.finish ?? 'stop',
        logprobs: acc.logprobs ? { content: acc.logprobs.content, ...(acc.logprobs.refusal ? { refusal: acc.logprobs.refusal } : {}) } : null,
        ...(acc.textLogprobs ? { text_logprobs: acc.textLogprobs } : {}),
        ...(acc.stopSequence ? { stop_sequence: acc.stopSequence } : {}),
        ...(acc.paused ? { paused: true as const } : {}),
      }));
    return {
      id: this.id,
      object: 'chat.completion',
      created: this.created,
      model: this.model,
      choices,
      usage: this.usage ?? { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
      ...(this.fingerprint ? { system_fingerprint: this.fingerprint } : {}),
      ...(this.serviceTier ? { service_tier: this.serviceTier } : {}),
      ...(this.promptEchoed ? { prompt_echoed: true } : {}),
    };
  }
}

/** Collects a chunk stream into one result (tool-call argument deltas joined). */
export async function collectStream(stream: AsyncIterable<ChatChunk>): Promise<ChatResult> {
  const folder = new ChunkFolder();
  for await (const chunk of stream) folder.add(chunk);
  return folder.result();
}

/** Folds chunks already in hand (a cached stream) into one result. */
export function foldChunks(chunks: Iterable<ChatChunk>): ChatResult {
  const folder = new ChunkFolder();
  for (const chunk of chunks) folder.add(chunk);
  return folder.result();
}

/**
 * Replays a result as chunks: per choice the role, Claude's blocks as sent (anthropic_content), the thinking, the content (its log-probabilities with it), a
 * refusal, the tool calls, the finish; then usage.
 */
export function resultToChunks(result: ChatResult): ChatChunk[] {
  const base = {
    id: result.id,
    object: 'chat.completion.chunk' as const,
    created: result.created,
    model: result.model,
    ...(result.system_fingerprint ? { system_fingerprint: result.system_fingerprint } : {}),
    ...(result.service_tier ? { service_tier: result.service_tier } : {}),
    ...(result.prompt_echoed ? { prompt_echoed: true } : {}),
  };
  const out: ChatChunk[] = [];
  for (const choice of result.choices) {
    const index = choice.index;
    out.push({ ...base, choices: [{ index, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
    // Claude's blocks as sent (the Anthropic route renders them in place of the fields below), each whole.
    const native = choice.message.anthropic_content;
    if (native) out.push({ ...base, choices: [{ index, delta: { anthropic_content: native.map((block, i) => ({ index: i, block })) }, finish_reason: null }] });
    // Thinking first, as the model produced it: the text, and the blocks with their signatures.
    const { reasoning_content: reasoning, thinking_blocks: thinking } = choice.message;
    if (reasoning !== undefined || thinking?.length) {
      const delta: ChatChunk['choices'][number]['delta'] = {};
      if (reasoning !== undefined) delta.reasoning_content = reasoning;
      if (thinking?.length) delta.thinking_blocks = thinking.map((b, i) => ({ index: i, ...b }));
      out.push({ ...base, choices: [{ index, delta, finish_reason: null }] });
    }
    if (choice.message.content) {
      const lp = choice.logprobs?.content;
      const text = choice.text_logprobs;
      out.push({ ...base, choices: [{ index, delta: { content: choice.message.content }, finish_reason: null, ...(lp?.length ? { logprobs: { content: lp } } : {}), ...(text ? { text_logprobs: text } : {}) }] });
    }
    if (choice.message.refusal) {
      const lp = choice.logprobs?.refusal;
      out.push({ ...base, choices: [{ index, delta: { refusal: choice.message.refusal }, finish_reason: null, ...(lp ? { logprobs: { content: null, refusal: lp } } : {}) }] });
    }
    const { audio, annotations } = choice.message;
    if (audio || annotations?.length) out.push({ ...base, choices: [{ index, delta: { ...(audio ? { audio } : {}), ...(annotations?.length ? { annotations } : {}) }, finish_reason: null }] });
    for (const [i, call] of (choice.message.tool_calls ?? []).entries()) {
      out.push({
        ...base,
        choices: [{ index, delta: { tool_calls: [{ index: i, id: call.id, type: 'function', function: { name: call.function.name, arguments: call.function.arguments } }] }, finish_reason: null }],
      });
    }
    out.push({ ...base, choices: [{ index, delta: {}, finish_reason: choice.finish_reason ?? 'stop', ...(choice.stop_sequence ? { stop_sequence: choice.stop_sequence } : {}), ...(choice.paused ? { paused: true as const } : {}) }] });
  }
  out.push({ ...base, choices: [], usage: result.usage });
  return out;
}

export async function* iterate<T>(items: readonly T[]): AsyncGenerator<T> {
  for (const item of items) yield item;
}
