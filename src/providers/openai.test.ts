import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChatChunk, ChatRequest } from '../canonical/chat.js';
import { foldChunks, resultToChunks } from '../canonical/convert.js';
import { collect, fixture, rejection, startFixtureServer, type FixtureServer } from './__fixtures__/fixture-server.js';
import { specForTests } from './__fixtures__/openai-spec.js';
import { UpstreamError } from './errors.js';
import { chunkSchema, completionSchema, createOpenAIProvider, finishReasonFromOpenAI, plainChunk, plainCompletion, type OpenAIProvider } from './openai.js';
import { createProvider } from './registry.js';
import { countPromptTokens, countTextTokens } from './tokens.js';
import type { CallOptions } from './types.js';

const spec = specForTests('openai.test');

/** Asserts a body the adapter sent is a valid request per OpenAI's spec and uses no unknown field. */
function expectValidAgainstSpec(schemaName: string, body: unknown): void {
  if (!spec) return;
  expect(spec.errors(schemaName, body)).toEqual([]);
  const known = spec.properties(schemaName);
  expect(Object.keys(body as object).filter((k) => !known.has(k))).toEqual([]);
}

let server: FixtureServer;
let provider: OpenAIProvider;

const opts = (signal: AbortSignal = new AbortController().signal): CallOptions => ({ signal, timeoutMs: 5000, requestId: 'req-1' });
const baseReq: ChatRequest = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }] };

beforeAll(async () => {
  server = await startFixtureServer();
  provider = createOpenAIProvider('test-openai', {
    type: 'openai',
    base_url: `${server.url}/v1`,
    api_key: 'sk-test-123',
    headers: { 'openai-organization': 'org-test' },
  });
});
afterAll(async () => {
  await provider.close();
  await server.close();
});
beforeEach(() => {
  server.requests.length = 0;
});

const sse = { 'content-type': 'text/event-stream' };

