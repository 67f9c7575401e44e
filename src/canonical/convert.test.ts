import { describe, expect, it } from 'vitest';
import type { ChatResult, TokenLogprob } from './chat.js';
import { collectStream, foldChunks, iterate, resultToChunks } from './convert.js';

const tok = (token: string, logprob: number): TokenLogprob => ({ token, logprob, bytes: [...Buffer.from(token)], top_logprobs: [{ token, logprob, bytes: [...Buffer.from(token)] }] });

const withLogprobs: ChatResult = {
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1,
  model: 'm',
  choices: [
    {
      index: 0,
      message: { role: 'assistant', content: 'Hello brave new world', refusal: null },
      finish_reason: 'stop',
      logprobs: { content: [tok('Hello', -0.1), tok(' brave', -0.2), tok(' new', -0.3), tok(' world', -0.4)] },
    },
    { index: 1, message: { role: 'assistant', content: null, refusal: 'I cannot help with that.' }, finish_reason: 'stop', logprobs: { content: null, refusal: [tok('I cannot help with that.', -0.5)] } },
  ],
  usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 },
  system_fingerprint: 'fp',
};

describe('result <-> chunks', () => {
  it('round-trips content, refusals and log-probabilities', async () => {
    const chunks = resultToChunks(withLogprobs);
    expect(foldChunks(chunks)).toEqual(withLogprobs);
    expect(await collectStream(iterate(chunks))).toEqual(withLogprobs);
    // The content's log-probabilities travel with the content.
    const content = chunks.find((c) => c.choices[0]?.index === 0 && c.choices[0].delta.content);
    expect(content?.choices[0]?.logprobs?.content).toHaveLength(4);
  });

  it('a result without log-probabilities folds back to logprobs null', () => {
    const plain: ChatResult = { ...withLogprobs, choices: [{ index: 0, message: { role: 'assistant', content: 'hi', refusal: null }, finish_reason: 'length', logprobs: null }] };
    const chunks = resultToChunks(plain);
    expect(chunks.every((c) => c.choices.every((ch) => ch.logprobs === undefined))).toBe(true);
    expect(foldChunks(chunks).choices[0]).toEqual({ index: 0, message: { role: 'assistant', content: 'hi', refusal: null }, finish_reason: 'length', logprobs: null });
  });

  it('keeps a tool-call answer content null and joins argument deltas', () => {
    const result = foldChunks([
      { id: 'x', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] },
      { id: 'x', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a"' } }] }, finish_reason: null }] },
      { id: 'x', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: ':1}' } }] }, finish_reason: 'tool_calls' }] },
    ]);
    expect(result.choices[0]?.message).toEqual({ role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }], refusal: null });
  });
});
