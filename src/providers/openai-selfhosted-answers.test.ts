// The OpenAI-compatible adapter against what self-hosted servers answer where OpenAI would not
// (llama-server, LM Studio, Ollama's /v1), replayed byte for byte from a local stand-in: a stream
// that says [DONE] before its answer finished, a 200 whose body is an error, fewer choices than `n`.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChatChunk, ChatRequest } from '../canonical/chat.js';
import { fixture, rejection, startFixtureServer, type FixtureServer } from './__fixtures__/fixture-server.js';
import { UpstreamError } from './errors.js';
import { createOpenAIProvider, isOllamaV1, type OpenAIProvider } from './openai.js';
import type { CallOptions } from './types.js';
import { specForTests } from './__fixtures__/openai-spec.js';

const spec = specForTests('openai-selfhosted-answers.test');

let server: FixtureServer;
let provider: OpenAIProvider;

const opts = (): CallOptions => ({ signal: new AbortController().signal, timeoutMs: 5000, requestId: 'req-1' });
const req: ChatRequest = { model: 'qwen', messages: [{ role: 'user', content: 'q' }] };
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

async function streamed(p: OpenAIProvider, r: ChatRequest): Promise<{ seen: ChatChunk[]; err: unknown }> {
  const seen: ChatChunk[] = [];
  try {
    for await (const c of await p.streamChat(r, opts())) seen.push(c);
  } catch (err) {
    return { seen, err };
  }
  return { seen, err: undefined };
}

describe('openai adapter: a stream that ends before its answer finished', () => {
  it('[DONE] after text but before any finish_reason is an interrupted stream, not a success', async () => {
    server.reply({ headers: sse, body: await fixture('llamaserver-stream-done-unfinished.chunks.txt') });
    const { seen, err } = await streamed(provider, { ...req, stream: true });
    expect(seen.map((c) => c.choices[0]?.delta.content)).toEqual(['The answer is']);
    // Output already reached the caller: a retry would duplicate it.
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ kind: 'stream_interrupted', retryable: false, provider: 'llama' });
    expect((err as Error).message).toContain('[DONE]');
  });

  it('[DONE] alone (no chunk at all) is interrupted and retryable: nothing reached the caller', async () => {
    server.reply({ headers: sse, body: await fixture('llamaserver-stream-done-only.chunks.txt') });
    const { seen, err } = await streamed(provider, { ...req, stream: true });
    expect(seen).toEqual([]);
    expect(err).toMatchObject({ kind: 'stream_interrupted', retryable: true });
  });

  it('n = 2: [DONE] with one choice finished and the other not is interrupted', async () => {
    server.reply({ headers: sse, body: await fixture('openai-stream-n2-done-one-unfinished.chunks.txt') });
    const { err } = await streamed(provider, { ...req, n: 2, stream: true });
    expect(err).toMatchObject({ kind: 'stream_interrupted', retryable: false });
    expect((err as Error).message).toContain('1 of 2 choices');
  });

  it('a finish_reason in one chunk and the usage in a later one with empty choices (llama-server) is a complete answer', async () => {
    server.reply({ headers: sse, body: await fixture('llamaserver-stream-usage-after-finish.chunks.txt') });
    const { seen, err } = await streamed(provider, { ...req, stream: true });
    expect(err).toBeUndefined();
    expect(seen.map((c) => c.choices[0]?.finish_reason).filter(Boolean)).toEqual(['stop']);
    expect(seen.at(-1)?.usage).toEqual({ prompt_tokens: 12, completion_tokens: 2, total_tokens: 14 });
  });

  it('a raw-text completion stream cut before its finish_reason, then [DONE], is interrupted too', async () => {
    const whole = await fixture('openai-llamacpp-text-completion-stream.chunks.txt');
    const cut = whole.split('\n\n').filter((e) => !e.includes('"finish_reason":"length"')).join('\n\n');
    expect(cut).toContain('data: [DONE]');
    server.reply({ headers: sse, body: cut });
    const prompt = 'Once upon a time';
    const { seen, err } = await streamed(provider, { ...req, messages: [{ role: 'user', content: prompt }], text_completion: { prompt }, stream: true });
    expect(seen.length).toBeGreaterThan(0);
    expect(server.requests[0]?.path).toBe('/v1/completions');
    expect(err).toMatchObject({ kind: 'stream_interrupted', retryable: false });
  });
});

