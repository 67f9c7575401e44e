// The legacy /v1/completions endpoint with several prompts and with `echo`: each choice carries its
// own prompt in front, in JSON and in a stream of several choices, and a request of several prompts
// is charged to a key's budget, its headers and the ledger exactly once per prompt, and takes one request of a requests-per-minute limit.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { countPromptTokens } from '../src/providers/tokens.js';
import { startTestGateway } from './helpers/gateway.js';

const ADMIN = 'admin-token-for-tests-0123456789';
const PROMPTS = ['PROMPT-A says hello', 'PROMPT-B asks a longer question about things', 'PROMPT-C'];
// Input-priced only: a prompt's estimate is its actual cost, $0.10 per 100 prompt tokens.
const PRICE_INPUT = 1000;
const costOf = (prompt: string) => (countPromptTokens([{ role: 'user', content: prompt }]) * PRICE_INPUT) / 1_000_000;

let dir: string;
let gw: RunningServer;
let client: OpenAI;

async function call(path: string, opts: { key?: string; body?: unknown } = {}) {
  const res = await request(`${gw.url}${path}`, {
    method: opts.body === undefined ? 'GET' : 'POST',
    headers: { ...(opts.key ? { authorization: `Bearer ${opts.key}` } : {}), ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  return { status: res.statusCode, headers: res.headers, json: (await res.body.json()) as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'if-completions-'));
  gw = await startTestGateway({
    config: {
      auth: { admin_token: ADMIN },
      database: { pglite_path: join(dir, 'db') },
      ledger: { enabled: true, flush_interval_ms: 50, spool_path: join(dir, 'spool.jsonl') },
      cache: { enabled: false },
      providers: { sim: { type: 'simulator' } },
      models: [{ name: 'metered', deployments: [{ provider: 'sim', model: 'metered', price: { input: PRICE_INPUT, output: 0 } }] }],
    },
  });
  const created = await call('/admin/keys', { key: ADMIN, body: { name: 'echo' } });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: created.json.key as string, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await gw?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('/v1/completions with echo', () => {
  it('puts each prompt in front of its own choices when several prompts are sent', async () => {
    const res = await client.completions.create({ model: 'metered', prompt: PROMPTS.slice(0, 2), n: 2, echo: true, max_tokens: 4 });
    expect(res.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(res.choices.map((c) => c.text.slice(0, 8))).toEqual(['PROMPT-A', 'PROMPT-A', 'PROMPT-B', 'PROMPT-B']);
    for (const c of res.choices) expect(c.text.length).toBeGreaterThan(PROMPTS[c.index < 2 ? 0 : 1]!.length);
  });

  it('starts every streamed choice with the prompt, once', async () => {
    const stream = await client.completions.create({ model: 'metered', prompt: 'PROMPT-S', n: 2, echo: true, stream: true, max_tokens: 4 });
    const texts = new Map<number, string>();
    for await (const chunk of stream) for (const c of chunk.choices) texts.set(c.index, (texts.get(c.index) ?? '') + c.text);
    expect([...texts.keys()].sort()).toEqual([0, 1]);
    for (const text of texts.values()) {
      expect(text.startsWith('PROMPT-S')).toBe(true);
      expect(text.indexOf('PROMPT-S', 1)).toBe(-1);
    }
  });
});

describe('/v1/completions stream options', () => {
  it('with include_usage: one id on every chunk, usage null on all but the last, which has the usage and no choices', async () => {
    const stream = await client.completions.create({ model: 'metered', prompt: 'PROMPT-U', max_tokens: 4, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const last = chunks.at(-1)!;
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(last.id).toMatch(/^cmpl-/);
    expect(last.choices).toEqual([]);
    expect(last.usage?.completion_tokens).toBeGreaterThan(0);
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
  });
});

describe('/v1/completions with several prompts and a budget', () => {
  it('charges the budget, the cost header and the ledger the sum of the prompts, once each', async () => {
    const sum = PROMPTS.reduce((s, p) => s + costOf(p), 0);
    const single = costOf('one more');
    // Room for the three prompts and one more request; a running total charged per prompt would not fit it.
    const created = await call('/admin/keys', { key: ADMIN, body: { name: 'budgeted', budget_usd: Number((sum + single + 1e-6).toFixed(6)), budget_period: 'day' } });
    const key = created.json.key as string;

    const several = await call('/v1/completions', { key, body: { model: 'metered', prompt: PROMPTS, max_tokens: 3 } });
    expect(several.status).toBe(200);
    expect(Number(several.headers['x-inferenceflow-cost-usd'])).toBeCloseTo(sum, 6);
    const promptTokens = PROMPTS.reduce((s, p) => s + countPromptTokens([{ role: 'user', content: p }]), 0);
    expect(several.json.usage.prompt_tokens).toBe(promptTokens);

    const next = await call('/v1/completions', { key, body: { model: 'metered', prompt: 'one more', max_tokens: 3 } });
    expect(next.status).toBe(200);
    const refused = await call('/v1/completions', { key, body: { model: 'metered', prompt: 'one more', max_tokens: 3 } });
    expect([refused.status, refused.json.error.code]).toEqual([402, 'budget_exceeded']);

    // The ledger: one row for the request of three prompts, its cost and tokens the sums.
    await expect
      .poll(async () => (await call('/v1/spend?group_by=key', { key })).json.total?.cost_usd as number, { timeout: 5_000 })
      .toBeCloseTo(sum + single, 6);
    const spend = await call('/v1/spend?group_by=model', { key });
    expect(spend.json.total).toMatchObject({ requests: 3, prompt_tokens: promptTokens + countPromptTokens([{ role: 'user', content: 'one more' }]) });
  });
});

describe('/v1/completions with several prompts and a request-rate limit', () => {
  it('counts a request of several prompts once against the key\'s requests per minute', async () => {
    const created = await call('/admin/keys', { key: ADMIN, body: { name: 'rpm-2', rpm: 2 } });
    const key = created.json.key as string;
    const several = await call('/v1/completions', { key, body: { model: 'metered', prompt: PROMPTS, max_tokens: 3 } });
    expect(several.status).toBe(200);
    expect(several.json.choices).toHaveLength(3);
    // One request taken of two: one more fits, the third is refused.
    expect((await call('/v1/completions', { key, body: { model: 'metered', prompt: 'one more', max_tokens: 3 } })).status).toBe(200);
    const refused = await call('/v1/completions', { key, body: { model: 'metered', prompt: PROMPTS.slice(0, 2), max_tokens: 3 } });
    expect([refused.status, refused.json.error.code]).toEqual([429, 'rate_limit_exceeded']);
  });
});
