// A tiny local upstream for adapter tests: records each request exactly (method, path, query,
// headers, body) and replays fixture bytes split into uneven pieces, so parsers meet frames and
// multi-byte characters cut at odd places. Replies can also stall, stop short or reset the socket.
import { expect } from 'vitest';
import { UpstreamError } from '../errors.js';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  pathname: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: string;
  json: unknown;
}

export interface Reply {
  status?: number;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** What happens after the body: end it (default), keep the response open, or reset the socket. */
  then?: 'end' | 'hold' | 'destroy';
  /** Send nothing at all (not even headers) until the server closes. */
  stall?: boolean;
}

/** Uneven piece sizes, cycled over a body. */
const PIECES = [1, 5, 2, 17, 3, 41, 8, 97, 4];

export class ReplayServer {
  readonly requests: RecordedRequest[] = [];
  private readonly queue: Reply[] = [];
  private readonly open = new Set<ServerResponse>();
  private waiters: (() => void)[] = [];

  private constructor(private readonly server: Server) {}

  static async start(): Promise<ReplayServer> {
    const server = createServer();
    const replay = new ReplayServer(server);
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const url = new URL(req.url ?? '/', 'http://upstream.test');
        let json: unknown;
        try {
          json = body ? JSON.parse(body) : undefined;
        } catch {
          json = undefined;
        }
        replay.requests.push({ method: req.method ?? '', pathname: url.pathname, query: url.searchParams, headers: req.headers, body, json });
        for (const w of replay.waiters.splice(0)) w();
        void replay.send(res, replay.queue.shift() ?? { status: 599, body: 'no reply queued' });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return replay;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Queues replies, served in order to the next requests. */
  reply(...replies: Reply[]): this {
    this.queue.push(...replies);
    return this;
  }

  /** Resolves once `count` requests in all have arrived. */
  async waitForRequests(count: number): Promise<void> {
    while (this.requests.length < count) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  reset(): void {
    this.requests.length = 0;
    this.queue.length = 0;
  }

  async close(): Promise<void> {
    for (const res of this.open) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async send(res: ServerResponse, reply: Reply): Promise<void> {
    this.open.add(res);
    res.on('close', () => this.open.delete(res));
    if (reply.stall) return;
    res.writeHead(reply.status ?? 200, { 'content-type': 'application/json', ...reply.headers });
    res.flushHeaders();
    const body = typeof reply.body === 'string' ? Buffer.from(reply.body, 'utf8') : (reply.body ?? Buffer.alloc(0));
    let at = 0;
    for (let i = 0; at < body.length; i++) {
      const size = PIECES[i % PIECES.length] as number;
      res.write(body.subarray(at, at + size));
      at += size;
      // Let each piece leave on its own rather than coalescing into one write.
      await new Promise((resolve) => setImmediate(resolve));
      if (res.destroyed) return;
    }
    if (reply.then === 'hold') return;
    if (reply.then === 'destroy') res.socket?.destroy();
    else res.end();
  }
}

const FIXTURES = new URL('./', import.meta.url);

/** A fixture file's text (tests only: read once at test time, never on a request path). */
export function fixture(name: string): string {
  return readFileSync(new URL(name, FIXTURES), 'utf8');
}

export function fixtureJson<T extends object = Record<string, unknown>>(name: string): T {
  return JSON.parse(fixture(name)) as T;
}

/** Drains a stream into an array; rethrows its failure with the chunks that came before. */
export async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of stream) out.push(item);
  return out;
}

export function callOptions(signal: AbortSignal = new AbortController().signal): {
  signal: AbortSignal;
  timeoutMs: number;
  requestId: string;
} {
  return { signal, timeoutMs: 10_000, requestId: 'req-test-1' };
}

/** A JSON reply (a string body is sent as it is). */
export const json = (body: unknown, status = 200, headers: Record<string, string> = {}): Reply => ({
  status,
  headers,
  body: typeof body === 'string' ? body : JSON.stringify(body),
});
export const sse = (body: string): Reply => ({ status: 200, headers: { 'content-type': 'text/event-stream' }, body });
export const ndjson = (body: string): Reply => ({ status: 200, headers: { 'content-type': 'application/x-ndjson' }, body });

/** The UpstreamError a call rejects with (fails the test when it resolves or throws anything else). */
export async function failure(p: Promise<unknown>): Promise<UpstreamError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UpstreamError);
  return err as UpstreamError;
}
