// The tokens a forwarded answer (audio, images, moderations) reports, read from its body as it
// passes through to the client: OpenAI's `usage` object — `input_tokens` and `output_tokens` — in an
// image or transcription JSON answer (gpt-image-1, gpt-4o-transcribe), or in the last event of such
// a stream that carries one (`image_generation.completed`, `image_edit.completed`,
// `transcript.text.done`, `speech.audio.done`). A usage by duration (whisper-1's `type: duration`)
// and audio bytes carry no tokens. The body is kept only up to a cap: a longer one (many large
// images as base64) is not read and reports nothing.
import type { Usage } from '../canonical/chat.js';

/** Longest answer whose usage is read, bytes: four 1536×1024 PNG images as base64 fit. */
export const USAGE_READ_LIMIT = 32 * 1024 * 1024;

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\b/i;
const SSE_TYPE = /^text\/event-stream\b/i;

/** Collects a forwarded answer's bytes, when its content type can carry a usage, up to `limit`. */
export class UsageTap {
  private readonly kind: 'json' | 'sse' | undefined;
  private parts: Uint8Array[] = [];
  private size = 0;

  constructor(
    contentType: string | undefined,
    private readonly limit = USAGE_READ_LIMIT,
  ) {
    this.kind = contentType === undefined ? undefined : JSON_TYPE.test(contentType) ? 'json' : SSE_TYPE.test(contentType) ? 'sse' : undefined;
  }

  /** Whether this answer's bytes are worth keeping at all. */
  get reading(): boolean {
    return this.kind !== undefined && this.size <= this.limit;
  }

  push(chunk: Uint8Array): void {
    if (!this.reading) return;
    this.size += chunk.byteLength;
    if (this.size > this.limit) this.parts = [];
    else this.parts.push(chunk);
  }

  /** The usage the whole body reported; undefined when it reported none or was not read. */
  usage(): Usage | undefined {
    if (!this.reading || this.parts.length === 0) return undefined;
    const text = Buffer.concat(this.parts).toString('utf8');
    this.parts = [];
    return this.kind === 'json' ? usageOf(parse(text)) : lastEventUsage(text);
  }
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The last `data:` event of a stream whose JSON has a token usage. */
function lastEventUsage(text: string): Usage | undefined {
  const events = text.split(/\r?\n\r?\n/);
  for (let i = events.length - 1; i >= 0; i--) {
    const data = (events[i] as string)
      .split(/\r?\n/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(l.startsWith('data: ') ? 6 : 5))
      .join('\n');
    if (!data || !data.includes('"usage"')) continue;
    const usage = usageOf(parse(data));
    if (usage) return usage;
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