describe('openai provider: chat (JSON)', () => {
  it('posts the canonical request to /chat/completions with bearer auth and configured headers', async () => {
    server.reply({ body: await fixture('openai-chat.json') });
    const result = await provider.chat({ ...baseReq, temperature: 0.2, max_tokens: 50, user: undefined }, opts());
    const [req] = server.requests;
    expect(req?.method).toBe('POST');
    expect(req?.path).toBe('/v1/chat/completions');
    expect(req?.headers.authorization).toBe('Bearer sk-test-123');
    expect(req?.headers['openai-organization']).toBe('org-test');
    expect(req?.headers['content-type']).toBe('application/json');
    const body = JSON.parse(req?.body ?? '{}');
    expect(body).toEqual({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }], temperature: 0.2, max_tokens: 50 });
    expectValidAgainstSpec('CreateChatCompletionRequest', body);

    expect(result.id).toBe('chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG');
    expect(result.model).toBe('gpt-4o-2024-08-06');
    expect(result.choices[0]?.message.content).toMatch(/^The image shows/);
    // The upstream's `refusal: null` is kept, so the OpenAI route answers with it as sent.
    expect(result.choices[0]?.message).toHaveProperty('refusal', null);
    expect(result.choices[0]?.finish_reason).toBe('stop');
    expect(result.usage).toEqual({
      prompt_tokens: 1117,
      completion_tokens: 46,
      total_tokens: 1163,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    });
    expect(result.system_fingerprint).toBe('fp_fc9f1d7035');
    expect(result.service_tier).toBe('default');
  });

  it('passes tools, tool_choice, response_format, n, stop, seed, user and logprobs through and maps tool calls', async () => {
    server.reply({ body: await fixture('openai-chat-tools.json') });
    const req: ChatRequest = {
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'text', text: 'Weather in Boston?' }, { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } }] },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_0', type: 'function', function: { name: 'get_current_weather', arguments: '{"location":"NYC"}' } }] },
        { role: 'tool', tool_call_id: 'call_0', content: '{"temp":20}' },
      ],
      tools: [{ type: 'function', function: { name: 'get_current_weather', description: 'Weather now', parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } } }],
      tool_choice: { type: 'function', function: { name: 'get_current_weather' } },
      parallel_tool_calls: false,
      response_format: { type: 'json_schema', json_schema: { name: 'answer', schema: { type: 'object', properties: { a: { type: 'string' } } }, strict: true } },
      n: 2,
      stop: ['END'],
      seed: 7,
      user: 'user-42',
      logprobs: true,
      top_logprobs: 2,
      presence_penalty: 0.5,
      frequency_penalty: 0.1,
      max_completion_tokens: 100,
    };
    const result = await provider.chat(req, opts());
    const body = JSON.parse(server.requests[0]?.body ?? '{}');
    // A compatible server (not api.openai.com) gets the token limit as max_tokens.
    const { max_completion_tokens: limit, ...rest } = req;
    expect(body).toEqual(JSON.parse(JSON.stringify({ ...rest, max_tokens: limit })));
    expectValidAgainstSpec('CreateChatCompletionRequest', body);
    expect(result.choices[0]?.message.content).toBeNull();
    expect(result.choices[0]?.message.tool_calls).toEqual([
      { id: 'call_abc123', type: 'function', function: { name: 'get_current_weather', arguments: '{\n"location": "Boston, MA"\n}' } },
    ]);
    expect(result.choices[0]?.finish_reason).toBe('tool_calls');
  });

  it('sends the token limit as max_completion_tokens to api.openai.com whichever field the client used, and a limit the gateway set as max_tokens elsewhere', async () => {
    expect(createOpenAIProvider('official', { type: 'openai' }).options.max_tokens_field).toBe('max_completion_tokens');
    // Elsewhere nothing is fixed: the field the client used (the next test), max_tokens for a limit the gateway set.
    expect(createOpenAIProvider('vllm', { type: 'openai', base_url: `${server.url}/v1` }).options.max_tokens_field).toBeUndefined();
    const official = createOpenAIProvider('as-official', { type: 'openai', base_url: `${server.url}/v1`, options: { max_tokens_field: 'max_completion_tokens' } });
    try {
      server.reply({ body: await fixture('openai-chat.json') });
      await official.chat({ model: 'o3-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 64 }, opts());
      const body = JSON.parse(server.requests[0]?.body ?? '{}');
      expect(body.max_completion_tokens).toBe(64);
      expect(body).not.toHaveProperty('max_tokens');
      expectValidAgainstSpec('CreateChatCompletionRequest', body);
    } finally {
      await official.close();
    }
    server.reply({ body: await fixture('openai-chat.json') });
    await provider.chat({ model: 'llama', messages: [{ role: 'user', content: 'hi' }], max_completion_tokens: 32 }, opts());
    const compatible = JSON.parse(server.requests[1]?.body ?? '{}');
    expect(compatible.max_tokens).toBe(32);
    expect(compatible).not.toHaveProperty('max_completion_tokens');
  });

  it("keeps the field the OpenAI client used for a compatible server (Azure, OpenRouter, LiteLLM front reasoning models), unless options.max_tokens_field says", async () => {
    const sent = async (p: OpenAIProvider, req: Partial<ChatRequest>) => {
      server.requests.length = 0;
      server.reply({ body: await fixture('openai-chat.json') });
      await p.chat({ model: 'o3-mini', messages: [{ role: 'user', content: 'hi' }], ...req }, opts());
      const body = JSON.parse(server.requests[0]?.body ?? '{}') as Record<string, unknown>;
      expectValidAgainstSpec('CreateChatCompletionRequest', body);
      return Object.keys(body).filter((k) => k.startsWith('max_')).map((k) => `${k}=${String(body[k])}`);
    };
    // The OpenAI route marks the field its client used (token_limit_field).
    expect(await sent(provider, { max_completion_tokens: 32, token_limit_field: 'max_completion_tokens' })).toEqual(['max_completion_tokens=32']);
    expect(await sent(provider, { max_tokens: 32, token_limit_field: 'max_tokens' })).toEqual(['max_tokens=32']);
    // A limit the gateway set (the Anthropic and Responses routes' max_completion_tokens): max_tokens, as every compatible server reads it.
    expect(await sent(provider, { max_completion_tokens: 32 })).toEqual(['max_tokens=32']);
    const fixed = createOpenAIProvider('fixed', { type: 'openai', base_url: `${server.url}/v1`, options: { max_tokens_field: 'max_tokens' } });
    try {
      expect(await sent(fixed, { max_completion_tokens: 32, token_limit_field: 'max_completion_tokens' })).toEqual(['max_tokens=32']);
    } finally {
      await fixed.close();
    }
  });

  it('sends no Authorization header when no key is configured, and developer messages as system to compatible servers', async () => {
    const local = createOpenAIProvider('local-vllm', { type: 'openai', base_url: `${server.url}/v1` });
    try {
      server.reply({ body: await fixture('openai-chat.json') });
      await local.chat({ model: 'llama', messages: [{ role: 'developer', content: 'Rules' }, { role: 'user', content: 'hi' }] }, opts());
      expect(server.requests[0]?.headers.authorization).toBeUndefined();
      expect(JSON.parse(server.requests[0]?.body ?? '{}').messages[0]).toEqual({ role: 'system', content: 'Rules' });
    } finally {
      await local.close();
    }
    const keep = createOpenAIProvider('dev', { type: 'openai', base_url: `${server.url}/v1`, options: { developer_as_system: false } });
    try {
      server.reply({ body: await fixture('openai-chat.json') });
      await keep.chat({ model: 'gpt-4o', messages: [{ role: 'developer', content: 'Rules' }] }, opts());
      const body = JSON.parse(server.requests[1]?.body ?? '{}');
      expect(body.messages[0]).toEqual({ role: 'developer', content: 'Rules' });
      expectValidAgainstSpec('CreateChatCompletionRequest', body);
    } finally {
      await keep.close();
    }
  });
});

describe('openai provider: documents', () => {
  it('passes file content parts through as OpenAI defines them', async () => {
    server.reply({ body: await fixture('openai-chat.json') });
    const file = { type: 'file' as const, file: { file_data: 'data:application/pdf;base64,JVBERi0x', filename: 'a.pdf' } };
    await provider.chat({ ...baseReq, messages: [{ role: 'user', content: [file, { type: 'text', text: 'Summarise' }] }] }, opts());
    const body = JSON.parse(server.requests[0]?.body ?? '{}');
    expect(body.messages[0].content[0]).toEqual(file);
    expectValidAgainstSpec('CreateChatCompletionRequest', body);
  });

  it('says it reads documents for api.openai.com only, unless options.files says otherwise', async () => {
    expect(createOpenAIProvider('o', { type: 'openai', api_key: 'k' }).files).toBe(true);
    expect(provider.files).toBe(false); // a compatible server (here the fixture server)
    const vllm = await createProvider('vllm', { type: 'openai', base_url: 'http://vllm:8000/v1', options: { files: true } });
    expect(vllm.files).toBe(true);
    await vllm.close();
    // Taken out before a type's own (strict) option check: local's refuses keys it does not know.
    const local = await createProvider('lp', { type: 'local', options: { models_dir: '/nonexistent-models', logprobs: true, files: false } }).catch((e: unknown) => e);
    expect(String(local)).not.toMatch(/invalid options/);
  });
});

