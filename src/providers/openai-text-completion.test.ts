// The openai adapter's legacy text completions: a request carrying the /v1/completions route's raw
// prompt goes to `{base}/completions` (a compatible server, or api.openai.com's completion models)
// with the body OpenAI's CreateCompletionRequest allows, and the answers (OpenAI's, vLLM's with echo
// and legacy logprobs, llama.cpp's server's) come back canonical; elsewhere it is served through chat.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChatRequest } from '../canonical/chat.js';
import { foldChunks, resultToChunks } from '../canonical/convert.js';
import { collect, fixture, startFixtureServer, type FixtureServer } from './__fixtures__/fixture-server.js';
import { specForTests } from './__fixtures__/openai-spec.js';
import { UpstreamError } from './errors.js';
import { createOpenAIProvider, type OpenAIProvider } from './openai.js';
import type { CallOptions } from './types.js';

const spec = specForTests('openai-text-completion.test');

/** A body sent to /completions is a valid CreateCompletionRequest and has no field outside it. */
function expectValidCompletionRequest(body: unknown): void {
  if (!spec) return;
  expect(spec.errors('CreateCompletionRequest', body)).toEqual([]);
  const known = spec.properties('CreateCompletionRequest');
  expect(Object.keys(body as object).filter((k) => !known.has(k))).toEqual([]);
}

let server: FixtureServer;
let vllm: OpenAIProvider;
const sse = { 'content-type': 'text/event-stream' };
const opts = (): CallOptions => ({ signal: new AbortController().signal, timeoutMs: 5000, requestId: 'req-1' });

/** A request as the /v1/completions route makes it: the prompt as one user message and as raw text. */
function textRequest(prompt: string, extra: Partial<ChatRequest> = {}, raw: Partial<NonNullable<ChatRequest['text_completion']>> = {}): ChatRequest {
  return { model: 'Qwen/Qwen2.5-Coder-1.5B', messages: [{ role: 'user', content: prompt }], text_completion: { prompt, ...raw }, ...extra };
}

const lastBody = () => JSON.parse(server.requests.at(-1)?.body ?? '{}') as Record<string, unknown>;

beforeAll(async () => {
  server = await startFixtureServer();
  vllm = createOpenAIProvider('vllm', { type: 'openai', base_url: `${server.url}/v1` });
});
afterAll(async () => {
  await vllm.close();
  await server.close();
});
beforeEach(() => {
  server.requests.length = 0;
});

describe('openai provider: which servers complete raw text', () => {
  it('a compatible server does by default; api.openai.com only for its completion models; options.completions decides for either', () => {
    expect(vllm.completesRawText('anything')).toBe(true);
    const official = createOpenAIProvider('openai', { type: 'openai' });
    for (const m of ['gpt-3.5-turbo-instruct', 'gpt-3.5-turbo-instruct-0914', 'davinci-002', 'babbage-002', 'ft:davinci-002:acme::abc123']) expect(official.completesRawText(m)).toBe(true);
    for (const m of ['gpt-4o-mini', 'gpt-3.5-turbo', 'davinci-0021']) expect(official.completesRawText(m)).toBe(false);
    expect(createOpenAIProvider('o', { type: 'openai', options: { completions: 'native' } }).completesRawText('gpt-4o-mini')).toBe(true);
    expect(createOpenAIProvider('v', { type: 'openai', base_url: 'http://127.0.0.1:1/v1', options: { completions: 'chat' } }).completesRawText('x')).toBe(false);
    expect(() => createOpenAIProvider('bad', { type: 'openai', options: { completions: 'raw' } })).toThrow(/options.completions must be "native" or "chat"/);
  });
});

