import { describe, expect, it } from 'vitest';
import type { ChatChunk, ChatResult } from '../canonical/chat.js';
import { resultToChunks } from '../canonical/convert.js';
import { answerToResult, answerToStream } from './replay.js';

const result: ChatResult = {
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1700000000,
  model: 'gpt-4o-mini',
  choices: [
    { index: 0, message: { role: 'assistant', content: 'Paris.' }, finish_reason: 'stop', logprobs: null },
    {
      index: 1,
      message: { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"x"}' } }] },
      finish_reason: 'tool_calls',
      logprobs: null,
    },
  ],
  usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
  system_fingerprint: 'fp',
};

// Folding and replaying chunks themselves are tested with canonical/convert.ts.
describe('replay', () => {
  it('replays stored chunks one for one under the new id', async () => {
    const chunks = resultToChunks(result);
    const out: ChatChunk[] = [];
    for await (const c of answerToStream({ kind: 'stream', chunks }, 'chatcmpl-new')) out.push(c);
    expect(out.map((c) => c.choices)).toEqual(chunks.map((c) => c.choices));
    expect(out.every((c) => c.id === 'chatcmpl-new')).toBe(true);
    expect(answerToResult({ kind: 'result', result }, 'x').id).toBe('x');
    expect(result.id).toBe('chatcmpl-1');
  });
});
