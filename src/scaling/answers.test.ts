import { describe, expect, it } from 'vitest';
import { extractAnswer, normaliseAnswer } from './answers.js';
import { leaderConfidence, shouldStop, tally } from './vote.js';

describe('final answer extraction', () => {
  it.each([
    ['Let me think. 12 + 30 = 42. The answer is 42.', '42', 'marker'],
    ['Step 1: 3 apples.\nStep 2: 5 more.\nFinal answer: 8', '8', 'marker'],
    ['So the total is \\boxed{1,024}', '1024', 'boxed'],
    ['Natalia sold 48 clips.\n#### 72', '72', 'marker'],
    ['Comparing the options, the answer is (B) because it holds.', 'b', 'marker'],
    ['After ruling out the others:\n(C)', 'c', 'choice'],
    ['First 3 then 4 then finally 17', '17', 'number'],
    ['It costs $1,250.50 in total, so about 1250.5', '1250.5', 'number'],
    ['The Answer is: Paris.', 'paris', 'marker'],
    ['Blue', 'blue', 'text'],
  ])('%j -> %s (%s)', (text, value, kind) => {
    expect(extractAnswer(text)).toEqual({ value, kind });
  });

  it('makes equal answers in different dress vote together', () => {
    expect(extractAnswer('The answer is 42.0').value).toBe(extractAnswer('answer: 42').value);
    expect(normaliseAnswer('  The Eiffel Tower. ')).toBe(normaliseAnswer('eiffel tower'));
  });
});

describe('vote tally and the Adaptive-Consistency rule', () => {
  it('counts votes and keeps the first of tied leaders', () => {
    const t = tally(['a', 'b', 'b', 'a', 'c']);
    expect(t.leader).toBe('a');
    expect([t.v1, t.v2]).toEqual([2, 2]);
  });

  it('computes Σ C(n,k)/2^n for k ≤ v1 with n = v1+v2+1', () => {
    expect(leaderConfidence(1, 0)).toBeCloseTo(3 / 4);
    expect(leaderConfidence(3, 0)).toBeCloseTo(15 / 16);
    expect(leaderConfidence(4, 0)).toBeCloseTo(31 / 32);
    // v1=5, v2=2: n=8, Σ_{k≤5} C(8,k) = 1+8+28+56+70+56 = 219
    expect(leaderConfidence(5, 2)).toBeCloseTo(219 / 256);
  });

  it('stops at four unanimous votes but not at three, and never on a tie', () => {
    expect(shouldStop(3, 0)).toBe(false);
    expect(shouldStop(4, 0)).toBe(true);
    expect(shouldStop(6, 6)).toBe(false);
    // Large counts do not overflow.
    expect(leaderConfidence(900, 100)).toBeCloseTo(1);
  });
});
