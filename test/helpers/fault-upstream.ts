// A fault-injecting OpenAI-compatible upstream for tests (node:http): POST /v1/chat/completions in
// JSON or SSE. The request's `model` picks the behaviour, and a test can change a model's behaviour
// while running. Faults: 500, 503, 429 with Retry-After, 408, a hang (timeouts), a connection reset,
// malformed JSON, an SSE stream cut before or after its first event, a slow trickle, a delay; a status
// fault may send extra headers (OpenAI's x-ratelimit-reset-*, retry-after-ms).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Fault =
  | { kind: 'ok'; delayMs?: number; words?: number }
  | { kind: 'status'; status: number; retryAfterS?: number; headers?: Record<string, string> }
  | { kind: 'flaky'; rate: number; status?: number } // deterministic share of calls that fail
  | { kind: 'hang' }
  | { kind: 'reset' }
  | { kind: 'malformed' }
  | { kind: 'sse_cut_before_first' }
  | { kind: 'sse_truncated'; after: number }
  | { kind: 'trickle'; intervalMs: number; words?: number }
  | { kind: 'sequence'; steps: Fault[] }; // one step per call, the last repeats

export interface ModelCounters {
  calls: number;
  /** Requests whose client hung up before the answer was complete. */
  aborted: number;
}

export class FaultUpstream {
  private server?: Server;
  private readonly faults = new Map<string, Fault>();
  private readonly counters = new Map<string, ModelCounters>();
  private readonly sockets = new Set<Socket>();
  url = '';

  set(model: string, fault: Fault): void {
    this.faults.set(model, fault);
  }

  stats(model: string): ModelCounters {
    let c = this.counters.get(model);
    if (!c) this.counters.set(model, (c = { calls: 0, aborted: 0 }));
    return c;
  }

  /** Open TCP connections from clients (the gateway's pools). */
  get openConnections(): number {
    return this.sockets.size;
  }

  async start(): Promise<string> {
    const server = createServer((req, res) => void this.handle(req, res));
    server.keepAliveTimeout = 5_000;
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
    return this.url;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"no such route"}}');
      return;
    }
    const body = JSON.parse(raw) as { model: string; stream?: boolean; messages: { content: string }[] };
    const counters = this.stats(body.model);
    const n = counters.calls++;
    let fault = this.faults.get(body.model) ?? { kind: 'ok' };
    if (fault.kind === 'sequence') fault = fault.steps[Math.min(n, fault.steps.length - 1)] as Fault;
    let finished = false;
    res.on('close', () => {
      if (!finished && !res.writableFinished) counters.aborted++;
    });
    res.on('finish', () => (finished = true));
    await this.respond(fault, n, body, req, res);
  }

  private async respond(fault: Fault, n: number, body: { model: string; stream?: boolean; messages: { content: string }[] }, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const json = (status: number, value: unknown, headers: Record<string, string> = {}) =>
      res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(value));
    switch (fault.kind) {
      case 'status':
        json(fault.status, { error: { message: `injected ${fault.status}`, type: 'server_error' } }, { ...fault.headers, ...(fault.retryAfterS !== undefined ? { 'retry-after': String(fault.retryAfterS) } : {}) });
        return;
      case 'flaky':
        if (Math.floor((n + 1) * fault.rate) > Math.floor(n * fault.rate)) {
          json(fault.status ?? 500, { error: { message: 'injected flaky failure' } });
          return;
        }
        break;
      case 'hang':
        return; // never answers; the client's timeout ends it
      case 'reset':
        req.socket.destroy();
        return;
      case 'malformed':
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"id": "x", "choices": [');
        return;
      case 'sse_cut_before_first':
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.flushHeaders();
        setTimeout(() => req.socket.destroy(), 5);
        return;
      default:
        break;
    }
    if (fault.kind === 'ok' && fault.delayMs) await sleep(fault.delayMs);
    const words = ((fault.kind === 'ok' || fault.kind === 'trickle') && fault.words) || 5;
    const text = Array.from({ length: words }, (_, i) => `w${i}`).join(' ');
    const base = { id: `chatcmpl-fault${n}`, created: 1_700_000_000, model: body.model };
    const usage = { prompt_tokens: 10, completion_tokens: words, total_tokens: 10 + words };
    if (!body.stream) {
      json(200, { ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop', logprobs: null }], usage });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const send = (v: unknown) => res.write(`data: ${typeof v === 'string' ? v : JSON.stringify(v)}\n\n`);
    const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] });
    const pieces = text.split(' ').map((w, i) => (i === 0 ? w : ` ${w}`));
    send(chunk({ role: 'assistant', content: '' }));
    for (const [i, p] of pieces.entries()) {
      if (fault.kind === 'sse_truncated' && i >= fault.after) {
        // Let what was written reach the client first, then cut the connection mid-stream.
        await sleep(20);
        req.socket.destroy();
        return;
      }
      if (fault.kind === 'trickle') await sleep(fault.intervalMs);
      if (res.destroyed) return;
      send(chunk({ content: p }));
    }
    send(chunk({}, 'stop'));
    send({ ...base, object: 'chat.completion.chunk', choices: [], usage });
    send('[DONE]');
    res.end();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