describe('openai provider: log-probabilities', () => {
  it('returns the upstream\'s logprobs on a completion (fixture valid per the OpenAI response schema)', async () => {
    const body = await fixture('openai-chat-logprobs.json');
    if (spec) expect(spec.errors('CreateChatCompletionResponse', JSON.parse(body))).toEqual([]);
    // The hand check leaves log-probabilities to the schema.
    expect(plainCompletion(JSON.parse(body))).toBeUndefined();
    server.reply({ body });
    const result = await provider.chat({ ...baseReq, logprobs: true, top_logprobs: 2 }, opts());
    const sent = JSON.parse(server.requests[0]?.body ?? '{}');
    expect(sent).toMatchObject({ logprobs: true, top_logprobs: 2 });
    expectValidAgainstSpec('CreateChatCompletionRequest', sent);
    const lp = result.choices[0]?.logprobs;
    expect(lp?.content?.map((t) => t.token).join('')).toBe(result.choices[0]?.message.content);
    expect(lp?.content?.[0]).toEqual({
      token: 'Hello',
      logprob: -0.31725305,
      bytes: [72, 101, 108, 108, 111],
      top_logprobs: [
        { token: 'Hello', logprob: -0.31725305, bytes: [72, 101, 108, 108, 111] },
        { token: 'Hi', logprob: -1.3190403, bytes: [72, 105] },
      ],
    });
    expect(lp?.content?.[2]?.top_logprobs[1]).toEqual({ token: '<|end|>', logprob: -10.953937, bytes: null });
    expect(lp?.refusal).toBeUndefined();
  });

  it('carries each stream chunk\'s logprobs on that chunk', async () => {
    server.reply({ headers: sse, body: await fixture('openai-stream-logprobs.chunks.txt') });
    const chunks = await collect(await provider.streamChat({ ...baseReq, stream: true, logprobs: true, top_logprobs: 1 }, opts()));
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    const tokens = chunks.flatMap((c) => c.choices[0]?.logprobs?.content ?? []);
    expect(text).toBe('Hello wörld');
    expect(tokens.map((t) => t.token).join('')).toBe(text);
    expect(tokens.map((t) => t.logprob)).toEqual([-0.31725305, -1.5, -0.25]);
    // Each token on the chunk that carried its text.
    const second = chunks.find((c) => c.choices[0]?.delta.content === ' wörld');
    expect(second?.choices[0]?.logprobs?.content?.map((t) => t.token)).toEqual([' w', 'örld']);
    // A chunk the upstream sent with logprobs null has none.
    const finishing = chunks.find((c) => c.choices[0]?.finish_reason);
    expect(finishing).toBeDefined();
    expect(finishing?.choices[0]?.logprobs).toBeUndefined();
  });

  it('a completion without logprobs reports null', async () => {
    server.reply({ body: await fixture('openai-chat.json') });
    const result = await provider.chat(baseReq, opts());
    expect(result.choices[0]?.logprobs).toBeNull();
  });
});

describe('openai provider: prompt caching and reasoning in usage', () => {
  const answer = (usage: Record<string, unknown>) =>
    JSON.stringify({ id: 'chatcmpl-c', object: 'chat.completion', created: 1, model: 'gpt-4.1', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage });

  it('keeps the cached prompt tokens and the reasoning tokens the upstream reported, JSON and streamed', async () => {
    server.reply({ body: answer({ prompt_tokens: 2006, completion_tokens: 300, total_tokens: 2306, prompt_tokens_details: { cached_tokens: 1920, audio_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 256 } }) });
    const result = await provider.chat(baseReq, opts());
    expect(result.usage).toEqual({ prompt_tokens: 2006, completion_tokens: 300, total_tokens: 2306, prompt_tokens_details: { cached_tokens: 1920, audio_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 256 } });

    const usage = { prompt_tokens: 2006, completion_tokens: 1, total_tokens: 2007, prompt_tokens_details: { cached_tokens: 1024 } };
    server.reply({
      headers: sse,
      body: `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4.1","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\ndata: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4.1', choices: [], usage })}\n\ndata: [DONE]\n\n`,
    });
    const chunks = await collect(await provider.streamChat({ ...baseReq, stream: true }, opts()));
    expect(chunks.at(-1)?.usage).toEqual({ ...usage, prompt_tokens_details: { cached_tokens: 1024 } });
  });

  it("keeps predicted-output and audio token counts and the answer's service_tier, JSON and streamed; none when the upstream sent none", async () => {
    const details = {
      prompt_tokens: 40,
      completion_tokens: 30,
      total_tokens: 70,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 12 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 5, accepted_prediction_tokens: 18, rejected_prediction_tokens: 4 },
    };
    const body = { ...JSON.parse(answer(details)), service_tier: 'flex' };
    expect(plainCompletion(body)).toBeDefined();
    server.reply({ body: JSON.stringify(body) });
    const result = await provider.chat(baseReq, opts());
    expect(result.usage).toEqual(details);
    expect(result.service_tier).toBe('flex');
    server.reply({ body: answer({ prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 }) });
    const plain = await provider.chat(baseReq, opts());
    expect(plain.usage).toEqual({ prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 });
    expect(plain).not.toHaveProperty('service_tier');

    const chunk = (extra: Record<string, unknown>) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4.1', service_tier: 'flex', ...extra })}\n\n`;
    server.reply({ headers: sse, body: chunk({ choices: [{ index: 0, delta: { content: 'ok' }, finish_reason: 'stop' }] }) + chunk({ choices: [], usage: details }) + 'data: [DONE]\n\n' });
    const chunks = await collect(await provider.streamChat({ ...baseReq, stream: true }, opts()));
    expect(chunks.map((c) => c.service_tier)).toEqual(['flex', 'flex']);
    expect(chunks.at(-1)?.usage).toEqual(details);
    const folded = foldChunks(chunks);
    expect(folded.service_tier).toBe('flex');
    expect(foldChunks(resultToChunks(folded)).service_tier).toBe('flex');
  });

  it('reads a server that sends null details as having none, and refuses details that are not counts', async () => {
    server.reply({ body: answer({ prompt_tokens: 5, completion_tokens: 1, total_tokens: 6, prompt_tokens_details: null, completion_tokens_details: null }) });
    expect((await provider.chat(baseReq, opts())).usage).toEqual({ prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 });
    server.reply({ body: answer({ prompt_tokens: 5, completion_tokens: 1, total_tokens: 6, prompt_tokens_details: { cached_tokens: 'many' } }) });
    await expect(provider.chat(baseReq, opts())).rejects.toMatchObject({ kind: 'malformed' });
  });
});

