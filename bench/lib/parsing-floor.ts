// The floor for a gateway that understands what it forwards: the pass-through proxy (proxy.ts) plus
// the work no OpenAI-compatible gateway can skip — parse the client's JSON, check it names a model
// and messages, write a new upstream body, parse the upstream's answer, write the client's answer
// with the gateway's five response headers. No framework, no routing, no metrics, no logging: what
// it costs over the proxy is the price of parsing alone, and the gateway's own target should be read
// against it. Run as its own process: `tsx bench/lib/parsing-floor.ts <port> <upstream-url>`.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { Pool } from 'undici';

interface ChatBody {
  model?: unknown;
  messages?: unknown;
  max_tokens?: unknown;
}
export interface Answer {
  choices: { index: number; message: { role: string; content: string }; finish_reason: string }[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

/**
 * The floor's request step, shared with bench/app-overhead.ts's floor route: the parsed client body
 * checked (a model, some messages) and the upstream body written; undefined for a body it refuses.
 */
export function floorRequest(parsed: unknown): { model: string; upstream: string } | undefined {
  const body = parsed as ChatBody | null;
  if (!body || typeof body.model !== 'string' || !Array.isArray(body.messages) || body.messages.length === 0) return undefined;
  return { model: body.model, upstream: JSON.stringify({ model: 'bench-model', messages: body.messages, max_tokens: body.max_tokens }) };
}

/** The floor's answer step: the client's answer, rebuilt from the upstream's parsed one. */
export function floorAnswer(model: string, answer: Answer): string {
  return JSON.stringify({
    id: `chatcmpl-${randomUUID()}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: answer.choices.map((c) => ({ index: c.index, message: { role: c.message.role, content: c.message.content }, finish_reason: c.finish_reason, logprobs: null })),
    usage: answer.usage,
  });
}

/** The gateway's five response headers, as the floor sends them. */
export function floorHeaders(startedMs: number): Record<string, string> {
  return {
    'x-request-id': randomUUID(),
    'x-inferenceflow-provider': 'upstream',
    'x-inferenceflow-model': 'bench-model',
    'x-inferenceflow-latency-ms': (performance.now() - startedMs).toFixed(1),
    'x-inferenceflow-cost-usd': '0',
  };
}

export function startParsingFloor(port: number, upstream: string) {
  const pool = new Pool(upstream, { connections: 256, keepAliveTimeout: 60_000 });
  const upstreamHeaders = { 'content-type': 'application/json', authorization: 'Bearer bench' };
  const fail = (res: import('node:http').ServerResponse, status: number, message: string) => {
    const body = JSON.stringify({ error: { message, type: 'invalid_request_error', code: 'invalid_request' } });
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const started = performance.now();
      let parsed: unknown;
      try {
        parsed = JSON.parse(Buffer.concat(parts).toString('utf8'));
      } catch {
        return fail(res, 400, 'body is not JSON');
      }
      const request = floorRequest(parsed);
      if (!request) return fail(res, 400, 'model and messages are required');
      pool
        .request({ method: 'POST', path: '/v1/chat/completions', headers: upstreamHeaders, body: request.upstream })
        .then(async (up) => {
          const text = floorAnswer(request.model, JSON.parse(await up.body.text()) as Answer);
          res.writeHead(up.statusCode, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...floorHeaders(started) });
          res.end(text);
        })
        .catch(() => fail(res, 502, 'upstream failed'));
    });
  });
  server.keepAliveTimeout = 60_000;
  return new Promise<typeof server>((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

if (process.argv[1]?.endsWith('parsing-floor.ts')) {
  void startParsingFloor(Number(process.argv[2] ?? 0), process.argv[3] ?? 'http://127.0.0.1:9999').then((s) => {
    const addr = s.address();
    console.log(`READY ${typeof addr === 'object' && addr ? addr.port : 0}`);
  });
}
