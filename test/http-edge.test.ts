// The HTTP edge as a raw client sees it: bad input always gets a 4xx with a stable code and never a
// 5xx; auth by bearer token or x-api-key; body limits; health and readiness; and a client that
// disconnects mid-stream cancels the upstream call.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pool, request } from 'undici';
import { startServer, type RunningServer } from '../src/cli/serve.js';
import { buildConfig } from '../src/config/load.js';
import { createLogger } from '../src/telemetry/logger.js';
import { createSimulatorProvider, SimulatorProvider } from '../src/providers/simulator.js';
import type { CancelSignal } from '../src/providers/cancel.js';
import type { CallOptions } from '../src/providers/types.js';
import type { ChatRequest } from '../src/canonical/chat.js';
import { startTestGateway } from './helpers/gateway.js';
import { startRecordingUpstream, type RecordingUpstream } from './helpers/recording-upstream.js';

async function post(url: string, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  const res = await request(url, { method: 'POST', body, headers });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, json: text ? (JSON.parse(text) as { error: Record<string, unknown> } & Record<string, unknown>) : undefined };
}

describe('bad input', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestGateway({ config: { server: { body_limit_bytes: 2048 } } });
  });
  afterAll(() => server.close());

  const cases: [string, string, number, string][] = [
    ['malformed JSON', '{"model": "m", "messages": [', 400, 'invalid_json'],
    ['empty body', '', 400, 'invalid_json'],
    ['a JSON array', '[]', 400, 'invalid_type'],
    ['missing messages', '{"model":"m"}', 400, 'missing_required_parameter'],
    ['missing model', '{"messages":[{"role":"user","content":"x"}]}', 400, 'missing_required_parameter'],
    ['messages of the wrong type', '{"model":"m","messages":"hi"}', 400, 'invalid_type'],
    ['an unknown role', '{"model":"m","messages":[{"role":"wizard","content":"x"}]}', 400, 'invalid_value'],
    ['n out of range', '{"model":"m","n":0,"messages":[{"role":"user","content":"x"}]}', 400, 'invalid_value'],
    ['max_tokens of the wrong type', '{"model":"m","max_tokens":"ten","messages":[{"role":"user","content":"x"}]}', 400, 'invalid_type'],
    ['five stop sequences', '{"model":"m","stop":["a","b","c","d","e"],"messages":[{"role":"user","content":"x"}]}', 400, 'invalid_value'],
    ['a tool message without tool_call_id', '{"model":"m","messages":[{"role":"tool","content":"x"}]}', 400, 'missing_required_parameter'],
    ['an unknown field inside a message', '{"model":"m","messages":[{"role":"user","content":"x","colour":"red"}]}', 400, 'unknown_parameter'],
  ];
  for (const [name, body, status, code] of cases) {
    it(`answers ${status} ${code} for ${name}`, async () => {
      const res = await post(`${server.url}/v1/chat/completions`, body);
      expect(res.status).toBe(status);
      expect(res.json?.error.code).toBe(code);
      expect(res.json?.error.type).toBe('invalid_request_error');
      expect(typeof res.json?.error.message).toBe('string');
    });
  }

  it('answers 413 for a body over the limit', async () => {
    const big = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(5000) }] });
    const res = await post(`${server.url}/v1/chat/completions`, big);
    expect(res.status).toBe(413);
    expect(res.json?.error.code).toBe('payload_too_large');
  });

  it('answers 415 for a body that is not JSON', async () => {
    const res = await post(`${server.url}/v1/chat/completions`, 'a=b', { 'content-type': 'application/xml' });
    expect(res.status).toBe(415);
    expect(res.json?.error.code).toBe('unsupported_media_type');
  });

  it('accepts JSON sent without a JSON content type (curl -d)', async () => {
    const res = await post(`${server.url}/v1/chat/completions`, '{"model":"m","messages":[{"role":"user","content":"x"}]}', { 'content-type': 'application/x-www-form-urlencoded' });
    expect(res.status).toBe(200);
  });

  it('answers a URL the router cannot decode with 400 invalid_request in the error shape of its API, with a request id', async () => {
    for (const [path, anthropic] of [['/v1/%zz', false], ['/v1/chat/completions%', false], ['/v1/models/%ED%A0%80', false], ['/v1/messages%zz', true]] as const) {
      const res = await request(`${server.url}${path}`, { method: 'GET' });
      const body = (await res.body.json()) as { error: { code?: string; type: string } };
      expect(res.statusCode).toBe(400);
      expect(typeof res.headers['x-request-id']).toBe('string');
      if (anthropic) expect(body.error.type).toBe('invalid_request_error');
      else expect(body.error).toMatchObject({ code: 'invalid_request', type: 'invalid_request_error' });
    }
  });

  it('answers 404 with a code for unknown routes', async () => {
    const res = await post(`${server.url}/v1/nothing`, '{}');
    expect(res.status).toBe(404);
    expect(res.json?.error.code).toBe('not_found');
  });

  it('answers 405 method_not_allowed with Allow when the path exists under another method', async () => {
    const chat = await server.app.inject({ method: 'GET', url: '/v1/chat/completions?x=1' });
    expect(chat.statusCode).toBe(405);
    expect(chat.headers.allow).toBe('POST');
    expect(chat.json()).toMatchObject({ error: { code: 'method_not_allowed', type: 'invalid_request_error' } });
    expect(chat.json().error.message).toContain('use POST');
    // A GET route also answers HEAD; a parametric path matches its pattern.
    const models = await server.app.inject({ method: 'DELETE', url: '/v1/models' });
    expect([models.statusCode, models.headers.allow]).toEqual([405, 'GET, HEAD']);
    const model = await server.app.inject({ method: 'POST', url: '/v1/models/org/some-model' });
    expect([model.statusCode, model.headers.allow]).toEqual([405, 'GET, HEAD']);
    // Anthropic's paths keep Anthropic's error shape.
    const messages = await server.app.inject({ method: 'GET', url: '/v1/messages' });
    expect([messages.statusCode, messages.headers.allow]).toEqual([405, 'POST']);
    expect(messages.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    // An unknown path is still 404, without Allow.
    const unknown = await server.app.inject({ method: 'GET', url: '/v1/nothing' });
    expect([unknown.statusCode, unknown.headers.allow, unknown.json().error.code]).toEqual([404, undefined, 'not_found']);
  });

  it('serves root, liveness and readiness', async () => {
    const root = await request(`${server.url}/`);
    const body = (await root.body.json()) as { endpoints: string[]; name: string };
    expect(body.name).toBe('inferenceflow');
    expect(body.endpoints).toEqual(expect.arrayContaining(['POST /v1/chat/completions', 'POST /v1/embeddings', 'GET /v1/models', 'GET /ready']));
    for (const path of ['/health', '/v1/health']) {
      const res = await request(`${server.url}${path}`);
      expect(res.statusCode).toBe(200);
      expect(((await res.body.json()) as { status: string }).status).toBe('ok');
    }
    const ready = await request(`${server.url}/ready`);
    expect(ready.statusCode).toBe(200);
    await ready.body.dump();
  });
});

