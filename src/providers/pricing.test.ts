import { describe, expect, it } from 'vitest';
import { addUsage, type Usage } from '../canonical/chat.js';
import { costUsd, priceFor } from './pricing.js';

describe('costUsd', () => {
  const plain: Usage = { prompt_tokens: 1_000_000, completion_tokens: 1_000_000, total_tokens: 2_000_000 };

  it('prices prompt and completion at input and output without cache counts', () => {
    expect(costUsd(plain, { input: 3, output: 15 })).toBeCloseTo(18, 10);
  });

  it('adds a per_request fee to every call, also one that reports no tokens', () => {
    expect(costUsd(plain, { input: 3, output: 15, per_request: 0.04 })).toBeCloseTo(18.04, 10);
    expect(costUsd({ prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }, { input: 0, output: 0, per_request: 0.04 })).toBeCloseTo(0.04, 10);
    const cached: Usage = { ...plain, prompt_tokens_details: { cached_tokens: 1_000_000 } };
    expect(costUsd(cached, { input: 3, output: 15, cached_input: 0.3, per_request: 0.5 })).toBeCloseTo(0.3 + 15 + 0.5, 10);
  });

  it('prices the prompt tokens read from and written to the prompt cache at their own prices', () => {
    const cached: Usage = { ...plain, prompt_tokens_details: { cached_tokens: 600_000, cache_write_tokens: 100_000 } };
    // 300k plain at 3, 600k read at 0.3, 100k written at 3.75, 1M output at 15.
    expect(costUsd(cached, priceFor('claude-sonnet-4-5-20250929'))).toBeCloseTo(0.9 + 0.18 + 0.375 + 15, 10);
    // A price without cache prices charges cached tokens as input: no discount is invented.
    expect(costUsd(cached, { input: 3, output: 15 })).toBeCloseTo(18, 10);
  });

  it('takes OpenAI and Gemini cached-input prices from the table', () => {
    const u: Usage = { prompt_tokens: 2_000_000, completion_tokens: 0, total_tokens: 2_000_000, prompt_tokens_details: { cached_tokens: 1_000_000 } };
    expect(costUsd(u, priceFor('gpt-4o-mini-2024-07-18'))).toBeCloseTo(0.15 + 0.075, 10);
    expect(costUsd(u, priceFor('gpt-4.1'))).toBeCloseTo(2 + 0.5, 10);
    expect(costUsd(u, priceFor('models/gemini-2.5-flash'))).toBeCloseTo(0.3 + 0.075, 10);
    // A model without prompt caching (gpt-4) pays input for every prompt token.
    expect(costUsd(u, priceFor('gpt-4-0613'))).toBeCloseTo(60, 10);
  });

  it('clamps cache counts a provider reports beyond the prompt', () => {
    const odd: Usage = { prompt_tokens: 100, completion_tokens: 0, total_tokens: 100, prompt_tokens_details: { cached_tokens: 80, cache_write_tokens: 80 } };
    // 80 read, the remaining 20 written, nothing plain; never a negative count.
    expect(costUsd(odd, { input: 10, output: 0, cached_input: 1, cache_write: 20 })).toBeCloseTo((80 * 1 + 20 * 20) / 1e6, 12);
  });
});

describe('addUsage', () => {
  it('sums the cache and reasoning details, and keeps a usage without them without', () => {
    const a: Usage = { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 };
    const b: Usage = { prompt_tokens: 20, completion_tokens: 6, total_tokens: 26, prompt_tokens_details: { cached_tokens: 8, cache_write_tokens: 2 }, completion_tokens_details: { reasoning_tokens: 4 } };
    expect(addUsage(a, a)).toEqual({ prompt_tokens: 20, completion_tokens: 10, total_tokens: 30 });
    expect(addUsage(a, b)).toEqual({ prompt_tokens: 30, completion_tokens: 11, total_tokens: 41, prompt_tokens_details: { cached_tokens: 8, cache_write_tokens: 2 }, completion_tokens_details: { reasoning_tokens: 4 } });
    expect(addUsage(b, { ...b, prompt_tokens_details: { cached_tokens: 1 } }).prompt_tokens_details).toEqual({ cached_tokens: 9, cache_write_tokens: 2 });
  });
});
