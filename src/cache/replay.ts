// Turning a cached answer back into what the client asked for: a stored stream replays with its
// original chunking (new response id), a stored result becomes a short stream, and a stored stream
// folds into a result for a non-streaming request with the same key.
import type { ChatChoice, ChatChunk, ChatResult, ToolCall } from '../canonical/chat.js';
import type { CachedAnswer } from './entry.js';

/** Folds stream chunks into the ChatResult a non-streaming call would have returned. */
export function aggregateChunks(chunks: readonly ChatChunk[]): ChatResult {
  const first = chunks[0];
  const choices = new Map<number, ChatChoice & { toolCalls: Map<number, ToolCall> }>();
  let usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
  let fingerprint: string | undefined;
  for (const chunk of chunks) {
    if (chunk.usage) usage = chunk.usage;
    if (chunk.system_fingerprint) fingerprint = chunk.system_fingerprint;
    for (const c of chunk.choices) {
      let choice = choices.get(c.index);
      if (!choice) {
        choice = { index: c.index, message: { role: 'assistant', content: null }, finish_reason: null, logprobs: null, toolCalls: new Map() };
        choices.set(c.index, choice);
      }
      if (typeof c.delta.content === 'string') choice.message.content = (choice.message.content ?? '') + c.delta.content;
      if (typeof c.delta.refusal === 'string') choice.message.refusal = (choice.message.refusal ?? '') + c.delta.refusal;
      for (const t of c.delta.tool_calls ?? []) {
        const call = choice.toolCalls.get(t.index) ?? { id: '', type: 'function' as const, function: { name: '', arguments: '' } };
        if (t.id) call.id = t.id;
        if (t.function?.name) call.function.name += t.function.name;
        if (t.function?.arguments) call.function.arguments += t.function.arguments;
        choice.toolCalls.set(t.index, call);
      }
      if (c.finish_reason) choice.finish_reason = c.finish_reason;
      if (c.stop_sequence) choice.stop_sequence = c.stop_sequence;
    }
  }
  const result: ChatResult = {
    id: first?.id ?? '',
    object: 'chat.completion',
    created: first?.created ?? Math.floor(Date.now() / 1000),
    model: first?.model ?? '',
    choices: [...choices.values()]
      .sort((a, b) => a.index - b.index)
      .map(({ toolCalls, ...choice }) => {
        if (toolCalls.size) {
          choice.message.tool_calls = [...toolCalls.entries()].sort((a, b) => a[0] - b[0]).map(([, t]) => t);
          // The opening role chunk carries content "", which a tool-call answer reports as null.
          if (choice.message.content === '') choice.message.content = null;
        }
        return choice;
      }),
    usage,
  };
  if (fingerprint) result.system_fingerprint = fingerprint;
  return result;
}

/** The answer as a result, under a new response id. */
export function answerToResult(answer: CachedAnswer, id: string): ChatResult {
  const result = answer.kind === 'result' ? structuredClone(answer.result) : aggregateChunks(answer.chunks);
  result.id = id;
  return result;
}

/** Chunks for a cached result: role, content, tool calls and finish per choice, then usage. */
export function resultToChunks(result: ChatResult): ChatChunk[] {
  const base = { id: result.id, object: 'chat.completion.chunk' as const, created: result.created, model: result.model };
  const fp = result.system_fingerprint ? { system_fingerprint: result.system_fingerprint } : {};
  const chunks: ChatChunk[] = [];
  for (const c of result.choices) {
    chunks.push({ ...base, ...fp, choices: [{ index: c.index, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
    if (c.message.content) chunks.push({ ...base, ...fp, choices: [{ index: c.index, delta: { content: c.message.content }, finish_reason: null }] });
    if (c.message.tool_calls?.length) {
      chunks.push({
        ...base,
        ...fp,
        choices: [{
          index: c.index,
          delta: { tool_calls: c.message.tool_calls.map((t, i) => ({ index: i, id: t.id, type: 'function' as const, function: { ...t.function } })) },
          finish_reason: null,
        }],
      });
    }
    chunks.push({ ...base, ...fp, choices: [{ index: c.index, delta: {}, finish_reason: c.finish_reason, ...(c.stop_sequence ? { stop_sequence: c.stop_sequence } : {}) }] });
  }
  chunks.push({ ...base, ...fp, choices: [], usage: result.usage });
  return chunks;
}

/** Replays the answer as a stream under a new response id, chunk for chunk. */
export async function* answerToStream(answer: CachedAnswer, id: string): AsyncGenerator<ChatChunk> {
  const chunks = answer.kind === 'stream' ? answer.chunks : resultToChunks(answer.result);
  for (const chunk of chunks) yield { ...chunk, id };
}