describe('a client trickling its request (server.request_timeout_ms)', () => {
  it('gets 408 and loses the connection once the whole request took longer than the limit', async () => {
    const server = await startTestGateway({ config: { server: { request_timeout_ms: 500 } } });
    try {
      const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
      let received = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => (received += d));
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      // Headers announce 100 bytes of body; ten arrive, the rest never does.
      socket.write('POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"model":"');
      await closed;
      expect(received).toMatch(/^HTTP\/1\.1 408 /);
    } finally {
      await server.close();
    }
  }, 20_000);
});

describe('deeply nested bodies', () => {
  let server: RunningServer;
  let upstream: RecordingUpstream;
  beforeAll(async () => {
    upstream = await startRecordingUpstream('up');
    server = await startTestGateway({
      config: {
        providers: { up: { type: 'openai', base_url: upstream.url, api_key: 'k' } },
        models: [{ name: 'chat', deployments: [{ provider: 'up', model: 'up' }] }],
      },
    });
  });
  afterAll(async () => {
    await server.close();
    await upstream.close();
  });

  // Written as text: JSON.stringify itself cannot write 12,000 levels.
  const deep = (depth: number) =>
    `{"model":"chat","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"a":${'['.repeat(depth)}${']'.repeat(depth)}}}}]}`;

  it('refuses nesting past MAX_JSON_DEPTH with 400 before any upstream call, and the deployment stays healthy for everyone', async () => {
    // 12,000 levels in ~24 KB: V8 parses it, serialising it for the upstream overflowed the stack.
    for (const type of ['application/json', 'text/plain']) {
      for (let i = 0; i < 6; i++) {
        const res = await post(`${server.url}/v1/chat/completions`, deep(12_000), { 'content-type': type });
        expect(res.status).toBe(400);
        expect(res.json?.error.code).toBe('invalid_request');
      }
    }
    expect(upstream.raw).toHaveLength(0);
    const ok = await post(`${server.url}/v1/chat/completions`, JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'x' }] }));
    expect(ok.status).toBe(200);
  });

  it('takes a schema nested as deep as real tools nest them, and brackets inside strings do not count', async () => {
    const res = await post(`${server.url}/v1/chat/completions`, deep(60).replace('"x"', JSON.stringify('[['.repeat(300) + '\\"{{')));
    expect(res.status).toBe(200);
    expect(upstream.raw.at(-1)).toContain('[[[[');
  });
});

