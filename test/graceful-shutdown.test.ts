// Graceful shutdown under load: SIGTERM while 200 requests are in flight, a quarter of them streams.
// None is cut: every JSON answer arrives whole and every stream ends with [DONE]; new connections
// are refused while draining; the process then exits 0. With a shutdown delay (Kubernetes), the
// gateway reports not-ready but keeps serving new connections before its listener closes. A request
// that still arrives on a kept-alive connection while draining gets 503 shutting_down with
// Retry-After, in its route's error shape.
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent, Client, request } from 'undici';
import type { RunningServer } from '../src/cli/serve.js';
import { startChildGateway, type ChildGateway } from './helpers/child-gateway.js';
import { startTestGateway } from './helpers/gateway.js';

/** Resolves once a new connection to `base` is refused (the gateway's listener has closed). */
async function listenerCloses(base: string, timeoutMs: number): Promise<void> {
  await expect
    .poll(
      () =>
        request(`${base}/health`, { reset: true }).then(
          (r) => r.body.text().then(() => 'accepted'),
          () => 'refused',
        ),
      { timeout: timeoutMs, interval: 50 },
    )
    .toBe('refused');
}

describe('graceful shutdown', () => {
  let child: ChildGateway | undefined;
  let dir: string | undefined;
  const agent = new Agent({ connections: 256 });
  afterAll(async () => {
    if (child && child.process.exitCode === null) child.process.kill('SIGKILL');
    await agent.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('finishes 200 in-flight requests and streams after SIGTERM, then exits 0', async () => {
    dir = await mkdtemp(join(tmpdir(), 'routing-drain-'));
    child = await startChildGateway(dir, 'drain', {
      ledger: { enabled: false },
      server: { shutdown_timeout_ms: 20_000 },
      // Long enough that all 200 are in flight at once even when sending them takes seconds (a loaded machine).
      providers: { sim: { type: 'simulator', options: { latency_ms: 8_000, tokens_per_second: 20, answer_words: 8 } } },
      models: [{ name: 'slow', deployments: [{ provider: 'sim', model: 'slow' }] }],
    });
    const base = child.url;
    const results = Array.from({ length: 200 }, async (_, i) => {
      const stream = i % 4 === 0;
      const res = await request(`${base}/v1/chat/completions`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'slow', stream, messages: [{ role: 'user', content: `request number ${i}` }] }),
      });
      const text = await res.body.text();
      if (stream) return { status: res.statusCode, complete: text.trimEnd().endsWith('data: [DONE]') && !text.includes('"error"') };
      const body = JSON.parse(text) as { choices?: { message: { content: string }; finish_reason: string }[] };
      return { status: res.statusCode, complete: body.choices?.[0]?.finish_reason === 'stop' && body.choices[0].message.content.length > 0 };
    });
    // Wait until the gateway holds all 200 (they are in flight upstream), then ask it to stop.
    await expect
      .poll(
        async () => {
          const res = await request(`${base}/v1/providers`, { dispatcher: agent });
          const body = (await res.body.json()) as { data: { in_flight: number }[] };
          return body.data.reduce((n, d) => n + d.in_flight, 0);
        },
        { timeout: 20_000, interval: 100 },
      )
      .toBe(200);
    child.process.kill('SIGTERM');
    // Draining: new connections are refused once the listener has closed (well before the 8 s answers end).
    await listenerCloses(base, 5_000);
    const settled = await Promise.all(results);
    expect(settled.filter((r) => r.status !== 200 || !r.complete)).toEqual([]);
    expect(await child.exited).toBe(0);
  }, 120_000);

  it('with a shutdown delay, reports not-ready yet serves new connections until the listener closes, and finishes in-flight work', async () => {
    dir ??= await mkdtemp(join(tmpdir(), 'routing-drain-'));
    const delayed = await startChildGateway(
      dir,
      'drain-delay',
      {
        ledger: { enabled: false },
        server: { shutdown_timeout_ms: 20_000 },
        providers: { sim: { type: 'simulator', options: { latency_ms: 1_500, tokens_per_second: 50, answer_words: 5 } }, quick: { type: 'simulator', options: { latency_ms: 0 } } },
        models: [
          { name: 'slow', deployments: [{ provider: 'sim', model: 'slow' }] },
          { name: 'fast', deployments: [{ provider: 'quick', model: 'fast' }] },
        ],
      },
      { INFERENCEFLOW_SHUTDOWN_DELAY_MS: '6000' },
    );
    const base = delayed.url;
    // Each call on a connection of its own, as a client arriving through the Service would.
    const fresh = async <T>(fn: (c: Client) => Promise<T>): Promise<T> => {
      const c = new Client(base);
      try {
        return await fn(c);
      } finally {
        await c.close().catch(() => undefined);
      }
    };
    const chatOn = (c: Client, model: string, stream = false) =>
      c.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'hi' }] }) });
    const inflight = Array.from({ length: 8 }, (_, i) =>
      fresh(async (c) => {
        const res = await chatOn(c, 'slow', i % 2 === 0);
        const text = await res.body.text();
        return { status: res.statusCode, complete: i % 2 === 0 ? text.trimEnd().endsWith('data: [DONE]') && !text.includes('"error"') : text.includes('"finish_reason":"stop"') };
      }),
    );
    await expect
      .poll(
        () => fresh(async (c) => ((await (await c.request({ path: '/v1/providers', method: 'GET' })).body.json()) as { data: { in_flight: number }[] }).data.reduce((n, d) => n + d.in_flight, 0)),
        { timeout: 20_000, interval: 50 },
      )
      .toBe(8);
    delayed.process.kill('SIGTERM');
    await expect.poll(() => fresh(async (c) => (await c.request({ path: '/ready', method: 'GET' })).statusCode), { timeout: 5_000, interval: 20 }).toBe(503);
    // Not ready, but a new connection is still served while the pod leaves the endpoints.
    const during = await fresh(async (c) => {
      const res = await chatOn(c, 'fast');
      return { status: res.statusCode, body: (await res.body.json()) as { choices?: unknown[] } };
    });
    expect(during.status).toBe(200);
    expect(during.body.choices?.length).toBe(1);
    // Then the listener closes.
    await listenerCloses(base, 20_000);
    const settled = await Promise.all(inflight);
    expect(settled.filter((r) => r.status !== 200 || !r.complete)).toEqual([]);
    expect(await delayed.exited).toBe(0);
  }, 120_000);
});

