// OpenAI's deprecated function-calling API (`functions`, `function_call`, `role: "function"` turns,
// `message.function_call` answers), which the OpenAI API still accepts and older clients still send.
// A request in that form becomes the canonical tools form, so every provider serves it; an answer to
// a request that declared `functions` goes back in the legacy form: one `function_call` per choice
// (the first call, where a model made several) and finish reason `function_call`.
// `parallel_tool_calls` is not set for them: reasoning models refuse the parameter.
import type { ChatChunk, ChatResult } from '../canonical/chat.js';
import { GatewayError } from './errors.js';
import type { ChatCompletionBody } from './routes/openai-schema.js';

type Message = ChatCompletionBody['messages'][number];

/** Whether the body uses any part of the legacy API. */
export function usesLegacyFunctions(body: ChatCompletionBody): boolean {
  return body.functions !== undefined || body.function_call !== undefined || body.messages.some((m) => m.role === 'function' || (m.role === 'assistant' && m.function_call));
}

/**
 * The body in tools form: `functions` as tools, `function_call` as tool_choice, an assistant turn's
 * `function_call` as a tool call with an id made up from its position, and each `function` turn as
 * the tool result of the latest unanswered call of that name.
 */
export function fromLegacyFunctions(body: ChatCompletionBody): ChatCompletionBody {
  const out: ChatCompletionBody = { ...body };
  if (body.functions) {
    if (body.tools) throw new GatewayError('invalid_value', { param: 'functions', message: 'Send either `tools` or the deprecated `functions`, not both.' });
    out.tools = body.functions.map((f) => ({ type: 'function' as const, function: f }));
    delete out.functions;
  }
  if (body.function_call !== undefined) {
    if (body.tool_choice !== undefined) throw new GatewayError('invalid_value', { param: 'function_call', message: 'Send either `tool_choice` or the deprecated `function_call`, not both.' });
    out.tool_choice = typeof body.function_call === 'string' ? body.function_call : { type: 'function', function: { name: body.function_call.name } };
    delete out.function_call;
  }
  const pending: { id: string; name: string }[] = [];
  out.messages = body.messages.map((m, i): Message => {
    if (m.role === 'assistant' && m.function_call) {
      const id = `call_legacy_${i}`;
      pending.push({ id, name: m.function_call.name });
      const { function_call: call, ...rest } = m;
      return { ...rest, tool_calls: [...(m.tool_calls ?? []), { id, type: 'function', function: call }] };
    }
    if (m.role === 'function') {
      const k = pending.map((p) => p.name).lastIndexOf(m.name);
      if (k < 0) throw new GatewayError('invalid_value', { param: `messages.${i}`, message: `A "function" message must answer an earlier assistant function_call of "${m.name}".` });
      const [call] = pending.splice(k, 1);
      return { role: 'tool', tool_call_id: (call as { id: string }).id, content: m.content ?? '' };
    }
    return m;
  });
  return out;
}

/** A result in the legacy form: the first tool call as `function_call`, finish reason `function_call`. */
export function toLegacyResult(r: ChatResult): ChatResult {
  return {
    ...r,
    choices: r.choices.map((c) => {
      const call = c.message.tool_calls?.[0];
      if (!call) return c;
      const { tool_calls: _calls, ...message } = c.message;
      return { ...c, message: { ...message, function_call: call.function } as typeof c.message, finish_reason: legacyFinish(c.finish_reason) };
    }),
  };
}

/** A chunk in the legacy form: the first tool call's deltas as `delta.function_call`. */
export function toLegacyChunk(chunk: ChatChunk): ChatChunk {
  if (!chunk.choices.some((c) => c.delta.tool_calls || c.finish_reason === 'tool_calls')) return chunk;
  return {
    ...chunk,
    choices: chunk.choices.map((c) => {
      const { tool_calls: calls, ...delta } = c.delta;
      const first = calls?.find((t) => t.index === 0);
      const fn = first?.function ? { ...(first.function.name ? { name: first.function.name } : {}), arguments: first.function.arguments ?? '' } : undefined;
      return { ...c, delta: (fn ? { ...delta, function_call: fn } : delta) as typeof c.delta, finish_reason: legacyFinish(c.finish_reason) };
    }),
  };
}

function legacyFinish<T extends string | null>(reason: T): T {
  return (reason === 'tool_calls' ? 'function_call' : reason) as T;
}
