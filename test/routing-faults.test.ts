// Routing against a fault-injecting upstream over real HTTP: every fault mode is survived when a
// healthy deployment exists, and answered with the right status when none does; hedging cancels
// the slower upstream call; duplicates share one call; a full queue answers 429; and under 30%
// upstream failures with one healthy deployment, at least 99.9% of 2,000 requests succeed, with no
// unhandled rejection and no socket left open.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import type { RunningServer } from '../src/cli/serve.js';
import { FaultUpstream, type Fault } from './helpers/fault-upstream.js';
import { startTestGateway } from './helpers/gateway.js';

const FAULTS: Record<string, Fault> = {
  ok: { kind: 'ok' },
  e500: { kind: 'status', status: 500 },
  e503: { kind: 'status', status: 503 },
  e408: { kind: 'status', status: 408 },
  e400: { kind: 'status', status: 400 },
  e401: { kind: 'status', status: 401 },
  e403: { kind: 'status', status: 403 },
  e404: { kind: 'status', status: 404 },
  r429: { kind: 'status', status: 429, retryAfterS: 7 },
  hang: { kind: 'hang' },
  reset: { kind: 'reset' },
  malformed: { kind: 'malformed' },
  cutfirst: { kind: 'sse_cut_before_first' },
  truncated: { kind: 'sse_truncated', after: 2 },
  trickle: { kind: 'trickle', intervalMs: 30, words: 4 },
  // Far apart from the 1 s idle timeout on both sides: a loaded machine (parallel test files) once
  // stalled the event loop past a 200 ms idle timeout between the 30 ms trickle's chunks.
  stall: { kind: 'trickle', intervalMs: 2_500, words: 3 },
  slow: { kind: 'ok', delayMs: 1_500 },
  delayed: { kind: 'ok', delayMs: 150 },
  flaky1: { kind: 'flaky', rate: 0.3 },
  flaky2: { kind: 'flaky', rate: 0.3, status: 503 },
  busy: { kind: 'ok', delayMs: 300 },
};

// A short attempt timeout only where a timeout is the fault under test (a hang): anywhere else, a
// busy machine (parallel test files) delaying an answer past 300 ms turned a 429 or a healthy answer
// into 504 upstream_timeout (the likely cause of the r429 case's flake).
const dep = (model: string, extra: Record<string, unknown> = {}) => ({ provider: 'fault', model, timeout_ms: model === 'hang' ? 300 : 10_000, ...extra });

const MODELS = [
  // one faulty deployment first, the healthy one behind it
  ...['e500', 'e503', 'e408', 'r429', 'hang', 'reset', 'malformed', 'cutfirst', 'e401', 'e403', 'e404', 'e400'].map((f) => ({ name: `survive-${f}`, deployments: [dep(f), dep('ok', { priority: 1 })], retry: { max_retries: 0 } })),
  // only the faulty one
  // (r429 with retries allowed: a rate-limited deployment is still not retried within the request.)
  ...['e500', 'r429', 'hang', 'malformed', 'truncated', 'trickle', 'stall'].map((f) => ({ name: `only-${f}`, deployments: [dep(f, { id: `only/${f}` })], retry: { max_retries: f === 'r429' ? 2 : 0 } })),
  { name: 'hedged', hedging: { enabled: true, delay_ms: 50 }, deployments: [dep('slow', { timeout_ms: 5_000, price: { input: 1, output: 1 } }), dep('ok', { priority: 1, price: { input: 1, output: 1 } })] },
  { name: 'dedup', deployments: [dep('delayed')] },
  { name: 'limited', queue_size: 0, deployments: [dep('busy', { max_concurrency: 1, timeout_ms: 5_000 })] },
  // One deployment (one id, one slot) in two groups, as with a fallback group.
  ...['shared-a', 'shared-b'].map((name) => ({ name, deployments: [dep('busy', { id: 'shared/busy', max_concurrency: 1, timeout_ms: 5_000 })] })),
  // Zero-latency faults; generous timeouts so a busy test machine cannot turn a slow answer into a failure.
  { name: 'flaky', strategy: 'round_robin', deployments: [dep('flaky1', { timeout_ms: 10_000 }), dep('flaky2', { timeout_ms: 10_000 }), dep('ok', { id: 'healthy', timeout_ms: 10_000 })] },
];

let upstream: FaultUpstream;
let server: RunningServer;
let agent: Agent;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
let baselineSockets = 0;

const tcpSockets = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  baselineSockets = tcpSockets();
  upstream = new FaultUpstream();
  const url = await upstream.start();
  for (const [model, fault] of Object.entries(FAULTS)) upstream.set(model, fault);
  server = await startTestGateway({
    config: {
      // The real openai adapter, talking to the fault-injecting upstream.
      providers: { fault: { type: 'openai', base_url: url, api_key: 'test-key' } },
      models: MODELS,
      routing: { stream_idle_timeout_ms: 1_000, breaker: { consecutive_failures: 50, min_requests: 1_000 } },
    },
  });
  agent = new Agent({ connections: 64 });
});

