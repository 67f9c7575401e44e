// Metrics, stats and request logs as an operator sees them on a running gateway: the seeds' metric
// names at /metrics and /v1/metrics, the switch and the token, the separate PROMETHEUS_PORT listener,
// /v1/stats moving with traffic, and one log line per request with its facts and no secrets.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { RunningServer } from '../src/cli/serve.js';
import { UpstreamError } from '../src/providers/errors.js';
import type { ProviderAdapter } from '../src/providers/types.js';
import { createLogger } from '../src/telemetry/logger.js';
import { simulatorAdapter, startTestGateway } from './helpers/gateway.js';

const CHAT = '/v1/chat/completions';
const body = (extra: Record<string, unknown> = {}) => JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hello there' }], ...extra });

async function call(url: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}) {
  const res = await request(url, { method: (init.method ?? 'GET') as 'GET', body: init.body, headers: { 'content-type': 'application/json', ...init.headers } });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

function captureLogs() {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) {
        raw.push(l);
        lines.push(JSON.parse(l) as Record<string, unknown>);
      }
      cb();
    },
  });
  return { lines, raw, logger: createLogger('info', stream) };
}

const models = [
  { name: 'chat', deployments: [{ provider: 'sim', model: 'sim-chat', price: { input: 1, output: 2 } }] },
  // No retries: the counts below are of one attempt per request (routing would otherwise retry twice).
  { name: 'broken', retry: { max_retries: 0 }, deployments: [{ provider: 'failing', model: 'sim-broken' }] },
];
const providers = { sim: { type: 'simulator' }, failing: { type: 'simulator', options: { error_rate: 1 } } };

