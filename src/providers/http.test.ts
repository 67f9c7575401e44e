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

async function upstream(handler: (req: IncomingMessage, res: ServerResponse) => void, streamIdleTimeoutMs?: number): Promise<UpstreamHttp> {
  server = createServer(handler);
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  http = new UpstreamHttp({ provider: 'up', baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, streamIdleTimeoutMs });
  return http;
}

const call = (timeoutMs = 5_000, signal = new Cancellation()) => ({ signal, timeoutMs, requestId: "req-1" });

/**
 * An upstream that sends its headers and `first`, then holds the response open; `closed()` resolves
 * once the response's connection has ended.
 */
async function holding(contentType: string, first: string, streamIdleTimeoutMs?: number): Promise<{ up: UpstreamHttp; closed: () => Promise<void> }> {
  let closed: Promise<void> | undefined;
  const up = await upstream((_req, res) => {
    closed = new Promise((r) => res.on('close', () => r()));
    res.writeHead(200, { 'content-type': contentType });
    res.write(first);
  }, streamIdleTimeoutMs);
  return { up, closed: () => closed ?? Promise.reject(new Error('no request arrived')) };
}

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

  it('gives an HTML error page as its title (or its text without tags), not the page', async () => {
    // The shape of Google's 404 page for a path it does not serve, and of a proxy's 502 page.
    const google404 = `<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <style>*{margin:0;padding:0}html{font:15px/22px arial}</style>\n  <title>Error 404 (Not Found)!!1</title>\n  <a href=//www.google.com/><span id=logo aria-label=Google></span></a>\n  <p><b>404.</b> <ins>That’s an error.</ins>\n  <p>The requested URL <code>/v1beta/openai/completions</code> was not found on this server.  <ins>That’s all we know.</ins>\n${'<!-- padding -->'.repeat(200)}`;
    const proxy502 = '<html><body><h1>502 Bad Gateway</h1>\n<hr><center>nginx</center></body></html>';
    const pages = [google404, proxy502];
    let i = 0;
    const up = await upstream((_req, res) => {
      const page = pages[i++] as string;
      res.writeHead(page === google404 ? 404 : 502, { 'content-type': 'text/html; charset=UTF-8' }).end(page);
    });
    const first = (await up.json('POST', '/completions', {}, call()).catch((e: unknown) => e)) as UpstreamError;
    expect(first.message).toBe('up returned 404: Error 404 (Not Found)!!1');
    const second = (await up.json('POST', '/chat/completions', {}, call()).catch((e: unknown) => e)) as UpstreamError;
    expect(second.message).toBe('up returned 502: 502 Bad Gateway nginx');
  });

  it('calls a 200 whose body is not JSON malformed, with the start of the body', async () => {
    const up = await upstream((_req, res) => res.end('<html>oops</html>'));
    const err = await failure(up.json('GET', '/models', undefined, call()));
    expect(err.kind).toBe('malformed');
    expect(err.body).toBe('<html>oops</html>');
  });

  it('cancels a request mid-body: rejects as aborted and closes the upstream connection', async () => {
    const { up, closed } = await holding('application/json', '{"partial":');
    const signal = new Cancellation();
    const p = up.json('POST', '/chat/completions', {}, call(5_000, signal));
    await new Promise((r) => setTimeout(r, 50));
    signal.abort(new Error('client went away'));
    const err = await failure(p);
    expect(err.kind).toBe('aborted');
    await closed(); // the upstream sees its response's connection end
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

/** Reads a streamed body to its end (or its failure), as bytes. */
async function readAll(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of body) parts.push(c);
  return Buffer.concat(parts);
}

/** How many of the connections the upstream accepts from now on have closed. */
function openSockets(): { closed: number } {
  const counts = { closed: 0 };
  server?.on('connection', (socket) => socket.on('close', () => counts.closed++));
  return counts;
}

describe('UpstreamHttp.stream', () => {
  it('hands over each chunk as it arrives, in order, with the status and headers first', async () => {
    const up = await upstream((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'x-request-id': 'up-1' });
        res.write('data: 1\n\n');
        setTimeout(() => res.write('data: 2\n\n'), 20);
        setTimeout(() => res.end('data: [DONE]\n\n'), 40);
      });
    });
    const res = await up.stream('POST', '/chat/completions', { stream: true }, call());
    expect(res.status).toBe(200);
    expect(res.headers['x-request-id']).toBe('up-1');
    const seen: string[] = [];
    for await (const c of res.body) seen.push(Buffer.from(c).toString());
    expect(seen.join('')).toBe('data: 1\n\ndata: 2\n\ndata: [DONE]\n\n');
    // Three writes apart in time: three chunks, none held back for the next.
    expect(seen.length).toBe(3);
  });

  it('carries a body far larger than its queue to a slow reader whole and in order', async () => {
    const piece = Buffer.alloc(16 * 1024);
    const up = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let i = 0;
      const more = (): void => {
        while (i < 256) {
          piece.fill(i % 256);
          const ok = res.write(Buffer.from(piece));
          i++;
          if (!ok) {
            res.once('drain', more);
            return;
          }
        }
        res.end();
      };
      more();
    });
    const res = await up.stream('GET', '/big', undefined, call());
    let total = 0;
    let last = -1;
    let ordered = true;
    for await (const c of res.body) {
      for (let k = 0; k < c.length; k += 4096) {
        const block = Math.floor((total + k) / piece.length);
        if (c[k] !== block % 256 || block < last) ordered = false;
        last = block;
      }
      total += c.length;
      // A slow reader: the upstream outruns it, so undici must stop reading until it catches up.
      if (total % (256 * 1024) < c.length) await new Promise((r) => setTimeout(r, 5));
    }
    expect(total).toBe(256 * piece.length);
    expect(ordered).toBe(true);
  });

  it('stops reading the socket while its reader does not read (backpressure), and carries the rest once it does', async () => {
    // 32 MiB: far more than the kernel's socket buffers hold, so an upstream that finished writing
    // while nothing was read would mean the handler kept reading into memory.
    const piece = Buffer.alloc(64 * 1024, 7);
    const pieces = 512;
    let finished = false;
    const up = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.on('finish', () => (finished = true));
      let i = 0;
      const more = (): void => {
        while (i < pieces) {
          i++;
          if (!res.write(piece)) {
            res.once('drain', more);
            return;
          }
        }
        res.end();
      };
      more();
    });
    const res = await up.stream('GET', '/big', undefined, call());
    const it = res.body[Symbol.asyncIterator]();
    let total = ((await it.next()).value as Uint8Array).length;
    await new Promise((r) => setTimeout(r, 300));
    expect(finished).toBe(false);
    for (let r = await it.next(); !r.done; r = await it.next()) total += r.value.length;
    expect(total).toBe(pieces * piece.length);
    expect(finished).toBe(true);
  });

  it('turns an error status into an UpstreamError with the body message and Retry-After', async () => {
    const up = await upstream((_req, res) => {
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '3' });
      res.write('{"error":{"message":"over');
      setTimeout(() => res.end('loaded"}}'), 20);
    });
    const err = await failure(up.stream('POST', '/chat/completions', {}, call()));
    expect(err.status).toBe(503);
    expect(err.retryAfterMs).toBe(3000);
    expect(err.message).toBe('up returned 503: overloaded');
  });

  it('fails the next read with a timeout when the body idles longer than the stream idle timeout', async () => {
    const { up } = await holding('text/event-stream', 'data: 1\n\n', 150);
    const res = await up.stream('POST', '/chat/completions', {}, call());
    const err = await failure(readAll(res.body));
    expect(err.kind).toBe('timeout');
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/up stream broke/);
  });

  it("takes the call's own body idle timeout over the provider's (the router's, from its configuration)", async () => {
    const up = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: 1\n\n');
      setTimeout(() => res.end('data: 2\n\n'), 1_200);
    }, 100);
    // The provider's 100 ms would cut the 1.2 s pause (undici checks body timers about every half second); the call allows 5 s.
    const res = await up.stream('POST', '/chat/completions', {}, { ...call(), streamIdleTimeoutMs: 5_000 });
    expect((await readAll(res.body)).toString()).toBe('data: 1\n\ndata: 2\n\n');
    const cut = await up.stream('POST', '/chat/completions', {}, call());
    expect((await failure(readAll(cut.body))).kind).toBe('timeout');
  });

  it('fails the next read as interrupted when the upstream connection breaks mid-body', async () => {
    const up = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: 1\n\n');
      setTimeout(() => res.socket?.destroy(), 30);
    });
    const res = await up.stream('POST', '/chat/completions', {}, call());
    const err = await failure(readAll(res.body));
    expect(err.kind).toBe('stream_interrupted');
  });

  it('cancels mid-body: the waiting read fails as aborted and the upstream connection closes', async () => {
    const { up, closed } = await holding('text/event-stream', 'data: 1\n\n');
    const signal = new Cancellation();
    const res = await up.stream('POST', '/chat/completions', {}, call(5_000, signal));
    const it = res.body[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    const waiting = it.next();
    signal.abort(new Error('client went away'));
    const err = await failure(waiting);
    expect(err.kind).toBe('aborted');
    await closed();
  });

  it('a reader that stops early keeps the connection when the rest comes at once, and closes it when the rest never comes', async () => {
    const held: ServerResponse[] = [];
    const up = await upstream((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: [DONE]\n\n');
      // /ends: the test ends the body itself, just after its reader stopped (so the drain wait is
      // running, and the rest comes well inside it — not by a timer, which a stalled test process
      // would fire together with the 50 ms drain timer); /hangs: the rest never comes.
      if (req.url?.endsWith('/ends')) held.push(res);
    });
    const sockets = openSockets();
    for (const path of ['/ends', '/ends']) {
      const res = await up.stream('POST', path, {}, call());
      const it = res.body[Symbol.asyncIterator]();
      expect(Buffer.from((await it.next()).value as Uint8Array).toString()).toContain('[DONE]');
      const stopping = (it.return as () => Promise<IteratorResult<Uint8Array>>)();
      (held.shift() as ServerResponse).end('data: late\n\n');
      await stopping;
    }
    await new Promise((r) => setTimeout(r, 50));
    // Every connection the early stops used is still open, in the pool.
    expect(sockets.closed).toBe(0);
    const res = await up.stream('POST', '/hangs', {}, call());
    const started = performance.now();
    for await (const c of res.body) if (Buffer.from(c).toString().includes('[DONE]')) break;
    // The wait for the rest is short, and then that connection is closed.
    expect(performance.now() - started).toBeLessThan(1_000);
    await expect.poll(() => sockets.closed, { timeout: 2_000 }).toBe(1);
  });

  it('return() while a read waits ends that read, and the unfinished body is closed', async () => {
    const { up, closed } = await holding('text/event-stream', 'data: 1\n\n');
    const res = await up.stream('POST', '/chat/completions', {}, call());
    const it = res.body[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
    expect((await it.next()).done).toBe(false);
    const waiting = it.next();
    await it.return?.();
    expect(await waiting).toEqual({ done: true, value: undefined });
    await closed();
  });

  it('destroy() mid-body closes the upstream connection', async () => {
    const { up, closed } = await holding('text/event-stream', 'data: 1\n\n');
    const res = await up.stream('POST', '/chat/completions', {}, call());
    const it = res.body[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    res.body.destroy();
    await closed();
    expect((await it.next()).done).toBe(true);
  });
});

describe('UpstreamHttp.raw', () => {
  it('sends the body byte for byte with its content type, and streams the answer with its status and headers', async () => {
    const body = Buffer.from([0x2d, 0x2d, 0x62, 0x0d, 0x0a, 0x00, 0xff, 0xfe, 0x80]);
    let seen: { url?: string; type?: string; accept?: string; length?: string; body?: Buffer } = {};
    const up = await upstream((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => {
        seen = { url: req.url, type: req.headers['content-type'], accept: req.headers.accept, length: req.headers['content-length'], body: Buffer.concat(chunks) };
        res.writeHead(201, { 'content-type': 'audio/mpeg' });
        res.write(Buffer.from([1, 2]));
        res.end(Buffer.from([3]));
      });
    });
    const res = await up.raw('POST', '/audio/transcriptions', body, 'multipart/form-data; boundary=b', call(), { accept: 'application/json' });
    const parts: Uint8Array[] = [];
    for await (const p of res.body) parts.push(p);
    expect([res.status, res.headers['content-type'], Buffer.concat(parts)]).toEqual([201, 'audio/mpeg', Buffer.from([1, 2, 3])]);
    expect(seen).toEqual({ url: '/v1/audio/transcriptions', type: 'multipart/form-data; boundary=b', accept: 'application/json', length: String(body.length), body });
  });

  it('rejects an error status with the upstream\'s message', async () => {
    const up = await upstream((_req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'Invalid file format.', type: 'invalid_request_error', param: 'file' } }));
    });
    const err = await failure(up.raw('POST', '/audio/translations', 'x', 'text/plain', call()));
    expect([err.status, err.kind, err.message]).toEqual([400, 'bad_request', 'up returned 400: Invalid file format.']);
  });
});
