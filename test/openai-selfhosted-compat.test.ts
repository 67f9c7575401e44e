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
let ollama: StandIn;
let llamaN: StandIn;
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
  // Ollama's /v1 reads the body into a struct with `max_tokens` and no `n` or `max_completion_tokens`.
  ollama = await standIn((req, res, body) => {
    const words = Array.from({ length: 400 }, (_, i) => `w${i}`);
    const out = words.slice(0, typeof body.max_tokens === 'number' ? body.max_tokens : words.length);
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'llama3.2', system_fingerprint: 'fp_ollama', choices: [{ index: 0, message: { role: 'assistant', content: out.join(' ') }, finish_reason: out.length < words.length ? 'length' : 'stop' }], usage: { prompt_tokens: 10, completion_tokens: out.length, total_tokens: 10 + out.length } }),
    );
  });
  // llama-server refuses n != 1 with a 500.
  const refusal = await fixture('llamaserver-error-500-n.json');
  llamaN = await standIn((req, res, body) => {
    if ((body.n ?? 1) !== 1) return void res.writeHead(500, { 'content-type': 'application/json; charset=utf-8' }).end(refusal);
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({ id: 'chatcmpl-ok', object: 'chat.completion', created: 1, model: 'qwen', choices: [{ index: 0, message: { role: 'assistant', content: `seed ${String(body.seed)}` }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } }),
    );
  });
  gateway = await startTestGateway({
    config: {
      providers: {
        llama: { type: 'openai', base_url: `${llama.url}/v1` },
        lmstudio: { type: 'openai', base_url: lmstudio.url }, // the usual mistake: no /v1
        // Ollama's /v1 on another port than its own 11434, so only the options say what it is.
        ollama_v1: { type: 'openai', base_url: `${ollama.url}/v1` },
        ollama_v1_fixed: { type: 'openai', base_url: `${ollama.url}/v1`, options: { max_tokens_field: 'max_tokens' } },
        llama_fan: { type: 'openai', base_url: `${llamaN.url}/v1`, options: { choices: 'fan_out' } },
      },
      models: [
        { name: 'qwen', deployments: [{ provider: 'llama', model: 'qwen' }] },
        { name: 'gemma', deployments: [{ provider: 'lmstudio', model: 'google/gemma-3-4b' }] },
        { name: 'llama3.2', deployments: [{ provider: 'ollama_v1', model: 'llama3.2' }] },
        { name: 'llama3.2-fixed', deployments: [{ provider: 'ollama_v1_fixed', model: 'llama3.2' }] },
        { name: 'qwen-fan', deployments: [{ provider: 'llama_fan', model: 'qwen' }] },
      ],
    },
  });
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'x', maxRetries: 0 });
});
afterAll(async () => {
  await gateway?.close();
  for (const s of [llama, lmstudio, ollama, llamaN]) await new Promise<void>((resolve) => s.server.close(() => resolve()));
});
beforeEach(() => {
  for (const s of [llama, lmstudio, ollama, llamaN]) s.calls.length = 0;
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

describe('n > 1 to a server that ignores n (Ollama’s /v1) or refuses it (llama-server)', () => {
  it('Ollama’s /v1 answering one choice: the client still gets the n choices it asked for', async () => {
    const r = await client.chat.completions.create({ model: 'llama3.2', n: 3, messages: [{ role: 'user', content: 'three ideas' }] });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(ollama.calls.map((c) => c.body.n)).toEqual([3, 1, 1]);
    for (const c of ollama.calls) checkSpec('CreateChatCompletionRequest', c.body);
  });

  it('llama-server with options.choices: fan_out: n single-choice calls, never the n it refuses', async () => {
    const r = await client.chat.completions.create({ model: 'qwen-fan', n: 2, seed: 5, messages: [{ role: 'user', content: 'two ideas' }] });
    expect(r.choices.map((c) => c.message.content).sort()).toEqual(['seed 5', 'seed 6']);
    expect(llamaN.calls.map((c) => c.body.n)).toEqual([1, 1]);
    expect(r.usage).toMatchObject({ prompt_tokens: 6, completion_tokens: 4 });
  });
});

describe('Ollama’s /v1 reads only max_tokens', () => {
  it('with options.max_tokens_field: max_tokens a client’s max_completion_tokens bounds the answer', async () => {
    const r = await client.chat.completions.create({ model: 'llama3.2-fixed', max_completion_tokens: 16, messages: [{ role: 'user', content: 'write a long story' }] });
    expect(ollama.calls[0]?.body).toMatchObject({ max_tokens: 16 });
    expect(ollama.calls[0]?.body.max_completion_tokens).toBeUndefined();
    checkSpec('CreateChatCompletionRequest', ollama.calls[0]?.body);
    expect(r.usage?.completion_tokens).toBe(16);
    expect(r.choices[0]?.finish_reason).toBe('length');
  });
});
