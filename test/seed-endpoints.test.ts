// The seeds' own endpoints against a real gateway on the simulator: seed 001 /v1/infer and its SSE
// stream, seed 002 /v1/inference with exactly the InferenceResponse fields, and /v1/batch where one
// bad item never fails the batch. Difficulty reaches the scaling stage from every one of them.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { simulatorAdapter, startTestGateway } from './helpers/gateway.js';

let server: RunningServer;

beforeAll(async () => {
  server = await startTestGateway({
    config: {
      providers: { sim: { type: 'simulator', options: { oracle: { p: 1, seed: 3 } } } },
      models: [{ name: 'gpt-4o-mini', deployments: [{ provider: 'sim', model: 'gpt-4o-mini' }] }],
    },
  });
});
afterAll(async () => {
  await server?.close();
});

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

function sseEvents(text: string): { event: string; data: string }[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim())
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = /^data: (.*)$/m.exec(block)?.[1] ?? '';
      return { event, data };
    });
}

describe('seed 002 POST /v1/inference', () => {
  it('answers an InferenceResponse with exactly the seed’s fields', async () => {
    const res = await post('/v1/inference', { prompt: 'Say hello', user_id: 'u-1', metadata: { trace: 'abc' }, difficulty: 'easy' });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(['cache_hit', 'cost', 'created_at', 'latency', 'metadata', 'model', 'provider', 'request_id', 'response', 'tokens_used'].sort());
    expect(body.response).toContain('Say hello');
    expect(body.provider).toBe('sim');
    expect(body.model).toBe('gpt-4o-mini');
    expect(body.cache_hit).toBe(false);
    expect(body.request_id).toBe(res.headers.get('x-request-id'));
    expect(typeof body.latency).toBe('number');
    expect(body.cost).toBeGreaterThan(0);
    expect(Number(res.headers.get('x-inferenceflow-cost-usd'))).toBeCloseTo(body.cost as number, 8);
    expect(Number.isNaN(Date.parse(body.created_at as string))).toBe(false);
    const meta = body.metadata as Record<string, unknown>;
    expect(meta.user_id).toBe('u-1');
    expect(meta.request_metadata).toEqual({ trace: 'abc' });
    expect((meta.usage as { total_tokens: number }).total_tokens).toBe(body.tokens_used);
  });

  it('runs the level’s passes and reports the vote, summed tokens and the passes header', async () => {
    const res = await post('/v1/inference', { prompt: 'What is 20+22?', difficulty: 'expert', model_preference: 'gpt-4o-mini' });
    const body = (await res.json()) as { response: string; tokens_used: number; metadata: { passes: number; scaling: { votes: Record<string, number>; difficulty: string } } };
    expect(res.headers.get('x-inferenceflow-passes')).toBe('5');
    expect(body.response).toContain('42');
    expect(body.metadata.scaling.difficulty).toBe('expert');
    expect(body.metadata.scaling.votes).toEqual({ '42': 5 });
    expect(body.metadata.passes).toBe(5);
  });

  it('estimates a difficulty when none is named', async () => {
    const res = await post('/v1/inference', { prompt: 'What is the capital of France?' });
    const body = (await res.json()) as { metadata: { scaling: { difficulty: string; difficulty_source: string } } };
    expect(body.metadata.scaling).toMatchObject({ difficulty: 'easy', difficulty_source: 'estimate' });
  });

  it('streams tokens then a done event carrying the InferenceResponse', async () => {
    const res = await post('/v1/inference', { prompt: 'Tell a story', stream: true, difficulty: 'easy' });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const events = sseEvents(await res.text());
    const tokens = events.filter((e) => e.event === 'token').map((e) => (JSON.parse(e.data) as { text: string }).text);
    expect(tokens.length).toBeGreaterThan(3);
    const done = events.at(-1);
    expect(done?.event).toBe('done');
    const final = JSON.parse(done?.data ?? '{}') as { response: string; tokens_used: number };
    expect(final.response).toBe(tokens.join(''));
    expect(final.tokens_used).toBeGreaterThan(0);
  });

  it('rejects a bad field with the parameter named', async () => {
    const res = await post('/v1/inference', { prompt: 'x', priority: 'urgent' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { param: string } }).error.param).toBe('priority');
    const unknown = await post('/v1/inference', { prompt: 'x', temprature: 1 });
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('unknown_parameter');
  });
});

