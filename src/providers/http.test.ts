import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Cancellation } from './cancel.js';
import { UpstreamError } from './errors.js';
import { UpstreamHttp } from './http.js';

let server: Server | undefined;
let http: UpstreamHttp | undefined;

afterEach(async () => {
  await http?.close();
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = http = undefined;
});

async function upstream(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<UpstreamHttp> {
  server = createServer(handler);
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  http = new UpstreamHttp({ provider: 'up', baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1` });
  return http;
}

const call = (timeoutMs = 5_000, signal = new Cancellation()) => ({ signal, timeoutMs, requestId: "req-1" });

async function failure(p: Promise<unknown>): Promise<UpstreamError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UpstreamError);
  return err as UpstreamError;
}

describe('UpstreamHttp.json', () => {
  it('sends the JSON body and headers, and parses an answer that arrives in several chunks, a character split between two', async () => {
    let seen: { method?: string; url?: string; auth?: string; extra?: string; body?: string } = {};
    const text = 'héllo wörld ✓';
    const bytes = Buffer.from(JSON.stringify({ text }));
    const split = bytes.indexOf(Buffer.from('✓')) + 1; // inside the three bytes of ✓
    const up = await upstream((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        seen = { method: req.method, url: req.url, auth: req.headers.authorization, extra: req.headers['x-extra'] as string, body };
        res.writeHead(200, { 'content-type': 'application/json', 'x-ratelimit-remaining': '9', 'set-cookie': ['a=1', 'b=2'] });
        res.write(bytes.subarray(0, split));
        setTimeout(() => res.end(bytes.subarray(split)), 20);
      });
    });
    const res = await up.json<{ text: string }>('POST', '/chat/completions', { model: 'm', n: 1 }, { ...call(), headers: { authorization: 'Bearer k' } }, { 'x-extra': 'yes' });
    expect(res.status).toBe(200);
    expect(res.body.text).toBe(text);
    expect(res.headers['x-ratelimit-remaining']).toBe('9');
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(seen).toEqual({ method: 'POST', url: '/v1/chat/completions', auth: 'Bearer k', extra: 'yes', body: '{"model":"m","n":1}' });
  });

  it('turns an error status into an UpstreamError with the body message and Retry-After', async () => {
    const up = await upstream((_req, res) => {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '7' });
      res.end(JSON.stringify({ error: { message: 'slow down', type: 'rate_limit' } }));
    });
    const err = await failure(up.json('POST', '/chat/completions', {}, call()));
    expect(err.status).toBe(429);
    expect(err.kind).toBe('rate_limited');
    expect(err.retryAfterMs).toBe(7000);
    expect(err.message).toBe('up returned 429: slow down');
  });

  it('calls a 200 whose body is not JSON malformed, with the start of the body', async () => {
    const up = await upstream((_req, res) => res.end('<html>oops</html>'));
    const err = await failure(up.json('GET', '/models', undefined, call()));
    expect(err.kind).toBe('malformed');
    expect(err.body).toBe('<html>oops</html>');
  });

  it('cancels a request mid-body: rejects as aborted and closes the upstream connection', async () => {
    let closed!: Promise<void>;
    const up = await upstream((_req, res) => {
      closed = new Promise((r) => res.on('close', () => r()));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"partial":');
    });
    const signal = new Cancellation();
    const p = up.json('POST', '/chat/completions', {}, call(5_000, signal));
    await new Promise((r) => setTimeout(r, 50));
    signal.abort(new Error('client went away'));
    const err = await failure(p);
    expect(err.kind).toBe('aborted');
    await closed; // the upstream sees its response's connection end
  });

  it('sends nothing for a request already cancelled', async () => {
    let requests = 0;
    const up = await upstream((_req, res) => {
      requests++;
      res.end('{}');
    });
    const signal = new Cancellation();
    signal.abort();
    const err = await failure(up.json('POST', '/chat/completions', {}, call(5_000, signal)));
    expect(err.kind).toBe('aborted');
    await new Promise((r) => setTimeout(r, 50));
    expect(requests).toBe(0);
  });

  it('times out an upstream that sends no headers', async () => {
    const up = await upstream(() => undefined);
    const err = await failure(up.json('POST', '/chat/completions', {}, call(100)));
    expect(err.kind).toBe('timeout');
  });

  it('reports an unreachable upstream as a connect failure', async () => {
    // A port that was just listening and is closed now: nothing accepts there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    http = new UpstreamHttp({ provider: 'gone', baseUrl: `http://127.0.0.1:${port}` });
    const err = await failure(http.json('GET', '/x', undefined, call()));
    expect(err.kind).toBe('connect');
    expect(err.message).toMatch(/could not reach gone/);
  });
});