describe('openai provider: streaming', () => {
  it('asks for include_usage, parses chunks split anywhere, and ends with the usage chunk', async () => {
    server.reply({ headers: sse, body: await fixture('openai-chat-stream.chunks.txt') });
    const stream = await provider.streamChat({ ...baseReq, stream: true, stream_options: { include_usage: false } }, opts());
    const chunks = await collect(stream);
    const body = JSON.parse(server.requests[0]?.body ?? '{}');
    expect(body.stream).toBe(true);
    expect(body.stream_options).toEqual({ include_usage: true });
    expect(server.requests[0]?.headers.accept).toBe('text/event-stream');
    expectValidAgainstSpec('CreateChatCompletionRequest', body);

    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello, wörld ✓');
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason).toBe('length');
    const last = chunks[chunks.length - 1] as ChatChunk;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: 9, completion_tokens: 4, total_tokens: 13, prompt_tokens_details: { cached_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 } });
    expect(chunks.filter((c) => c.usage).length).toBe(1);
    expect(last.id).toBe('chatcmpl-123');
    expect(last.system_fingerprint).toBe('fp_44709d6fcb');
  });

  it('streams tool-call deltas with index, id and name, and estimates usage when the upstream sends none', async () => {
    server.reply({ headers: sse, body: await fixture('openai-tool-stream.chunks.txt') });
    const req: ChatRequest = {
      ...baseReq,
      tools: [
        { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { location: { type: 'string' } } } } },
        { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } } },
      ],
      tool_choice: 'auto',
    };
    const chunks = await collect(await provider.streamChat(req, opts()));
    expectValidAgainstSpec('CreateChatCompletionRequest', JSON.parse(server.requests[0]?.body ?? '{}'));
    const calls = new Map<number, { id?: string; name?: string; args: string }>();
    for (const c of chunks) {
      for (const t of c.choices[0]?.delta.tool_calls ?? []) {
        const entry = calls.get(t.index) ?? { args: '' };
        if (t.id) entry.id = t.id;
        if (t.function?.name) entry.name = t.function.name;
        entry.args += t.function?.arguments ?? '';
        calls.set(t.index, entry);
      }
    }
    expect([...calls.entries()]).toEqual([
      [0, { id: 'call_DdmO9pD3xa9XTPNJ32zg2hcA', name: 'get_weather', args: '{"location":"Paris"}' }],
      [1, { id: 'call_2', name: 'get_time', args: '{"tz":"CET"}' }],
    ]);
    expect(chunks.some((c) => c.choices[0]?.finish_reason === 'tool_calls')).toBe(true);
    const last = chunks[chunks.length - 1] as ChatChunk;
    expect(last.choices).toEqual([]);
    expect(last.usage?.prompt_tokens).toBe(countPromptTokens(req.messages, req.tools));
    expect(last.usage?.completion_tokens).toBe(countTextTokens('get_weather{"location":"Paris"}get_time{"tz":"CET"}'));
  });

  it('gives each choice a role on its first delta, and each tool call an id and type on its first, when a compatible server sent none', async () => {
    const chunk = (delta: unknown, finish: string | null = null) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'up', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    // No role anywhere; the tool call's id empty (Gemini's endpoint) and its type only on the first delta.
    server.reply({
      headers: sse,
      body: chunk({ content: 'Let me check. ' }) + chunk({ tool_calls: [{ index: 0, id: '', type: 'function', function: { name: 'f', arguments: '' } }] }) + chunk({ tool_calls: [{ index: 0, function: { arguments: '{}' } }] }) + chunk({}, 'tool_calls') + 'data: [DONE]\n\n',
    });
    const chunks = await collect(await provider.streamChat({ ...baseReq, tools: [{ type: 'function', function: { name: 'f' } }] }, opts()));
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: 'assistant', content: 'Let me check. ' });
    expect(chunks.slice(1).some((c) => c.choices[0]?.delta.role !== undefined)).toBe(false);
    const folded = foldChunks(chunks);
    const call = folded.choices[0]?.message.tool_calls?.[0];
    expect(call).toMatchObject({ type: 'function', function: { name: 'f', arguments: '{}' } });
    expect(call?.id).toMatch(/^call_\w+$/);
  });

  it('gives a JSON answer’s tool call without an id (or with an empty one) an id of its own, rather than failing the answer', async () => {
    for (const id of [undefined, '']) {
      server.reply({
        body: JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'up', choices: [{ index: 0, finish_reason: 'tool_calls', message: { role: 'assistant', content: null, tool_calls: [{ ...(id === undefined ? {} : { id }), type: 'function', function: { name: 'f', arguments: '{}' } }] } }], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }),
      });
      const res = await provider.chat({ ...baseReq, tools: [{ type: 'function', function: { name: 'f' } }] }, opts());
      expect(res.choices[0]?.message.tool_calls?.[0]?.id).toMatch(/^call_\w+$/);
    }
  });

  it('counts usage locally for a compatible server that ignores include_usage', async () => {
    server.reply({ headers: sse, body: await fixture('openai-stream-no-usage.chunks.txt') });
    const chunks = await collect(await provider.streamChat(baseReq, opts()));
    const last = chunks[chunks.length - 1] as ChatChunk;
    const prompt = countPromptTokens(baseReq.messages);
    const completion = countTextTokens('Hello there friend');
    expect(last).toMatchObject({ choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } });
  });

  it('omits stream_options when configured off for an old compatible server', async () => {
    const old = createOpenAIProvider('old', { type: 'openai', base_url: `${server.url}/v1`, options: { stream_include_usage: false } });
    try {
      server.reply({ headers: sse, body: await fixture('openai-stream-no-usage.chunks.txt') });
      const chunks = await collect(await old.streamChat(baseReq, opts()));
      expect(JSON.parse(server.requests[0]?.body ?? '{}').stream_options).toBeUndefined();
      expect(chunks[chunks.length - 1]?.usage?.completion_tokens).toBeGreaterThan(0);
    } finally {
      await old.close();
    }
  });

  it('turns a mid-stream error event into an UpstreamError that is not retryable once output was sent', async () => {
    server.reply({ headers: sse, body: await fixture('openai-stream-midstream-error.chunks.txt') });
    const seen: ChatChunk[] = [];
    const err = await rejection(
      (async () => {
        for await (const c of await provider.streamChat(baseReq, opts())) seen.push(c);
      })(),
    );
    expect(seen[0]?.choices[0]?.delta.content).toBe('Partial');
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ kind: 'server', retryable: false, provider: 'test-openai' });
    expect((err as Error).message).toMatch(/server had an error/);
  });

  it('classifies a mid-stream insufficient_quota error as an exhausted quota (as a 429 insufficient_quota is), not a rate limit or a server error', async () => {
    const quota = await fixture('openai-stream-midstream-quota.chunks.txt');
    server.reply({ headers: sse, body: quota });
    const err = await rejection(collect(await provider.streamChat(baseReq, opts())));
    expect(err).toMatchObject({ kind: 'quota', status: 429, retryable: false });
    expect((err as Error).message).toMatch(/exceeded your current quota/);
    // Its code beside a rate-limit type (as some OpenAI-compatible servers send it) is a quota too.
    server.reply({ headers: sse, body: quota.replace('"type":"insufficient_quota"', '"type":"rate_limit_error"') });
    expect(await rejection(collect(await provider.streamChat(baseReq, opts())))).toMatchObject({ kind: 'quota', status: 429 });
    // A rate limit stays one.
    server.reply({ headers: sse, body: 'data: {"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}\n\n' });
    expect(await rejection(collect(await provider.streamChat(baseReq, opts())))).toMatchObject({ kind: 'rate_limited', status: 429 });
  });

  it('classifies an HTTP 429 naming insufficient_quota only in its type as an exhausted quota, as the stream does', async () => {
    server.reply({ status: 429, body: JSON.stringify({ error: { message: 'You exceeded your current quota.', type: 'insufficient_quota', param: null, code: null } }) });
    expect(await rejection(provider.chat(baseReq, opts()))).toMatchObject({ kind: 'quota', status: 429 });
    server.reply({ status: 429, body: JSON.stringify({ error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' } }) });
    expect(await rejection(provider.chat(baseReq, opts()))).toMatchObject({ kind: 'rate_limited', status: 429 });
  });

  it('reports a stream that ends without [DONE] or a finish reason as interrupted', async () => {
    server.reply({ headers: sse, body: await fixture('openai-stream-truncated.chunks.txt') });
    const err = await rejection(collect(await provider.streamChat(baseReq, opts())));
    expect(err).toMatchObject({ kind: 'stream_interrupted', retryable: false });
  });

  it('reports a connection dropped mid-body as interrupted', async () => {
    const body = await fixture('openai-chat-stream.chunks.txt');
    server.reply({ headers: sse, body, cutAfterBytes: 300 });
    const err = await rejection(collect(await provider.streamChat(baseReq, opts())));
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as UpstreamError).kind).toBe('stream_interrupted');
  });

  it('rejects a stream chunk of the wrong shape as malformed', async () => {
    server.reply({ headers: sse, body: 'data: {"id":"x","choices":[{"delta":{"content":"hi"}}]}\n\n' });
    const err = await rejection(collect(await provider.streamChat(baseReq, opts())));
    expect(err).toMatchObject({ kind: 'malformed' });
    expect((err as Error).message).toMatch(/choices\.0\.index/);
  });

  it('stops reading and closes the upstream socket when the caller aborts', async () => {
    const first = (await fixture('openai-chat-stream.chunks.txt')).split('\n\n').slice(0, 2).join('\n\n') + '\n\n';
    server.reply({ headers: sse, body: first, hang: true });
    const controller = new AbortController();
    const stream = await provider.streamChat(baseReq, opts(controller.signal));
    const seen: ChatChunk[] = [];
    const err = await rejection(
      (async () => {
        for await (const c of stream) {
          seen.push(c);
          if (c.choices[0]?.delta.content === 'Hello') controller.abort();
        }
      })(),
    );
    expect(seen.length).toBe(2);
    expect(err).toMatchObject({ kind: 'aborted' });
    await server.requests[0]?.closed; // resolves only once the gateway side closed the socket
  });
});