describe('openai provider: text completions at /completions', () => {
  it('posts the raw prompt and the Completions API parameters, nothing of chat, and reads the answer', async () => {
    server.reply({ body: await fixture('openai-text-completion.json') });
    const req = textRequest('Say this is a test', {
      model: 'gpt-3.5-turbo-instruct',
      max_tokens: 7,
      temperature: 0,
      top_p: 1,
      n: 1,
      stop: ['\n\n\n'],
      seed: 42,
      user: 'user-1234',
      presence_penalty: 0.5,
      frequency_penalty: 0.25,
      logit_bias: { '50256': -100 },
      token_limit_field: 'max_tokens',
    });
    const result = await vllm.chat(req, opts());
    expect(server.requests[0]?.path).toBe('/v1/completions');
    const body = lastBody();
    expect(body).toEqual({
      model: 'gpt-3.5-turbo-instruct',
      prompt: 'Say this is a test',
      max_tokens: 7,
      temperature: 0,
      top_p: 1,
      n: 1,
      stop: ['\n\n\n'],
      seed: 42,
      user: 'user-1234',
      presence_penalty: 0.5,
      frequency_penalty: 0.25,
      logit_bias: { '50256': -100 },
    });
    expectValidCompletionRequest(body);
    expect(result.id).toBe('cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7');
    expect(result.model).toBe('gpt-3.5-turbo-instruct');
    expect(result.system_fingerprint).toBe('fp_44709d6fcb');
    expect(result.choices).toEqual([{ index: 0, message: { role: 'assistant', content: '\n\nThis is indeed a test', refusal: null }, finish_reason: 'length', logprobs: null }]);
    expect(result.usage).toEqual({ prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 });
    expect(result.prompt_echoed).toBeUndefined();
  });

  it('sends suffix, echo, the legacy integer logprobs and best_of, and keeps vLLM\'s legacy logprobs as they came', async () => {
    server.reply({ body: await fixture('openai-vllm-text-completion-echo-logprobs.json') });
    const req = textRequest('def fib(n):', { max_tokens: 3, logprobs: true, top_logprobs: 2, n: 1 }, { suffix: '\n\nprint(fib(10))', echo: true, logprobs: 2, best_of: 2 });
    const result = await vllm.chat(req, opts());
    const body = lastBody();
    expect(body).toEqual({ model: 'Qwen/Qwen2.5-Coder-1.5B', prompt: 'def fib(n):', suffix: '\n\nprint(fib(10))', echo: true, logprobs: 2, best_of: 2, max_tokens: 3, n: 1 });
    expectValidCompletionRequest(body);
    const choice = result.choices[0];
    // The upstream echoed the prompt: its text begins with it, and the result says so.
    expect(result.prompt_echoed).toBe(true);
    expect(choice?.message.content).toBe('def fib(n):\n    return');
    expect(choice?.text_logprobs?.tokens).toEqual(['def', ' fib', '(n', '):', '\n', '    ', 'return']);
    expect(choice?.text_logprobs?.token_logprobs[0]).toBeNull();
    expect(choice?.text_logprobs?.top_logprobs?.[1]).toEqual({ ' fib': -3.912, ' main': -1.604 });
    expect(choice?.text_logprobs?.text_offset).toEqual([0, 3, 7, 9, 11, 12, 16]);
    expect(result.usage).toEqual({ prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 });
  });

  it('reads llama.cpp\'s server logprobs (chat\'s content list) as canonical logprobs', async () => {
    server.reply({ body: await fixture('openai-llamacpp-text-completion-logprobs.json') });
    const result = await vllm.chat(textRequest('Once upon a time', { max_tokens: 2, logprobs: true, top_logprobs: 1 }, { logprobs: 1 }), opts());
    const choice = result.choices[0];
    expect(choice?.message.content).toBe(' there was');
    expect(choice?.text_logprobs).toBeUndefined();
    expect(choice?.logprobs?.content?.map((t) => [t.token, t.logprob])).toEqual([
      [' there', -0.341],
      [' was', -0.052],
    ]);
    expect(choice?.logprobs?.content?.[0]?.top_logprobs[1]).toEqual({ token: ' a', logprob: -1.622, bytes: [32, 97] });
    expect(result.usage.prompt_tokens_details).toEqual({ cached_tokens: 0 });
  });

  it('streams text_completion chunks: text, legacy logprobs per chunk, the finish, then the usage', async () => {
    server.reply({ headers: sse, body: await fixture('openai-vllm-text-completion-stream.chunks.txt') });
    const req = textRequest('def fib(n):', { stream: true, max_tokens: 4, logprobs: true, top_logprobs: 1 }, { logprobs: 1 });
    const chunks = await collect(await vllm.streamChat(req, opts()));
    const body = lastBody();
    expect(server.requests[0]?.path).toBe('/v1/completions');
    expect(body).toEqual({ model: 'Qwen/Qwen2.5-Coder-1.5B', prompt: 'def fib(n):', logprobs: 1, max_tokens: 4, stream: true, stream_options: { include_usage: true } });
    expectValidCompletionRequest(body);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('\n    return n');
    expect(chunks.flatMap((c) => c.choices[0]?.text_logprobs?.text_offset ?? [])).toEqual([0, 1, 5, 11]);
    expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe('length');
    expect(chunks.at(-1)).toMatchObject({ id: 'cmpl-5b2e90c4', choices: [], usage: { prompt_tokens: 4, completion_tokens: 4, total_tokens: 8 } });
    // Folded (a stored stream) and replayed, the legacy logprobs come back whole.
    const folded = foldChunks(chunks);
    expect(folded.choices[0]?.text_logprobs?.tokens).toEqual(['\n', '    ', 'return', ' n']);
    expect(folded.choices[0]?.text_logprobs?.top_logprobs).toHaveLength(4);
    expect(foldChunks(resultToChunks(folded)).choices[0]?.text_logprobs).toEqual(folded.choices[0]?.text_logprobs);
  });

  it('streams from llama.cpp\'s server, whose every chunk carries a running usage: the last one counts', async () => {
    server.reply({ headers: sse, body: await fixture('openai-llamacpp-text-completion-stream.chunks.txt') });
    const chunks = await collect(await vllm.streamChat(textRequest('Once upon a time', { stream: true, max_tokens: 3 }), opts()));
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Once there was');
    expect(chunks.at(-1)?.usage).toEqual({ prompt_tokens: 6, completion_tokens: 3, total_tokens: 9, prompt_tokens_details: { cached_tokens: 0 } });
    expect(chunks.at(-1)?.system_fingerprint).toBe('b5910-4a5f8e91');
  });

  it('sends echo only with logprobs (the prompt\'s log-probabilities), marking every chunk of that stream as echoed', async () => {
    const chunk = (text: string, finish: string | null) => `data: ${JSON.stringify({ id: 'cmpl-e', object: 'text_completion', created: 1, model: 'm', choices: [{ index: 0, text, logprobs: null, finish_reason: finish }] })}\n\n`;
    server.reply({ headers: sse, body: chunk('Hi', null) + chunk(' there', 'stop') + 'data: [DONE]\n\n' });
    const echoed = await collect(await vllm.streamChat(textRequest('Hi', { stream: true, logprobs: true, top_logprobs: 0 }, { echo: true, logprobs: 0 }), opts()));
    expect(lastBody()).toMatchObject({ echo: true, logprobs: 0 });
    expect(echoed.every((c) => c.prompt_echoed === true)).toBe(true);
    expect(foldChunks(echoed).prompt_echoed).toBe(true);
    // Echo alone is the route's to do (llama.cpp's server refuses echo): not sent, nothing marked.
    server.reply({ headers: sse, body: chunk(' there', 'stop') + 'data: [DONE]\n\n' });
    const plain = await collect(await vllm.streamChat(textRequest('Hi', { stream: true }, { echo: true }), opts()));
    expect(lastBody()).not.toHaveProperty('echo');
    expect(plain.some((c) => c.prompt_echoed)).toBe(false);
  });

  it('is stream_interrupted when the stream stops before [DONE] and the finish', async () => {
    const body = `data: ${JSON.stringify({ id: 'cmpl-t', object: 'text_completion', created: 1, model: 'm', choices: [{ index: 0, text: 'half', finish_reason: null }] })}\n\n`;
    server.reply({ headers: sse, body });
    const err = await collect(await vllm.streamChat(textRequest('x', { stream: true }), opts())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as UpstreamError).kind).toBe('stream_interrupted');
  });
});

