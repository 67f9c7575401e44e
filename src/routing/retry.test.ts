import { describe, expect, it } from 'vitest';
import { UpstreamError } from '../providers/errors.js';
import { backoffMs, isRetryable, RetryBudget } from './retry.js';

describe('backoff with full jitter', () => {
  it('draws between 0 and base * 2^n, capped at max', () => {
    expect(backoffMs(0, 100, 2_000, () => 0)).toBe(0);
    expect(backoffMs(0, 100, 2_000, () => 0.999)).toBe(99);
    expect(backoffMs(3, 100, 2_000, () => 0.5)).toBe(400);
    expect(backoffMs(10, 100, 2_000, () => 0.999)).toBe(1_998);
  });

  it('spreads retries over the whole range', () => {
    const draws = Array.from({ length: 500 }, () => backoffMs(2, 100, 2_000));
    expect(Math.min(...draws)).toBeLessThan(50);
    expect(Math.max(...draws)).toBeGreaterThan(350);
    expect(Math.max(...draws)).toBeLessThan(400);
  });
});

describe('retryable failures', () => {
  const err = (kind: ConstructorParameters<typeof UpstreamError>[0]['kind'], status?: number) => new UpstreamError({ provider: 'p', kind, status, message: 'x' });
  it.each([
    ['connect', true],
    ['timeout', true],
    ['rate_limited', true],
    ['overloaded', true],
    ['server', true],
    ['bad_request', false],
    ['context_length', false],
    ['content_policy', false],
    ['auth', false],
    ['aborted', false],
    ['stream_interrupted', false],
  ] as const)('%s -> %s', (kind, expected) => {
    expect(isRetryable(err(kind))).toBe(expected);
  });
  it('is false for errors that are not upstream errors', () => {
    expect(isRetryable(new Error('boom'))).toBe(false);
  });
});

describe('RetryBudget', () => {
  it('allows the minimum per second with no traffic, then refuses', () => {
    const now = 0;
    const budget = new RetryBudget(0.2, 1, 10_000, () => now);
    let allowed = 0;
    for (let i = 0; i < 50; i++) if (budget.tryWithdraw()) allowed++;
    expect(allowed).toBe(10); // 1/s over a 10 s window
  });

  it('grows with traffic by the ratio', () => {
    const now = 0;
    const budget = new RetryBudget(0.2, 0, 10_000, () => now);
    for (let i = 0; i < 1_000; i++) budget.deposit();
    let allowed = 0;
    for (let i = 0; i < 1_000; i++) if (budget.tryWithdraw()) allowed++;
    expect(allowed).toBe(200);
  });

  it('lets old traffic expire with the window', () => {
    let now = 0;
    const budget = new RetryBudget(0.5, 0, 1_000, () => now);
    for (let i = 0; i < 100; i++) budget.deposit();
    now = 5_000;
    expect(budget.tryWithdraw()).toBe(false);
  });
});
