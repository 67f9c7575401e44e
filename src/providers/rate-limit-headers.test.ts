import { describe, expect, it } from 'vitest';
import { parseDuration, rateLimitResetMs } from './rate-limit-headers.js';

describe('parseDuration', () => {
  it.each([
    ['1s', 1000],
    ['6m0s', 360_000],
    ['20ms', 20],
    ['2m59.56s', 179_560],
    ['1h2m3.5s', 3_723_500],
    ['0.5', 500],
    ['7', 7000],
  ])('%s is %d ms', (v, ms) => expect(parseDuration(v)).toBeCloseTo(ms, 6));

  it('refuses what is not a duration', () => {
    for (const v of ['', 'soon', '1d', '-1s', 's1', '1 s']) expect(parseDuration(v)).toBeUndefined();
  });
});

describe('rateLimitResetMs', () => {
  it("takes OpenAI's reset of the limit that ran out", () => {
    expect(rateLimitResetMs({ 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1.5s', 'x-ratelimit-remaining-tokens': '9000', 'x-ratelimit-reset-tokens': '6m0s' })).toBe(1500);
    expect(rateLimitResetMs({ 'x-ratelimit-remaining-requests': '12', 'x-ratelimit-reset-requests': '1.5s', 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-reset-tokens': '6m0s' })).toBe(360_000);
    // Both out: the later one; neither known to be: the sooner.
    expect(rateLimitResetMs({ 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '2s', 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-reset-tokens': '20ms' })).toBe(2000);
    expect(rateLimitResetMs({ 'x-ratelimit-reset-requests': '2s', 'x-ratelimit-reset-tokens': '20ms' })).toBe(20);
  });

  it("reads Anthropic's RFC 3339 reset times", () => {
    const now = Date.parse('2026-12-07T10:00:00Z');
    expect(rateLimitResetMs({ 'anthropic-ratelimit-requests-remaining': '0', 'anthropic-ratelimit-requests-reset': '2026-12-07T10:00:03Z', 'anthropic-ratelimit-tokens-reset': '2026-12-07T10:01:00Z' }, now)).toBe(3000);
    expect(rateLimitResetMs({ 'anthropic-ratelimit-input-tokens-remaining': '0', 'anthropic-ratelimit-input-tokens-reset': '2026-12-07T10:00:42Z' }, now)).toBe(42_000);
    expect(rateLimitResetMs({ 'anthropic-ratelimit-requests-reset': '2026-12-07T09:59:00Z' }, now)).toBe(0);
  });

  it('is undefined without such headers, or with unreadable ones', () => {
    expect(rateLimitResetMs({})).toBeUndefined();
    expect(rateLimitResetMs({ 'x-ratelimit-reset-requests': 'whenever', 'anthropic-ratelimit-requests-reset': 'later' })).toBeUndefined();
  });
});