describe('model names', () => {
  it('404s an unknown model with the list of available ones when nothing passes through', async () => {
    const server = await startTestGateway({
      config: { providers: { sim: { type: 'simulator' } }, models: [{ name: 'chat', deployments: [{ provider: 'sim', model: 'sim-1' }] }] },
    });
    try {
      const res = await post(`${server.url}/v1/chat/completions`, '{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}');
      expect(res.status).toBe(404);
      expect(res.json?.error.code).toBe('model_not_found');
      expect(res.json?.error.message).toContain('chat');
      const ok = await post(`${server.url}/v1/chat/completions`, '{"model":"chat","messages":[{"role":"user","content":"x"}]}');
      expect(ok.status).toBe(200);
      expect(ok.headers['x-inferenceflow-model']).toBe('sim-1');
      expect(ok.headers['x-inferenceflow-deployment']).toBe('sim/sim-1');
    } finally {
      await server.close();
    }
  });
});

describe('authentication', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestGateway({ env: { TRUTHGPT_API_TOKEN: 'secret-token-1' } });
  });
  afterAll(() => server.close());
  const body = '{"model":"m","messages":[{"role":"user","content":"x"}]}';

  it('rejects a missing key and a wrong key with 401', async () => {
    const none = await post(`${server.url}/v1/chat/completions`, body);
    expect(none.status).toBe(401);
    expect(none.json?.error.code).toBe('missing_api_key');
    const wrong = await post(`${server.url}/v1/chat/completions`, body, { 'content-type': 'application/json', authorization: 'Bearer nope-nope-nope' });
    expect(wrong.status).toBe(401);
    expect(wrong.json?.error.code).toBe('invalid_api_key');
  });

  it('accepts the token as a bearer token or as x-api-key', async () => {
    const bearer = await post(`${server.url}/v1/chat/completions`, body, { 'content-type': 'application/json', authorization: 'Bearer secret-token-1' });
    expect(bearer.status).toBe(200);
    const apiKey = await post(`${server.url}/v1/chat/completions`, body, { 'content-type': 'application/json', 'x-api-key': 'secret-token-1' });
    expect(apiKey.status).toBe(200);
  });

  it('keeps health public', async () => {
    const res = await request(`${server.url}/health`);
    expect(res.statusCode).toBe(200);
    await res.body.dump();
  });
});