describe('metrics and stats on a running gateway', () => {
  let server: RunningServer;
  const logs = captureLogs();
  beforeAll(async () => {
    server = await startTestGateway({ config: { providers, models, auth: { tokens: ['client-token-123'] } }, logger: logs.logger });
  });
  afterAll(() => server.close());
  const auth = { authorization: 'Bearer client-token-123' };

  it('serves the seed metric names at /metrics and /v1/metrics, counting requests by route, model, provider and status', async () => {
    for (let i = 0; i < 3; i++) expect((await call(server.url + CHAT, { method: 'POST', body: body(), headers: auth })).status).toBe(200);
    expect((await call(server.url + CHAT, { method: 'POST', body: body({ stream: true, stream_options: { include_usage: true } }), headers: auth })).status).toBe(200);
    expect((await call(server.url + CHAT, { method: 'POST', body: body({ model: 'broken' }), headers: auth })).status).toBeGreaterThanOrEqual(500);
    const metrics = await call(`${server.url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers['content-type']).toContain('text/plain');
    const text = metrics.text;
    expect(text).toContain(`inference_requests_total{model="sim-chat",provider="sim",route="${CHAT}",status="200"} 4`);
    expect(text).toMatch(new RegExp(`inference_errors_5xx_total\\{provider="none",route="${CHAT}",status="5\\d\\d"\\} 1`));
    expect(text).toMatch(/inference_request_duration_ms_bucket\{le="\+Inf",model="sim-chat",provider="sim",route="\/v1\/chat\/completions"\} 4/);
    expect(text).toContain('inference_provider_errors_total{provider="failing",kind="server"} 1');
    expect(text).toContain('inference_time_to_first_token_ms_count{provider="sim",model="sim-chat"} 1');
    expect(text).toMatch(/inference_tokens_total\{provider="sim",model="sim-chat",type="output"\} [1-9]/);
    expect(text).toMatch(/inference_cost_usd_total\{provider="sim",model="sim-chat"\} [0-9.e-]+/);
    for (const name of ['inference_cache_hits_total', 'inference_queue_depth', 'circuit_breaker_open_total', 'inference_gpu_allocation_latency_ms', 'inference_mesh_node_health']) {
      expect(text).toContain(`# HELP ${name} `);
    }
    // Metrics scrapes are not API traffic, and no request id ever becomes a label.
    expect(text).not.toMatch(/route="\/metrics"/);
    expect(text).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/);
    const v1 = await call(`${server.url}/v1/metrics`);
    expect(v1.status).toBe(200);
    expect(v1.text).toContain('inference_requests_total{');
  });

  it('answers /v1/stats with latency percentiles, throughput, error rate by provider and cost per request', async () => {
    expect((await call(`${server.url}/v1/stats`)).status).toBe(401);
    const res = await call(`${server.url}/v1/stats`, { headers: auth });
    expect(res.status).toBe(200);
    const s = JSON.parse(res.text);
    expect(s.requests.total).toBe(5);
    expect(s.requests.errors_5xx).toBe(1);
    expect(s.requests.error_rate).toBe(0.2);
    expect(s.latency_ms.p50).toBeGreaterThan(0);
    expect(s.latency_ms.p99).toBeGreaterThanOrEqual(s.latency_ms.p50);
    expect(s.requests.per_second).toBeGreaterThan(0);
    const byName = Object.fromEntries(s.providers.map((p: { provider: string }) => [p.provider, p]));
    expect(byName.sim).toMatchObject({ calls: 4, errors: 0, error_rate: 0 });
    expect(byName.failing).toMatchObject({ calls: 1, errors: 1, error_rate: 1 });
    expect(s.cost.total_usd).toBeGreaterThan(0);
    expect(s.cost.per_request_usd).toBeCloseTo(s.cost.total_usd / 5, 12);
    expect(s.cache.enabled).toBe(false);
    expect(s.gateway.providers).toEqual(['failing', 'sim']);
    expect(s.alerts.find((a: { name: string }) => a.name === 'error_rate')).toMatchObject({ firing: true, threshold: 0.05 });
    // One process: its own window, no cluster to account for.
    expect(s).not.toHaveProperty('workers');
  });

  it('writes one request line per request with id, tenant, model, provider, latency and outcome, and no credentials', async () => {
    const before = logs.lines.length;
    const res = await call(server.url + CHAT, { method: 'POST', body: body(), headers: { 'x-api-key': 'client-token-123', 'x-request-id': 'trace-me-42' } });
    expect(res.status).toBe(200);
    await expect.poll(() => logs.lines.slice(before).find((l) => l.msg === 'request' && l.reqId === 'trace-me-42')).toBeDefined();
    const line = logs.lines.slice(before).find((l) => l.reqId === 'trace-me-42') as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'info', status: 200, outcome: 'ok', model: 'sim-chat', provider: 'sim', route: CHAT, method: 'POST' });
    expect(String(line.tenant)).toMatch(/^token:/);
    expect(typeof line.latencyMs).toBe('number');
    const refused = await call(server.url + CHAT, { method: 'POST', body: body(), headers: { authorization: 'Bearer wrong-secret-value-77', 'x-request-id': 'refused-42' } });
    expect(refused.status).toBe(401);
    await expect.poll(() => logs.lines.some((l) => l.status === 401)).toBe(true);
    // Which refusal it was: the error code from docs/errors.md, beside the status.
    await expect.poll(() => logs.lines.find((l) => l.msg === 'request' && l.reqId === 'refused-42')).toMatchObject({ status: 401, code: 'invalid_api_key', outcome: 'client_error' });
    expect(line).not.toHaveProperty('code');
    const all = logs.raw.join('\n');
    expect(all).not.toContain('client-token-123');
    expect(all).not.toContain('wrong-secret-value-77');
  });

  it('logs a request whose client left mid-stream as 499 client_closed', async () => {
    const slow = await startTestGateway({
      config: { providers: { sim: { type: 'simulator', options: { tokens_per_second: 20, answer_words: 200 } } }, models: [{ name: 'chat', deployments: [{ provider: 'sim', model: 'slow' }] }] },
      logger: logs.logger,
    });
    try {
      const controller = new AbortController();
      const res = await request(slow.url + CHAT, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body({ stream: true }), signal: controller.signal });
      await res.body[Symbol.asyncIterator]().next();
      controller.abort();
      await expect.poll(() => logs.lines.find((l) => l.status === 499 && l.outcome === 'client_closed'), { timeout: 5000 }).toBeDefined();
      const text = await (await fetch(`${slow.url}/metrics`)).text();
      expect(text).toContain(`inference_requests_total{model="slow",provider="sim",route="${CHAT}",status="499"} 1`);
      expect(text).toContain('inference_requests_in_flight 0');
    } finally {
      await slow.close();
    }
  });

  it('records a client that left before a JSON answer as client_closed_request, not as a gateway failure', async () => {
    const slow = await startTestGateway({
      config: { providers: { sim: { type: 'simulator', options: { latency_ms: 2000 } } }, models: [{ name: 'chat', deployments: [{ provider: 'sim', model: 'slow-json' }] }] },
      logger: logs.logger,
    });
    try {
      const controller = new AbortController();
      const pending = request(slow.url + CHAT, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'leaves-early-1' }, body: body(), signal: controller.signal });
      await expect.poll(async () => (await (await fetch(`${slow.url}/metrics`)).text()).includes('inference_requests_in_flight 1')).toBe(true);
      controller.abort();
      await expect(pending).rejects.toThrow();
      await expect.poll(() => logs.lines.find((l) => l.reqId === 'leaves-early-1' && l.msg === 'request'), { timeout: 5000 }).toMatchObject({ status: 499, outcome: 'client_closed' });
      // The cancellation reached the router: no error-level line, no internal_error anywhere for it.
      const mine = logs.lines.filter((l) => l.reqId === 'leaves-early-1');
      expect(mine.filter((l) => l.level === 'error' || (l as { level: unknown }).level === 50)).toEqual([]);
      expect(JSON.stringify(mine)).not.toContain('internal_error');
      const text = await (await fetch(`${slow.url}/metrics`)).text();
      // No answer came, so no model or provider answered it.
      expect(text).toContain(`inference_requests_total{model="none",provider="none",route="${CHAT}",status="499"} 1`);
      expect(text).not.toMatch(/inference_errors_5xx_total\{[^}]*\} [1-9]/);
    } finally {
      await slow.close();
    }
  });
});