describe('openai provider: a text completion served through chat', () => {
  it('sends the user message to /chat/completions without the raw prompt where completions is chat (api.openai.com\'s chat models)', async () => {
    const chatOnly = createOpenAIProvider('as-official', { type: 'openai', base_url: `${server.url}/v1`, options: { completions: 'chat' } });
    try {
      server.reply({ body: await fixture('openai-chat.json') });
      await chatOnly.chat(textRequest('Say hello', { max_tokens: 5 }, { echo: true }), opts());
      expect(server.requests[0]?.path).toBe('/v1/chat/completions');
      expect(lastBody()).toEqual({ model: 'Qwen/Qwen2.5-Coder-1.5B', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 5 });
      // What chat cannot do is refused before any call, as a fault of this deployment (the router moves on).
      for (const [raw, param] of [
        [{ suffix: 'end' }, 'suffix'],
        [{ echo: true, logprobs: 1 }, 'logprobs'],
        [{ best_of: 3 }, 'best_of'],
      ] as const) {
        const err = await chatOnly.chat(textRequest('x', {}, raw), opts()).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(UpstreamError);
        expect((err as UpstreamError).kind).toBe('unsupported');
        expect((err as UpstreamError).body).toMatchObject({ error: { param } });
      }
      expect(server.requests).toHaveLength(1);
    } finally {
      await chatOnly.close();
    }
  });
});

