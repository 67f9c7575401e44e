import { describe, expect, it } from 'vitest';
import type { ChatChunk, ChatResult } from '../canonical/chat.js';
import { aggregateChunks, answerToResult, answerToStream, resultToChunks } from './replay.js';

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

describe('replay', () => {
  it('turns a result into chunks that fold back into the same result', () => {
    const chunks = resultToChunks(result);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: result.usage });
    expect(aggregateChunks(chunks)).toEqual(result);
  });

  it('folds split tool-call arguments and content pieces', () => {
    const base = { id: 'c', object: 'chat.completion.chunk' as const, created: 1, model: 'm' };
    const chunks: ChatChunk[] = [
      { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: 'Hel' }, finish_reason: null }] },
      { ...base, choices: [{ index: 0, delta: { content: 'lo' }, finish_reason: null }] },
      { ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 't', type: 'function', function: { name: 'f', arguments: '{"a"' } }] }, finish_reason: null }] },
      { ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: ':1}' } }] }, finish_reason: null }] },
      { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] },
      { ...base, choices: [], usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } },
    ];
    const r = aggregateChunks(chunks);
    expect(r.choices[0]?.message).toEqual({
      role: 'assistant',
      content: 'Hello',
      tool_calls: [{ id: 't', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }],
    });
    expect(r.choices[0]?.finish_reason).toBe('tool_calls');
    expect(r.usage.total_tokens).toBe(3);
  });

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
