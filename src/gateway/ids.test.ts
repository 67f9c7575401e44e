import { describe, expect, it } from 'vitest';
import { randomBase64Url, randomHex } from './ids.js';

describe('pooled random ids', () => {
  it('gives hex and base64url of the asked length, never the same id twice across pool refills', () => {
    const seen = new Set<string>();
    // 12 bytes × 2,000 ids is about six refills of the 4 KiB pool.
    for (let i = 0; i < 2000; i++) {
      const hex = randomHex(12);
      expect(hex).toMatch(/^[0-9a-f]{24}$/);
      seen.add(hex);
    }
    expect(seen.size).toBe(2000);
    expect(randomBase64Url(12)).toMatch(/^[A-Za-z0-9_-]{16}$/);
  });

  it('spreads its bytes: each hex digit about equally often', () => {
    const counts = new Map<string, number>();
    const text = Array.from({ length: 4000 }, () => randomHex(8)).join('');
    for (const c of text) counts.set(c, (counts.get(c) ?? 0) + 1);
    expect(counts.size).toBe(16);
    // 64,000 digits: 4,000 expected each; a fair source stays well within ±10%.
    for (const n of counts.values()) expect(Math.abs(n - 4000)).toBeLessThan(400);
  });

  it('refuses more bytes than the pool holds', () => {
    expect(() => randomHex(5000)).toThrow(RangeError);
  });
});
