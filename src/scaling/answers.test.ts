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
    // A marker is a whole word, and one in a closing remark is not an answer.
    ['12 + 30 = 42. I hope this answers your question.', '42', 'number'],
    ['The answer is 42. I hope this answer is helpful!', '42', 'marker'],
    ['The total is 42. Let me know if the answer is unclear.', '42', 'number'],
    ['This answer is based on the 2020 census: about 8 million.', '8', 'number'],
    // The marked sentence's last number, or the number after its last "=".
    ['The answer is 12 + 30 = 42.', '42', 'marker'],
    ['The answer is 3 apples and 4 pears, 7 in all.', '7', 'marker'],
    ['The answer is 42 (6 × 7).', '42', 'marker'],
    ['The answer is 42 because 40 + 2 makes it.', '42', 'marker'],
    ['The answer is 42. Then 7 more would be 49 but that is not asked.', '42', 'marker'],
    ['The answer to 2+3 is 5.', '5', 'marker'],
    ['The answer is x = 3, y = 4.', 'x=3,y=4', 'marker'],
    // Unicode minus is a minus; a hyphen is not.
    ['The answer is −3.', '-3', 'marker'],
    ['So x = −3', '-3', 'number'],
    ['Patients with COVID-19 and 7 days', '7', 'number'],
    // An article is no choice letter; a letter alone, in brackets or before a reason is.
    ['The answer is a dog.', 'dog', 'marker'],
    ['The answer is a cat.', 'cat', 'marker'],
    ['The answer is B.', 'b', 'marker'],
    ['Answer: C because the others fail.', 'c', 'marker'],
    ['The answer is [d]', 'd', 'marker'],
    // Tuples vote whole.
    ['The answer is (3, 4).', '(3,4)', 'marker'],
    ['The point is at (3, -5)', '(3,-5)', 'number'],
    ['Final answer: [1, 2.50, 3]', '(1,2.5,3)', 'marker'],
  ])('%j -> %s (%s)', (text, value, kind) => {
    expect(extractAnswer(text)).toEqual({ value, kind });
  });

  it('keeps different answers apart', () => {
    const differ = (a: string, b: string) => expect(extractAnswer(a).value).not.toBe(extractAnswer(b).value);
    differ('The answer is a dog.', 'The answer is a cat.');
    differ('The answer is −3.', 'The answer is 3.');
    differ('The answer is (3, 4).', 'The answer is (3, 5).');
    differ('The answer is (3,4).', 'The answer is 34.');
    differ('\\boxed{3,4}', '\\boxed{34}');
    expect(extractAnswer('The answer is 12 + 30 = 42.').value).toBe(extractAnswer('The answer is 42.').value);
    expect(extractAnswer('The answer is (3, 4).').value).toBe(extractAnswer('Final answer: (3,4)').value);
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

describe('answers that must not vote together', () => {
  it.each([
    ['a boxed fraction (nested braces)', 'The answer is $\\boxed{\\frac{1}{2}}$', 'The answer is $\\boxed{\\frac{3}{2}}$', '1/2'],
    ['a boxed power', '\\boxed{2^{10}}', '\\boxed{3^{10}}', '2^10'],
    ['yes or no about a number in the question', 'Yes, 17 is prime.', 'No, 17 is not prime.', 'yes'],
    ['JSON answers sharing a field value', '{"answer":"Paris","confidence":0.9}', '{"answer":"Lyon","confidence":0.9}', '{"answer":"Paris","confidence":0.9}'],
  ])('%s', (_case, one, other, value) => {
    expect(extractAnswer(one).value).toBe(value);
    expect(extractAnswer(one).value).not.toBe(extractAnswer(other).value);
  });

  it('reads a yes or no that is only an interjection before the answer as no answer ("Yes! … 42", "No problem. … = 36")', () => {
    expect(extractAnswer('Yes! Adding them up, the total comes to 42 apples.').value).toBe('42');
    expect(extractAnswer('Yes! Adding them up, the total comes to 42 apples.').value).not.toBe(extractAnswer('Yes! Adding them up, the total comes to 45 apples.').value);
    expect(extractAnswer('No problem. 12 * 3 = 36.').value).toBe('36');
    expect(extractAnswer('Yes.').value).toBe('yes');
  });

  it('votes a JSON answer by its content, whatever its key order, and reads ".5" as 0.5', () => {
    expect(extractAnswer('{"confidence":0.9,"answer":"Paris"}').value).toBe(extractAnswer('{"answer":"Paris","confidence":0.9}').value);
    expect(extractAnswer('The probability is .5').value).toBe('0.5');
    expect(extractAnswer('The probability is .5').value).not.toBe(extractAnswer('The probability is 5').value);
  });
});