describe('openai provider: upstream errors', () => {
  const cases = [
    { file: 'openai-error-400.json', status: 400, kind: 'bad_request', retryable: false },
    { file: 'openai-error-400-context.json', status: 400, kind: 'context_length', retryable: false },
    { file: 'openai-error-401.json', status: 401, kind: 'auth', retryable: false },
    { file: 'openai-error-500.json', status: 500, kind: 'server', retryable: true },
    { file: 'openai-error-500.json', status: 503, kind: 'overloaded', retryable: true },
  ];
  for (const c of cases) {
    it(`maps ${c.status} (${c.file}) to kind ${c.kind}`, async () => {
      const body = await fixture(c.file);
      server.reply({ status: c.status, body });
      const err = (await rejection(provider.chat(baseReq, opts()))) as UpstreamError;
      expect(err).toBeInstanceOf(UpstreamError);
      expect(err).toMatchObject({ kind: c.kind, status: c.status, retryable: c.retryable, provider: 'test-openai' });
      expect(err.message).toContain(JSON.parse(body).error.message);
      expect(err.body).toEqual(JSON.parse(body));
    });
  }

  it('maps 429 with Retry-After on a stream request before any chunk is read', async () => {
    server.reply({ status: 429, headers: { 'retry-after': '2' }, body: await fixture('openai-error-429.json') });
    const err = (await rejection(provider.streamChat(baseReq, opts()))) as UpstreamError;
    expect(err).toMatchObject({ kind: 'rate_limited', status: 429, retryable: true, retryAfterMs: 2000 });
  });

  it('prefers retry-after-ms when the upstream sends it', async () => {
    server.reply({ status: 429, headers: { 'retry-after': '1', 'retry-after-ms': '120' }, body: await fixture('openai-error-429.json') });
    const err = (await rejection(provider.chat(baseReq, opts()))) as UpstreamError;
    expect(err.retryAfterMs).toBe(120);
  });

  it('rejects a 200 body without choices, or that is not JSON, as malformed', async () => {
    server.reply({ body: '{"id":"x","object":"chat.completion"}' });
    expect(await rejection(provider.chat(baseReq, opts()))).toMatchObject({ kind: 'malformed', retryable: true });
    server.reply({ body: '<html>gateway</html>' });
    expect(await rejection(provider.chat(baseReq, opts()))).toMatchObject({ kind: 'malformed' });
  });
});

