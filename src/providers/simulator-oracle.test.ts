import { describe, expect, it } from 'vitest';
import { extractAnswer } from '../scaling/answers.js';
import { createSimulatorProvider, oracleKey } from './simulator.js';

const opts = { signal: new AbortController().signal, timeoutMs: 1_000, requestId: 't' };
const ask = (content: string, n?: number) => ({ model: 'sim', messages: [{ role: 'user' as const, content }], ...(n ? { n } : {}) });

describe('simulator noisy-oracle mode', () => {
  it('derives the right answer and one fixed wrong answer per question', () => {
    expect(oracleKey('What is 17+25?')).toMatchObject({ right: '42' });
    expect(oracleKey('what is 9*7?')?.right).toBe('63');
    expect(oracleKey('What is 3-10?')?.right).toBe('-7');
    const k = oracleKey('What is 17+25?');
    expect(k?.wrong).not.toBe(k?.right);
    expect(oracleKey('What is 17+25?')).toEqual(k);
    expect(oracleKey('Tell me a story')).toBeUndefined();
    expect(oracleKey('Capital of France?', { 'Capital of France?': 'Paris' })).toEqual({ right: 'Paris', wrong: 'not Paris' });
  });

  it('answers right with probability p, independently per pass, wrong always the same', async () => {
    const sim = createSimulatorProvider('sim', { oracle: { p: 0.6, seed: 11 } });
    const key = oracleKey('What is 100+23?');
    let right = 0;
    const wrongs = new Set<string>();
    const N = 2000;
    for (let i = 0; i < N / 4; i++) {
      const r = await sim.chat(ask('What is 100+23?', 4), opts);
      for (const c of r.choices) {
        const a = extractAnswer(c.message.content ?? '').value;
        if (a === key?.right) right++;
        else wrongs.add(a);
      }
    }
    // Four standard errors of a binomial proportion at n = 2000: ±0.044.
    expect(Math.abs(right / N - 0.6)).toBeLessThan(4 * Math.sqrt((0.6 * 0.4) / N));
    expect([...wrongs]).toEqual([key?.wrong]);
  });

  it('leaves prompts it does not know to the usual simulated text', async () => {
    const sim = createSimulatorProvider('sim', { oracle: { p: 1 } });
    const r = await sim.chat(ask('Tell me a story'), opts);
    expect(r.choices[0]?.message.content).toContain('Simulated answer');
  });
});

describe('simulator answers', () => {
  it("carry refusal: null, as OpenAI's do", async () => {
    const r = await createSimulatorProvider('sim', {}).chat(ask('Tell me a story'), opts);
    expect(r.choices[0]?.message).toHaveProperty('refusal', null);
  });
});
