// writeSse against real sockets: a client that left before its stream started (while the gateway
// waited on a limit, the cache or Redis), and one that leaves mid-stream, both get their source
// closed — that is what cancels the upstream and settles the request's limits and budget.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { writeSse, type SseEvent } from './sse.js';

/** A source of `n` events that records what was asked of it. */
function source(n: number, size = 10) {
  const seen = { nexts: 0, returned: false };
  const events: AsyncIterable<SseEvent> = {
    [Symbol.asyncIterator]() {
      let i = 0;
      return {
        async next() {
          seen.nexts++;
          return i < n ? { done: false, value: { data: String(i++).padEnd(size, '.') } } : { done: true, value: undefined };
        },
        async return() {
          seen.returned = true;
          return { done: true, value: undefined };
        },
      };
    },
  };
  return { events, seen };
}

const opts = { headers: {}, onError: () => undefined };

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** A server whose one request is handed to `handle`; resolves with its URL. */
async function serve(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  server = createServer(handle);
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Fails instead of hanging when writeSse never returns. */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`writeSse did not return within ${ms} ms`)), ms))]);
}

describe('writeSse', () => {
  it('streams every event and ends the response when the source ends', async () => {
    const { events, seen } = source(3);
    const url = await serve((_req, res) => void writeSse(res, events, { ...opts, trailers: () => ({ 'x-total': '3' }) }));
    const res = await request(url);
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(await res.body.text()).toBe('data: 0.........\n\ndata: 1.........\n\ndata: 2.........\n\n');
    expect(seen.returned).toBe(false);
  });

  it('sends the headers and the first event at once, before the next event is even asked for', async () => {
    // A burst (a cache replay, a whole answer in one upstream read): every event is ready at once.
    // The later ones of the turn leave together, but the first must not wait for them.
    let pending: { corked: number; buffered: number } | undefined;
    let target: ServerResponse | undefined;
    const events: AsyncIterable<SseEvent> = {
      [Symbol.asyncIterator]() {
        let i = 0;
        return {
          async next() {
            if (i === 1) pending = { corked: target!.socket!.writableCorked, buffered: target!.socket!.writableLength };
            return i < 50 ? { done: false, value: { data: `event ${i++}` } } : { done: true, value: undefined };
          },
        };
      },
    };
    const url = await serve((_req, res) => {
      target = res;
      void writeSse(res, events, opts);
    });
    const text = await (await request(url)).body.text();
    expect(text.split('\n\n').filter(Boolean)).toHaveLength(50);
    // When the second event was asked for, the headers and the first event had left the socket.
    expect(pending).toEqual({ corked: 0, buffered: 0 });
  });

  it('returns and closes the source at once when the client left before the stream started', async () => {
    const { events, seen } = source(10_000, 4096);
    let finished!: Promise<void>;
    const handled = new Promise<void>((resolve) => {
      void serve((_req, res) => {
        // The gateway was still busy when the client hung up: by the time it streams, `close` has fired.
        res.once('close', () => {
          finished = within(writeSse(res, events, opts), 2_000);
          resolve();
        });
      }).then(async (url) => {
        const controller = new AbortController();
        const pending = request(url, { signal: controller.signal }).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 50));
        controller.abort();
        await pending;
      });
    });
    await handled;
    await finished;
    expect(seen.returned).toBe(true);
    expect(seen.nexts).toBe(0);
  });

  it('closes the source when the client leaves mid-stream while the buffer is full', async () => {
    const { events, seen } = source(100_000, 16_384);
    let finished!: Promise<void>;
    const url = await serve((_req, res) => {
      finished = writeSse(res, events, opts);
    });
    const controller = new AbortController();
    const res = await request(url, { signal: controller.signal });
    await res.body[Symbol.asyncIterator]().next();
    // Stop reading: the server's buffer fills and writeSse waits for a drain that will not come.
    await new Promise((r) => setTimeout(r, 100));
    controller.abort();
    await within(finished, 2_000);
    expect(seen.returned).toBe(true);
    expect(seen.nexts).toBeLessThan(100_000);
  });
});