describe('openai provider: embeddings and models', () => {
  it('posts /embeddings with the request fields and maps the result', async () => {
    server.reply({ body: await fixture('openai-embeddings.json') });
    const result = await provider.embed({ model: 'text-embedding-3-small', input: ['a', 'b'], dimensions: 3, encoding_format: 'float', user: undefined }, opts());
    const req = server.requests[0];
    expect(req?.path).toBe('/v1/embeddings');
    const body = JSON.parse(req?.body ?? '{}');
    expect(body).toEqual({ model: 'text-embedding-3-small', input: ['a', 'b'], dimensions: 3, encoding_format: 'float' });
    expectValidAgainstSpec('CreateEmbeddingRequest', body);
    expect(result.data.map((d) => d.index)).toEqual([0, 1]);
    expect(result.data[0]?.embedding).toEqual([0.0023064255, -0.009327292, -0.0028842222]);
    expect(result.usage).toEqual({ prompt_tokens: 8, total_tokens: 8 });
  });

  it('lists models with GET /models', async () => {
    server.reply({ body: await fixture('openai-models.json') });
    expect(await provider.listModels(opts())).toEqual(['gpt-4o-mini', 'text-embedding-3-small']);
    expect(server.requests[0]).toMatchObject({ method: 'GET', path: '/v1/models' });
  });
});

describe('openai provider: wiring', () => {
  it.skipIf(!spec)('has a spec check that would catch a wrong body (guards against a vacuous check)', () => {
    const validate = spec?.validator('CreateChatCompletionRequest');
    expect(validate?.({ model: 'gpt-4o', messages: [{ role: 'user', content: 5 }] })).toBe(false);
    expect(validate?.({ model: 'gpt-4o', messages: [], stream_options: { include_usage: 'yes' } })).toBe(false);
    expect(spec?.properties('CreateChatCompletionRequest').has('stream_options')).toBe(true);
    expect(spec?.properties('CreateChatCompletionRequest').has('developer_as_system')).toBe(false);
  });

  it('maps finish reasons, treating unknown server-specific ones as stop', () => {
    expect(['stop', 'length', 'tool_calls', 'content_filter', 'function_call', 'eos', null].map(finishReasonFromOpenAI)).toEqual([
      'stop',
      'length',
      'tool_calls',
      'content_filter',
      'tool_calls',
      'stop',
      null,
    ]);
  });

  it('is built by the registry for type openai and is ready without a network call', async () => {
    const p = await createProvider('reg', { type: 'openai', base_url: 'http://127.0.0.1:9/v1' });
    expect(p.type).toBe('openai');
    expect(await p.ready()).toBe(true);
    await p.close();
  });
});