describe('stopping with stdout gone', () => {
  // A log shipper that died, `| head`, a killed cluster primary: the gateway's stdout has no reader
  // (EPIPE). It must still exit on SIGTERM — pino's synchronous flush at exit, on sonic-boom 4,
  // retried the failed write every 100 ms forever.
  it('exits 0 on SIGTERM after its stdout reader is gone', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'epipe-'));
    const gw = await startChildGateway(tmp, 'epipe', { ledger: { enabled: false } });
    try {
      // Lines the gateway buffers after the reader is gone: each request writes an access line.
      gw.process.stdout?.destroy();
      for (let i = 0; i < 5; i++) await (await request(`${gw.url}/health`)).body.text();
      gw.process.kill('SIGTERM');
      const code = await Promise.race([gw.exited, new Promise((r) => setTimeout(() => r('still running 15 s after SIGTERM'), 15_000))]);
      expect(code).toBe(0);
    } finally {
      if (gw.process.exitCode === null) gw.process.kill('SIGKILL');
      await rm(tmp, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('connections that never sent a request', () => {
  it('do not hold the drain: close ends once the requests in flight have, not at the drain deadline', async () => {
    // A drain deadline far past the test's timeout: close() has to finish without it.
    const server = await startTestGateway({ config: { server: { shutdown_timeout_ms: 600_000 } } });
    const port = Number(new URL(server.url).port);
    // Opened ahead of use, as connection pools and load balancers do; no request is ever sent on it.
    const silent = connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => silent.once('connect', () => resolve()));
    const silentClosed = new Promise<void>((resolve) => silent.once('close', () => resolve()));
    // A stream in flight on another connection is still finished.
    const streaming = request(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'simulator', stream: true, messages: [{ role: 'user', content: 'hello' }] }),
    });
    const res = await streaming;
    await server.close();
    expect((await res.body.text()).trimEnd().endsWith('data: [DONE]')).toBe(true);
    await silentClosed;
  }, 20_000);
});