describe('openai provider: a server without /completions', () => {
  // What such servers answer at /completions: Groq (no such route), api.openai.com for a chat model,
  // Azure OpenAI for a chat deployment.
  const groq404 = JSON.stringify({ error: { message: 'Unknown request URL: POST /openai/v1/completions. Please check the URL for typos, or see the docs at https://console.groq.com/docs/', type: 'invalid_request_error', code: 'unknown_url' } });
  const openAiChatModel404 = JSON.stringify({ error: { message: 'This is a chat model and not supported in the v1/completions endpoint. Did you mean to use v1/chat/completions?', type: 'invalid_request_error', param: 'model', code: null } });
  const azure400 = JSON.stringify({ error: { code: 'OperationNotSupported', message: 'The completion operation does not work with the specified model, gpt-4o. Please choose different model and try again.' } });

  /** A hosted chat API: `refusal` at /completions, the chat fixture at /chat/completions. */
  async function chatApi(refusal: { status: number; body: string }, stream = false) {
    const [json, chunks] = [await fixture('openai-chat.json'), await fixture('openai-chat-stream.chunks.txt')];
    server.reply((r) => (r.path.endsWith('/chat/completions') ? (stream ? { headers: sse, body: chunks } : { body: json }) : refusal));
  }
  const paths = () => server.requests.map((r) => r.path);

  for (const [name, refusal] of [
    ['Groq\'s 404', { status: 404, body: groq404 }],
    ['OpenAI\'s 404 for a chat model (through a proxy host)', { status: 404, body: openAiChatModel404 }],
    ['Azure\'s 400 OperationNotSupported', { status: 400, body: azure400 }],
  ] as const) {
    it(`answers through chat after ${name}, and goes to chat at once for that model from then on`, async () => {
      const hosted = createOpenAIProvider('hosted', { type: 'openai', base_url: `${server.url}/openai/v1` });
      try {
        await chatApi(refusal);
        const first = await hosted.chat(textRequest('Say hello', { max_tokens: 5 }), opts());
        expect(paths()).toEqual(['/openai/v1/completions', '/openai/v1/chat/completions']);
        expect(lastBody()).toEqual({ model: 'Qwen/Qwen2.5-Coder-1.5B', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 5 });
        expect(first.choices[0]?.message.content).toBeTruthy();
        expect(hosted.completesRawText('Qwen/Qwen2.5-Coder-1.5B')).toBe(false);
        expect(hosted.completesRawText('another-model')).toBe(true);
        server.requests.length = 0;
        await hosted.chat(textRequest('Say hello again'), opts());
        expect(paths()).toEqual(['/openai/v1/chat/completions']);
      } finally {
        await hosted.close();
      }
    });
  }

  it('falls back for a stream too, before any chunk', async () => {
    const hosted = createOpenAIProvider('hosted', { type: 'openai', base_url: `${server.url}/openai/v1` });
    try {
      await chatApi({ status: 404, body: groq404 }, true);
      const chunks = await collect(await hosted.streamChat(textRequest('Say hello', { stream: true }), opts()));
      expect(paths()).toEqual(['/openai/v1/completions', '/openai/v1/chat/completions']);
      expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBeTruthy();
      expect(chunks.at(-1)?.usage).toBeDefined();
    } finally {
      await hosted.close();
    }
  });

  it('does not fall back where the operator chose native, nor for what chat cannot do, nor remember a model chat could not serve either', async () => {
    const native = createOpenAIProvider('native', { type: 'openai', base_url: `${server.url}/openai/v1`, options: { completions: 'native' } });
    const hosted = createOpenAIProvider('hosted', { type: 'openai', base_url: `${server.url}/openai/v1` });
    try {
      await chatApi({ status: 404, body: groq404 });
      const err = await native.chat(textRequest('x'), opts()).catch((e: unknown) => e);
      expect([(err as UpstreamError).kind, (err as UpstreamError).status]).toEqual(['not_found', 404]);
      expect(paths()).toEqual(['/openai/v1/completions']);
      // A suffix needs raw text: the 404 becomes this deployment's `unsupported` (the router moves on).
      server.requests.length = 0;
      const suffix = await hosted.chat(textRequest('def f(', {}, { suffix: ')' }), opts()).catch((e: unknown) => e);
      expect((suffix as UpstreamError).kind).toBe('unsupported');
      expect(paths()).toEqual(['/openai/v1/completions']);
      expect(hosted.completesRawText('Qwen/Qwen2.5-Coder-1.5B')).toBe(true);
      // A 400 refusing one of the request's parameters is that request's answer, not a missing endpoint.
      server.requests.length = 0;
      server.reply({ status: 400, body: JSON.stringify({ error: { message: "Unsupported value: 'temperature' does not support 1.9 with this model. Only the default (1) value is supported.", type: 'invalid_request_error', param: 'temperature', code: 'unsupported_value' } }) });
      const param = await hosted.chat(textRequest('x', { temperature: 1.9 }), opts()).catch((e: unknown) => e);
      expect((param as UpstreamError).status).toBe(400);
      expect(paths()).toEqual(['/openai/v1/completions']);
      expect(hosted.completesRawText('Qwen/Qwen2.5-Coder-1.5B')).toBe(true);
      // A model the server does not have (vLLM's, OpenAI's 404): that is the answer, with no second
      // call through chat, and nothing is remembered.
      for (const body of [
        { error: { message: 'The model `nope` does not exist.', type: 'NotFoundError', code: 404 } },
        { error: { message: 'The model `nope` does not exist or you do not have access to it.', type: 'invalid_request_error', param: null, code: 'model_not_found' } },
      ]) {
        server.requests.length = 0;
        server.reply({ status: 404, body: JSON.stringify(body) });
        const missing = await hosted.chat(textRequest('x', { model: 'nope' }), opts()).catch((e: unknown) => e);
        expect((missing as UpstreamError).status).toBe(404);
        expect(paths()).toEqual(['/openai/v1/completions']);
        expect(hosted.completesRawText('nope')).toBe(true);
      }
    } finally {
      await native.close();
      await hosted.close();
    }
  });
});