describe('stream chunk fast path', () => {
  const base = { id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm' };
  const samples: unknown[] = [
    { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] },
    { ...base, choices: [{ index: 0, delta: { content: 'hi' }, finish_reason: null, logprobs: null }], system_fingerprint: 'fp' },
    { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
    { ...base, choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } },
    { ...base, choices: [{ index: 0, delta: null }], usage: null },
    { choices: [{ index: 0, delta: { refusal: 'no' } }] },
    // Left to the zod schema: tool calls, `choices: null`, and every kind of wrong type.
    { ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 't', function: { name: 'f', arguments: '' } }] } }] },
    { ...base, choices: null, usage: { prompt_tokens: 1 } },
    { ...base, choices: [{ index: '0', delta: { content: 'x' } }] },
    { ...base, choices: [{ index: 0, delta: { content: 5 } }] },
    { ...base, id: 7, choices: [] },
    { ...base, choices: [], usage: { completion_tokens: 2 } },
    { ...base, choices: [{ index: 0, delta: 'text' }] },
    [],
    'data',
  ];

  it('accepts only what the schema accepts, and the common chunks without it', () => {
    for (const s of samples) {
      const fast = plainChunk(s);
      if (fast !== undefined) expect(chunkSchema.safeParse(s).success, JSON.stringify(s)).toBe(true);
    }
    expect(samples.slice(0, 6).every((s) => plainChunk(s) !== undefined)).toBe(true);
    expect(samples.slice(6).every((s) => plainChunk(s) === undefined)).toBe(true);
  });
});

describe('chat completion fast path', () => {
  const base = { id: 'c1', object: 'chat.completion', created: 1, model: 'm' };
  const text = { role: 'assistant', content: 'hi' };
  const samples: unknown[] = [
    { ...base, choices: [{ index: 0, message: text, finish_reason: 'stop', logprobs: null }], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } },
    { ...base, choices: [{ message: { content: null, refusal: 'no' }, finish_reason: null }], system_fingerprint: 'fp', service_tier: 'default' },
    { id: 'c2', choices: [{ index: 1, message: { content: 'a', tool_calls: null } }], usage: null },
    { id: 'c3', choices: [] },
    // Left to the zod schema: tool calls, and every kind of wrong or missing field.
    { ...base, choices: [{ index: 0, message: { content: null, tool_calls: [{ id: 't', type: 'function', function: { name: 'f', arguments: '{}' } }] } }] },
    { ...base, id: 7, choices: [] },
    { created: 1, choices: [] },
    { ...base, choices: null },
    { ...base, choices: [{ index: null, message: text }] },
    { ...base, choices: [{ index: 0, message: 'hi' }] },
    { ...base, choices: [{ index: 0 }] },
    { ...base, choices: [{ index: 0, message: { content: 5 } }] },
    { ...base, choices: [{ index: 0, message: text, finish_reason: 1 }] },
    { ...base, choices: [], usage: { completion_tokens: 2 } },
    { ...base, model: 5, choices: [] },
    [],
  ];

  it('accepts only what the schema accepts, and the common completions without it', () => {
    for (const s of samples) if (plainCompletion(s) !== undefined) expect(completionSchema.safeParse(s).success, JSON.stringify(s)).toBe(true);
    expect(samples.slice(0, 4).every((s) => plainCompletion(s) !== undefined)).toBe(true);
    expect(samples.slice(4).every((s) => plainCompletion(s) === undefined)).toBe(true);
  });

  it("takes OpenAI's own answer (annotations: [] on every message) on the fast path, and non-empty annotations to the schema", async () => {
    const real = JSON.parse(await fixture('openai-chat.json')) as { choices: { message: Record<string, unknown> }[] };
    expect(real.choices[0]?.message.annotations).toEqual([]);
    expect(plainCompletion(real)).toBeDefined();
    const cited = { ...real, choices: [{ ...real.choices[0], message: { ...real.choices[0]?.message, annotations: [{ type: 'url_citation' }] } }] };
    expect(plainCompletion(cited)).toBeUndefined();
  });
});

describe('openai provider: reasoning text of compatible servers (vLLM, DeepSeek)', () => {
  it('reads message.reasoning_content (or vLLM\'s newer `reasoning`) into the answer\'s reasoning_content', async () => {
    server.reply({ body: await fixture('openai-vllm-reasoning.json') });
    const result = await provider.chat({ ...baseReq, model: 'qwq' }, opts());
    expect(result.choices[0]?.message).toEqual({ role: 'assistant', content: '9.8 is greater than 9.11.', refusal: null, reasoning_content: 'The user asks for 9.11 vs 9.8. Compare the tenths: 1 < 8, so 9.8 is larger.' });
    const newer = JSON.parse(await fixture('openai-vllm-reasoning.json')) as { choices: { message: Record<string, unknown> }[] };
    const m = newer.choices[0]?.message as Record<string, unknown>;
    m.reasoning = m.reasoning_content;
    delete m.reasoning_content;
    server.reply({ body: JSON.stringify(newer) });
    expect((await provider.chat(baseReq, opts())).choices[0]?.message.reasoning_content).toBe(m.reasoning);
    // DeepSeek's answer without thinking: reasoning_content null reads as none.
    m.reasoning = null;
    server.reply({ body: JSON.stringify(newer) });
    expect((await provider.chat(baseReq, opts())).choices[0]?.message).not.toHaveProperty('reasoning_content');
    expect(plainCompletion(newer)).toBeDefined();
  });

  it('passes streamed reasoning deltas on as reasoning_content; folding joins them', async () => {
    server.reply({ headers: sse, body: await fixture('openai-vllm-reasoning-stream.chunks.txt') });
    const chunks = await collect(await provider.streamChat({ ...baseReq, stream: true }, opts()));
    expect(chunks.map((c) => c.choices[0]?.delta.reasoning_content).filter(Boolean)).toEqual(['Compare the tenths: ', '1 < 8.']);
    expect(foldChunks(chunks).choices[0]?.message).toEqual({ role: 'assistant', content: '9.8 is greater.', refusal: null, reasoning_content: 'Compare the tenths: 1 < 8.' });
    const newer = (await fixture('openai-vllm-reasoning-stream.chunks.txt')).replaceAll('"reasoning_content"', '"reasoning"');
    server.reply({ headers: sse, body: newer });
    expect(foldChunks(await collect(await provider.streamChat({ ...baseReq, stream: true }, opts()))).choices[0]?.message.reasoning_content).toBe('Compare the tenths: 1 < 8.');
    expect(plainChunk({ id: 'c', choices: [{ index: 0, delta: { reasoning: 'x' }, finish_reason: null }] })).toBeDefined();
  });
});