describe('openai adapter: a 200 whose body is an error (LM Studio)', () => {
  // LM Studio answers a path it does not serve (a base_url without /v1) with 200, content-type
  // application/json and this body (lmstudio-bug-tracker#618).
  const lms = (path: string) => fixture('lmstudio-error-200-unexpected-endpoint.json').then((b) => b.replace('/chat/completions', path));
  const json = { 'content-type': 'application/json; charset=utf-8', 'x-powered-by': 'Express' };

  it('chat: raised with the server’s words as a missing route (not_found: not retried, the next deployment tried), not as malformed', async () => {
    server.reply({ headers: json, body: await lms('/chat/completions') });
    const err = (await rejection(provider.chat(req, opts()))) as UpstreamError;
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ kind: 'not_found', retryable: false, provider: 'llama' });
    expect(err.message).toContain('Unexpected endpoint or method. (POST /chat/completions)');
    expect(server.requests).toHaveLength(1);
  });

  it('stream: the same JSON body instead of events is raised before any chunk, with the server’s words', async () => {
    server.reply({ headers: json, body: await lms('/chat/completions') });
    const err = (await rejection(provider.streamChat({ ...req, stream: true }, opts()))) as UpstreamError;
    expect(err).toMatchObject({ kind: 'not_found', retryable: false });
    expect(err.message).toContain('Unexpected endpoint or method');
  });

  it('legacy /completions (JSON and stream) and embeddings: the same', async () => {
    const prompt = 'Once upon a time';
    const text: ChatRequest = { ...req, messages: [{ role: 'user', content: prompt }], text_completion: { prompt } };
    server.reply({ headers: json, body: await lms('/completions') });
    expect(await rejection(provider.chat(text, opts()))).toMatchObject({ kind: 'not_found', message: expect.stringContaining('(POST /completions)') });
    expect(await rejection(provider.streamChat({ ...text, stream: true }, opts()))).toMatchObject({ kind: 'not_found' });
    server.reply({ headers: json, body: await lms('/embeddings') });
    expect(await rejection(provider.embed({ model: 'emb', input: 'hi' }, opts()))).toMatchObject({ kind: 'not_found', message: expect.stringContaining('(POST /embeddings)') });
  });

  it('an {error: {message, type}} object with a 200 is classified as that body with a non-2xx would be', async () => {
    server.reply({ headers: json, body: JSON.stringify({ error: { message: 'This model’s maximum context length is 4096 tokens.', type: 'invalid_request_error', code: 'context_length_exceeded' } }) });
    expect(await rejection(provider.chat(req, opts()))).toMatchObject({ kind: 'context_length', status: 400, retryable: false });
    server.reply({ headers: json, body: JSON.stringify({ error: { message: 'Invalid value for temperature', type: 'invalid_request_error' } }) });
    expect(await rejection(provider.chat(req, opts()))).toMatchObject({ kind: 'bad_request', retryable: false, message: expect.stringContaining('Invalid value for temperature') });
    // One that names no status is a server failure, retryable as a 500 is.
    server.reply({ headers: json, body: JSON.stringify({ error: 'model crashed' }) });
    expect(await rejection(provider.chat(req, opts()))).toMatchObject({ kind: 'server', retryable: true, message: expect.stringContaining('model crashed') });
  });

  it('a body with choices beside an error member is an answer, not an error', async () => {
    server.reply({ headers: json, body: JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'qwen', error: null, choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }] }) });
    expect((await provider.chat(req, opts())).choices[0]?.message.content).toBe('ok');
  });
});

