// Upstream stream framings: Server-Sent Events (OpenAI, Anthropic, Gemini, Cohere) through
// eventsource-parser, and newline-delimited JSON (Ollama). Both take raw body bytes.
import { createParser, type EventSourceMessage, type ParseError } from 'eventsource-parser';

export type SseEvent = EventSourceMessage;

/**
 * The events of an SSE body. Besides the standard fields, a line whose FIELD is `error`
 * (`error: {json}`) is passed on as an event of type `error` whose data is `{"error": <that
 * json>}` — the shape an OpenAI-compatible stream's `data: {"error": …}` event has, so an adapter
 * that checks each event for an `error` member raises it the same way. llama-server builds before
 * ggml-org/llama.cpp PR #16486 wrote a stream's errors so (then `data: [DONE]`); SSE itself ignores
 * unknown fields, which would have turned the error into an empty, successful answer.
 */
export async function* sseEvents(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder();
  const queue: SseEvent[] = [];
  const parser = createParser({
    onEvent: (event) => queue.push(event),
    onError: (err: ParseError) => {
      if (err.type === 'unknown-field' && err.field === 'error') queue.push(errorFieldEvent(err.value ?? ''));
    },
  });
  for await (const chunk of body) {
    parser.feed(decoder.decode(chunk, { stream: true }));
    while (queue.length > 0) yield queue.shift() as SseEvent;
  }
  parser.feed(decoder.decode());
  while (queue.length > 0) yield queue.shift() as SseEvent;
}

/** An `error:` line's value as an `error` event holding `{"error": …}` (a bare text as its message). */
function errorFieldEvent(value: string): SseEvent {
  let parsed: unknown = value;
  try {
    parsed = JSON.parse(value);
  } catch {
    // not JSON: the text is the message
  }
  if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
    // Already wrapped (`error: {"error": {...}}`): passed on as it is.
    const wrapped = (parsed as { error?: unknown }).error != null;
    return { event: 'error', data: wrapped ? value : JSON.stringify({ error: parsed }) };
  }
  const message = (typeof parsed === 'string' ? parsed : value).trim() || 'the upstream sent an empty SSE error field';
  return { event: 'error', data: JSON.stringify({ error: { message } }) };
}

export async function* ndjsonLines(body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let nl = buffer.indexOf('\n');
    while (nl >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line) yield line;
      nl = buffer.indexOf('\n');
    }
  }
  buffer += decoder.decode();
  if (buffer.trim()) yield buffer.trim();
}
