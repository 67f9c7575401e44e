import { describe, expect, it } from 'vitest';
import { decodeAnswer, encodeAnswer, vectorFromBuffer, vectorToBase64 } from './entry.js';

const long = { kind: 'result' as const, result: { id: 'x', object: 'chat.completion' as const, created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant' as const, content: 'word '.repeat(2000) }, finish_reason: 'stop' as const, logprobs: null }], usage: { prompt_tokens: 1, completion_tokens: 2000, total_tokens: 2001 } } };

describe('entry codec', () => {
  it('compresses payloads above the threshold and restores them exactly', async () => {
    const packed = await encodeAnswer(long, 1024);
    const plain = await encodeAnswer(long, 0);
    expect(packed.length).toBeLessThan(plain.length / 5);
    expect(await decodeAnswer(packed)).toEqual(long);
    expect(await decodeAnswer(plain)).toEqual(long);
  });

  it('round-trips large payloads too (compressed and inflated off the event loop)', async () => {
    // ~200 KB of varied text: above the in-place limit both ways.
    let seed = 7;
    const words = Array.from({ length: 30_000 }, () => ((seed = (seed * 48271) % 2147483647), seed.toString(36)));
    const big = { ...long, result: { ...long.result, choices: [{ ...long.result.choices[0]!, message: { role: 'assistant' as const, content: words.join(' ') } }] } };
    const packed = await encodeAnswer(big, 1024);
    expect(packed[0]).toBe(1);
    expect(packed.length).toBeGreaterThan(8 * 1024);
    expect(await decodeAnswer(packed)).toEqual(big);
  });

  it('leaves small payloads uncompressed', async () => {
    const small = { kind: 'stream' as const, chunks: [{ id: 'x', object: 'chat.completion.chunk' as const, created: 1, model: 'm', choices: [{ index: 0, delta: { content: 'Hi.' }, finish_reason: null }] }] };
    const buf = await encodeAnswer(small, 1024);
    expect(buf[0]).toBe(0);
    expect(await decodeAnswer(buf)).toEqual(small);
  });

  it('refuses a payload that parses but is not an answer in the stored shape', async () => {
    const shapes = [
      null,
      { kind: 'other' },
      { kind: 'result', result: { choices: 'x', usage: {} } },
      { kind: 'result', result: { choices: [{ message: null }], usage: {} } },
      { kind: 'result', result: { choices: [{ message: { content: 'a', tool_calls: [{ function: 'f' }] } }], usage: {} } },
      { kind: 'result', result: { choices: [] } },
      { kind: 'stream', chunks: [] },
      { kind: 'stream', chunks: [{ nope: 1 }] },
      { kind: 'stream', chunks: [{ choices: [{ index: 0 }] }] },
      { kind: 'stream', chunks: [{ choices: [{ index: 0, delta: { tool_calls: 'x' } }] }] },
    ];
    for (const shape of shapes) {
      const buf = Buffer.concat([Buffer.from([0]), Buffer.from(JSON.stringify(shape))]);
      await expect(decodeAnswer(buf), JSON.stringify(shape)).rejects.toThrow(/not an answer/);
    }
  });

  it('round-trips vectors through bytes', () => {
    const v = Float32Array.from([0.25, -1, 3.5]);
    expect(Array.from(vectorFromBuffer(Buffer.from(vectorToBase64(v), 'base64')))).toEqual([0.25, -1, 3.5]);
  });
});