describe('openai adapter: n > 1 to a server that answers fewer choices, or refuses n', () => {
  // Ollama's /v1 reads no `n` and always builds one choice.
  const oneChoice = (content: string) =>
    JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'llama3.2', system_fingerprint: 'fp_ollama', choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }], usage: { prompt_tokens: 10, completion_tokens: 2, total_tokens: 12 } });
  const sentBodies = () => server.requests.map((r) => JSON.parse(r.body) as Record<string, unknown>);

  it('native (the default): an answer with one choice for n = 3 is completed by single-choice calls — 3 choices, usage summed, seeds apart', async () => {
    let i = 0;
    server.reply(() => ({ body: oneChoice(`idea ${i++}`) }));
    const result = await provider.chat({ ...req, n: 3, seed: 7 }, opts());
    expect(result.choices.map((c) => [c.index, c.message.content])).toEqual([
      [0, 'idea 0'],
      [1, 'idea 1'],
      [2, 'idea 2'],
    ]);
    expect(result.usage).toMatchObject({ prompt_tokens: 30, completion_tokens: 6, total_tokens: 36 });
    const bodies = sentBodies();
    expect(bodies.map((b) => [b.n, b.seed])).toEqual([
      [3, 7],
      [1, 8],
      [1, 9],
    ]);
    for (const b of bodies) if (spec) expect(spec.errors('CreateChatCompletionRequest', b)).toEqual([]);
  });

  it('native: a server that answers all n choices is called once', async () => {
    const two = JSON.parse(oneChoice('a')) as { choices: object[] };
    two.choices.push({ index: 1, message: { role: 'assistant', content: 'b' }, finish_reason: 'stop' });
    server.reply({ body: JSON.stringify(two) });
    const result = await provider.chat({ ...req, n: 2 }, opts());
    expect(result.choices.map((c) => c.message.content)).toEqual(['a', 'b']);
    expect(server.requests).toHaveLength(1);
  });

  it('options.choices: fan_out sends n single-choice calls (llama-server refuses n != 1 with a 500) and refuses a stream with n > 1', async () => {
    const refusal = await fixture('llamaserver-error-500-n.json');
    const fan = createOpenAIProvider('llama-fan', { type: 'openai', base_url: `${server.url}/v1`, options: { choices: 'fan_out' } });
    try {
      let i = 0;
      server.reply((r) => ((JSON.parse(r.body) as { n?: number }).n ?? 1) !== 1 ? { status: 500, body: refusal } : { body: oneChoice(`idea ${i++}`) });
      const result = await fan.chat({ ...req, n: 2 }, opts());
      expect(result.choices.map((c) => c.index)).toEqual([0, 1]);
      expect(new Set(result.choices.map((c) => c.message.content))).toEqual(new Set(['idea 0', 'idea 1']));
      expect(sentBodies().map((b) => b.n)).toEqual([1, 1]);
      const err = (await rejection(fan.streamChat({ ...req, n: 2, stream: true }, opts()))) as UpstreamError;
      expect(err).toMatchObject({ kind: 'unsupported', retryable: false });
      expect(server.requests).toHaveLength(2);
      // n = 1 streams as ever.
      server.reply({ headers: sse, body: await fixture('llamaserver-stream-usage-after-finish.chunks.txt') });
      const { err: none } = await streamed(fan, { ...req, stream: true });
      expect(none).toBeUndefined();
    } finally {
      await fan.close();
    }
  });

  it('options.choices other than native or fan_out is refused at start-up', () => {
    expect(() => createOpenAIProvider('x', { type: 'openai', base_url: `${server.url}/v1`, options: { choices: 'many' } })).toThrow(/options\.choices must be "native" or "fan_out"/);
  });
});

describe('openai adapter: Ollama’s /v1 (it reads only max_tokens, and no n)', () => {
  it('is told by its port 11434 and a /v1 path, nothing else', () => {
    expect(isOllamaV1('http://127.0.0.1:11434/v1')).toBe(true);
    expect(isOllamaV1('http://gpu-box:11434/v1/')).toBe(true);
    expect(isOllamaV1('http://127.0.0.1:11434')).toBe(false); // the native API: type ollama
    expect(isOllamaV1('http://127.0.0.1:1234/v1')).toBe(false); // LM Studio
    expect(isOllamaV1('http://10.0.0.5:8000/v1')).toBe(false);
  });

  it('there, a client’s max_completion_tokens goes as max_tokens and n fans out, unless the options say otherwise', () => {
    const ollama = createOpenAIProvider('ollama-v1', { type: 'openai', base_url: 'http://127.0.0.1:11434/v1' });
    const limited: ChatRequest = { ...req, max_completion_tokens: 16, token_limit_field: 'max_completion_tokens' };
    const body = ollama.buildBody(limited, false);
    expect(body.max_tokens).toBe(16);
    expect(body.max_completion_tokens).toBeUndefined();
    expect(ollama.options.choices).toBe('fan_out');
    const told = createOpenAIProvider('ollama-v1', { type: 'openai', base_url: 'http://127.0.0.1:11434/v1', options: { max_tokens_field: 'max_completion_tokens', choices: 'native' } });
    expect(told.buildBody(limited, false).max_completion_tokens).toBe(16);
    expect(told.options.choices).toBe('native');
    // Elsewhere the client's own field, as before.
    expect(provider.buildBody(limited, false)).toMatchObject({ max_completion_tokens: 16 });
    void ollama.close();
    void told.close();
  });

  it('options.max_tokens_field of another value is refused at start-up (it was ignored)', () => {
    expect(() => createOpenAIProvider('x', { type: 'openai', options: { max_tokens_field: 'max_output_tokens' } })).toThrow(/max_tokens_field must be/);
  });
});
