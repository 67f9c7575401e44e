import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { UpstreamError } from '../providers/errors.js';
import { ERROR_CODES, GatewayError, errorHeaders, fromUpstream } from './errors.js';

describe('the error table', () => {
  it('is documented row for row in docs/errors.md', () => {
    const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    const rows = new Map<string, { status: number; type: string }>();
    for (const m of doc.matchAll(/^\| `([a-z_0-9]+)` \| (\d{3}) \| `([a-z_]+)` \|/gm)) {
      rows.set(m[1] as string, { status: Number(m[2]), type: m[3] as string });
    }
    const table = Object.fromEntries(Object.entries(ERROR_CODES).map(([code, s]) => [code, { status: s.status, type: s.type }]));
    expect(Object.fromEntries(rows)).toEqual(table);
  });

  it('keeps client errors 4xx', () => {
    for (const [code, spec] of Object.entries(ERROR_CODES)) {
      if (spec.type.endsWith('_request_error') || spec.type === 'authentication_error') expect(spec.status, code).toBeLessThan(500);
    }
  });

  it('maps upstream failures to 502/503/504/429 naming the provider', () => {
    const cases = [
      ['timeout', 504, 'upstream_timeout'],
      ['server', 502, 'upstream_error'],
      ['connect', 502, 'upstream_error'],
      ['overloaded', 503, 'upstream_unavailable'],
      ['rate_limited', 429, 'upstream_rate_limited'],
      ['auth', 502, 'upstream_auth_failed'],
      ['context_length', 400, 'context_length_exceeded'],
    ] as const;
    for (const [kind, status, code] of cases) {
      const e = fromUpstream(new UpstreamError({ provider: 'acme', kind, message: 'boom' }));
      expect([e.status, e.code, e.provider]).toEqual([status, code, 'acme']);
    }
  });

  it('turns retry-after into whole seconds', () => {
    expect(errorHeaders(new GatewayError('rate_limit_exceeded', { retryAfterMs: 1200 }))['retry-after']).toBe('2');
  });
});