describe('seed 002 POST /v1/batch', () => {
  it('answers one result or error per item, in order, and one failure never fails the batch', async () => {
    const res = await post('/v1/batch', [
      { prompt: 'What is 1+1?', difficulty: 'easy' },
      { prompt: '' },
      { prompt: 'What is 2+2?', difficulty: 'nonsense' },
      { prompt: 'What is 3+3?', difficulty: 'hard' },
    ]);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { total: number; succeeded: number; failed: number; results: { index: number; status: string; result?: { response: string }; error?: { code: string; status: number } }[] };
    expect(body).toMatchObject({ total: 4, succeeded: 2, failed: 2 });
    expect(body.results.map((r) => [r.index, r.status])).toEqual([[0, 'success'], [1, 'error'], [2, 'error'], [3, 'success']]);
    expect(body.results[0]?.result?.response).toContain('2');
    expect(body.results[1]?.error).toMatchObject({ code: 'invalid_value', status: 400 });
    expect(body.results[3]?.result?.response).toContain('6');
  });

  it('accepts {"requests": [...]} and rejects an empty batch', async () => {
    const ok = await post('/v1/batch', { requests: [{ prompt: 'hi', difficulty: 'easy' }] });
    expect(((await ok.json()) as { succeeded: number }).succeeded).toBe(1);
    expect((await post('/v1/batch', [])).status).toBe(400);
  });
});

describe('seed 001 POST /v1/infer and /v1/infer/stream', () => {
  it('takes {model, prompt, params} and maps max_new_tokens', async () => {
    const res = await post('/v1/infer', { model: 'gpt-4o-mini', prompt: 'Hello, world!', params: { max_new_tokens: 5, temperature: 0.7 }, difficulty: 'easy' });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { output: string; usage: { completion_tokens: number }; finish_reason: string; model: string };
    expect(body.model).toBe('gpt-4o-mini');
    expect(body.usage.completion_tokens).toBeLessThanOrEqual(5);
    expect(body.finish_reason).toBe('length');
  });

  it('streams SSE token events and a final done event', async () => {
    const res = await post('/v1/infer/stream', { model: 'gpt-4o-mini', prompt: 'Hello', params: {} }, { accept: 'text/event-stream' });
    const events = sseEvents(await res.text());
    expect(events.filter((e) => e.event === 'token').length).toBeGreaterThan(1);
    const done = JSON.parse(events.at(-1)?.data ?? '{}') as { output: string; cost_usd: number };
    expect(done.output).toContain('Hello');
    expect(done.cost_usd).toBeGreaterThan(0);
  });

  it('streams the winning answer once chosen when several passes run', async () => {
    const res = await post('/v1/infer/stream', { model: 'gpt-4o-mini', prompt: 'What is 5+6?', params: {}, difficulty: 'hard', aggregation: 'self_consistency' });
    const events = sseEvents(await res.text());
    const text = events.filter((e) => e.event === 'token').map((e) => (JSON.parse(e.data) as { text: string }).text).join('');
    expect(text).toContain('The answer is 11.');
    expect((JSON.parse(events.at(-1)?.data ?? '{}') as { passes: number }).passes).toBe(3);
  });
});

