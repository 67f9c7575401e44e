// Conversions between a whole chat result and a stream of chunks, used wherever one side wants the
// other form: a cache hit replayed as a stream, a stream collected for a JSON client, aggregated
// passes streamed once chosen.
import type { ChatChoice, ChatChunk, ChatResult, ToolCall, Usage } from './chat.js';

/** Collects a chunk stream into one result (tool-call argument deltas joined). */
export async function collectStream(stream: AsyncIterable<ChatChunk>): Promise<ChatResult> {
  let id = '';
  let created = 0;
  let model = '';
  let fingerprint: string | undefined;
  let usage: Usage | undefined;
  const choices = new Map<number, { content: string; hasContent: boolean; calls: Map<number, ToolCall>; finish: ChatChoice['finish_reason']; stopSequence?: string }>();
  for await (const chunk of stream) {
    id ||= chunk.id;
    created ||= chunk.created;
    model ||= chunk.model;
    fingerprint ??= chunk.system_fingerprint;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      let acc = choices.get(c.index);
      if (!acc) {
        acc = { content: '', hasContent: false, calls: new Map(), finish: null };
        choices.set(c.index, acc);
      }
      if (typeof c.delta.content === 'string') {
        acc.content += c.delta.content;
        acc.hasContent ||= c.delta.content.length > 0;
      }
      for (const tc of c.delta.tool_calls ?? []) {
        const call = acc.calls.get(tc.index) ?? { id: '', type: 'function' as const, function: { name: '', arguments: '' } };
        if (tc.id) call.id = tc.id;
        if (tc.function?.name) call.function.name += tc.function.name;
        if (tc.function?.arguments) call.function.arguments += tc.function.arguments;
        acc.calls.set(tc.index, call);
      }
      if (c.finish_reason) acc.finish = c.finish_reason;
      if (c.stop_sequence) acc.stopSequence = c.stop_sequence;
    }
  }
  const out: ChatChoice[] = [...choices.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([index, acc]) => ({
      index,
      message: {
        role: 'assistant',
        content: acc.hasContent || acc.calls.size === 0 ? acc.content : null,
        ...(acc.calls.size ? { tool_calls: [...acc.calls.entries()].sort((a, b) => a[0] - b[0]).map(([, c]) => c) } : {}),
      },
      finish_reason: acc.finish ?? 'stop',
      logprobs: null,
      ...(acc.stopSequence ? { stop_sequence: acc.stopSequence } : {}),
    }));
  return {
    id,
    object: 'chat.completion',
    created,
    model,
    choices: out,
    usage: usage ?? { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    ...(fingerprint ? { system_fingerprint: fingerprint } : {}),
  };
}

/** Replays a result as chunks: role, content (in pieces of about `pieceChars`), tool calls, finish, usage. */
export function resultToChunks(result: ChatResult, pieceChars = 0): ChatChunk[] {
  const base = { id: result.id, object: 'chat.completion.chunk' as const, created: result.created, model: result.model, ...(result.system_fingerprint ? { system_fingerprint: result.system_fingerprint } : {}) };
  const out: ChatChunk[] = [];
  for (const choice of result.choices) {
    const index = choice.index;
    out.push({ ...base, choices: [{ index, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
    const content = choice.message.content ?? '';
    if (content) {
      const size = pieceChars > 0 ? pieceChars : content.length;
      for (let i = 0; i < content.length; i += size) {
        out.push({ ...base, choices: [{ index, delta: { content: content.slice(i, i + size) }, finish_reason: null }] });
      }
    }
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
