// The TypeScript SDK (`inferenceflow/client`) against a running gateway: infer with and without
// test-time scaling, token streaming, batchInfer with a failing item, clusterStatus, configuration
// from OVERSHOOT_* variables, and retry with backoff on retryable answers only.
import { createServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { DifficultyLevel, InferenceFlowError, OvershootInferenceWorker } from '../src/client/index.js';
import { startTestGateway } from './helpers/gateway.js';

const TOKEN = 'sdk-test-token-123';
let server: RunningServer;
let worker: OvershootInferenceWorker;

beforeAll(async () => {
  server = await startTestGateway({
    config: {
      auth: { tokens: [TOKEN] },
      providers: { sim: { type: 'simulator', options: { oracle: { p: 1, seed: 5 } } } },
      models: [{ name: 'llama-3-70b', deployments: [{ provider: 'sim', model: 'llama-3-70b', price: { input: 1, output: 2 } }] }],
    },
  });
  worker = new OvershootInferenceWorker({ endpoint: server.url, apiKey: TOKEN });
});
afterAll(async () => {
  await server?.close();
});

describe('OvershootInferenceWorker', () => {
  it('infers with text, latency, cluster, usage and cost', async () => {
    const r = await worker.infer({ prompt: 'Explain the Pythagorean theorem step by step.', sessionId: 'session-123' });
    expect(r.text).toContain('Pythagorean');
    expect(r.latencyMs).toBeGreaterThan(0);
    expect(r.clusterId).toBe('sim/llama-3-70b');
    expect(r.provider).toBe('sim');
    expect(r.model).toBe('llama-3-70b');
    expect(r.usage.totalTokens).toBe(r.usage.promptTokens + r.usage.completionTokens);
    expect(r.costUsd).toBeCloseTo((r.usage.promptTokens * 1 + r.usage.completionTokens * 2) / 1e6, 10);
    expect(r.passes).toBe(1);
    expect(r.requestId).not.toBe('');
  });

  it('runs the difficulty level’s passes and reports their summed usage', async () => {
    const one = await worker.infer({ prompt: 'What is 20+22?', difficulty: DifficultyLevel.EASY });
    const hard = await worker.infer({ prompt: 'What is 20+22?', difficulty: DifficultyLevel.HARD, aggregation: 'self_consistency' });
    expect(hard.passes).toBe(3);
    expect(hard.text).toContain('42');
    // The simulator samples n choices in one call: the prompt is billed once, every pass's answer counted.
    expect(hard.usage.completionTokens).toBe(3 * one.usage.completionTokens);
    expect(hard.costUsd).toBeGreaterThan(one.costUsd);
  });

  it('streams tokens that add up to the whole answer', async () => {
    const whole = await worker.infer({ prompt: 'Tell me about rivers' });
    const tokens: string[] = [];
    for await (const t of worker.inferStream({ prompt: 'Tell me about rivers' })) tokens.push(t);
    expect(tokens.length).toBeGreaterThan(3);
    expect(tokens.join('')).toBe(whole.text);
  });

  it('batchInfer answers each request in order; one failure does not fail the rest', async () => {
    const results = await worker.batchInfer([
      { prompt: 'What is 1+1?', difficulty: DifficultyLevel.EASY },
      { prompt: 'What is 2+2?', difficulty: 'extreme' as DifficultyLevel },
      { prompt: 'What is 3+3?', difficulty: DifficultyLevel.MEDIUM },
    ]);
    expect(results.map((r) => r.ok)).toEqual([true, false, true]);
    const [first, second, third] = results;
    if (!first?.ok || !second || second.ok || !third?.ok) throw new Error('unexpected result shape');
    expect(first.response.text).toContain('2');
    expect(second.error).toBeInstanceOf(InferenceFlowError);
    expect(second.error.code).toBe('invalid_value');
    expect(third.response.passes).toBe(2);
    expect(third.response.clusterId).toBe('sim/llama-3-70b');
  });

  it('reports cluster status', async () => {
    const s = await worker.clusterStatus();
    expect(s.ready).toBe(true);
    expect(s.checks.find((c) => c.name === 'providers')?.ok).toBe(true);
  });

  it('reads OVERSHOOT_ENDPOINT, OVERSHOOT_API_KEY and OVERSHOOT_MODEL, and defaults the model to llama-3-70b', async () => {
    const saved = { ...process.env };
    try {
      process.env.OVERSHOOT_ENDPOINT = server.url;
      process.env.OVERSHOOT_API_KEY = TOKEN;
      delete process.env.OVERSHOOT_MODEL;
      const fromEnv = new OvershootInferenceWorker();
      expect(fromEnv.model).toBe('llama-3-70b');
      expect((await fromEnv.infer({ prompt: 'hi' })).model).toBe('llama-3-70b');
      process.env.OVERSHOOT_MODEL = 'other-model';
      expect(new OvershootInferenceWorker().model).toBe('other-model');
      delete process.env.OVERSHOOT_API_KEY;
      await expect(new OvershootInferenceWorker({ maxRetries: 0 }).infer({ prompt: 'hi' })).rejects.toMatchObject({ status: 401, code: 'missing_api_key' });
    } finally {
      process.env = saved;
    }
  });

  it('retries 503s with backoff and gives up at once on a 400', async () => {
    let calls = 0;
    const flaky: typeof fetch = async (input, init) => {
      calls++;
      if (calls <= 2) return new Response(JSON.stringify({ error: { message: 'busy', code: 'upstream_unavailable' } }), { status: 503, headers: { 'retry-after': '0' } });
      return fetch(input, init);
    };
    const w = new OvershootInferenceWorker({ endpoint: server.url, apiKey: TOKEN, fetch: flaky, initialBackoffMs: 1 });
    expect((await w.infer({ prompt: 'hello' })).text).toContain('hello');
    expect(calls).toBe(3);

    calls = 0;
    const counting: typeof fetch = async (input, init) => {
      calls++;
      return fetch(input, init);
    };
    const strict = new OvershootInferenceWorker({ endpoint: server.url, apiKey: TOKEN, fetch: counting, initialBackoffMs: 1 });
    await expect(strict.infer({ prompt: 'x', temperature: 9 })).rejects.toMatchObject({ status: 400, param: 'temperature' });
    expect(calls).toBe(1);
  });

  it('turns an unreachable gateway into a network_error after its retries', async () => {
    const w = new OvershootInferenceWorker({ endpoint: 'http://127.0.0.1:1', maxRetries: 1, initialBackoffMs: 1 });
    await expect(w.infer({ prompt: 'x' })).rejects.toMatchObject({ status: 0, code: 'network_error' });
  });

  it('throws stream_interrupted when a stream ends without [DONE], after the tokens that did arrive', async () => {
    const sse = (events: string[]) => new Response(events.map((e) => `data: ${e}\n\n`).join(''), { status: 200, headers: { 'content-type': 'text/event-stream', 'x-request-id': 'req-cut' } });
    const piece = (text: string) => JSON.stringify({ choices: [{ index: 0, delta: { content: text } }] });
    const cut = new OvershootInferenceWorker({ endpoint: server.url, fetch: async () => sse([piece('Once '), piece('upon')]) });
    const got: string[] = [];
    const run = async () => {
      for await (const t of cut.inferStream({ prompt: 'story' })) got.push(t);
    };
    await expect(run()).rejects.toMatchObject({ name: 'InferenceFlowError', code: 'stream_interrupted', requestId: 'req-cut' });
    expect(got).toEqual(['Once ', 'upon']);

    const whole = new OvershootInferenceWorker({ endpoint: server.url, fetch: async () => sse([piece('The '), piece('end'), '[DONE]']) });
    const all: string[] = [];
    for await (const t of whole.inferStream({ prompt: 'story' })) all.push(t);
    expect(all).toEqual(['The ', 'end']);
  });

  it('batchInfer never sends a batch again that may have run (timeout, 5xx, a connection lost after sending): its requests get the error; a 429 or a connection never made is retried', async () => {
    const items = [{ prompt: 'What is 1+1?', difficulty: DifficultyLevel.EASY }];
    const attempt = async (fail: (call: number) => Response | Error | undefined, opts: { endpoint?: string } = {}) => {
      let calls = 0;
      const f: typeof fetch = async (input, init) => {
        const failure = fail(++calls);
        if (failure instanceof Error) throw failure;
        return failure ?? fetch(input, init);
      };
      const w = new OvershootInferenceWorker({ endpoint: opts.endpoint ?? server.url, apiKey: TOKEN, fetch: f, maxRetries: 2, initialBackoffMs: 1 });
      const result = await w.batchInfer(items).then(
        (r) => ({ ok: true as const, r }),
        (e: unknown) => ({ ok: false as const, e }),
      );
      return { calls, result };
    };
    const busy = new Response(JSON.stringify({ error: { message: 'boom', code: 'internal_error' } }), { status: 500 });
    const five = await attempt((n) => (n === 1 ? busy : undefined));
    expect(five.calls).toBe(1);
    expect(five.result).toMatchObject({ ok: true, r: [{ ok: false, error: { status: 500, code: 'internal_error' } }] });

    const timeout = await attempt((n) => (n === 1 ? new DOMException('The operation was aborted due to timeout', 'TimeoutError') : undefined));
    expect(timeout.calls).toBe(1);
    expect(timeout.result).toMatchObject({ ok: true, r: [{ ok: false, error: { code: 'timeout' } }] });

    const reset = await attempt((n) => (n === 1 ? new TypeError('fetch failed', { cause: Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }) }) : undefined));
    expect(reset.calls).toBe(1);
    expect(reset.result).toMatchObject({ ok: true, r: [{ ok: false, error: { code: 'network_error' } }] });

    const limited = await attempt((n) => (n === 1 ? new Response(JSON.stringify({ error: { message: 'slow down', code: 'rate_limit_exceeded' } }), { status: 429, headers: { 'retry-after': '0' } }) : undefined));
    expect(limited.calls).toBe(2);
    expect(limited.result.ok && limited.result.r[0]?.ok).toBe(true);

    // A port nothing listens on: ECONNREFUSED, the request never left.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const refused = await attempt(() => undefined, { endpoint: `http://127.0.0.1:${port}` });
    expect(refused.calls).toBe(3);
    expect(refused.result).toMatchObject({ ok: true, r: [{ ok: false, error: { code: 'network_error' } }] });

    // infer (one request) still retries a 5xx.
    let calls = 0;
    const w = new OvershootInferenceWorker({ endpoint: server.url, apiKey: TOKEN, initialBackoffMs: 1, fetch: async (input, init) => (++calls === 1 ? new Response('{}', { status: 500 }) : fetch(input, init)) });
    await w.infer({ prompt: 'hi' });
    expect(calls).toBe(2);
  });

  it('batchInfer keeps the results of the round trips that ran when a later one fails: only its requests get its error', async () => {
    let calls = 0;
    const failsSecond: typeof fetch = async (input, init) => (++calls === 2 ? new Response(JSON.stringify({ error: { message: 'boom', code: 'internal_error' } }), { status: 500 }) : fetch(input, init));
    const w = new OvershootInferenceWorker({ endpoint: server.url, apiKey: TOKEN, fetch: failsSecond, batchSize: 2, initialBackoffMs: 1 });
    const results = await w.batchInfer(['1+1', '2+2', '3+3', '4+4', '5+5'].map((q) => ({ prompt: `What is ${q}?` })));
    expect(results.map((r) => r.ok)).toEqual([true, true, false, false, true]);
    expect(results[2]).toMatchObject({ ok: false, error: { status: 500, code: 'internal_error' } });
    expect(results[4]).toMatchObject({ ok: true, response: { text: expect.stringContaining('10') } });
    expect(calls).toBe(3);
  });

  it("batchInfer sends a gateway whose inference.batch.max_items is below the client's batches no more than it takes", async () => {
    const small = await startTestGateway({
      config: {
        auth: { tokens: [TOKEN] },
        providers: { sim: { type: 'simulator', options: { oracle: { p: 1, seed: 5 } } } },
        models: [{ name: 'llama-3-70b', deployments: [{ provider: 'sim', model: 'llama-3-70b' }] }],
        inference: { batch: { max_items: 2 } },
      },
    });
    try {
      const sizes: number[] = [];
      const counting: typeof fetch = async (input, init) => {
        sizes.push((JSON.parse(String(init?.body)) as { requests: unknown[] }).requests.length);
        return fetch(input, init);
      };
      const w = new OvershootInferenceWorker({ endpoint: small.url, apiKey: TOKEN, fetch: counting });
      const results = await w.batchInfer(['1+1', '2+2', '3+3', '4+4', '5+5'].map((q) => ({ prompt: `What is ${q}?` })));
      expect(results.map((r) => r.ok)).toEqual([true, true, true, true, true]);
      // The refused batch of five, then the five again in twos; the next call sends twos at once.
      expect(sizes).toEqual([5, 2, 2, 1]);
      await w.batchInfer([{ prompt: 'a' }, { prompt: 'b' }, { prompt: 'c' }]);
      expect(sizes.slice(4)).toEqual([2, 1]);
    } finally {
      await small.close();
    }
  });

  it('turns failures while reading an answer (the timeout, bad JSON) into InferenceFlowError, not a raw DOMException', async () => {
    const timeout = () => new DOMException('The operation was aborted due to timeout', 'TimeoutError');
    // A body that sends a first piece, then fails as a fetch whose timeout fired mid-body does.
    let sent = false;
    const failing = (first: string, contentType = 'application/json') => {
      sent = false;
      return new Response(
        new ReadableStream<Uint8Array>({
          // The first read gets the piece, the next one the failure (error() in start would drop the piece).
          pull(c) {
            if (sent) return c.error(timeout());
            sent = true;
            c.enqueue(new TextEncoder().encode(first));
          },
        }),
        { status: 200, headers: { 'content-type': contentType, 'x-request-id': 'req-slow' } },
      );
    };
    const slow = (first: string, contentType?: string) => new OvershootInferenceWorker({ endpoint: server.url, maxRetries: 0, fetch: async () => failing(first, contentType) });
    const isWrapped = (e: unknown) => e instanceof InferenceFlowError;

    const inferred = await slow('{"choices": [').infer({ prompt: 'x' }).catch((e: unknown) => e);
    expect(isWrapped(inferred)).toBe(true);
    expect(inferred).toMatchObject({ code: 'timeout', status: 0, requestId: 'req-slow' });

    const [batched] = await slow('{"results": [').batchInfer([{ prompt: 'x' }]);
    expect(batched?.ok).toBe(false);
    expect(isWrapped(batched && !batched.ok ? batched.error : undefined)).toBe(true);
    expect(batched).toMatchObject({ error: { code: 'timeout' } });

    const got: string[] = [];
    const streamed = await (async () => {
      for await (const t of slow(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'Once' } }] })}\n\n`, 'text/event-stream').inferStream({ prompt: 'x' })) got.push(t);
    })().catch((e: unknown) => e);
    expect(got).toEqual(['Once']);
    expect(isWrapped(streamed)).toBe(true);
    expect(streamed).toMatchObject({ code: 'timeout' });

    const garbled = new OvershootInferenceWorker({ endpoint: server.url, fetch: async () => new Response('<html>proxy error</html>', { status: 200 }) });
    const bad = await garbled.infer({ prompt: 'x' }).catch((e: unknown) => e);
    expect(isWrapped(bad)).toBe(true);
    expect(bad).toMatchObject({ code: 'malformed_response', status: 200 });
    const badEvent = await (async () => {
      for await (const _ of new OvershootInferenceWorker({ endpoint: server.url, fetch: async () => new Response('data: {not json\n\n', { status: 200 }) }).inferStream({ prompt: 'x' })) void _;
    })().catch((e: unknown) => e);
    expect(badEvent).toMatchObject({ name: 'InferenceFlowError', code: 'malformed_response' });
  });
});