describe('requests on kept-alive connections while draining', () => {
  let server: RunningServer | undefined;
  const sockets: Socket[] = [];
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await server?.close();
  });

  /** One raw HTTP/1.1 connection: requests are written as they come, every byte read is kept. */
  function rawConnection(port: number) {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (received += d));
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const send = (path: string, body: unknown, headers: Record<string, string> = {}) => {
      const json = JSON.stringify(body);
      const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      socket.write(`POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(json)}\r\n${extra}\r\n${json}`);
    };
    /** The responses read so far, in order: status, lower-case headers, body. */
    const responses = () =>
      received
        .split(/(?=HTTP\/1\.1 \d{3} )/)
        .filter(Boolean)
        .map((raw) => {
          const [head = '', body = ''] = raw.split('\r\n\r\n');
          const [statusLine = '', ...lines] = head.split('\r\n');
          const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
          return { status: Number(statusLine.split(' ')[1]), headers, body };
        });
    return { send, responses, ended };
  }

  it('answers 503 shutting_down with Retry-After, in the OpenAI shape on OpenAI routes and the Anthropic shape on /v1/messages', async () => {
    server = await startTestGateway({
      config: {
        providers: { sim: { type: 'simulator', options: { latency_ms: 3_000 } } },
        models: [{ name: 'slow', deployments: [{ provider: 'sim', model: 'slow' }] }],
      },
    });
    const port = Number(new URL(server.url).port);
    const openai = rawConnection(port);
    const anthropic = rawConnection(port);
    // A slow request in flight on each connection keeps it open through the drain.
    openai.send('/v1/chat/completions', { model: 'slow', messages: [{ role: 'user', content: 'one' }] });
    anthropic.send('/v1/chat/completions', { model: 'slow', messages: [{ role: 'user', content: 'two' }] });
    const running = server;
    await expect.poll(() => running.gateway.router.inFlight, { timeout: 10_000, interval: 10 }).toBe(2);
    const closed = running.close();
    await expect.poll(() => running.app.server.listening, { timeout: 10_000, interval: 5 }).toBe(false);
    // The next request on each kept-alive connection arrives after the listener closed.
    openai.send('/v1/chat/completions', { model: 'slow', messages: [{ role: 'user', content: 'three' }] });
    anthropic.send('/v1/messages', { model: 'slow', max_tokens: 10, messages: [{ role: 'user', content: 'four' }] }, { 'anthropic-version': '2023-06-01' });
    await Promise.all([openai.ended, anthropic.ended, closed]);

    const [firstA, refusedA] = openai.responses();
    const [firstB, refusedB] = anthropic.responses();
    // The requests in flight finished normally.
    expect([firstA?.status, firstB?.status]).toEqual([200, 200]);
    for (const refused of [refusedA, refusedB]) {
      expect(refused?.status).toBe(503);
      expect(refused?.headers['retry-after']).toBe('1');
      expect(refused?.headers.connection).toBe('close');
    }
    expect(JSON.parse(refusedA!.body)).toEqual({ error: expect.objectContaining({ code: 'shutting_down', type: 'server_error' }) });
    // Anthropic's body names the request, as its API's does (the SDK's requestID).
    expect(JSON.parse(refusedB!.body)).toEqual({ type: 'error', error: expect.objectContaining({ code: 'shutting_down', type: 'overloaded_error' }), request_id: refusedB?.headers['x-request-id'] });
  }, 60_000);
});
