// The Ollama adapter against a local upstream replaying wire fixtures written from Ollama's API
// docs (/api/chat plain and NDJSON-streamed, /api/embed, /api/tags, /api/ps, /api/version).
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChatChunk, ChatRequest } from '../canonical/chat.js';
import { callOptions, collect, failure, fixture, fixtureJson, json, ndjson, ReplayServer } from './__fixtures__/replay-server.js';
import { OllamaProvider, createOllamaProvider } from './ollama.js';

let upstream: ReplayServer;
let ollama: OllamaProvider;

beforeAll(async () => {
  upstream = await ReplayServer.start();
  ollama = createOllamaProvider('pi-node-1', { type: 'ollama', base_url: upstream.url, options: { keep_alive: '30m' } });
});
afterAll(async () => {
  await ollama.close();
  await upstream.close();
});
beforeEach(() => upstream.reset());

const ask = (over: Partial<ChatRequest> = {}): ChatRequest => ({
  model: 'llama3.2',
  messages: [{ role: 'user', content: 'What is the capital of France?' }],
  ...over,
});


describe('ollama chat', () => {
  it('posts /api/chat and maps a full request', async () => {
    upstream.reply(json(fixture('ollama-chat.json')));
    await ollama.chat(
      {
        model: 'llava',
        messages: [
          { role: 'developer', content: 'Be brief.' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'What is in this picture?' },
              { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
            ],
          },
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
          },
          { role: 'tool', tool_call_id: 'call_a', content: 'sunny' },
        ],
        tools: [{ type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
        max_tokens: 64,
        temperature: 0,
        top_p: 0.5,
        top_k: 40,
        seed: 101,
        stop: '\n\n',
        response_format: { type: 'json_schema', json_schema: { name: 'a', schema: { type: 'object', properties: { age: { type: 'integer' } } } } },
      },
      callOptions(),
    );
    const [req] = upstream.requests;
    expect(req?.method).toBe('POST');
    expect(req?.pathname).toBe('/api/chat');
    expect(req?.headers.authorization).toBeUndefined();
    expect(req?.json).toEqual({
      model: 'llava',
      stream: false,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'What is in this picture?', images: ['iVBORw0KGgo='] },
        { role: 'assistant', content: '', tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Paris' } } }] },
        { role: 'tool', content: 'sunny', tool_name: 'get_weather' },
      ],
      tools: [{ type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
      format: { type: 'object', properties: { age: { type: 'integer' } } },
      options: { num_predict: 64, temperature: 0, top_p: 0.5, top_k: 40, seed: 101, stop: ['\n\n'] },
      keep_alive: '30m',
    });
  });

  it('maps an answer, its usage and done_reason', async () => {
    upstream.reply(json(fixture('ollama-chat.json')));
    const res = await ollama.chat(ask({ response_format: { type: 'json_object' } }), callOptions());
    expect(res).toMatchObject({
      object: 'chat.completion',
      model: 'llama3.2',
      choices: [{ index: 0, message: { role: 'assistant', content: 'The capital of France is Paris.' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 26, completion_tokens: 9, total_tokens: 35 },
    });
    expect((upstream.requests[0]?.json as Record<string, unknown>).format).toBe('json');
    expect((upstream.requests[0]?.json as Record<string, unknown>).options).toBeUndefined();
  });

  it('maps done_reason length to length', async () => {
    upstream.reply(json({ ...fixtureJson('ollama-chat.json'), done_reason: 'length' }));
    expect((await ollama.chat(ask(), callOptions())).choices[0]?.finish_reason).toBe('length');
  });

  it('turns object arguments into JSON strings with generated ids and finishes with tool_calls', async () => {
    upstream.reply(json(fixture('ollama-tool-call.json')));
    const res = await ollama.chat(ask({ tools: [{ type: 'function', function: { name: 'get_weather' } }] }), callOptions());
    const calls = res.choices[0]?.message.tool_calls ?? [];
    expect(res.choices[0]?.finish_reason).toBe('tool_calls');
    expect(res.choices[0]?.message.content).toBeNull();
    expect(calls.map((c) => [c.function.name, JSON.parse(c.function.arguments)])).toEqual([
      ['get_weather', { city: 'Paris', unit: 'celsius' }],
      ['get_time', {}],
    ]);
    expect(calls.every((c) => c.id.startsWith('call_'))).toBe(true);
    expect(calls[0]?.id).not.toBe(calls[1]?.id);
  });

  it('offers no tools for tool_choice none and only the named one otherwise', async () => {
    const tools: ChatRequest['tools'] = [
      { type: 'function', function: { name: 'a' } },
      { type: 'function', function: { name: 'b' } },
    ];
    upstream.reply(json(fixture('ollama-chat.json')), json(fixture('ollama-chat.json')));
    await ollama.chat(ask({ tools, tool_choice: 'none' }), callOptions());
    await ollama.chat(ask({ tools, tool_choice: { type: 'function', function: { name: 'b' } } }), callOptions());
    expect((upstream.requests[0]?.json as Record<string, unknown>).tools).toBeUndefined();
    expect((upstream.requests[1]?.json as { tools: { function: { name: string } }[] }).tools.map((t) => t.function.name)).toEqual(['b']);
  });

  it('refuses linked images without calling upstream', async () => {
    const err = await failure(
      ollama.chat(ask({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x.test/a.png' } }] }] }), callOptions()),
    );
    expect(err.kind).toBe('bad_request');
    expect(upstream.requests).toHaveLength(0);
  });

  it('answers n > 1 with parallel calls', async () => {
    upstream.reply(json(fixture('ollama-chat.json')), json(fixture('ollama-chat.json')));
    const res = await ollama.chat(ask({ n: 2 }), callOptions());
    expect(upstream.requests).toHaveLength(2);
    expect(res.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(res.usage).toEqual({ prompt_tokens: 52, completion_tokens: 18, total_tokens: 70 });
  });

  it('reports a body that is not JSON as malformed', async () => {
    upstream.reply(json('{"model":"llama3.2","message":'));
    expect((await failure(ollama.chat(ask(), callOptions()))).kind).toBe('malformed');
  });
});

describe('ollama errors', () => {
  const bodies = fixtureJson<Record<string, { error: string }>>('ollama-errors.json');
  it.each([
    [400, {}, 'bad_request', false, undefined],
    [401, {}, 'auth', false, undefined],
    [404, {}, 'not_found', false, undefined],
    [429, { 'retry-after': '3' }, 'rate_limited', true, 3_000],
    [500, {}, 'server', true, undefined],
    [503, {}, 'overloaded', true, undefined],
  ] as const)('%i with headers %o becomes %s', async (status, headers, kind, retryable, retryAfterMs) => {
    const body = bodies[String(status)] as { error: string };
    for (const streaming of [false, true]) {
      upstream.reply(json(body, status, headers));
      const err = await failure(streaming ? ollama.streamChat(ask(), callOptions()) : ollama.chat(ask(), callOptions()));
      expect(err).toMatchObject({ provider: 'pi-node-1', kind, status, retryable, retryAfterMs });
      expect(err.message).toContain(body.error);
    }
  });
});

describe('ollama stream', () => {
  it('streams NDJSON lines and ends with the usage of the done line', async () => {
    upstream.reply(ndjson(fixture('ollama-chat.ndjson')));
    const chunks = await collect(await ollama.streamChat(ask({ stream: true }), callOptions()));
    expect((upstream.requests[0]?.json as Record<string, unknown>).stream).toBe(true);
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    expect(text(chunks)).toBe('The capital of France is Paris — «é».');
    expect(finishes(chunks)).toEqual(['length']);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 26, completion_tokens: 12, total_tokens: 38 } });
  });

  it('streams tool calls with ids and increasing indexes', async () => {
    upstream.reply(ndjson(fixture('ollama-tool-stream.ndjson')));
    const chunks = await collect(await ollama.streamChat(ask({ model: 'qwen3' }), callOptions()));
    const deltas = chunks.flatMap((c) => c.choices.flatMap((x) => x.delta.tool_calls ?? []));
    expect(deltas.map((d) => [d.index, d.function?.name, d.function?.arguments])).toEqual([
      [0, 'get_weather', '{"city":"Toronto"}'],
      [1, 'get_time', '{"zone":"EST"}'],
    ]);
    expect(deltas.every((d) => d.id?.startsWith('call_'))).toBe(true);
    expect(finishes(chunks)).toEqual(['tool_calls']);
    expect(chunks.at(-1)?.usage).toEqual({ prompt_tokens: 187, completion_tokens: 41, total_tokens: 228 });
  });

  it('throws an error line mid-stream, not retryable once text went out', async () => {
    upstream.reply(ndjson(fixture('ollama-stream-error.ndjson')));
    const { chunks, error } = await drain(await ollama.streamChat(ask(), callOptions()));
    expect(text(chunks)).toBe('Once upon');
    expect(error).toMatchObject({ kind: 'server', retryable: false });
    expect((error as Error).message).toContain('unexpected EOF');
  });

  it('rejects before the first chunk when the first line is an error', async () => {
    upstream.reply(ndjson('{"error":"model requires more system memory (5.6 GiB) than is available (1.9 GiB)"}\n'));
    const err = await failure(ollama.streamChat(ask(), callOptions()));
    expect(err).toMatchObject({ kind: 'server', retryable: true });
  });

  it('treats a stream without its done line as interrupted', async () => {
    const lines = fixture('ollama-chat.ndjson').split('\n');
    upstream.reply(ndjson(lines.slice(0, 3).join('\n') + '\n'));
    const { chunks, error } = await drain(await ollama.streamChat(ask(), callOptions()));
    expect(text(chunks)).toBe('The capital of France is Paris — «é».');
    expect(error).toMatchObject({ kind: 'stream_interrupted', retryable: false });
  });

  it('reports a line that is not JSON mid-stream as malformed', async () => {
    const lines = fixture('ollama-chat.ndjson').split('\n');
    upstream.reply(ndjson(`${lines[0]}\n{"model":"llama3.2","mess\n${lines[3]}\n`));
    const { error } = await drain(await ollama.streamChat(ask(), callOptions()));
    expect(error).toMatchObject({ kind: 'malformed', retryable: false });
  });

  it('refuses to stream n > 1', async () => {
    expect((await failure(ollama.streamChat(ask({ n: 3 }), callOptions()))).kind).toBe('unsupported');
  });

  it('stops with an aborted error when the caller aborts mid-stream', async () => {
    const lines = fixture('ollama-chat.ndjson').split('\n');
    upstream.reply({ ...ndjson(`${lines[0]}\n`), then: 'hold' });
    const ac = new AbortController();
    const iterator = (await ollama.streamChat(ask(), callOptions(ac.signal)))[Symbol.asyncIterator]();
    expect((await iterator.next()).done).toBe(false);
    ac.abort();
    expect((await failure(iterator.next())).kind).toBe('aborted');
  });
});

describe('ollama embeddings, model lists, readiness', () => {
  it('embeds through /api/embed', async () => {
    upstream.reply(json(fixture('ollama-embed.json')));
    const res = await ollama.embed({ model: 'all-minilm', input: ['Why is the sky blue?', 'Why is the grass green?'] }, callOptions());
    expect(upstream.requests[0]?.pathname).toBe('/api/embed');
    expect(upstream.requests[0]?.json).toEqual({
      model: 'all-minilm',
      input: ['Why is the sky blue?', 'Why is the grass green?'],
      keep_alive: '30m',
    });
    expect(res.data.map((d) => d.embedding)).toEqual([
      [0.010071029, -0.0017594862, 0.05007221],
      [-0.0098027075, 0.06042469, 0.025257962],
    ]);
    expect(res.usage).toEqual({ prompt_tokens: 8, total_tokens: 8 });
  });

  it('lists installed models (/api/tags) and loaded ones (/api/ps)', async () => {
    upstream.reply(json(fixture('ollama-tags.json')), json(fixture('ollama-ps.json')), json(fixture('ollama-tags.json')));
    expect(await ollama.listInstalled()).toEqual(['codellama:13b', 'llama3:latest']);
    expect(await ollama.listLoaded()).toEqual(['mistral:latest']);
    expect(await ollama.listModels(callOptions())).toEqual(['codellama:13b', 'llama3:latest']);
    expect(upstream.requests.map((r) => `${r.method} ${r.pathname}`)).toEqual(['GET /api/tags', 'GET /api/ps', 'GET /api/tags']);
  });

  it('is ready when /api/version answers, and not when it errors or the port is closed', async () => {
    upstream.reply(json({ version: '0.6.2' }), json({ error: 'boom' }, 500));
    expect(await ollama.ready()).toBe(true);
    expect(upstream.requests[0]?.pathname).toBe('/api/version');
    expect(await ollama.ready()).toBe(false);
    const closed = await ReplayServer.start();
    const url = closed.url;
    await closed.close();
    const gone = createOllamaProvider('gone', { type: 'ollama', base_url: url });
    expect(await gone.ready()).toBe(false);
    await gone.close();
  });

  it('is not ready when /api/version stalls past its short deadline', async () => {
    upstream.reply({ stall: true });
    expect(await ollama.ready()).toBe(false);
  });
});

function text(chunks: ChatChunk[]): string {
  return chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
}

function finishes(chunks: ChatChunk[]): string[] {
  return chunks.flatMap((c) => c.choices.map((x) => x.finish_reason)).filter((f): f is NonNullable<typeof f> => f !== null);
}

async function drain(stream: AsyncIterable<ChatChunk>): Promise<{ chunks: ChatChunk[]; error: unknown }> {
  const chunks: ChatChunk[] = [];
  try {
    for await (const c of stream) chunks.push(c);
  } catch (error) {
    return { chunks, error };
  }
  return { chunks, error: undefined };
}

describe('ollama thinking', () => {
  const sent = () => upstream.requests[0]?.json as Record<string, unknown>;

  it('asks a thinking model to think as the client asked: on, off, or a gpt-oss level', async () => {
    const cases: Array<[Partial<ChatRequest>, unknown]> = [
      [{ thinking: { type: 'enabled', budget_tokens: 2048 } }, true],
      [{ thinking: { type: 'disabled' } }, false],
      [{ reasoning_effort: 'medium' }, true],
      [{ reasoning_effort: 'none' }, false],
      [{ model: 'gpt-oss:20b', reasoning_effort: 'minimal' }, 'low'],
      [{ model: 'gpt-oss:20b', reasoning_effort: 'high' }, 'high'],
      [{}, undefined],
    ];
    for (const [over, think] of cases) {
      upstream.reset();
      upstream.reply(json(fixture('ollama-chat.json')));
      await ollama.chat(ask(over), callOptions());
      expect(sent().think, JSON.stringify(over)).toEqual(think);
    }
  });

  it("returns the model's thinking as reasoning_content, JSON and streamed", async () => {
    upstream.reply(json(fixture('ollama-thinking.json')));
    const result = await ollama.chat(ask({ model: 'qwen3', thinking: { type: 'enabled', budget_tokens: 1024 } }), callOptions());
    expect(result.choices[0]?.message).toMatchObject({ content: 'Paris.', reasoning_content: 'The user asks for a capital.' });

    upstream.reply(ndjson(fixture('ollama-thinking.ndjson')));
    const chunks = await collect(await ollama.streamChat(ask({ model: 'qwen3', stream: true }), callOptions()));
    expect(chunks.flatMap((c) => c.choices.map((x) => x.delta.reasoning_content ?? '')).join('')).toBe('The user asks for a capital.');
    expect(text(chunks)).toBe('Paris.');
    expect(finishes(chunks)).toEqual(['stop']);
  });
});

describe('ollama keep_alive', () => {
  it('sends no keep_alive unless configured, so the server keeps its own OLLAMA_KEEP_ALIVE (chat, text completion, embed)', async () => {
    const plain = createOllamaProvider('plain', { type: 'ollama', base_url: upstream.url });
    try {
      upstream.reply(json(fixture('ollama-chat.json')), json(fixture('ollama-generate.json')), json(fixture('ollama-embed.json')));
      await plain.chat(ask(), callOptions());
      await plain.chat(ask({ text_completion: { prompt: 'def fib(n):' } }), callOptions());
      await plain.embed({ model: 'all-minilm', input: ['Why is the sky blue?', 'Why is the grass green?'] }, callOptions());
      expect(upstream.requests.map((r) => r.pathname)).toEqual(['/api/chat', '/api/generate', '/api/embed']);
      for (const r of upstream.requests) expect(r.json, r.pathname).not.toHaveProperty('keep_alive');
    } finally {
      await plain.close();
    }
  });

  it('refuses a keep_alive that is neither a duration nor a number', () => {
    expect(() => createOllamaProvider('bad', { type: 'ollama', options: { keep_alive: { minutes: 5 } } })).toThrow(/keep_alive/);
  });
});

describe('ollama runtime options (num_ctx, model_options)', () => {
  it('sends the configured num_ctx and runtime options with every chat, text completion and embedding, the request\'s sampling over them', async () => {
    const sized = createOllamaProvider('sized', {
      type: 'ollama',
      base_url: upstream.url,
      options: { num_ctx: 32768, model_options: { num_gpu: 99, num_thread: 8, temperature: 0.7 } },
    });
    try {
      upstream.reply(json(fixture('ollama-chat.json')), ndjson(fixture('ollama-chat.ndjson')), json(fixture('ollama-generate.json')), json(fixture('ollama-embed.json')));
      await sized.chat(ask({ temperature: 0, max_tokens: 64 }), callOptions());
      await collect(await sized.streamChat(ask({ stream: true }), callOptions()));
      await sized.chat(ask({ text_completion: { prompt: 'def fib(n):' } }), callOptions());
      await sized.embed({ model: 'all-minilm', input: ['Why is the sky blue?', 'Why is the grass green?'] }, callOptions());
      const bodies = upstream.requests.map((r) => r.json as Record<string, unknown>);
      expect(bodies[0]?.options).toEqual({ num_gpu: 99, num_thread: 8, num_ctx: 32768, temperature: 0, num_predict: 64 });
      expect(bodies[1]?.options).toEqual({ num_gpu: 99, num_thread: 8, num_ctx: 32768, temperature: 0.7 });
      expect(upstream.requests[2]?.pathname).toBe('/api/generate');
      expect(bodies[2]?.options).toEqual({ num_gpu: 99, num_thread: 8, num_ctx: 32768, temperature: 0.7 });
      // An embedding input longer than Ollama's default window would be cut to it (its `truncate`).
      expect(upstream.requests[3]?.pathname).toBe('/api/embed');
      expect(bodies[3]?.options).toEqual({ num_gpu: 99, num_thread: 8, num_ctx: 32768, temperature: 0.7 });
    } finally {
      await sized.close();
    }
  });

  it('takes num_ctx inside model_options too', async () => {
    const sized = createOllamaProvider('sized', { type: 'ollama', base_url: upstream.url, options: { model_options: { num_ctx: 8192 } } });
    try {
      upstream.reply(json(fixture('ollama-chat.json')));
      await sized.chat(ask(), callOptions());
      expect((upstream.requests[0]?.json as Record<string, unknown>).options).toEqual({ num_ctx: 8192 });
    } finally {
      await sized.close();
    }
  });

  it.each([
    [{ num_ctx: 0 }, /num_ctx must be a positive whole number/],
    [{ num_ctx: '32k' }, /num_ctx must be a positive whole number/],
    [{ num_ctx: 4096, model_options: { num_ctx: 8192 } }, /set num_ctx once/],
    [{ model_options: [1, 2] }, /model_options must be a map/],
    [{ model_options: { num_gpu: { all: true } } }, /model_options\.num_gpu must be/],
  ])('refuses options %o', (options, message) => {
    expect(() => createOllamaProvider('bad', { type: 'ollama', options })).toThrow(message);
  });
});

describe('ollama thinking asked of a model that cannot think', () => {
  const refusal = () => json(fixture('ollama-error-400-no-thinking.json'), 400, { 'content-type': 'application/json; charset=utf-8' });
  const bodies = () => upstream.requests.map((r) => r.json as Record<string, unknown>);
  let fresh: OllamaProvider;
  beforeEach(() => {
    fresh = createOllamaProvider('no-think', { type: 'ollama', base_url: upstream.url });
  });
  afterEach(async () => {
    await fresh.close();
  });

  it('asks once more without think on Ollama\'s 400, answers, and leaves think off for that model afterwards', async () => {
    upstream.reply(refusal(), json(fixture('ollama-chat.json')), json(fixture('ollama-chat.json')), json(fixture('ollama-chat.json')), json(fixture('ollama-chat.json')));
    const res = await fresh.chat(ask({ thinking: { type: 'enabled', budget_tokens: 1024 }, temperature: 0 }), callOptions());
    expect(res.choices[0]?.message.content).toBe('The capital of France is Paris.');
    expect(bodies()[0]?.think).toBe(true);
    expect(bodies()[1]).not.toHaveProperty('think');
    expect({ ...bodies()[0], think: undefined }).toEqual({ ...bodies()[1], think: undefined });

    await fresh.chat(ask({ reasoning_effort: 'low' }), callOptions());
    expect(bodies()[2]).not.toHaveProperty('think');
    await fresh.chat(ask({ thinking: { type: 'disabled' } }), callOptions());
    expect(bodies()[3]?.think).toBe(false);
    // Another model on the same Ollama is still asked to think.
    await fresh.chat(ask({ model: 'qwen3', thinking: { type: 'enabled', budget_tokens: 1024 } }), callOptions());
    expect(bodies()[4]?.think).toBe(true);
    expect(upstream.requests).toHaveLength(5);
  });

  it('does the same for a stream, whose refusal comes before any line', async () => {
    upstream.reply(refusal(), ndjson(fixture('ollama-chat.ndjson')), ndjson(fixture('ollama-chat.ndjson')));
    const chunks = await collect(await fresh.streamChat(ask({ stream: true, reasoning_effort: 'high' }), callOptions()));
    expect(text(chunks)).toBe('The capital of France is Paris — «é».');
    expect(bodies().map((b) => b.think)).toEqual([true, undefined]);
    await collect(await fresh.streamChat(ask({ stream: true, reasoning_effort: 'high' }), callOptions()));
    expect(bodies().map((b) => b.think)).toEqual([true, undefined, undefined]);
  });

  it('passes any other 400 on, asking only once', async () => {
    upstream.reply(json(fixtureJson<Record<string, { error: string }>>('ollama-errors.json')['400'], 400));
    const err = await failure(fresh.chat(ask({ thinking: { type: 'enabled', budget_tokens: 1024 } }), callOptions()));
    expect(err).toMatchObject({ kind: 'bad_request', status: 400 });
    expect(upstream.requests).toHaveLength(1);
  });

  it('passes the refusal on when no think was sent (nothing to drop)', async () => {
    upstream.reply(refusal());
    const err = await failure(fresh.chat(ask(), callOptions()));
    expect(err).toMatchObject({ kind: 'bad_request', status: 400 });
    expect(upstream.requests).toHaveLength(1);
  });
});

describe('ollama: a message of several text parts', () => {
  it('reaches the model one part per line, not run together', async () => {
    upstream.reply(json(fixture('ollama-chat.json')));
    await ollama.chat(
      {
        model: 'llama3.2',
        messages: [
          { role: 'system', content: [{ type: 'text', text: 'You are a pirate.' }, { type: 'text', text: 'Answer in French.' }] },
          { role: 'user', content: [{ type: 'text', text: 'Describe this picture' }, { type: 'text', text: 'in one line' }] },
        ],
      },
      callOptions(),
    );
    const sent = upstream.requests[0]?.json as { messages: Array<{ role: string; content: unknown }> };
    expect(sent.messages[0]).toMatchObject({ role: 'system', content: 'You are a pirate.\nAnswer in French.' });
    expect(JSON.stringify(sent.messages[1]?.content)).toContain('Describe this picture\\nin one line');
  });
});