describe('seed 002 POST /v1/batch and /v1/inference in the ledger', () => {
  const ADMIN = 'admin-token-for-seed-batch-0123456789';
  let gw: RunningServer;
  let dir: string;
  // A prompt containing "hang" waits until its call is cancelled (the client left); `hung` says it started.
  let hangStarted!: () => void;
  const hung = new Promise<void>((resolve) => (hangStarted = resolve));
  const sim = simulatorAdapter('sim', async (req, opts, simulator) => {
    if (JSON.stringify(req.messages).includes('hang')) {
      hangStarted();
      await new Promise<void>((resolve) => opts.signal.addEventListener('abort', resolve));
      throw opts.signal.reason;
    }
    return simulator.chat(req, opts);
  });
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'seed-batch-ledger-'));
    gw = await startTestGateway({
      config: {
        auth: { admin_token: ADMIN },
        database: { pglite_path: join(dir, 'db') },
        ledger: { enabled: true, flush_interval_ms: 50, spool_path: join(dir, 'spool.jsonl') },
        providers: { sim: { type: 'ollama', base_url: 'http://127.0.0.1:9' }, other: { type: 'ollama', base_url: 'http://127.0.0.1:9' } },
        models: [
          { name: 'metered', deployments: [{ provider: 'sim', model: 'metered', price: { input: 2, output: 4 } }] },
          { name: 'elsewhere', deployments: [{ provider: 'other', model: 'elsewhere', price: { input: 1, output: 1 } }] },
        ],
        // One item at a time: the first has ended (and spent) before the second starts.
        inference: { batch: { concurrency: 1 } },
      },
      providers: new Map([
        ['sim', sim],
        ['other', simulatorAdapter('other', (req, opts, simulator) => simulator.chat(req, opts))],
      ]),
    });
  }, 120_000);
  afterAll(async () => {
    await gw?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const call = async (path: string, key: string, body?: unknown) =>
    fetch(`${gw.url}${path}`, { method: body === undefined ? 'GET' : 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });

  it('records the batch with its items’ summed tokens and cost, and their model', async () => {
    const key = ((await (await call('/admin/keys', ADMIN, { name: 'batcher' })).json()) as { key: string }).key;
    const res = await call('/v1/batch', key, [
      { prompt: 'first question', model_preference: 'metered', difficulty: 'easy' },
      { prompt: 'second, longer question about things', model_preference: 'metered', difficulty: 'medium' },
      { prompt: '' },
    ]);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { succeeded: number; results: { result?: { cost: number; metadata: { usage: { prompt_tokens: number; completion_tokens: number } } } }[] };
    expect(body.succeeded).toBe(2);
    const ok = body.results.flatMap((r) => (r.result ? [r.result] : []));
    const prompt = ok.reduce((s, r) => s + r.metadata.usage.prompt_tokens, 0);
    const completion = ok.reduce((s, r) => s + r.metadata.usage.completion_tokens, 0);
    const cost = ok.reduce((s, r) => s + r.cost, 0);
    expect(prompt).toBeGreaterThan(0);
    expect(Number(res.headers.get('x-inferenceflow-cost-usd'))).toBeCloseTo(cost, 8);

    await expect.poll(async () => ((await (await call('/v1/spend?group_by=model', key)).json()) as { total: { requests: number } }).total.requests, { timeout: 5_000 }).toBe(1);
    const spend = (await (await call('/v1/spend?group_by=model', key)).json()) as { data: { group: string | null; requests: number; prompt_tokens: number; completion_tokens: number; cost_usd: number }[] };
    expect(spend.data).toHaveLength(1);
    expect(spend.data[0]).toMatchObject({ group: 'metered', requests: 1, prompt_tokens: prompt, completion_tokens: completion });
    expect(spend.data[0]?.cost_usd).toBeCloseTo(cost, 8);
  });

  it('records what the finished items spent when the client leaves mid-batch', async () => {
    const key = ((await (await call('/admin/keys', ADMIN, { name: 'leaver' })).json()) as { key: string }).key;
    const client = new AbortController();
    const sent = fetch(`${gw.url}/v1/batch`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify([
        { prompt: 'a question that is answered', model_preference: 'metered', difficulty: 'easy' },
        { prompt: 'a question that will hang', model_preference: 'metered', difficulty: 'easy' },
      ]),
      signal: client.signal,
    });
    await hung;
    client.abort();
    await expect(sent).rejects.toThrow();

    const spendOf = async () => (await (await call('/v1/spend?group_by=key', key)).json()) as { total: { requests: number; prompt_tokens: number; completion_tokens: number; cost_usd: number } };
    await expect.poll(async () => (await spendOf()).total.requests, { timeout: 10_000 }).toBe(1);
    const { total } = await spendOf();
    expect(total.prompt_tokens).toBeGreaterThan(0);
    expect(total.completion_tokens).toBeGreaterThan(0);
    expect(total.cost_usd).toBeGreaterThan(0);
  });

  it('records a batch whose items went to several models and providers under none of them, never under joined names', async () => {
    const key = ((await (await call('/admin/keys', ADMIN, { name: 'mixed' })).json()) as { key: string }).key;
    const res = await call('/v1/batch', key, [
      { prompt: 'one for the metered model', model_preference: 'metered', difficulty: 'easy' },
      { prompt: 'one for the other provider', model_preference: 'elsewhere', difficulty: 'easy' },
    ]);
    const body = (await res.json()) as { succeeded: number; results: { result?: { provider: string; model: string; cost: number } }[] };
    expect(body.succeeded).toBe(2);
    // Each item's own provider and model are in its result.
    expect(body.results.map((r) => [r.result?.provider, r.result?.model])).toEqual([
      ['sim', 'metered'],
      ['other', 'elsewhere'],
    ]);
    const cost = body.results.reduce((sum, r) => sum + (r.result?.cost ?? 0), 0);
    type Spend = { data: { group: string | null; requests: number; cost_usd: number }[] };
    await expect.poll(async () => ((await (await call('/v1/spend?group_by=key', key)).json()) as Spend).data[0]?.requests, { timeout: 5_000 }).toBe(1);
    for (const groupBy of ['provider', 'model']) {
      const spend = (await (await call(`/v1/spend?group_by=${groupBy}`, key)).json()) as Spend;
      expect(spend.data).toHaveLength(1);
      expect(spend.data[0]).toMatchObject({ group: null, requests: 1 });
      expect(spend.data[0]?.cost_usd).toBeCloseTo(cost, 8);
    }
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).not.toMatch(/provider="[^"]*,[^"]*"/);
    expect(metrics).not.toMatch(/model="[^"]*,[^"]*"/);
  });

  it('records the model a refused /v1/inference asked for (model_preference)', async () => {
    const key = ((await (await call('/admin/keys', ADMIN, { name: 'narrow', models: ['metered'] })).json()) as { key: string }).key;
    const res = await call('/v1/inference', key, { prompt: 'not my model', model_preference: 'elsewhere', difficulty: 'easy' });
    expect(res.status).toBe(403);
    type Spend = { data: { group: string | null; requests: number }[] };
    await expect.poll(async () => ((await (await call('/v1/spend?group_by=model', key)).json()) as Spend).data, { timeout: 5_000 }).toEqual([expect.objectContaining({ group: 'elsewhere', requests: 1 })]);
  });
});
