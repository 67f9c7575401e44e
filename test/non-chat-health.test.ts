// Embeddings and forwarded calls (audio, images, moderations) are routed under chat's health rules:
// a deployment whose breaker is open, that asked to wait (429 Retry-After) or whose max_concurrency is
// taken is not called, and their failures open its breaker as chat's do.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestGateway } from './helpers/gateway.js';
import { startJsonUpstream, type JsonUpstream } from './helpers/recording-upstream.js';

let upstream: JsonUpstream;
let server: Awaited<ReturnType<typeof startTestGateway>>;
/** The upstream model of every call, in arrival order. */
let calls: string[] = [];
/** Upstream models answering 429 with `Retry-After: 30`. */
const waiting = new Set<string>();
/** Calls to the `slow` model wait for this before answering. */
let release: () => void = () => undefined;
let held = Promise.resolve();

beforeAll(async () => {
  upstream = await startJsonUpstream((req, body, res) => {
  const { model } = body as { model?: string };
    calls.push(String(model));
    res.setHeader('content-type', 'application/json');
    const answer = () => {
      if (req.url?.endsWith('/moderations')) {
        res.end(JSON.stringify({ id: 'modr-1', model, results: [{ flagged: false, categories: {}, category_scores: {} }] }));
      } else {
        res.end(JSON.stringify({ object: 'list', data: [{ object: 'embedding', index: 0, embedding: [0.5, 0.25] }], model, usage: { prompt_tokens: 1, total_tokens: 1 } }));
      }
    };
    if (model === 'dead') {
      res.statusCode = 500;
      res.end(JSON.stringify({ error: { message: 'The server had an error while processing your request.', type: 'server_error', param: null, code: null } }));
    } else if (model && waiting.has(model)) {
      res.statusCode = 429;
      res.setHeader('retry-after', '30');
      res.end(JSON.stringify({ error: { message: 'Rate limit reached for requests.', type: 'requests', param: null, code: 'rate_limit_exceeded' } }));
    } else if (model === 'slow') {
      void held.then(answer);
    } else answer();
  });
  const url = upstream.url;
  server = await startTestGateway({
    config: {
      providers: { up: { type: 'openai', base_url: url, api_key: 'upstream-key' } },
      routing: { breaker: { consecutive_failures: 3, open_ms: 60_000 } },
      // Each request its own upstream call (batched embeddings: test/embeddings-batching-health.test.ts).
      batching: { enabled: false },
      models: [
        { name: 'emb', deployments: [{ provider: 'up', model: 'dead', id: 'emb/dead' }, { provider: 'up', model: 'healthy', id: 'emb/healthy', priority: 1 }] },
        { name: 'mod', deployments: [{ provider: 'up', model: 'busy', id: 'mod/busy' }, { provider: 'up', model: 'calm', id: 'mod/calm', priority: 1 }] },
        { name: 'mod-all-busy', deployments: [{ provider: 'up', model: 'busy-a', id: 'mab/a' }, { provider: 'up', model: 'busy-b', id: 'mab/b', priority: 1 }] },
        { name: 'emb-limited', deployments: [{ provider: 'up', model: 'slow', id: 'el/slow', max_concurrency: 1 }, { provider: 'up', model: 'spare', id: 'el/spare', priority: 1 }] },
      ],
    },
  });
});

afterAll(async () => {
  await server?.close();
  await upstream?.close();
});

beforeEach(() => {
  calls = [];
});

const post = (path: string, body: unknown) =>
  fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer client-key' }, body: JSON.stringify(body) });

describe('embeddings and forwarded calls under the routing health rules', () => {
  it("stops calling a deployment once its failures have opened its breaker, and /v1/providers shows it open", async () => {
    for (let i = 0; i < 6; i++) {
      const res = await post('/v1/embeddings', { model: 'emb', input: `hello ${i}` });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-inferenceflow-model')).toBe('healthy');
    }
    // Three consecutive failures open it; the three requests after that go straight to the healthy one.
    expect(calls.filter((m) => m === 'dead')).toHaveLength(3);
    expect(calls.slice(-3)).toEqual(['healthy', 'healthy', 'healthy']);
    const status = (await (await fetch(`${server.url}/v1/providers`, { headers: { authorization: 'Bearer client-key' } })).json()) as { data: { id: string; breaker: { state: string } }[] };
    expect(status.data.find((d) => d.id === 'emb/dead')?.breaker.state).toBe('open');
  });

  it('skips a deployment that answered 429 with Retry-After until its wait is over', async () => {
    waiting.add('busy');
    const first = await post('/v1/moderations', { model: 'mod', input: 'is this fine?' });
    expect(first.status).toBe(200);
    const second = await post('/v1/moderations', { model: 'mod', input: 'and this?' });
    expect(second.status).toBe(200);
    expect(((await second.json()) as { model: string }).model).toBe('calm');
    expect(calls).toEqual(['busy', 'calm', 'calm']);
  });

  it('answers 429 upstream_rate_limited with the wait when every deployment asked to wait', async () => {
    waiting.add('busy-a');
    waiting.add('busy-b');
    const first = await post('/v1/moderations', { model: 'mod-all-busy', input: 'one' });
    expect(first.status).toBe(429);
    expect(calls).toEqual(['busy-a', 'busy-b']);
    const second = await post('/v1/moderations', { model: 'mod-all-busy', input: 'two' });
    expect(second.status).toBe(429);
    expect(((await second.json()) as { error: { code: string } }).error.code).toBe('upstream_rate_limited');
    expect(Number(second.headers.get('retry-after'))).toBeGreaterThan(20);
    // Neither was called again.
    expect(calls).toEqual(['busy-a', 'busy-b']);
  });

  it("sends a call to the next deployment while the first one's max_concurrency is taken", async () => {
    held = new Promise<void>((r) => (release = r));
    const first = post('/v1/embeddings', { model: 'emb-limited', input: 'first' });
    await expect.poll(() => calls.includes('slow')).toBe(true);
    const second = await post('/v1/embeddings', { model: 'emb-limited', input: 'second' });
    expect(second.headers.get('x-inferenceflow-model')).toBe('spare');
    release();
    expect((await first).headers.get('x-inferenceflow-model')).toBe('slow');
    // The slot is free again once the first call has settled.
    held = Promise.resolve();
    const third = await post('/v1/embeddings', { model: 'emb-limited', input: 'third' });
    expect(third.headers.get('x-inferenceflow-model')).toBe('slow');
  });
});