describe('metrics switches', () => {
  it('turns /metrics off with ENABLE_METRICS=false', async () => {
    const server = await startTestGateway({ env: { ENABLE_METRICS: 'false' } });
    try {
      expect((await call(`${server.url}/metrics`)).status).toBe(404);
      expect((await call(`${server.url}/v1/metrics`)).status).toBe(404);
    } finally {
      await server.close();
    }
  });

  it('puts /metrics behind METRICS_TOKEN when set', async () => {
    const server = await startTestGateway({ env: { METRICS_TOKEN: 'scrape-secret-1' } });
    try {
      expect((await call(`${server.url}/metrics`)).status).toBe(401);
      expect((await call(`${server.url}/metrics`, { headers: { authorization: 'Bearer nope-nope-nope' } })).status).toBe(401);
      const ok = await call(`${server.url}/metrics`, { headers: { authorization: 'Bearer scrape-secret-1' } });
      expect(ok.status).toBe(200);
      expect(ok.text).toContain('# TYPE inference_requests_total counter');
    } finally {
      await server.close();
    }
  });

  it('also serves metrics on PROMETHEUS_PORT, and closes that listener on shutdown', async () => {
    const server = await startTestGateway({ env: { PROMETHEUS_PORT: '0' } });
    const listener = server.gateway.resources.find((r) => r.name === 'metrics-server') as unknown as { port: number };
    expect(listener.port).toBeGreaterThan(0);
    const url = `http://127.0.0.1:${listener.port}/metrics`;
    try {
      await call(`${server.url}/v1/models`);
      const res = await call(url);
      expect(res.status).toBe(200);
      expect(res.text).toContain('inference_requests_total{model="none",provider="none",route="/v1/models",status="200"} 1');
      expect((await call(`http://127.0.0.1:${listener.port}/v1/chat/completions`)).status).toBe(404);
    } finally {
      await server.close();
    }
    await expect(call(url)).rejects.toThrow();
  });
});

