// Seeds derived from a client's seed — the passes of a scaled request, the choices of a local
// llama.cpp call — must differ from one another, or every sample is the same answer.
import { describe, expect, it } from 'vitest';
import { seedFor } from '../canonical/chat.js';
import { llamaSeed } from './local.js';

describe('seedFor (passes of a scaled request)', () => {
  it('is seed + k while that is exact, and still distinct past 2^53 (64-bit seeds clients send)', () => {
    expect([0, 1, 2, 3].map((k) => seedFor(42, k))).toEqual([42, 43, 44, 45]);
    const big = 2 ** 60;
    const seeds = [0, 1, 2, 3, 4].map((k) => seedFor(big, k));
    expect(new Set(seeds).size).toBe(5);
    expect(seeds.slice(1).every((s) => Number.isSafeInteger(s))).toBe(true);
    // Reproducible: the same seed gives the same passes.
    expect([0, 1, 2, 3, 4].map((k) => seedFor(big, k))).toEqual(seeds);
  });
});

describe('llamaSeed (choices of one local call)', () => {
  it('gives negative and huge seeds distinct non-negative 32-bit seeds per choice (node-llama-cpp clamps negatives to 0)', () => {
    for (const seed of [-3, -1, 0, 7, 2 ** 60, 2 ** 32 - 1]) {
      const seeds = [0, 1, 2].map((i) => llamaSeed(seed, i));
      expect(new Set(seeds).size).toBe(3);
      for (const s of seeds) expect(s >= 0 && s < 2 ** 32 && Number.isInteger(s)).toBe(true);
    }
    expect(llamaSeed(7, 1)).toBe(8);
  });
});
