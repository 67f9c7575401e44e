// The tokens a forwarded answer (audio, images, moderations) reports, read from its body as it
// passes through to the client: OpenAI's `usage` object — `input_tokens` and `output_tokens` — in an
// image or transcription JSON answer (gpt-image-1, gpt-4o-transcribe), or in the event of such a
// stream that carries one (`image_generation.completed`, `image_edit.completed`,
// `transcript.text.done`, `speech.audio.done`). A usage by duration (whisper-1's `type: duration`)
// and audio bytes carry no tokens.
//
// A stream is read event by event as it passes, only the event being read kept: its usage is known
// as soon as its event has gone by, even if the client leaves before the upstream closes. A JSON
// answer is kept whole up to a limit, and past it only its last 64 KiB, where OpenAI puts `usage`
// (after the images): a body of any size is read.
import type { Usage } from '../canonical/chat.js';

/** Longest JSON answer kept whole, bytes: four 1536×1024 PNG images as base64 fit. */
export const USAGE_READ_LIMIT = 32 * 1024 * 1024;
/** What is kept of a longer JSON answer: its end, characters. */
const TAIL_CHARS = 64 * 1024;

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\b/i;
const SSE_TYPE = /^text\/event-stream\b/i;
const EVENT_END = /\r?\n\r?\n/g;

/** Reads a forwarded answer's usage as its bytes go by; `onUsage` is told each one it finds (a stream's last wins). */
export class UsageTap {
  private readonly kind: 'json' | 'sse' | undefined;
  private readonly decoder = new TextDecoder();
  private parts: Uint8Array[] = [];
  private size = 0;
  /** A JSON answer past the limit: its last TAIL_CHARS characters. */
  private tail: string | undefined;
  /** A stream: the text of the event being read. */
  private pending = '';

  constructor(
    contentType: string | undefined,
    private readonly onUsage: (usage: Usage) => void,
    private readonly limit = USAGE_READ_LIMIT,
  ) {
    this.kind = contentType === undefined ? undefined : JSON_TYPE.test(contentType) ? 'json' : SSE_TYPE.test(contentType) ? 'sse' : undefined;
  }

  /** Whether this answer's content type can carry a usage at all. */
  get reading(): boolean {
    return this.kind !== undefined;
  }

  push(chunk: Uint8Array): void {
    if (this.kind === 'sse') this.events(this.decoder.decode(chunk, { stream: true }), false);
    else if (this.kind === 'json') {
      this.size += chunk.byteLength;
      if (this.tail !== undefined) this.tail = (this.tail + this.decoder.decode(chunk, { stream: true })).slice(-TAIL_CHARS);
      else if (this.size <= this.limit) this.parts.push(chunk);
      else {
        const text = this.decoder.decode(Buffer.concat([...this.parts, chunk]), { stream: true });
        this.parts = [];
        this.tail = text.slice(-TAIL_CHARS);
      }
    }
  }

  /** The body has ended: what is left is read. */
  end(): void {
    if (this.kind === 'sse') this.events(this.decoder.decode(), true);
    else if (this.kind === 'json') {
      const usage = this.tail !== undefined ? usageOf({ usage: lastUsageObject(this.tail + this.decoder.decode()) }) : usageOf(parse(this.decoder.decode(Buffer.concat(this.parts))));
      this.parts = [];
      this.tail = undefined;
      if (usage) this.onUsage(usage);
    }
  }

  /** Reads the stream's complete events in `text` (all of it at the end); keeps the unfinished one. */
  private events(text: string, last: boolean): void {
    // Look for an event's end only in what could hold one: the new text and the few characters before it.
    const from = Math.max(0, this.pending.length - 3);
    this.pending += text;
    EVENT_END.lastIndex = from;
    let start = 0;
    for (let m = EVENT_END.exec(this.pending); m; m = EVENT_END.exec(this.pending)) {
      this.event(this.pending.slice(start, m.index));
      start = m.index + m[0].length;
    }
    this.pending = this.pending.slice(start);
    if (last && this.pending.trim()) this.event(this.pending);
    // An event longer than any answer this reads is not one to keep in memory.
    if (last || this.pending.length > this.limit) this.pending = '';
  }

  private event(block: string): void {
    if (!block.includes('"usage"')) return;
    const data = block
      .split(/\r?\n/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(l.startsWith('data: ') ? 6 : 5))
      .join('\n');
    const usage = usageOf(parse(data));
    if (usage) this.onUsage(usage);
  }
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The last `"usage": {…}` object in `text` (the end of a JSON answer), parsed; undefined when there is none whole. */
function lastUsageObject(text: string): unknown {
  const at = text.lastIndexOf('"usage"');
  if (at < 0) return undefined;
  const open = text.indexOf('{', at);
  if (open < 0) return undefined;
  // A usage object holds numbers and nested objects, no strings with braces: match braces.
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return parse(text.slice(open, i + 1));
  }
  return undefined;
}

/** `body.usage` in OpenAI's audio and image shape (input and output tokens) as a chat Usage. */
function usageOf(body: unknown): Usage | undefined {
  const u = (body as { usage?: { type?: unknown; input_tokens?: unknown; output_tokens?: unknown } } | null)?.usage;
  if (!u || typeof u !== 'object' || (u.type !== undefined && u.type !== 'tokens')) return undefined;
  const input = count(u.input_tokens);
  const output = count(u.output_tokens);
  if (input === undefined && output === undefined) return undefined;
  return { prompt_tokens: input ?? 0, completion_tokens: output ?? 0, total_tokens: (input ?? 0) + (output ?? 0) };
}

function count(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : undefined;
}
