// A tiny local upstream for provider adapter tests: records each request (method, path, headers,
// body) and replays fixture bytes split into uneven pieces, so SSE parsing is exercised across
// arbitrary chunk boundaries (including inside multi-byte UTF-8 characters).
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** Resolves when the client's socket closes (to see an abort arrive). */
  closed: Promise<void>;
}

export interface FixtureReply {
  status?: number;
  headers?: Record<string, string>;
  body: string | Buffer;
  /** Keep the response open after the body instead of ending it. */
  hang?: boolean;
  /** Destroy the socket after this many bytes (a connection dropped mid-body). */
  cutAfterBytes?: number;
}

export interface FixtureServer {
  url: string;
  requests: RecordedRequest[];
  reply(next: FixtureReply | ((req: RecordedRequest) => FixtureReply)): void;
  close(): Promise<void>;
}

const FIXTURES = new URL('./', import.meta.url);

export function fixture(name: string): Promise<string> {
  return readFile(new URL(name, FIXTURES), 'utf8');
}

/** Uneven, deterministic piece sizes: 1, 7, 3, 19, 2, 64, 5, 11 bytes, repeating. */
const PIECES = [1, 7, 3, 19, 2, 64, 5, 11];

export async function startFixtureServer(): Promise<FixtureServer> {
  const requests: RecordedRequest[] = [];
  let next: FixtureReply | ((req: RecordedRequest) => FixtureReply) = { status: 500, body: 'no reply configured' };
  const sockets = new Set<import('node:net').Socket>();
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const closed = new Promise<void>((resolve) => res.on('close', () => resolve()));
      const recorded: RecordedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(parts).toString('utf8'),
        closed,
      };
      requests.push(recorded);
      const reply = typeof next === 'function' ? next(recorded) : next;
      void send(reply, res);
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  async function send(reply: FixtureReply, res: import('node:http').ServerResponse): Promise<void> {
    const bytes = Buffer.isBuffer(reply.body) ? reply.body : Buffer.from(reply.body, 'utf8');
    res.writeHead(reply.status ?? 200, { 'content-type': 'application/json', ...reply.headers });
    let offset = 0;
    let i = 0;
    const limit = reply.cutAfterBytes ?? bytes.length;
    while (offset < limit && !res.destroyed) {
      const size = Math.min(PIECES[i++ % PIECES.length] as number, limit - offset);
      res.write(bytes.subarray(offset, offset + size));
      offset += size;
      // Yield to the event loop so pieces leave as separate TCP writes.
      await new Promise((r) => setImmediate(r));
    }
    if (reply.cutAfterBytes !== undefined) res.socket?.destroy();
    else if (!reply.hang) res.end();
  }

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    reply(r) {
      next = r;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Drains an async iterable into an array. */
export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** The rejection of a promise (fails if it resolves). */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}
