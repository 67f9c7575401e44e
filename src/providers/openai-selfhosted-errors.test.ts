// The OpenAI-compatible adapter against self-hosted servers' error answers (llama-server, vLLM),
// replayed byte for byte from a local stand-in: how each failure is classified decides whether the
// router retries it, holds it against the deployment, or tries a context-window fallback.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChatChunk, ChatRequest } from '../canonical/chat.js';
import { fixture, rejection, startFixtureServer, type FixtureServer } from './__fixtures__/fixture-server.js';
import { UpstreamError } from './errors.js';
import { createOpenAIProvider, type OpenAIProvider } from './openai.js';
import type { CallOptions } from './types.js';

let server: FixtureServer;
let provider: OpenAIProvider;

const opts = (): CallOptions => ({ signal: new AbortController().signal, timeoutMs: 5000, requestId: 'req-1' });
const req: ChatRequest = { model: 'qwen', messages: [{ role: 'user', content: 'long document ...' }] };
const json = { 'content-type': 'application/json; charset=utf-8' };
const sse = { 'content-type': 'text/event-stream' };

beforeAll(async () => {
  server = await startFixtureServer();
  provider = createOpenAIProvider('llama', { type: 'openai', base_url: `${server.url}/v1` });
});
afterAll(async () => {
  await provider.close();
  await server.close();
});
beforeEach(() => {
  server.requests.length = 0;
});

async function streamed(r: ChatRequest): Promise<{ seen: ChatChunk[]; err: unknown }> {
  const seen: ChatChunk[] = [];
  const err = await rejection(
    (async () => {
      for await (const c of await provider.streamChat(r, opts())) seen.push(c);
    })(),
  );
  return { seen, err };
}

describe('openai adapter: llama-server refusing a request with HTTP 500', () => {
  it.each(['llamaserver-error-500-n.json', 'llamaserver-error-500-jinja.json', 'llamaserver-error-500-mmproj.json'])('%s: unsupported (not retryable), the upstream message kept', async (file) => {
    const body = await fixture(file);
    server.reply({ status: 500, headers: json, body });
    const err = (await rejection(provider.chat({ ...req, n: 2 }, opts()))) as UpstreamError;
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ kind: 'unsupported', status: 500, retryable: false, provider: 'llama' });
    expect(err.message).toContain((JSON.parse(body) as { error: { message: string } }).error.message);
  });

  it('a malformed request it refuses with 500 is bad_request, not retryable', async () => {
    server.reply({ status: 500, headers: json, body: JSON.stringify({ error: { code: 500, message: "Expected 'content' to be a string or an array", type: 'server_error' } }) });
    const err = (await rejection(provider.chat(req, opts()))) as UpstreamError;
    expect(err).toMatchObject({ kind: 'bad_request', status: 500, retryable: false });
  });

  it('501 not_supported_error (no --embeddings): unsupported, not retryable', async () => {
    server.reply({ status: 501, headers: json, body: await fixture('llamaserver-error-501-embeddings.json') });
    const err = (await rejection(provider.embed({ model: 'emb', input: 'hi' }, opts()))) as UpstreamError;
    expect(err).toMatchObject({ kind: 'unsupported', status: 501, retryable: false });
    expect(err.message).toContain('does not support embeddings');
  });
});

describe('openai adapter: context overflows from self-hosted servers', () => {
  it('llama-server 400 exceed_context_size_error is context_length', async () => {
    server.reply({ status: 400, headers: json, body: await fixture('llamaserver-error-400-context.json') });
    const err = (await rejection(provider.chat(req, opts()))) as UpstreamError;
    expect(err).toMatchObject({ kind: 'context_length', status: 400, retryable: false });
    expect(err.message).toContain('exceeds the available context size (4096 tokens)');
  });

  it('vLLM "decoder prompt … longer than the maximum model length" is context_length', async () => {
    server.reply({ status: 400, headers: json, body: await fixture('vllm-error-400-context.json') });
    const err = (await rejection(provider.chat(req, opts()))) as UpstreamError;
    expect(err).toMatchObject({ kind: 'context_length', status: 400, retryable: false });
  });
});

describe('openai adapter: an older llama-server’s `error:` SSE field', () => {
  it('before any output: raised as the error it says (context_length), not an empty successful answer', async () => {
    server.reply({ headers: sse, body: await fixture('llamaserver-legacy-stream-error.chunks.txt') });
    const { seen, err } = await streamed({ ...req, stream: true });
    expect(seen).toEqual([]);
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ kind: 'context_length', status: 400, retryable: false, provider: 'llama' });
    expect((err as Error).message).toContain('the request exceeds the available context size');
  });

  it('after some text: the text, then a server error that is not retried (output already went out)', async () => {
    server.reply({ headers: sse, body: await fixture('llamaserver-legacy-midstream-error.chunks.txt') });
    const { seen, err } = await streamed({ ...req, stream: true });
    expect(seen.map((c) => c.choices[0]?.delta.content)).toEqual(['The answer is']);
    expect(err).toMatchObject({ kind: 'server', status: 500, retryable: false });
    expect((err as Error).message).toContain('Failed to decode the batch');
  });
});