describe('openai provider: a server that ignores echo', () => {
  // Ollama's /v1 CompletionRequest has no `echo`: the text comes back without the prompt.
  const answer = { id: 'cmpl-o', object: 'text_completion', created: 1, model: 'llama3.2', choices: [{ index: 0, text: ' there', finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } };

  it('does not mark an answer echoed whose text does not begin with the prompt, so the route puts the prompt in front', async () => {
    server.reply({ body: JSON.stringify(answer) });
    const result = await vllm.chat(textRequest('Hi', { logprobs: true, top_logprobs: 0 }, { echo: true, logprobs: 0 }), opts());
    expect(lastBody()).toMatchObject({ echo: true, logprobs: 0 });
    expect(result.prompt_echoed).toBeUndefined();
    const chunk = (text: string, finish: string | null) => `data: ${JSON.stringify({ ...answer, usage: undefined, choices: [{ index: 0, text, finish_reason: finish }] })}\n\n`;
    server.reply({ headers: sse, body: chunk(' there', null) + chunk('!', 'stop') + 'data: [DONE]\n\n' });
    const chunks = await collect(await vllm.streamChat(textRequest('Hi', { stream: true, logprobs: true, top_logprobs: 0 }, { echo: true, logprobs: 0 }), opts()));
    expect(chunks.some((c) => c.prompt_echoed)).toBe(false);
    // One that does echo, the prompt split over its first pieces, is marked.
    server.reply({ headers: sse, body: chunk('H', null) + chunk('i', null) + chunk(' there', 'stop') + 'data: [DONE]\n\n' });
    const echoed = await collect(await vllm.streamChat(textRequest('Hi', { stream: true, logprobs: true, top_logprobs: 0 }, { echo: true, logprobs: 0 }), opts()));
    expect(echoed.every((c) => c.prompt_echoed)).toBe(true);
  });
});
