// Test-time scaling's passes against a real gateway: each pass goes through routing like any request
// (a failing deployment fails over to the next one) yet is never joined with another by dedup; the
// aggregation a header asks for is the one the cache keys on.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatRequest } from '../src/canonical/chat.js';
import type { RunningServer } from '../src/cli/serve.js';
import { simulatorAdapter, startTestGateway } from './helpers/gateway.js';

async function post(server: RunningServer, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

describe('scaled passes fail over like any request', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestGateway({
      config: {
        providers: { broken: { type: 'simulator', options: { error_rate: 1 } }, sim: { type: 'simulator', options: { oracle: { p: 1, seed: 3 } } } },
        // `fallback`: the broken deployment is tried first, every time.
        models: [{ name: 'm', strategy: 'fallback', deployments: [{ provider: 'broken', model: 'm' }, { provider: 'sim', model: 'm' }] }],
      },
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('answers a hard request whose first deployment fails from the healthy one', async () => {
    const res = await post(server, '/v1/inference', { prompt: 'What is 20+22?', difficulty: 'hard', model_preference: 'm' });
    const body = (await res.json()) as { response: string; provider: string; metadata: { passes: number; scaling: { votes: Record<string, number> } } };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.provider).toBe('sim');
    expect(body.response).toContain('42');
    expect(body.metadata.passes).toBe(3);
    expect(body.metadata.scaling.votes).toEqual({ '42': 3 });
  });
});

describe('the aggregation header and the cache', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestGateway({
      config: {
        cache: { enabled: true, semantic: { enabled: false } },
        providers: { sim: { type: 'simulator', options: { oracle: { p: 1, seed: 3 } } } },
        models: [{ name: 'm', deployments: [{ provider: 'sim', model: 'm' }] }],
      },
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  async function stores(): Promise<number> {
    return ((await (await fetch(`${server.url}/v1/cache/stats`)).json()) as { stores: number }).stores;
  }

  it('keys the answer by the aggregation the header chose: another aggregation is a miss, the same one a hit', async () => {
    const body = { model: 'm', temperature: 0, difficulty: 'hard', messages: [{ role: 'user', content: 'What is 7+8?' }] };
    const first = await post(server, '/v1/chat/completions', body, { 'x-inferenceflow-aggregation': 'first' });
    expect(first.status).toBe(200);
    expect(first.headers.get('x-inferenceflow-cache')).toBe('miss');
    expect(first.headers.get('x-inferenceflow-passes')).toBe('1');
    await expect.poll(stores, { timeout: 5000, interval: 20 }).toBe(1);

    const other = await post(server, '/v1/chat/completions', body, { 'x-inferenceflow-aggregation': 'self_consistency' });
    expect(other.headers.get('x-inferenceflow-cache')).toBe('miss');
    expect(other.headers.get('x-inferenceflow-passes')).toBe('3');
    await expect.poll(stores, { timeout: 5000, interval: 20 }).toBe(2);

    const again = await post(server, '/v1/chat/completions', body, { 'x-inferenceflow-aggregation': 'first' });
    expect(again.headers.get('x-inferenceflow-cache')).toBe('exact');
  });
});

describe('passes are independent upstream calls', () => {
  let server: RunningServer;
  const seen: ChatRequest[] = [];
  beforeAll(async () => {
    // An upstream without native `n` (so passes are separate calls), slow enough that they overlap.
    const slow = simulatorAdapter(
      'slow',
      (req, opts, sim) => {
        seen.push(req);
        return sim.chat(req, opts);
      },
      { latency_ms: 100 },
    );
    server = await startTestGateway({
      config: {
        // dedup stays at its default, `deterministic`: a seed or temperature 0 would join identical requests.
        providers: { slow: { type: 'ollama', base_url: 'http://127.0.0.1:9' } },
        models: [{ name: 'm', deployments: [{ provider: 'slow', model: 'm' }] }],
      },
      providers: new Map([['slow', slow]]),
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  type InferAnswer = { passes: number; usage: { total_tokens: number }; scaling: { votes: Record<string, number> } };

  it('a seed gives each pass its own seed (seed + k) and its own call', async () => {
    seen.length = 0;
    const res = await post(server, '/v1/infer', { model: 'm', prompt: 'Name a colour', params: { seed: 7, max_new_tokens: 8 }, difficulty: 'expert' });
    const body = (await res.json()) as InferAnswer;
    expect(res.status).toBe(200);
    expect(body.passes).toBe(5);
    expect(seen.map((r) => r.seed ?? -1).sort((a, b) => a - b)).toEqual([7, 8, 9, 10, 11]);
    expect(Object.values(body.scaling.votes).reduce((a, b) => a + b, 0)).toBe(5);
    expect(res.headers.get('x-inferenceflow-route') ?? '').not.toContain('dedup=joined');
  });

  it('temperature 0 passes are not joined into one call either', async () => {
    seen.length = 0;
    const res = await post(server, '/v1/infer', { model: 'm', prompt: 'Name a shape', params: { do_sample: false, max_new_tokens: 8 }, difficulty: 'hard' });
    const body = (await res.json()) as InferAnswer;
    expect(res.status).toBe(200);
    expect(body.passes).toBe(3);
    expect(seen).toHaveLength(3);
    expect(seen.every((r) => r.temperature === 0 && r.seed === undefined)).toBe(true);
    expect(res.headers.get('x-inferenceflow-route') ?? '').not.toContain('dedup=joined');
  });
});

describe('difficulty as docs/compute.md spells it', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestGateway({
      config: {
        providers: { sim: { type: 'simulator', options: { oracle: { p: 1, seed: 3 } } } },
        models: [{ name: 'm', deployments: [{ provider: 'sim', model: 'm' }] }],
      },
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('takes a level in any case or as 1-4 on every route, and names the field when it is neither', async () => {
    const chat = (difficulty: unknown) => post(server, '/v1/chat/completions', { model: 'm', temperature: 0, difficulty, messages: [{ role: 'user', content: 'What is 7+8?' }] });
    for (const difficulty of ['Hard', 3, 'HARD', ' hard ']) {
      const res = await chat(difficulty);
      expect(res.status, `${JSON.stringify(difficulty)}: ${await res.clone().text()}`).toBe(200);
      expect(res.headers.get('x-inferenceflow-passes')).toBe('3');
    }
    const seed = await post(server, '/v1/inference', { prompt: 'What is 7+8?', difficulty: 'Hard', model_preference: 'm' });
    expect(seed.status).toBe(200);
    expect(((await seed.json()) as { metadata: { passes: number } }).metadata.passes).toBe(3);
    for (const bad of ['harder', 5, 0, 2.5]) {
      const res = await chat(bad);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { param: string; code: string } }).error).toMatchObject({ param: 'difficulty', code: bad === 2.5 ? 'invalid_type' : 'invalid_value' });
    }
  });
});
