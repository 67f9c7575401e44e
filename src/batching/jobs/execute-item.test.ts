import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConfig } from '../../config/load.js';
import { ANONYMOUS } from '../../gateway/context.js';
import { Gateway } from '../../gateway/gateway.js';
import { createLogger } from '../../telemetry/logger.js';
import { gatewayItemExecutor } from './execute-item.js';
import { keyStillValid } from './setup.js';
import { GatewayError } from '../../server/errors.js';
import { budgetsSchema, rateLimitingSchema } from '../../config/schema.js';
import { defaultRequestOptions, newFacts, type RequestContext, type Tenant } from '../../gateway/context.js';
import { createAdmissionStage } from '../../limits/admission.js';
import { BudgetManager, MemoryBudgetStore } from '../../limits/budgets.js';
import { MemoryLimiterStore } from '../../limits/sliding-window.js';
import { Cancellation } from '../../providers/cancel.js';

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

describe('batch lines and the rate limits', () => {
  // Two requests a window by default and one per tenant by rule, a TPM and a concurrency limit of the
  // key's own, a $1.50 budget; a line (max_tokens 1000 at $0.001 a completion token) is estimated at $1.
  const config = rateLimitingSchema.parse({ requests: 2, tokens: 100_000, rules: [{ per: 'tenant', requests: 1 }] });
  const tenant: Tenant = { id: 'key:k9', kind: 'key', keyId: 'k9', limits: { rpm: 1, tpm: 5000, maxConcurrency: 1, budgetUsd: 1.5, budgetPeriod: 'day' } };
  let limited: Gateway;
  beforeAll(async () => {
    const budgets = new BudgetManager({ store: new MemoryBudgetStore(), config: budgetsSchema.parse({ alert_thresholds: [] }), log });
    const admission = createAdmissionStage({ limiter: new MemoryLimiterStore(), config, budgets, priceOf: () => ({ input: 0, output: 1000 }) });
    limited = await Gateway.create({ loaded: buildConfig({ ledger: { enabled: false }, cache: { enabled: false }, batch_jobs: { enabled: false } }, {}), log, stages: [admission] });
  });
  afterAll(() => limited?.close());
  const line = (i: number, maxTokens: number) => ({ batch_id: 'b3', line: i, custom_id: `c${i}`, endpoint: '/v1/chat/completions', tenant, attempts: 1, body: { model: 'm', max_tokens: maxTokens, messages: [{ role: 'user', content: `hi ${i}` }] } });

  it('do not count against them nor get 429, however many run at once; budgets still apply', async () => {
    const run = gatewayItemExecutor(limited, log);
    // Ten lines at once, each far over the per-tenant rule and the key's RPM and concurrency, tiny enough for the budget.
    const outs = await Promise.all(Array.from({ length: 10 }, (_, i) => run(line(i, 10), new AbortController().signal)));
    expect(outs.map((o) => o?.statusCode)).toEqual(Array(10).fill(200));
    // The tenant's interactive window is untouched: a request over HTTP is still admitted.
    const ctx = { id: 'http', startedAt: 0, endpoint: 'chat', tenant, signal: new Cancellation(), log, options: defaultRequestOptions(), facts: newFacts(), headers: {} } as RequestContext;
    await limited.handleChat(ctx, { model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] });
    expect(ctx.facts.headers?.['x-ratelimit-remaining']).toBe('0');
    // A line over the budget is refused by it, as a request is.
    const over = await run(line(10, 2000), new AbortController().signal);
    expect(over?.statusCode).toBe(402);
  });
});