describe("openai provider: vLLM's stop_reason", () => {
  it('reads the matched stop string into the choice\'s stop_sequence (JSON and the finishing chunk); a token id or null is none', async () => {
    server.reply({ body: await fixture('openai-vllm-stop-reason.json') });
    const result = await provider.chat({ ...baseReq, stop: ['END'] }, opts());
    expect(result.choices[0]).toMatchObject({ finish_reason: 'stop', stop_sequence: 'END' });
    server.reply({ headers: sse, body: await fixture('openai-vllm-stop-reason-stream.chunks.txt') });
    const chunks = await collect(await provider.streamChat({ ...baseReq, stop: ['END'], stream: true }, opts()));
    expect(chunks.flatMap((c) => c.choices).filter((c) => c.stop_sequence).map((c) => [c.finish_reason, c.stop_sequence])).toEqual([['stop', 'END']]);
    expect(foldChunks(chunks).choices[0]?.stop_sequence).toBe('END');

    const byToken = JSON.parse(await fixture('openai-vllm-stop-reason.json')) as { choices: Record<string, unknown>[] };
    (byToken.choices[0] as Record<string, unknown>).stop_reason = 128009;
    server.reply({ body: JSON.stringify(byToken) });
    expect((await provider.chat(baseReq, opts())).choices[0]).not.toHaveProperty('stop_sequence');
    expect(plainCompletion(byToken)).toBeDefined();
    // A length cut names no stop string.
    Object.assign(byToken.choices[0] as Record<string, unknown>, { finish_reason: 'length', stop_reason: 'END' });
    server.reply({ body: JSON.stringify(byToken) });
    expect((await provider.chat(baseReq, opts())).choices[0]).not.toHaveProperty('stop_sequence');
  });
});

describe('openai provider: audio answers and annotations', () => {
  // As OpenAI sends them (CreateChatCompletionResponse): a spoken answer has null content and
  // message.audio; a web-search model's answer carries url_citation annotations.
  const spoken = {
    id: 'chatcmpl-audio1',
    object: 'chat.completion',
    created: 1,
    model: 'gpt-4o-audio-preview',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: null, refusal: null, annotations: [], audio: { id: 'audio_abc', data: 'UklGRg==', expires_at: 1900000000, transcript: 'Hello there!' } },
        finish_reason: 'stop',
        logprobs: null,
      },
    ],
    usage: { prompt_tokens: 10, completion_tokens: 20, total_tokens: 30 },
  };
  const cited = {
    ...spoken,
    id: 'chatcmpl-cite1',
    model: 'gpt-4o-search-preview',
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: 'Paris is the capital of France.',
          refusal: null,
          annotations: [{ type: 'url_citation', url_citation: { start_index: 0, end_index: 5, title: 'Paris', url: 'https://example.org/paris' } }],
        },
        finish_reason: 'stop',
        logprobs: null,
      },
    ],
  };

  it('keeps message.audio and annotations of a completion (fixtures valid per the OpenAI response schema)', async () => {
    if (spec) {
      expect(spec.errors('CreateChatCompletionResponse', spoken)).toEqual([]);
      expect(spec.errors('CreateChatCompletionResponse', cited)).toEqual([]);
    }
    server.reply({ body: JSON.stringify(spoken) });
    const audio = await provider.chat({ ...baseReq, modalities: ['text', 'audio'], audio: { voice: 'alloy', format: 'wav' } }, opts());
    expect(audio.choices[0]?.message).toEqual({ role: 'assistant', content: null, refusal: null, audio: spoken.choices[0]?.message.audio });
    server.reply({ body: JSON.stringify(cited) });
    const withCitations = await provider.chat({ ...baseReq, web_search_options: {} }, opts());
    expect(withCitations.choices[0]?.message.annotations).toEqual(cited.choices[0]?.message.annotations);
  });

  it('passes streamed audio deltas on, and folding the stream joins the audio data and transcript', async () => {
    const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
      `data: ${JSON.stringify({ id: 'chatcmpl-a2', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-audio-preview', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const body =
      chunk({ role: 'assistant', content: null }) +
      chunk({ audio: { id: 'audio_x', transcript: 'Hel' } }) +
      chunk({ audio: { data: 'AAAA', transcript: 'lo' } }) +
      chunk({ audio: { data: 'BBBB', expires_at: 1900000000 } }) +
      chunk({}, 'stop') +
      'data: [DONE]\n\n';
    server.reply({ headers: sse, body });
    const chunks = await collect(await provider.streamChat({ ...baseReq, stream: true, modalities: ['text', 'audio'] }, opts()));
    expect(chunks.filter((c) => c.choices[0]?.delta.audio).length).toBe(3);
    const folded = foldChunks(chunks);
    expect(folded.choices[0]?.message).toEqual({ role: 'assistant', content: null, refusal: null, audio: { id: 'audio_x', data: 'AAAABBBB', transcript: 'Hello', expires_at: 1900000000 } });
    // And a stored answer replayed as chunks carries it whole.
    expect(foldChunks(resultToChunks(folded)).choices[0]?.message).toEqual(folded.choices[0]?.message);
  });
});
