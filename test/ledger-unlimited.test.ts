// With rate limits and budgets switched off, spend tracking still counts every stream: one abandoned
// by its client is recorded with the tokens that went out and their cost (the upstream generated,
// and billed, them), as it is with limits on (test/limits-accounting.test.ts).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';
import { abandonStream } from './helpers/streams.js';

const ADMIN = 'admin-token-for-tests-0123456789';
const PRICE = { input: 0, output: 1000 }; // $0.001 per output token

let dir: string;
let gw: RunningServer;
let key: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'if-unlimited-'));
  gw = await startTestGateway({
    config: {
      auth: { admin_token: ADMIN },
      rate_limiting: { enabled: false },
      budgets: { enabled: false },
      cache: { enabled: false },
      database: { pglite_path: join(dir, 'db') },
      ledger: { enabled: true, flush_interval_ms: 50, spool_path: join(dir, 'spool.jsonl') },
      // About 20 tokens a second: the stream runs for seconds, long enough to be abandoned halfway.
      providers: { slow: { type: 'simulator', options: { tokens_per_second: 20, answer_words: 200 } } },
      models: [{ name: 'slow', deployments: [{ provider: 'slow', model: 'slow', price: PRICE }] }],
    },
  });
  const created = await request(`${gw.url}/admin/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'unlimited' }),
  });
  key = ((await created.body.json()) as { key: string }).key;
}, 120_000);

afterAll(async () => {
  await gw?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('a stream abandoned with rate limits and budgets off', () => {
  it('is in the ledger with the tokens that went out and their cost', async () => {
    const { received } = await abandonStream(gw.url, key, { model: 'slow', max_tokens: 150, messages: [{ role: 'user', content: 'Tell me a long story.' }] }, 6);
    expect(received).not.toContain('[DONE]');
    const spend = async () => {
      const r = await request(`${gw.url}/v1/spend?group_by=model`, { headers: { authorization: `Bearer ${key}` } });
      return (await r.body.json()) as { total?: { requests: number; completion_tokens: number; cost_usd: number } };
    };
    await expect.poll(async () => (await spend()).total?.requests ?? 0, { timeout: 5_000 }).toBe(1);
    const { total } = await spend();
    expect(total?.completion_tokens).toBeGreaterThan(0);
    expect(total?.cost_usd).toBeCloseTo((total?.completion_tokens ?? 0) * 0.001, 9);
  });
});
