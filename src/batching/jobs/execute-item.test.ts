import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConfig } from '../../config/load.js';
import { ANONYMOUS } from '../../gateway/context.js';
import { Gateway } from '../../gateway/gateway.js';
import { createLogger } from '../../telemetry/logger.js';
import { gatewayItemExecutor } from './execute-item.js';
import { keyStillValid } from './setup.js';
import { GatewayError } from '../../server/errors.js';

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

  it('runs its lines while the key is usable, and fails them with 401 (recorded) once it is not', async () => {
    let usable = true;
    const checked: string[] = [];
    const keys = {
      ensureActive: async (id: string) => {
        checked.push(id);
        if (!usable) throw new GatewayError('invalid_api_key', { message: 'The API key that created this work has been revoked.' });
      },
    };
    const recorded: number[] = [];
    const run = gatewayItemExecutor(gateway, log, (e) => recorded.push(e.status), keyStillValid(keys));
    expect((await run(line, new AbortController().signal))?.status).toBe('succeeded');
    usable = false;
    const out = await run(line, new AbortController().signal);
    expect(out?.statusCode).toBe(401);
    expect(JSON.stringify(out?.response)).toContain('revoked');
    expect(recorded).toEqual([200, 401]);
    expect(checked).toEqual(['k1', 'k1']);
    // Lines of other tenants are not checked.
    await run({ ...line, tenant: { id: 'anonymous', kind: 'anonymous' } as never }, new AbortController().signal);
    expect(checked).toHaveLength(2);
  });
});
