// Budgets against requests whose calls fail and are tried again elsewhere: a scaled request's passes
// (and a plain request) that fail on their model's group are answered by its fallback group, at that
// group's price. Admission must have reserved that much, or the budget ends above its limit. Runs one
// gateway on the real Postgres (keys, ledger, spend) and Redis (budget counters).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';
import { call, createKey, expertBurst, keySpend } from './helpers/http.js';
import { pollUntil } from './helpers/wait.js';
import { POSTGRES_URL, REDIS_URL, dropRedisPrefix, dropSchema, postgresAvailable, redisAvailable, runId, keyBudgetMicros } from './helpers/services.js';

const ADMIN = 'admin-token-for-tests-0123456789';
/** Output-priced only, so a request's cost is its completion tokens times the price: $0.001 a token. */
const CHEAP = { input: 0, output: 1000 };
/** The fallback group's price: $0.005 a completion token. */
const DEAR = { input: 0, output: 5000 };

const services = { redis: await redisAvailable(), postgres: await postgresAvailable() };

describe.skipIf(!(services.redis && services.postgres))('budgets hold when failed calls are answered by a fallback group', () => {
  const id = runId();
  const schema = `budget_retries_${id}`;
  const prefix = `test:${id}:`;
  let gw: RunningServer;

  const budgetMicros = (keyId: string) => keyBudgetMicros(prefix, keyId);

  /** The key's spend from the ledger, once `requests` rows are in. */
  const ledgerSpend = async (keyId: string, requests: number): Promise<number> => {
    const line = await pollUntil(async () => {
      const l = await keySpend(gw.url, ADMIN, keyId);
      return l?.requests === requests && l;
    }, `${requests} ledger rows of key ${keyId}`, 10_000, 50);
    return line.cost_usd;
  };

  beforeAll(async () => {
    gw = await startTestGateway({
      config: {
        auth: { admin_token: ADMIN, api_keys: { cache_ttl_ms: 0 } },
        redis: { url: REDIS_URL, key_prefix: prefix },
        database: { url: POSTGRES_URL, schema },
        ledger: { enabled: true, flush_interval_ms: 50, spool_path: '' },
        providers: {
          broken: { type: 'simulator', options: { error_rate: 1 } },
          // Long answers: every call uses all the max_tokens it may.
          sim: { type: 'simulator', options: { answer_words: 200 } },
        },
        models: [
          // Every call fails here and is answered by `dear`, five times the price.
          { name: 'flaky', deployments: [{ provider: 'broken', model: 'flaky', price: CHEAP }], fallbacks: ['dear'] },
          { name: 'dear', deployments: [{ provider: 'sim', model: 'dear', price: DEAR }] },
        ],
      },
    });
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
    await dropSchema(schema);
    await dropRedisPrefix(prefix);
  });

  it('keeps concurrent expert requests whose passes fail over to a dearer group within the budget', async () => {
    // Expert: 5 passes of 20 tokens. On `flaky` that would be $0.10; answered by `dear`, $0.50.
    const { key, id: keyId } = await createKey(gw.url, ADMIN, { budget_usd: 1, budget_period: 'day' });
    const { ok, refused } = await expertBurst(gw.url, key, 'flaky', 8, id);
    expect(ok.length).toBeGreaterThanOrEqual(1);
    expect(ok.every((r) => r.headers['x-inferenceflow-passes'] === '5' && r.headers['x-inferenceflow-model'] === 'dear')).toBe(true);
    expect(refused.every((r) => r.status === 402 && r.json.error.code === 'budget_exceeded')).toBe(true);
    const spent = await ledgerSpend(keyId, 8);
    expect(spent).toBeLessThanOrEqual(1 + 1e-9);
    expect(await budgetMicros(keyId)).toBe(Math.round(spent * 1e6));
  });

  it('refuses a plain request its fallback group could make cost more than the budget has', async () => {
    // 100 tokens: $0.10 on `flaky`, $0.50 on `dear`; the budget has $0.30.
    const { key, id: keyId } = await createKey(gw.url, ADMIN, { budget_usd: 0.3, budget_period: 'day' });
    const res = await call(gw.url, '/v1/chat/completions', { key, body: { model: 'flaky', max_tokens: 100, messages: [{ role: 'user', content: `Plain (${id}).` }] } });
    expect([res.status, res.json.error?.code]).toEqual([402, 'budget_exceeded']);
    expect(await ledgerSpend(keyId, 1)).toBe(0);
    expect(await budgetMicros(keyId)).toBe(0);
  });
});