afterAll(async () => {
  await agent?.close().catch(() => undefined);
  await server?.close();
  await upstream?.close();
  process.off('unhandledRejection', onUnhandled);
});

async function chat(model: string, opts: { stream?: boolean; content?: string; temperature?: number } = {}) {
  const res = await request(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, stream: opts.stream ?? false, temperature: opts.temperature, messages: [{ role: 'user', content: opts.content ?? 'hi' }] }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, unknown> & { error?: { code: string } } };
}

/** The text content of an SSE chat stream, and its error event if it ended with one. */
function sseContent(body: string): { content: string; done: boolean; error?: { code: string } } {
  let content = '';
  let done = false;
  let error: { code: string } | undefined;
  for (const line of body.split('\n')) {
    if (!line.startsWith('data: ')) continue;
    const data = line.slice(6);
    if (data === '[DONE]') {
      done = true;
      continue;
    }
    const ev = JSON.parse(data) as { error?: { code: string }; choices?: { delta: { content?: string } }[] };
    if (ev.error) error = ev.error;
    for (const c of ev.choices ?? []) content += c.delta.content ?? '';
  }
  return { content, done, error };
}

describe('each fault is survived when a healthy deployment exists', () => {
  // 401/403 (our key revoked) and 404 (the model gone) are that deployment's problem, not the request's.
  for (const fault of ['e500', 'e503', 'e408', 'r429', 'hang', 'reset', 'malformed', 'cutfirst', 'e401', 'e403', 'e404']) {
    it(`${fault}: JSON and stream both answered by the healthy deployment`, async () => {
      const json = await chat(`survive-${fault}`);
      expect(json.status).toBe(200);
      expect(json.headers['x-inferenceflow-deployment']).toBe('fault/ok');
      const stream = await chat(`survive-${fault}`, { stream: true, content: 'stream please' });
      expect(stream.status).toBe(200);
      const sse = sseContent(stream.text);
      expect(sse.error).toBeUndefined();
      expect(sse.done).toBe(true);
      expect(sse.content).toBe('w0 w1 w2 w3 w4');
    });
  }
});

describe('a request the upstream rejects (400) goes straight back to the client', () => {
  it('is not sent to the healthy deployment behind, nor held against the one that rejected it', async () => {
    const healthy = upstream.stats('ok').calls;
    const res = await chat('survive-e400');
    expect(res.status).toBe(400);
    expect(res.json().error?.code).toBe('upstream_rejected_request');
    expect(upstream.stats('ok').calls).toBe(healthy);
    const providers = await request(`${server.url}/v1/providers`, { dispatcher: agent });
    const body = (await providers.body.json()) as { data: { id: string; group: string; error_rate: number }[] };
    expect(body.data.find((d) => d.id === 'fault/e400')?.error_rate).toBe(0);
  });
});

describe('with no healthy deployment the client gets the right error', () => {
  it.each([
    ['e500', 502, 'upstream_error'],
    ['hang', 504, 'upstream_timeout'],
    ['malformed', 502, 'upstream_error'],
  ])('%s -> %i %s', async (fault, status, code) => {
    const res = await chat(`only-${fault}`);
    expect(res.status).toBe(status);
    expect(res.json().error?.code).toBe(code);
  });

  it('429 with Retry-After passes the upstream wait on to the client', async () => {
    const before = upstream.stats('r429').calls;
    const res = await chat('only-r429');
    expect(res.status).toBe(429);
    expect(res.json().error?.code).toBe('upstream_rate_limited');
    expect(res.headers['retry-after']).toBe('7');
    // One call, though the group may retry twice: the rate-limited deployment cools down instead.
    expect(upstream.stats('r429').calls).toBe(before + 1);
    // While it cools down it is not called again: the gateway answers 429 itself.
    const calls = upstream.stats('r429').calls;
    const again = await chat('only-r429');
    expect(again.status).toBe(429);
    expect(Number(again.headers['retry-after'])).toBeGreaterThan(0);
    expect(upstream.stats('r429').calls).toBe(calls);
  });

  it('a stream truncated after it started ends with an error event, not a silent cut', async () => {
    const res = await chat('only-truncated', { stream: true });
    expect(res.status).toBe(200);
    const sse = sseContent(res.text);
    expect(sse.content).toBe('w0 w1');
    expect(sse.error?.code).toBe('upstream_error');
  });

  it('a slow trickle within the idle timeout completes; a stall beyond it ends with 504 upstream_timeout', async () => {
    const trickle = sseContent((await chat('only-trickle', { stream: true })).text);
    expect(trickle).toMatchObject({ content: 'w0 w1 w2 w3', done: true });
    const stall = sseContent((await chat('only-stall', { stream: true })).text);
    expect(stall.error?.code).toBe('upstream_timeout');
  });
});