describe('routes that check their own credential', () => {
  const ADMIN = 'admin-token-for-obs-audit-0123456789';
  let server: RunningServer;
  let dir: string;
  const logs = captureLogs();
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'obs-admin-'));
    server = await startTestGateway({ config: { providers, models, auth: { admin_token: ADMIN }, database: { pglite_path: join(dir, 'db') } }, logger: logs.logger });
  }, 120_000);
  afterAll(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('logs and counts admin key creation and revocation (an audit line), while probes stay quiet and uncounted', async () => {
    const admin = { authorization: `Bearer ${ADMIN}` };
    const created = await call(`${server.url}/admin/keys`, { method: 'POST', body: JSON.stringify({ name: 'audited' }), headers: { ...admin, 'x-request-id': 'create-key-1' } });
    expect(created.status).toBe(201);
    const id = (JSON.parse(created.text) as { id: string }).id;
    expect((await call(`${server.url}/admin/keys/${id}/revoke`, { method: 'POST', body: '{}', headers: { ...admin, 'x-request-id': 'revoke-key-1' } })).status).toBe(200);
    expect((await call(`${server.url}/health`)).status).toBe(200);
    await expect.poll(() => logs.lines.find((l) => l.msg === 'request' && l.reqId === 'revoke-key-1')).toMatchObject({ status: 200, outcome: 'ok', route: '/admin/keys/:id/revoke', method: 'POST' });
    expect(logs.lines.find((l) => l.msg === 'request' && l.reqId === 'create-key-1')).toMatchObject({ status: 201, outcome: 'ok', route: '/admin/keys' });
    expect(logs.lines.some((l) => l.msg === 'request' && l.route === '/health')).toBe(false);
    const text = (await call(`${server.url}/metrics`)).text;
    expect(text).toMatch(/inference_requests_total\{[^}]*route="\/admin\/keys",status="201"\} 1/);
    expect(text).toMatch(/inference_requests_total\{[^}]*route="\/admin\/keys\/:id\/revoke",status="200"\} 1/);
    expect(text).not.toContain('route="/health"');
    expect(logs.raw.join('\n')).not.toContain(ADMIN);
  });
});

describe('a stream that fails after it started', () => {
  it('is logged and counted as the error it ended with, not as a success', async () => {
    const logs = captureLogs();
    const base = simulatorAdapter('cut', (req, opts, sim) => sim.chat(req, opts));
    // Two chunks, then the upstream's connection breaks.
    const cut: ProviderAdapter = {
      ...base,
      streamChat: async (req, opts) => {
        const source = await base.streamChat(req, opts);
        return (async function* () {
          let n = 0;
          for await (const chunk of source) {
            yield chunk;
            if (++n === 2) throw new UpstreamError({ provider: 'cut', kind: 'server', status: 500, message: 'connection reset mid-stream' });
          }
        })();
      },
    };
    const gw = await startTestGateway({
      config: { providers: { cut: { type: 'ollama', base_url: 'http://127.0.0.1:9' } }, models: [{ name: 'chat', retry: { max_retries: 0 }, deployments: [{ provider: 'cut', model: 'cut' }] }] },
      providers: new Map([['cut', cut]]),
      logger: logs.logger,
    });
    try {
      const res = await call(gw.url + CHAT, { method: 'POST', body: body({ stream: true }), headers: { 'x-request-id': 'cut-stream-1' } });
      expect(res.status).toBe(200);
      expect(res.text).toContain('upstream_error');
      await expect.poll(() => logs.lines.find((l) => l.msg === 'request' && l.reqId === 'cut-stream-1')).toMatchObject({ status: 502, outcome: 'error' });
      const text = (await call(`${gw.url}/metrics`)).text;
      expect(text).toMatch(/inference_errors_5xx_total\{provider="cut",route="\/v1\/chat\/completions",status="502"\} 1/);
      expect(text).not.toMatch(/inference_requests_total\{[^}]*status="200"\}/);
    } finally {
      await gw.close();
    }
  });
});
