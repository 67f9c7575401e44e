import { describe, expect, it } from 'vitest';
import type { Usage } from '../canonical/chat.js';
import { UsageTap } from './forward-usage.js';

const bytes = (s: string) => new TextEncoder().encode(s);

/** The last usage `tap` reports for `body`, fed in pieces of `step` bytes, once the body has ended. */
function read(contentType: string | undefined, body: string, step = 7, limit?: number) {
  let found: Usage | undefined;
  const tap = new UsageTap(contentType, (u) => (found = u), limit);
  const all = bytes(body);
  for (let i = 0; i < all.length; i += step) tap.push(all.subarray(i, i + step));
  tap.end();
  return found;
}

describe('UsageTap', () => {
  it("reads an image answer's usage (gpt-image-1), split anywhere, multi-byte text included", () => {
    const body = JSON.stringify({ created: 1, data: [{ b64_json: 'iVBORw0KGgo=', revised_prompt: 'un café — très bien' }], usage: { total_tokens: 4210, input_tokens: 50, output_tokens: 4160, input_tokens_details: { text_tokens: 50, image_tokens: 0 } } });
    expect(read('application/json', body, 3)).toEqual({ prompt_tokens: 50, completion_tokens: 4160, total_tokens: 4210 });
    expect(read('application/json; charset=utf-8', body)).toEqual({ prompt_tokens: 50, completion_tokens: 4160, total_tokens: 4210 });
  });

  it("reads a transcription's token usage, not whisper-1's duration", () => {
    expect(read('application/json', JSON.stringify({ text: 'hello', usage: { type: 'tokens', input_tokens: 14, input_token_details: { audio_tokens: 14, text_tokens: 0 }, output_tokens: 45, total_tokens: 59 } }))).toEqual({
      prompt_tokens: 14,
      completion_tokens: 45,
      total_tokens: 59,
    });
    expect(read('application/json', JSON.stringify({ text: 'hello', usage: { type: 'duration', seconds: 9 } }))).toBeUndefined();
  });

  it('reads the last event with a usage of a stream (images, transcriptions, speech)', () => {
    const image = [
      `event: image_generation.partial_image\ndata: ${JSON.stringify({ type: 'image_generation.partial_image', b64_json: 'AAAA', partial_image_index: 0 })}\n\n`,
      `event: image_generation.completed\ndata: ${JSON.stringify({ type: 'image_generation.completed', b64_json: 'BBBB', usage: { total_tokens: 300, input_tokens: 20, output_tokens: 280, input_tokens_details: { text_tokens: 20, image_tokens: 0 } } })}\n\n`,
    ].join('');
    expect(read('text/event-stream', image, 5)).toEqual({ prompt_tokens: 20, completion_tokens: 280, total_tokens: 300 });
    const transcript = `data: ${JSON.stringify({ type: 'transcript.text.delta', delta: 'hel' })}\r\n\r\ndata: ${JSON.stringify({ type: 'transcript.text.done', text: 'hello', usage: { type: 'tokens', input_tokens: 9, output_tokens: 2, total_tokens: 11 } })}\r\n\r\n`;
    expect(read('text/event-stream; charset=utf-8', transcript)).toEqual({ prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 });
    const speech = `data: ${JSON.stringify({ type: 'speech.audio.delta', audio: 'AAAA' })}\n\ndata: ${JSON.stringify({ type: 'speech.audio.done', usage: { input_tokens: 12, output_tokens: 340, total_tokens: 352 } })}\n\n`;
    expect(read('text/event-stream', speech)).toEqual({ prompt_tokens: 12, completion_tokens: 340, total_tokens: 352 });
  });

  it("reports a stream's usage as soon as its event has passed, before the body ends", () => {
    const seen: Usage[] = [];
    const tap = new UsageTap('text/event-stream', (u) => seen.push(u));
    tap.push(bytes(`event: image_generation.completed\ndata: ${JSON.stringify({ type: 'image_generation.completed', b64_json: 'BBBB', usage: { input_tokens: 20, output_tokens: 280, total_tokens: 300 } })}\n\n`));
    expect(seen).toEqual([{ prompt_tokens: 20, completion_tokens: 280, total_tokens: 300 }]);
    tap.push(bytes(': keep-alive\n\n'));
    tap.end();
    expect(seen).toHaveLength(1);
  });

  it('keeps nothing of audio bytes or text answers, and reports nothing for an answer without a usage', () => {
    const seen: Usage[] = [];
    const audio = new UsageTap('audio/mpeg', (u) => seen.push(u));
    expect(audio.reading).toBe(false);
    audio.push(bytes('{"usage":{"input_tokens":1,"output_tokens":1}}'));
    audio.end();
    expect(seen).toEqual([]);
    expect(read('text/plain', 'hello')).toBeUndefined();
    expect(read(undefined, '{"usage":{"input_tokens":1,"output_tokens":1}}')).toBeUndefined();
    expect(read('application/json', JSON.stringify({ id: 'modr-1', results: [{ flagged: false }] }))).toBeUndefined();
    expect(read('application/json', '{"usage": {"input_tokens": 5, "output_tok')).toBeUndefined();
    expect(read('application/json', JSON.stringify({ usage: { input_tokens: -3, output_tokens: 'many' } }))).toBeUndefined();
  });

  it('reads the usage at the end of a JSON answer past its limit from the tail it keeps', () => {
    const body = JSON.stringify({ data: [{ b64_json: 'x'.repeat(200_000) }, { b64_json: 'y'.repeat(200_000) }], usage: { input_tokens: 1, output_tokens: 2, total_tokens: 3, input_tokens_details: { text_tokens: 1, image_tokens: 0 } } });
    expect(read('application/json', body, 4_096, 1_000)).toEqual({ prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });
    expect(read('application/json', body, 4_096)).toEqual({ prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });
    // Past the limit with no usage at its end: nothing, not a usage found inside the images.
    expect(read('application/json', JSON.stringify({ data: [{ b64_json: `"usage":{"input_tokens":9}${'x'.repeat(100_000)}` }] }), 4_096, 1_000)).toBeUndefined();
  });
});