describe('client disconnect', () => {
  it('cancels the upstream call when the client goes away mid-stream', async () => {
    let seen: CancelSignal | undefined;
    class Spy extends SimulatorProvider {
      override async streamChat(req: ChatRequest, opts: CallOptions) {
        seen = opts.signal;
        return super.streamChat(req, opts);
      }
    }
    const slow = createSimulatorProvider('sim', { tokens_per_second: 20, answer_words: 200 });
    const spy = new Spy('sim', slow.options);
    const server = await startTestGateway({
      config: { providers: { sim: { type: "simulator" } }, models: [{ name: "m", deployments: [{ provider: "sim", model: "sim" }] }] },
      providers: new Map([["sim", spy]]),
    });
    try {
      const controller = new AbortController();
      const res = await request(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"model":"m","stream":true,"messages":[{"role":"user","content":"long story"}]}',
        signal: controller.signal,
      });
      const reader = res.body[Symbol.asyncIterator]();
      await reader.next();
      expect(seen?.aborted).toBe(false);
      controller.abort();
      await expect.poll(() => seen?.aborted, { timeout: 5000 }).toBe(true);
    } finally {
      await server.close();
    }
  });
});

describe('a cluster worker names itself on every answer', () => {
  let server: RunningServer;
  beforeAll(async () => {
    // What `serve --workers` does in each worker (cluster.ts): startServer with the worker's id.
    const loaded = buildConfig({ ledger: { enabled: false }, cache: { enabled: false }, batch_jobs: { enabled: false } }, {});
    server = await startServer({ loaded, host: '127.0.0.1', port: 0, logger: createLogger('silent'), worker: '7' });
  });
  afterAll(() => server.close());

  const cases: [string, string, string][] = [
    ['a JSON chat completion', '/v1/chat/completions', '{"model":"m","messages":[{"role":"user","content":"hi"}]}'],
    ['a streamed chat completion', '/v1/chat/completions', '{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}'],
    ['a streamed Responses answer', '/v1/responses', '{"model":"m","stream":true,"input":"hi"}'],
    ['a streamed Anthropic message', '/v1/messages', '{"model":"m","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}'],
    ['an error', '/v1/chat/completions', '{"model":"m"}'],
  ];
  for (const [name, path, body] of cases) {
    it(`on ${name}, with x-request-id`, async () => {
      const res = await request(`${server.url}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-request-id': 'req-worker-7' } });
      await res.body.text();
      expect(res.headers['x-inferenceflow-worker']).toBe('7');
      expect(res.headers['x-request-id']).toBe('req-worker-7');
    });
  }
});

describe('errors carry the x-inferenceflow-* facts that are known', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestGateway({
      config: {
        providers: { broken: { type: 'simulator', options: { error_rate: 1 } } },
        models: [{ name: 'broken', deployments: [{ provider: 'broken', model: 'broken' }], retry: { max_retries: 0 } }],
      },
    });
  });
  afterAll(() => server.close());

  it('an upstream failure: the upstream time and the cost', async () => {
    const res = await post(`${server.url}/v1/chat/completions`, '{"model":"broken","messages":[{"role":"user","content":"hi"}]}');
    expect(res.status).toBe(502);
    expect(res.json?.error.code).toBe('upstream_error');
    expect(Number(res.headers['x-inferenceflow-latency-ms'])).toBeGreaterThanOrEqual(0);
    expect(res.headers['x-inferenceflow-cost-usd']).toBe('0');
    expect(res.headers['x-request-id']).toBeTruthy();
  });

  it('on the Responses and Anthropic routes too', async () => {
    for (const [path, body] of [
      ['/v1/responses', '{"model":"broken","input":"hi"}'],
      ['/v1/messages', '{"model":"broken","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}'],
    ] as const) {
      const res = await post(`${server.url}${path}`, body);
      expect(res.status, path).toBe(502);
      expect(res.headers['x-inferenceflow-latency-ms'], path).toBeDefined();
      expect(res.headers['x-inferenceflow-cost-usd'], path).toBe('0');
    }
  });

  it('no upstream reached: no made-up latency; rejected before handling: no facts at all', async () => {
    const unknown = await post(`${server.url}/v1/chat/completions`, '{"model":"nope","messages":[{"role":"user","content":"hi"}]}');
    expect(unknown.status).toBe(404);
    expect(unknown.headers['x-inferenceflow-cost-usd']).toBe('0');
    expect(unknown.headers['x-inferenceflow-latency-ms']).toBeUndefined();
    const invalid = await post(`${server.url}/v1/chat/completions`, '{"model":"broken"}');
    expect(invalid.status).toBe(400);
    expect(Object.keys(invalid.headers).filter((h) => h.startsWith('x-inferenceflow-') && h !== 'x-inferenceflow-worker')).toEqual([]);
  });
});

describe('connection rotation (server.max_requests_per_connection)', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestGateway({ config: { server: { max_requests_per_connection: 2 } } });
  });
  afterAll(async () => {
    await server.close();
  });

  it('closes a kept-alive connection after its last request — streams too — so the next request is served on a new one', async () => {
    // One connection, requests back to back: the 2nd answer of each connection must say
    // `Connection: close`. A stream's answer used to say `keep-alive` (set by the SSE writer), so the
    // client reused the connection and Node answered its next request with a bare 503.
    const pool = new Pool(server.url, { connections: 1, pipelining: 1 });
    const statuses: number[] = [];
    const connection: (string | undefined)[] = [];
    try {
      for (let i = 0; i < 6; i++) {
        const stream = i % 2 === 1;
        const res = await pool.request({
          method: 'POST',
          path: '/v1/chat/completions',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'simulator', stream, messages: [{ role: 'user', content: `rotation ${i}` }] }),
        });
        const text = await res.body.text();
        statuses.push(res.statusCode);
        connection.push(res.headers.connection as string | undefined);
        if (stream) expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
      }
    } finally {
      await pool.close();
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);
    expect(connection.filter((_, i) => i % 2 === 1)).toEqual(['close', 'close', 'close']);
  });
});

describe('embeddings input bounds', () => {
  it('refuses an embedding size no model has, which would otherwise make a batcher of its own', async () => {
    const server = await startTestGateway();
    try {
      const big = await post(`${server.url}/v1/embeddings`, JSON.stringify({ model: 'm', input: 'hi', dimensions: 100_000 }));
      expect(big.status).toBe(400);
      expect(big.json?.error.param).toBe('dimensions');
      expect((await post(`${server.url}/v1/embeddings`, JSON.stringify({ model: 'm', input: 'hi', dimensions: 256 }))).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});

describe('clients behind a proxy (server.trust_proxy)', () => {
  const chat = (url: string, forwardedFor: string) =>
    post(`${url}/v1/chat/completions`, JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }), { 'content-type': 'application/json', 'x-forwarded-for': forwardedFor });
  const perIp = { rate_limiting: { rules: [{ per: 'ip', requests: 1, window_s: 60 }] } };

  it('limits per client address from X-Forwarded-For when the proxy is trusted, and per peer when not', async () => {
    const trusting = await startTestGateway({ config: { ...perIp, server: { trust_proxy: ['127.0.0.1'] } } });
    try {
      // Two clients behind the same load balancer each get their own limit…
      expect((await chat(trusting.url, '203.0.113.7')).status).toBe(200);
      expect((await chat(trusting.url, '198.51.100.9')).status).toBe(200);
      // …and the same client is still limited.
      expect((await chat(trusting.url, '203.0.113.7')).status).toBe(429);
    } finally {
      await trusting.close();
    }
    // Without it the header is ignored: every request is the proxy's (a client cannot forge an address).
    const plain = await startTestGateway({ config: perIp });
    try {
      expect((await chat(plain.url, '203.0.113.7')).status).toBe(200);
      expect((await chat(plain.url, '198.51.100.9')).status).toBe(429);
    } finally {
      await plain.close();
    }
  });

  it('counts the default limit (RATE_LIMIT_RPM) per client address for callers that share one identity', async () => {
    const env = { RATE_LIMIT_RPM: '2', INFERENCEFLOW_TRUST_PROXY: 'true' };
    for (const auth of [{}, { TRUTHGPT_API_TOKEN: 'shared-token-0123456789' }]) {
      const gw = await startTestGateway({ env: { ...env, ...auth } });
      const headers = (ip: string) => ({ 'content-type': 'application/json', 'x-forwarded-for': ip, authorization: 'Bearer shared-token-0123456789' });
      const ask = (ip: string) => post(`${gw.url}/v1/chat/completions`, JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }), headers(ip));
      try {
        expect((await ask('10.0.0.1')).status).toBe(200);
        expect((await ask('10.0.0.1')).status).toBe(200);
        expect((await ask('10.0.0.1')).status).toBe(429);
        // Another client is not locked out by the first one's window.
        expect((await ask('10.0.0.2')).status).toBe(200);
      } finally {
        await gw.close();
      }
    }
  });

  it('counts an IPv6 client by its /64, so rotating addresses within it gets no fresh window', async () => {
    const gw = await startTestGateway({ env: { RATE_LIMIT_RPM: '1', INFERENCEFLOW_TRUST_PROXY: '127.0.0.1' } });
    try {
      const statuses = [];
      for (const ip of ['2001:db8:1:1::1', '2001:db8:1:1::2', '2001:db8:1:1:ffff::3', '2001:0db8:0001:0001::4']) statuses.push((await chat(gw.url, ip)).status);
      expect(statuses).toEqual([200, 429, 429, 429]);
      // Another /64 is another client; an IPv4-mapped address is its IPv4 one.
      expect((await chat(gw.url, '2001:db8:1:2::1')).status).toBe(200);
      expect((await chat(gw.url, '::ffff:192.0.2.7')).status).toBe(200);
      expect((await chat(gw.url, '192.0.2.7')).status).toBe(429);
    } finally {
      await gw.close();
    }
  });

  it('keys a rule on a client-chosen value holding a lone UTF-16 surrogate without failing the request', async () => {
    const gw = await startTestGateway({ config: { rate_limiting: { rules: [{ per: 'model', requests: 100, window_s: 60 }, { per: 'session', requests: 100, window_s: 60 }] } } });
    try {
      const res = await post(`${gw.url}/v1/chat/completions`, '{"model":"simulator","session_id":"s\\ud800","messages":[{"role":"user","content":"hi"}]}');
      expect(res.status).toBe(200);
      const unknown = await post(`${gw.url}/v1/chat/completions`, '{"model":"m\\ud800","messages":[{"role":"user","content":"hi"}]}');
      expect(unknown.status).toBeLessThan(500);
    } finally {
      await gw.close();
    }
  });

  it('reads INFERENCEFLOW_TRUST_PROXY as true, a hop count or a list of addresses', () => {
    const trust = (value: string) => buildConfig({}, { INFERENCEFLOW_TRUST_PROXY: value }).config.server.trust_proxy;
    expect(trust('true')).toBe(true);
    expect(trust('2')).toBe(2);
    expect(trust('10.0.0.0/8, 127.0.0.1')).toEqual(['10.0.0.0/8', '127.0.0.1']);
  });
});
