// What a scaled request with a failed and retried pass is charged, seen from every place a client or
// an operator reads it: the x-inferenceflow-cost-usd header and the body's usage, the ledger row, the
// spend endpoint and the budget counter must all say the same. Runs one gateway on the real Postgres
// (keys, ledger, spend) and Redis (budget counters).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Usage } from '../src/canonical/chat.js';
import type { RunningServer } from '../src/cli/serve.js';
import { UpstreamError } from '../src/providers/errors.js';
import { simulatorAdapter, startTestGateway } from './helpers/gateway.js';
import { call, createKey, keySpend } from './helpers/http.js';
import { POSTGRES_URL, REDIS_URL, dropRedisPrefix, dropSchema, postgresAvailable, redisAvailable, runId, keyBudgetMicros, settledLedgerRow } from './helpers/services.js';

const ADMIN = 'admin-token-for-tests-0123456789';
/** $0.001 a prompt token, $0.002 a completion token. */
const PRICE = { input: 1000, output: 2000 };

const services = { redis: await redisAvailable(), postgres: await postgresAvailable() };

describe.skipIf(!(services.redis && services.postgres))('a scaled request with a failed and retried pass', () => {
  const id = runId();
  const schema = `scaling_spend_${id}`;
  const prefix = `test:${id}:`;
  let gw: RunningServer;
  /** The usage the upstream reported for each call that answered, and how many calls failed. */
  const answered: Usage[] = [];
  let failed = 0;

  beforeAll(async () => {
    // An upstream answering one choice per call (so passes are separate calls) whose second call fails
    // with a 500; the group does not retry, so the scaling stage tries that pass again.
    let calls = 0;
    const flaky = simulatorAdapter('flaky', async (req, opts, sim) => {
      if (++calls === 2) {
        failed++;
        throw new UpstreamError({ provider: 'flaky', kind: 'server', status: 500, message: 'flaky returned 500' });
      }
      const result = await sim.chat(req, opts);
      answered.push(result.usage);
      return result;
    });
    gw = await startTestGateway({
      config: {
        auth: { admin_token: ADMIN, api_keys: { cache_ttl_ms: 0 } },
        redis: { url: REDIS_URL, key_prefix: prefix },
        database: { url: POSTGRES_URL, schema },
        ledger: { enabled: true, flush_interval_ms: 50, spool_path: '' },
        inference: { retries: 1 },
        providers: { flaky: { type: 'ollama', base_url: 'http://127.0.0.1:9' } },
        models: [{ name: 'm', retry: { max_retries: 0 }, deployments: [{ provider: 'flaky', model: 'm', price: PRICE }] }],
      },
      providers: new Map([['flaky', flaky]]),
    });
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await dropSchema(schema);
    await dropRedisPrefix(prefix);
  });

  it('is charged the calls that answered, and the header, body, ledger row, spend and budget agree', async () => {
    const { key, id: keyId } = await createKey(gw.url, ADMIN, { budget_usd: 5, budget_period: 'day' });

    const res = await call(gw.url, '/v1/chat/completions', { key, headers: { 'x-inferenceflow-difficulty': 'hard' }, body: { model: 'm', max_tokens: 30, messages: [{ role: 'user', content: `Name a colour (${id}).` }] } });
    expect(res.status, res.text).toBe(200);
    expect(res.headers['x-inferenceflow-passes']).toBe('3');
    // Four calls: three passes, one of them tried twice.
    expect([failed, answered.length]).toEqual([1, 3]);

    // What the upstream reported for the calls that answered (the failed one reported nothing).
    const upstream = answered.reduce((t, u) => ({ prompt: t.prompt + u.prompt_tokens, completion: t.completion + u.completion_tokens }), { prompt: 0, completion: 0 });
    const expected = upstream.prompt * 0.001 + upstream.completion * 0.002;
    const usage = res.json.usage as Usage;
    expect([usage.prompt_tokens, usage.completion_tokens]).toEqual([upstream.prompt, upstream.completion]);
    const header = Number(res.headers['x-inferenceflow-cost-usd']);
    expect(header).toBeCloseTo(expected, 9);

    // The ledger row: the same tokens and cost.
    const requestId = res.headers['x-request-id'] as string;
    const row = await settledLedgerRow(schema, requestId);
    expect(row).toMatchObject({ status: 200, prompt_tokens: upstream.prompt, completion_tokens: upstream.completion });
    expect(Number(row.cost_usd)).toBeCloseTo(header, 9);

    // The spend endpoint and the budget counter.
    const line = await keySpend(gw.url, ADMIN, keyId);
    expect(line?.requests).toBe(1);
    expect(line?.cost_usd).toBeCloseTo(header, 9);
    expect(await keyBudgetMicros(prefix, keyId)).toBe(Math.round(header * 1e6));
  });
});
