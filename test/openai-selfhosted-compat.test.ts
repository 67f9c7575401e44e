// Self-hosted OpenAI-compatible servers through the whole gateway, with the official `openai` client:
// a stream an older llama-server (or a proxy) ends with [DONE] before the answer finished, LM Studio's
// 200 whose body is an error, a server that ignores `n` (Ollama's /v1, LM Studio) or refuses it
// (llama-server), and Ollama's /v1, which reads only `max_tokens`.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fixture } from '../src/providers/__fixtures__/fixture-server.js';
import { startTestGateway } from './helpers/gateway.js';
import { specChecker } from './helpers/spec-check.js';

type Handler = (req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>) => void;
interface StandIn {
  server: Server;
  url: string;
  calls: { path: string; body: Record<string, unknown> }[];
}

const checkSpec = specChecker('openai-selfhosted-compat.test');

async function standIn(handler: Handler): Promise<StandIn> {
  const calls: StandIn['calls'] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw || '{}') as Record<string, unknown>;
      calls.push({ path: req.url ?? '', body });
      handler(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls };
}

let llama: StandIn;
let lmstudio: StandIn;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;
let client: OpenAI;
const bytes: Record<string, string> = {};

beforeAll(async () => {
  for (const f of ['llamaserver-stream-done-unfinished.chunks.txt', 'lmstudio-error-200-unexpected-endpoint.json']) bytes[f] = await fixture(f);
  llama = await standIn((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' }).end(bytes['llamaserver-stream-done-unfinished.chunks.txt']);
  });
  // LM Studio: every path outside /v1 answers 200 with an error body.
  lmstudio = await standIn((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'x-powered-by': 'Express' }).end(bytes['lmstudio-error-200-unexpected-endpoint.json']?.replace('/chat/completions', req.url ?? ''));
  });
  gateway = await startTestGateway({
    config: {
      providers: {
        llama: { type: 'openai', base_url: `${llama.url}/v1` },
        lmstudio: { type: 'openai', base_url: lmstudio.url }, // the usual mistake: no /v1
      },
      models: [
        { name: 'qwen', deployments: [{ provider: 'llama', model: 'qwen' }] },
        { name: 'gemma', deployments: [{ provider: 'lmstudio', model: 'google/gemma-3-4b' }] },
      ],
    },
  });
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'x', maxRetries: 0 });
});
afterAll(async () => {
  await gateway?.close();
  for (const s of [llama, lmstudio]) await new Promise<void>((resolve) => s.server.close(() => resolve()));
});
beforeEach(() => {
  for (const s of [llama, lmstudio]) s.calls.length = 0;
});

describe('a stream ended with [DONE] before the answer finished (older llama-server, a proxy)', () => {
  it('the SDK’s stream throws after the text that came, instead of ending as a complete answer', async () => {
    const stream = await client.chat.completions.create({ model: 'qwen', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'q' }] });
    let text = '';
    let finish: string | null = null;
    let error: unknown;
    try {
      for await (const c of stream) {
        text += c.choices[0]?.delta?.content ?? '';
        finish = c.choices[0]?.finish_reason ?? finish;
      }
    } catch (err) {
      error = err;
    }
    expect(text).toBe('The answer is');
    expect(finish).toBeNull();
    expect(String(error)).toMatch(/\[DONE\] before the answer finished/);
    // Output had reached the client: not retried.
    expect(llama.calls).toHaveLength(1);
    checkSpec('CreateChatCompletionRequest', llama.calls[0]?.body);
  });
});

describe('LM Studio’s 200 {"error": …} (a base_url without /v1)', () => {
  it('the client gets LM Studio’s words once, told not to retry; the answer is not retried as unreadable', async () => {
    const err = await client.chat.completions.create({ model: 'gemma', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const e = err as InstanceType<typeof OpenAI.APIError>;
    expect(e.status).toBe(502);
    expect(e.message).toContain('Unexpected endpoint or method. (POST /chat/completions)');
    expect(e.headers?.get('x-should-retry')).toBe('false');
    expect(lmstudio.calls).toHaveLength(1);
  });

  it('a stream request: the same, before any event', async () => {
    const err = await client.chat.completions.create({ model: 'gemma', stream: true, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 502, message: expect.stringContaining('Unexpected endpoint or method') });
    expect(lmstudio.calls).toHaveLength(1);
  });
});
