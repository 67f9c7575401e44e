// Combining passes: which passes may vote, and what the judge is shown and trusted with.
import { describe, expect, it } from 'vitest';
import type { ChatResult, FinishReason } from '../canonical/chat.js';
import { majority, select, toCandidate } from './aggregate.js';

function pass(content: string | null, pass: number, finish: FinishReason = 'stop') {
  const result: ChatResult = {
    id: 'x',
    object: 'chat.completion',
    created: 1,
    model: 'm',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: finish, logprobs: null }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  };
  return toCandidate(result, 0, pass);
}

describe('the vote', () => {
  it('leaves out empty passes (refusals, content filters): two of them do not outvote a real answer', () => {
    const s = majority([pass(null, 0, 'content_filter'), pass('', 1), pass('The answer is 42.', 2)]);
    expect(s.winner.pass).toBe(2);
    expect(s.votes).toEqual({ '42': 1 });
  });

  it('leaves out passes cut off at the token limit, which vote with an intermediate answer', () => {
    const cut = 'Step 1: 6 × 7 = 40 + 2, so far 40';
    const s = select('self_consistency', [pass(cut, 0, 'length'), pass(cut, 1, 'length'), pass('The answer is 42.', 2)]);
    expect(s.winner.pass).toBe(2);
    expect(s.votes).toEqual({ '42': 1 });
  });

  it('still picks one when every pass is empty or cut off', () => {
    const s = majority([pass('so far 40', 0, 'length'), pass(null, 1, 'content_filter')]);
    expect(s.winner.pass).toBe(0);
  });
});
