// Small stand-ins for tests that need to see what the gateway sends upstream: a request body read as
// JSON, and an OpenAI-compatible server that keeps every POST body as it arrived and answers one
// fixed chat completion ("hello"); any GET (the passthrough's model list) gets an empty list.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A request's body, parsed as JSON (`{}` when it has none, as a GET). */
export function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      try {
        resolve(JSON.parse(body || '{}') as Record<string, unknown>);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

export interface RecordingUpstream {
  /** Its base URL, `/v1` included (what OPENAI_BASE_URL takes). */
  url: string;
  /** Every POST body, raw, in arrival order. */
  raw: string[];
  close(): Promise<void>;
}

/** An OpenAI-compatible upstream answering every chat completion with `hello` from `model`. */
export async function startRecordingUpstream(model: string): Promise<RecordingUpstream> {
  const raw: string[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      if (req.method !== 'POST') {
        res.end(JSON.stringify({ object: 'list', data: [] }));
        return;
      }
      raw.push(body);
      res.end(
        JSON.stringify({
          id: 'chatcmpl-up',
          object: 'chat.completion',
          created: 1_700_000_000,
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: 'hello', refusal: null }, finish_reason: 'stop', logprobs: null }],
          usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    raw,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
