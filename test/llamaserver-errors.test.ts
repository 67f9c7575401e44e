// llama-server's ways of refusing a request, through the whole gateway: a 500 it answers for a request
// it cannot take is the client's 400 (one upstream call, no retry, not held against the deployment's
// breaker) or goes to another deployment that can, a context overflow moves to the group's context_window_fallbacks, an older build's
// `error:` SSE field is an error rather than an empty answer, and a 501 (no --embeddings) is a
// capability the deployment lacks.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fixture } from '../src/providers/__fixtures__/fixture-server.js';
import { startTestGateway } from './helpers/gateway.js';

let llama: Server;
let big: Server;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;
const llamaCalls: { path: string; body: Record<string, unknown> }[] = [];
let bigCalls = 0;
const bytes: Record<string, string> = {};

function listen(s: Server): Promise<string> {
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as AddressInfo).port}/v1`)));
}

beforeAll(async () => {
  for (const f of ['llamaserver-error-500-n.json', 'llamaserver-error-400-context.json', 'llamaserver-error-501-embeddings.json', 'llamaserver-legacy-stream-error.chunks.txt']) bytes[f] = await fixture(f);
  llama = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw || '{}') as Record<string, unknown>;
      llamaCalls.push({ path: req.url ?? '', body });
      const content = JSON.stringify(body.messages ?? '');
      if (req.url?.endsWith('/embeddings')) {
        res.writeHead(501, { 'content-type': 'application/json; charset=utf-8' }).end(bytes['llamaserver-error-501-embeddings.json']);
      } else if ((body.n ?? 1) !== 1) {
        res.writeHead(500, { 'content-type': 'application/json; charset=utf-8' }).end(bytes['llamaserver-error-500-n.json']);
      } else if (content.includes('long document') && body.stream === true && body.model === 'qwen-legacy') {
        res.writeHead(200, { 'content-type': 'text/event-stream' }).end(bytes['llamaserver-legacy-stream-error.chunks.txt']);
      } else if (content.includes('long document')) {
        res.writeHead(400, { 'content-type': 'application/json; charset=utf-8' }).end(bytes['llamaserver-error-400-context.json']);
      } else {
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({ id: 'chatcmpl-ok', object: 'chat.completion', created: 1, model: 'qwen', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }),
        );
      }
    });
  });
  big = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      bigCalls++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({ id: 'chatcmpl-big', object: 'chat.completion', created: 1, model: 'qwen-128k', choices: [{ index: 0, message: { role: 'assistant', content: 'answered by the 128k deployment' }, finish_reason: 'stop' }], usage: { prompt_tokens: 9177, completion_tokens: 5, total_tokens: 9182 } }),
      );
    });
  });
  const [llamaUrl, bigUrl] = await Promise.all([listen(llama), listen(big)]);
  gateway = await startTestGateway({
    config: {
      providers: { llama: { type: 'openai', base_url: llamaUrl }, big: { type: 'openai', base_url: bigUrl } },
      models: [
        { name: 'qwen', deployments: [{ provider: 'llama', model: 'qwen' }] },
        { name: 'qwen-small', deployments: [{ provider: 'llama', model: 'qwen' }], context_window_fallbacks: ['qwen-big'] },
        { name: 'qwen-legacy', deployments: [{ provider: 'llama', model: 'qwen-legacy' }] },
        { name: 'qwen-big', deployments: [{ provider: 'big', model: 'qwen-128k' }] },
        { name: 'qwen-pair', deployments: [{ provider: 'llama', model: 'qwen', id: 'pair/llama' }, { provider: 'big', model: 'qwen-128k', id: 'pair/big', priority: 1 }] },
        { name: 'emb', deployments: [{ provider: 'llama', model: 'emb' }] },
      ],
    },
  });
});

afterAll(async () => {
  await gateway?.close();
  await Promise.all([llama, big].map((s) => new Promise((resolve) => s?.close(resolve))));
});

beforeEach(() => {
  llamaCalls.length = 0;
  bigCalls = 0;
});

async function post(path: string, body: unknown): Promise<{ status: number; headers: Headers; json: { error?: { code?: string; message?: string } } }> {
  const res = await fetch(`${gateway.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, headers: res.headers, json: (await res.json()) as { error?: { code?: string; message?: string } } };
}

describe('llama-server through the gateway', () => {
  it('a 500 "Only one completion choice is allowed" is the client’s 400, called once, and never opens the deployment’s breaker', async () => {
    const r = await post('/v1/chat/completions', { model: 'qwen', n: 2, messages: [{ role: 'user', content: 'two ideas please' }] });
    expect(r.status).toBe(400);
    expect(r.json.error?.code).toBe('unsupported_capability');
    expect(r.json.error?.message).toContain('Only one completion choice is allowed');
    expect(llamaCalls).toHaveLength(1);

    // More than the breaker's consecutive_failures (10) of them, then a valid request from anyone.
    for (let i = 0; i < 12; i++) await post('/v1/chat/completions', { model: 'qwen', n: 2, messages: [{ role: 'user', content: 'two ideas please' }] });
    const ok = await post('/v1/chat/completions', { model: 'qwen', messages: [{ role: 'user', content: 'hello' }] });
    expect(ok.status).toBe(200);
    expect(llamaCalls).toHaveLength(14);
  });

  it('in a group with a deployment that can, that refusal moves the request on to it', async () => {
    const r = await post('/v1/chat/completions', { model: 'qwen-pair', n: 2, messages: [{ role: 'user', content: 'two ideas please' }] });
    expect(r.status).toBe(200);
    expect(llamaCalls).toHaveLength(1);
    // The other deployment's stand-in answers one choice whatever n says: the adapter asks it for the second with n: 1.
    expect(bigCalls).toBe(2);
    expect((r.json as { choices: unknown[] }).choices).toHaveLength(2);
  });

  it('a 400 exceed_context_size_error moves the request to the group’s context_window_fallbacks', async () => {
    const r = await post('/v1/chat/completions', { model: 'qwen-small', messages: [{ role: 'user', content: 'long document ...' }] });
    expect(r.status).toBe(200);
    expect(bigCalls).toBe(1);
    expect(llamaCalls).toHaveLength(1);
  });

  it('without a fallback, the client gets context_length_exceeded with llama-server’s message', async () => {
    const r = await post('/v1/chat/completions', { model: 'qwen', messages: [{ role: 'user', content: 'long document ...' }] });
    expect(r.status).toBe(400);
    expect(r.json.error?.code).toBe('context_length_exceeded');
    expect(r.json.error?.message).toContain('exceeds the available context size');
  });

  it('an older build’s `error:` SSE field before any output is the error it names, not an empty answer', async () => {
    const res = await fetch(`${gateway.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'qwen-legacy', stream: true, messages: [{ role: 'user', content: 'long document ...' }] }) });
    const text = await res.text();
    expect(text).toContain('context_length_exceeded');
    expect(text).toContain('the request exceeds the available context size');
    expect(llamaCalls).toHaveLength(1);
  });

  it('a 501 not_supported_error (no --embeddings) is 400 unsupported_capability, called once', async () => {
    const r = await post('/v1/embeddings', { model: 'emb', input: 'hi' });
    expect(r.status).toBe(400);
    expect(r.json.error?.code).toBe('unsupported_capability');
    expect(r.json.error?.message).toContain('does not support embeddings');
    expect(llamaCalls).toHaveLength(1);
  });
});
