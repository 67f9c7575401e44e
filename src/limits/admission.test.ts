import { describe, expect, it } from 'vitest';
import { defaultRequestOptions, newFacts, type RequestContext, type Tenant } from '../gateway/context.js';
import { dimensionValue } from './admission.js';

const ctx = (tenant: Tenant, sessionId: string): RequestContext =>
  ({ id: 'r', tenant, options: { ...defaultRequestOptions(), sessionId }, facts: newFacts() }) as unknown as RequestContext;

describe('per-session limit keys', () => {
  it('keep tenants apart even when a tenant id or a session id contains the separator', () => {
    const req = { model: 'm', messages: [] };
    const a = dimensionValue('session', ctx({ id: 'jwt:a/b', kind: 'jwt' } as Tenant, 'c'), req);
    const b = dimensionValue('session', ctx({ id: 'jwt:a', kind: 'jwt' } as Tenant, 'b/c'), req);
    expect(a).not.toBe(b);
    expect(dimensionValue('session', ctx({ id: 'key:k', kind: 'key' } as Tenant, 's1'), req)).toBe('key%3Ak/s1');
  });
});
