import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConfig } from '../../config/load.js';
import { ANONYMOUS } from '../../gateway/context.js';
import { Gateway } from '../../gateway/gateway.js';
import { createLogger } from '../../telemetry/logger.js';
import { gatewayItemExecutor } from './execute-item.js';
import { keyStillValid } from './setup.js';

let gateway: Gateway;
const log = createLogger('silent');

beforeAll(async () => {
  gateway = await Gateway.create({ loaded: buildConfig({ ledger: { enabled: false }, cache: { enabled: false }, batch_jobs: { enabled: false } }, {}), log });
});
afterAll(() => gateway?.close());

describe('a batch line', () => {
  it('is parsed as the chat route parses it: the deprecated functions API answered in its own form', async () => {
    const run = gatewayItemExecutor(gateway, log);
    const functions = [{ name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } }];
    const out = await run(
      { batch_id: 'b1', line: 0, custom_id: 'c0', endpoint: '/v1/chat/completions', tenant: ANONYMOUS, attempts: 1, body: { model: 'm', messages: [{ role: 'user', content: 'Weather?' }], functions, function_call: { name: 'get_weather' } } },
      new AbortController().signal,
    );
    expect(out?.status).toBe('succeeded');
    const body = (out?.response as { body: { choices: { message: { function_call?: { name: string }; tool_calls?: unknown }; finish_reason: string }[] } }).body;
    expect(body.choices[0]?.message.function_call?.name).toBe('get_weather');
    expect(body.choices[0]?.message.tool_calls).toBeUndefined();
    expect(body.choices[0]?.finish_reason).toBe('function_call');
  });
});

describe('a batch created with an API key', () => {
  const keyTenant = { id: 'key:k1', kind: 'key' as const, keyId: 'k1', limits: {} };
  const line = { batch_id: 'b2', line: 0, custom_id: 'c0', endpoint: '/v1/chat/completions', tenant: keyTenant, attempts: 1, body: { model: 'm', messages: [{ role: 'user', content: 'hi' }] } };
  const view = (over: Partial<{ revoked_at: string | null; expires_at: string | null }>) => ({ id: 'k1', revoked_at: null, expires_at: null, ...over }) as never;

  it('stops running its lines once the key is revoked or expired (each fails 401), and runs them while it is valid', async () => {
    let state: 'valid' | 'revoked' | 'expired' | 'deleted' = 'valid';
    const keys = {
      get: async () =>
        state === 'deleted' ? undefined : view(state === 'revoked' ? { revoked_at: new Date().toISOString() } : state === 'expired' ? { expires_at: new Date(Date.now() - 1000).toISOString() } : {}),
    };
    const recorded: number[] = [];
    const run = (ttl: number) => gatewayItemExecutor(gateway, log, (e) => recorded.push(e.status), keyStillValid(keys, ttl));
    expect((await run(0)(line, new AbortController().signal))?.status).toBe('succeeded');
    for (const s of ['revoked', 'expired', 'deleted'] as const) {
      state = s;
      const out = await run(0)(line, new AbortController().signal);
      expect(out?.status).toBe('failed');
      expect(out?.statusCode).toBe(401);
      expect(JSON.stringify(out?.response)).toContain(s === 'deleted' ? 'no longer exists' : s);
    }
    expect(recorded).toEqual([200, 401, 401, 401]);
  });

  it('reads a key state at most once per interval', async () => {
    let reads = 0;
    const check = keyStillValid({ get: async () => (reads++, view({})) }, 60_000);
    await check(keyTenant);
    await check(keyTenant);
    await check({ id: 'anonymous', kind: 'anonymous' } as never);
    expect(reads).toBe(1);
  });
});

describe('the batch key check when the database is unreachable', () => {
  const keyTenant = { id: 'key:k2', kind: 'key' as const, keyId: 'k2', limits: {} };
  it('keeps the last known state, and lets a line run when none is known', async () => {
    let fail = false;
    let revoked = false;
    const check = keyStillValid({ get: async () => { if (fail) throw new Error('connection refused'); return { id: 'k2', revoked_at: revoked ? 'now' : null, expires_at: null } as never; } }, 0);
    fail = true;
    await expect(check(keyTenant)).resolves.toBeUndefined();
    fail = false;
    revoked = true;
    await expect(check(keyTenant)).rejects.toThrow(/revoked/);
    fail = true;
    await expect(check(keyTenant)).rejects.toThrow(/revoked/);
  });
});
