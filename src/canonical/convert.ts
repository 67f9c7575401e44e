// Conversions between a whole chat result and a stream of chunks, used wherever one side wants the
// other form: a cache hit replayed as a stream, a stream collected for a JSON client, aggregated
// passes streamed once chosen. One folder and one replay, so every field (refusals, tool calls, stop
// sequences, log-probabilities) survives both directions alike.
import type { ChatChoice, ChatChunk, ChatResult, ThinkingBlock, ThinkingBlockDelta, TokenLogprob, ToolCall, Usage } from './chat.js';

interface ChoiceAcc {
  content: string;
  hasContent: boolean;
  refusal?: string;
  calls: Map<number, ToolCall>;
  finish: ChatChoice['finish_reason'];
  stopSequence?: string;
  logprobs?: { content: TokenLogprob[] | null; refusal?: TokenLogprob[] };
  /** OpenAI's streamed audio: `data` and `transcript` arrive in pieces, the other fields whole. */
  audio?: Record<string, unknown>;
  annotations?: unknown[];
  reasoning?: string;
  thinking: Map<number, ThinkingBlock>;
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
  private readonly choices = new Map<number, ChoiceAcc>();

  add(chunk: ChatChunk): void {
    this.id ||= chunk.id;
    this.created ||= chunk.created;
    this.model ||= chunk.model;
    this.fingerprint ??= chunk.system_fingerprint;
    this.serviceTier ??= chunk.service_tier;
    if (chunk.usage) this.usage = chunk.usage;
    for (const c of chunk.choices) {
      let acc = this.choices.get(c.index);
      if (!acc) {
        acc = { content: '', hasContent: false, calls: new Map(), finish: null, thinking: new Map() };
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
      for (const t of c.delta.thinking_blocks ?? []) foldThinking(acc.thinking, t);
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
      if (c.finish_reason) acc.finish = c.finish_reason;
      if (c.stop_sequence) acc.stopSequence = c.stop_sequence;
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
          ...(acc.refusal !== undefined ? { refusal: acc.refusal } : {}),
          ...(acc.audio ? { audio: acc.audio } : {}),
          ...(acc.annotations ? { annotations: acc.annotations } : {}),
          ...(acc.reasoning !== undefined ? { reasoning_content: acc.reasoning } : {}),
          ...(acc.thinking.size ? { thinking_blocks: [...acc.thinking.entries()].sort((a, b) => a[0] - b[0]).map(([, b]) => b) } : {}),
        },
        finish_reason: acc.finish ?? 'stop',
        logprobs: acc.logprobs ? { content: acc.logprobs.content, ...(acc.logprobs.refusal ? { refusal: acc.logprobs.refusal } : {}) } : null,
        ...(acc.stopSequence ? { stop_sequence: acc.stopSequence } : {}),
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
 * Replays a result as chunks: per choice the role, the thinking, the content (its log-probabilities with it), a
 * refusal, the tool calls, the finish; then usage.
 */
export function resultToChunks(result: ChatResult): ChatChunk[] {
  const base = { id: result.id, object: 'chat.completion.chunk' as const, created: result.created, model: result.model, ...(result.system_fingerprint ? { system_fingerprint: result.system_fingerprint } : {}), ...(result.service_tier ? { service_tier: result.service_tier } : {}) };
  const out: ChatChunk[] = [];
  for (const choice of result.choices) {
    const index = choice.index;
    out.push({ ...base, choices: [{ index, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
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
      out.push({ ...base, choices: [{ index, delta: { content: choice.message.content }, finish_reason: null, ...(lp?.length ? { logprobs: { content: lp } } : {}) }] });
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
    out.push({ ...base, choices: [{ index, delta: {}, finish_reason: choice.finish_reason ?? 'stop', ...(choice.stop_sequence ? { stop_sequence: choice.stop_sequence } : {}) }] });
  }
  out.push({ ...base, choices: [], usage: result.usage });
  return out;
}

export async function* iterate<T>(items: readonly T[]): AsyncGenerator<T> {
  for (const item of items) yield item;
}