describe('load and tail latency', () => {
  it('hedges a slow upstream: the fast answer wins and the slow call is cancelled', async () => {
    const before = upstream.stats('slow').aborted;
    const res = await chat('hedged', { content: 'hedge me' });
    expect(res.status).toBe(200);
    expect(res.headers['x-inferenceflow-deployment']).toBe('fault/ok');
    // Both attempts are costed: the winner in full, the cancelled one at its prompt tokens.
    expect(Number(res.headers['x-inferenceflow-cost-usd'])).toBeGreaterThan(0.000015);
    await expect.poll(() => upstream.stats('slow').aborted).toBe(before + 1);
  });

  it('coalesces identical concurrent deterministic requests (JSON and streams) into one upstream call each', async () => {
    const before = upstream.stats('delayed').calls;
    const json = await Promise.all(Array.from({ length: 5 }, () => chat('dedup', { content: 'same question', temperature: 0 })));
    expect(json.map((r) => r.status)).toEqual(Array(5).fill(200));
    const streams = await Promise.all(Array.from({ length: 5 }, () => chat('dedup', { content: 'same question', stream: true, temperature: 0 })));
    for (const s of streams) expect(sseContent(s.text)).toMatchObject({ content: 'w0 w1 w2 w3 w4', done: true });
    expect(upstream.stats('delayed').calls - before).toBe(2);
  });

  it('answers 429 queue_full with Retry-After when the deployment is at its limit and the queue is full', async () => {
    const [a, b] = await Promise.all([chat('limited', { content: 'one' }), chat('limited', { content: 'two' })]);
    const statuses = [a.status, b.status].sort();
    expect(statuses).toEqual([200, 429]);
    const rejected = a.status === 429 ? a : b;
    expect(rejected.json().error?.code).toBe('queue_full');
    expect(Number(rejected.headers['retry-after'])).toBeGreaterThan(0);
  });

  it('two groups sharing a deployment with one slot take turns on it: the second waits, then is answered', async () => {
    const [a, b] = await Promise.all([chat('shared-a', { content: 'first' }), chat('shared-b', { content: 'second' })]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect([a.headers['x-inferenceflow-deployment'], b.headers['x-inferenceflow-deployment']]).toEqual(['shared/busy', 'shared/busy']);
  });

  it('GET /v1/providers reports breaker state, latency, in-flight, error rate and queue per deployment', async () => {
    const res = await request(`${server.url}/v1/providers`, { dispatcher: agent });
    const body = (await res.body.json()) as { data: Record<string, unknown>[]; queue_depth: number; counters: Record<string, number> };
    expect(res.statusCode).toBe(200);
    const row = body.data.find((d) => d.id === 'fault/e500' && d.group === 'survive-e500')!;
    expect(row).toMatchObject({ provider: 'fault', model: 'e500', breaker: { state: 'closed' }, in_flight: 0, queue_length: 0 });
    expect(row.error_rate).toBe(1);
    const ok = body.data.find((d) => d.id === 'fault/ok')!;
    expect(typeof ok.latency_ewma_ms).toBe('number');
    expect(body.counters.hedges).toBeGreaterThanOrEqual(1);
    expect(body.queue_depth).toBe(0);
  });

  it('with 30% of upstream calls failing and one healthy deployment, at least 99.9% of 2,000 requests succeed', async () => {
    const total = 2_000;
    let ok = 0;
    let next = 0;
    const failures: string[] = [];
    const worker = async () => {
      while (next < total) {
        const i = next++;
        const res = await chat('flaky', { content: `request ${i}`, stream: i % 10 === 0 });
        if (res.status === 200 && (i % 10 !== 0 || sseContent(res.text).done)) ok++;
        else if (failures.length < 5) failures.push(`${res.status} ${res.text.slice(0, 300)}`);
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    expect(ok / total, failures.join('\n')).toBeGreaterThanOrEqual(0.999);
    // The faults really happened: about 30% of the flaky deployments' calls failed.
    const failed = (s: { calls: number }) => Math.floor(s.calls * 0.3);
    expect(failed(upstream.stats('flaky1')) + failed(upstream.stats('flaky2'))).toBeGreaterThan(200);
  }, 60_000);
});

describe('cleanup', () => {
  it('leaves no unhandled rejection and no open socket once the gateway is closed', async () => {
    await agent.close();
    await server.close();
    await expect.poll(() => upstream.openConnections, { timeout: 5_000 }).toBe(0);
    await upstream.close();
    await expect.poll(() => tcpSockets(), { timeout: 5_000 }).toBeLessThanOrEqual(baselineSockets);
    expect(unhandled).toEqual([]);
  });
});
