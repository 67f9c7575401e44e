// The Cohere adapter against a local upstream replaying wire fixtures written from the Cohere v2
// API reference (/v2/chat plain and streamed, /v2/embed, /v1/models).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChatChunk, ChatRequest } from '../canonical/chat.js';
import { callOptions, collect, failure, fixture, fixtureJson, json, sse, ReplayServer } from './__fixtures__/replay-server.js';
import { CohereProvider, createCohereProvider, toCohereRequest } from './cohere.js';
import { UpstreamError } from './errors.js';

let upstream: ReplayServer;
let cohere: CohereProvider;

beforeAll(async () => {
  upstream = await ReplayServer.start();
  cohere = createCohereProvider('my-cohere', { type: 'cohere', base_url: upstream.url, api_key: 'co-test-456' });
});
afterAll(async () => {
  await cohere.close();
  await upstream.close();
});
beforeEach(() => upstream.reset());

const ask = (over: Partial<ChatRequest> = {}): ChatRequest => ({
  model: 'command-a-03-2025',
  messages: [{ role: 'user', content: 'What is the capital of France?' }],
  ...over,
});


describe('cohere chat', () => {
  it('posts /v2/chat with a bearer key and maps a full request', async () => {
    upstream.reply(json(fixture('cohere-chat.json')));
    await cohere.chat(
      {
        model: 'command-a-03-2025',
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'developer', content: [{ type: 'text', text: 'English only.' }] },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'Describe' },
              { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
            ],
          },
          {
            role: 'assistant',
            content: 'Let me look that up.',
            tool_calls: [{ id: 'get_weather_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
          },
          { role: 'tool', tool_call_id: 'get_weather_1', content: '{"temp":21}' },
          { role: 'assistant', content: 'It is 21 degrees.' },
          { role: 'user', content: 'Thanks' },
        ],
        tools: [
          { type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
          { type: 'function', function: { name: 'get_time' } },
        ],
        tool_choice: { type: 'function', function: { name: 'get_weather' } },
        max_completion_tokens: 200,
        temperature: 0.3,
        top_p: 0.8,
        stop: ['END', 'STOP'],
        seed: 42,
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { a: { type: 'string' } } } } },
      },
      callOptions(),
    );
    const [req] = upstream.requests;
    expect(req?.method).toBe('POST');
    expect(req?.pathname).toBe('/v2/chat');
    expect(req?.headers.authorization).toBe('Bearer co-test-456');
    expect(req?.headers['content-type']).toBe('application/json');
    expect(req?.json).toEqual({
      model: 'command-a-03-2025',
      stream: false,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'system', content: 'English only.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Describe' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
          ],
        },
        // Cohere refuses text beside tool calls: the text goes as the call's tool_plan.
        {
          role: 'assistant',
          tool_plan: 'Let me look that up.',
          tool_calls: [{ id: 'get_weather_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
        },
        { role: 'tool', tool_call_id: 'get_weather_1', content: '{"temp":21}' },
        { role: 'assistant', content: 'It is 21 degrees.' },
        { role: 'user', content: 'Thanks' },
      ],
      tools: [
        {
          type: 'function',
          function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
        },
      ],
      tool_choice: 'REQUIRED',
      max_tokens: 200,
      temperature: 0.3,
      p: 0.8,
      stop_sequences: ['END', 'STOP'],
      seed: 42,
      // No response_format: Cohere refuses it beside tools.
    });
  });

  it('sends response_format (json_object, or json_schema as a json_object with its schema) only on a request without tools', async () => {
    upstream.reply(json(fixture('cohere-chat.json')), json(fixture('cohere-chat.json')));
    const schema = { type: 'object', properties: { a: { type: 'string' } } };
    await cohere.chat(ask({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } }), callOptions());
    await cohere.chat(ask({ response_format: { type: 'json_object' }, tools: [{ type: 'function', function: { name: 'f' } }] }), callOptions());
    const sent = (i: number) => upstream.requests[i]?.json as Record<string, unknown>;
    expect(sent(0).response_format).toEqual({ type: 'json_object', json_schema: schema });
    expect(sent(1).response_format).toBeUndefined();
    expect(sent(1).tools).toBeDefined();
  });

  it('clamps top_p and the penalties into the ranges Cohere v2 accepts (p 0.01..0.99, penalties 0..1)', async () => {
    // OpenAI allows top_p 0..1 and penalties -2..2; Cohere answers 400 outside its own ranges.
    upstream.reply(json(fixture('cohere-chat.json')), json(fixture('cohere-chat.json')), json(fixture('cohere-chat.json')));
    await cohere.chat(ask({ top_p: 1, frequency_penalty: 2, presence_penalty: -1.5 }), callOptions());
    await cohere.chat(ask({ top_p: 0, frequency_penalty: -0.5, presence_penalty: 0.4 }), callOptions());
    await cohere.chat(ask({ top_p: 0.8, frequency_penalty: 0.7, presence_penalty: 0 }), callOptions());
    const sent = (i: number) => upstream.requests[i]?.json as Record<string, unknown>;
    expect(sent(0)).toMatchObject({ p: 0.99, frequency_penalty: 1, presence_penalty: 0 });
    expect(sent(1)).toMatchObject({ p: 0.01, frequency_penalty: 0, presence_penalty: 0.4 });
    expect(sent(2)).toMatchObject({ p: 0.8, frequency_penalty: 0.7, presence_penalty: 0 });
  });

  it('maps a text answer with billed usage', async () => {
    upstream.reply(json(fixture('cohere-chat.json')));
    const res = await cohere.chat(ask({ response_format: { type: 'json_object' }, tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: 'none' }), callOptions());
    expect(res).toMatchObject({
      id: 'chatcmpl-c14c80c3-18eb-4519-9460-6c92edd8cfb4',
      model: 'command-a-03-2025',
      choices: [{ index: 0, message: { role: 'assistant', content: 'The capital of France is Paris.' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 },
    });
    const body = upstream.requests[0]?.json as Record<string, unknown>;
    expect(body.response_format).toBeUndefined();
    expect(body.tool_choice).toBe('NONE');
  });

  it('maps tool calls and TOOL_CALL', async () => {
    upstream.reply(json(fixture('cohere-tool-call.json')));
    const res = await cohere.chat(ask(), callOptions());
    expect(res.choices[0]).toMatchObject({
      finish_reason: 'tool_calls',
      message: {
        content: null,
        tool_calls: [
          { id: 'get_weather_dqgshstja6p9', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
          { id: 'get_weather_dcxfx4myvx68', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Berlin"}' } },
        ],
      },
    });
    expect(res.usage).toEqual({ prompt_tokens: 119, completion_tokens: 52, total_tokens: 171 });
  });

  it.each([
    ['COMPLETE', 'stop'],
    ['STOP_SEQUENCE', 'stop'],
    ['MAX_TOKENS', 'length'],
    ['TOOL_CALL', 'tool_calls'],
    ['ERROR_TOXIC', 'content_filter'],
  ])('maps finish_reason %s to %s', async (reason, expected) => {
    upstream.reply(json({ ...fixtureJson('cohere-chat.json'), finish_reason: reason }));
    const res = await cohere.chat(ask(), callOptions());
    expect(res.choices[0]?.finish_reason).toBe(expected);
  });

  it('turns finish_reason ERROR into a retryable server error', async () => {
    upstream.reply(json({ ...fixtureJson('cohere-chat.json'), finish_reason: 'ERROR' }));
    const err = await failure(cohere.chat(ask(), callOptions()));
    expect(err).toMatchObject({ kind: 'server', retryable: true });
  });

  it('answers n > 1 with parallel calls, renumbered choices and summed usage', async () => {
    upstream.reply(json(fixture('cohere-chat.json')), json(fixture('cohere-tool-call.json')), json(fixture('cohere-chat.json')));
    const res = await cohere.chat(ask({ n: 3 }), callOptions());
    expect(upstream.requests).toHaveLength(3);
    expect(upstream.requests.every((r) => (r.json as Record<string, unknown>).n === undefined)).toBe(true);
    expect(res.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(res.choices.map((c) => c.finish_reason).sort()).toEqual(['stop', 'stop', 'tool_calls']);
    expect(res.usage).toEqual({ prompt_tokens: 143, completion_tokens: 66, total_tokens: 209 });
  });

  it('gives each of the n calls of a seeded request its own seed (seed, seed + 1, …), not n copies of one answer', async () => {
    upstream.reply(json(fixture('cohere-chat.json')), json(fixture('cohere-chat.json')), json(fixture('cohere-chat.json')));
    await cohere.chat(ask({ n: 3, seed: 7 }), callOptions());
    expect(upstream.requests.map((r) => (r.json as Record<string, unknown>).seed).sort()).toEqual([7, 8, 9]);
  });

  it('reports a body that is not JSON as malformed', async () => {
    upstream.reply(json('{"id": "x", "message": '));
    expect((await failure(cohere.chat(ask(), callOptions()))).kind).toBe('malformed');
  });

  it('reports a JSON body of the wrong shape as malformed', async () => {
    upstream.reply(json({ text: 'v1 style answer' }));
    expect((await failure(cohere.chat(ask(), callOptions()))).kind).toBe('malformed');
  });
});

describe('cohere errors', () => {
  const bodies = fixtureJson<Record<string, { message: string }>>('cohere-errors.json');
  it.each([
    [400, {}, 'bad_request', false, undefined],
    [401, {}, 'auth', false, undefined],
    [404, {}, 'not_found', false, undefined],
    [429, { 'retry-after': '12' }, 'rate_limited', true, 12_000],
    [500, {}, 'server', true, undefined],
    [503, {}, 'overloaded', true, undefined],
  ] as const)('%i with headers %o becomes %s', async (status, headers, kind, retryable, retryAfterMs) => {
    const body = bodies[String(status)] as { message: string };
    for (const streaming of [false, true]) {
      upstream.reply(json(body, status, headers));
      const err = await failure(streaming ? cohere.streamChat(ask(), callOptions()) : cohere.chat(ask(), callOptions()));
      expect(err).toMatchObject({ provider: 'my-cohere', kind, status, retryable, retryAfterMs });
      expect(err.message).toContain(body.message);
    }
  });
});

describe('cohere stream', () => {
  it('streams content-delta events and ends with the usage of message-end', async () => {
    upstream.reply(sse(fixture('cohere-stream.chunks.txt')));
    const chunks = await collect(await cohere.streamChat(ask({ stream: true }), callOptions()));
    const req = upstream.requests[0];
    expect(req?.pathname).toBe('/v2/chat');
    expect(req?.headers.accept).toBe('text/event-stream');
    expect((req?.json as Record<string, unknown>).stream).toBe(true);
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: 'assistant', content: '' });
    expect(text(chunks)).toBe('The capital of France is Paris — «é».');
    expect(new Set(chunks.map((c) => c.id))).toEqual(new Set(['chatcmpl-321d178c-2c12-44d3-ae42-2f5510f6b1cc']));
    expect(finishes(chunks)).toEqual(['stop']);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 } });
  });

  it('streams tool calls as start + argument deltas, dropping the tool plan', async () => {
    upstream.reply(sse(fixture('cohere-tool-stream.chunks.txt')));
    const chunks = await collect(await cohere.streamChat(ask(), callOptions()));
    expect(text(chunks)).toBe('');
    const deltas = chunks.flatMap((c) => c.choices.flatMap((x) => x.delta.tool_calls ?? []));
    expect(deltas[0]).toEqual({ index: 0, id: 'get_weather_e8p4pn45zt0t', type: 'function', function: { name: 'get_weather', arguments: '' } });
    const args = (i: number) => deltas.filter((d) => d.index === i).map((d) => d.function?.arguments ?? '').join('');
    expect(JSON.parse(args(0))).toEqual({ city: 'Paris' });
    expect(deltas.find((d) => d.index === 1)?.function?.name).toBe('get_time');
    expect(JSON.parse(args(1))).toEqual({});
    expect(finishes(chunks)).toEqual(['tool_calls']);
    expect(chunks.at(-1)?.usage).toEqual({ prompt_tokens: 119, completion_tokens: 44, total_tokens: 163 });
  });

  it('refuses to stream n > 1 without calling upstream', async () => {
    const err = await failure(cohere.streamChat(ask({ n: 2 }), callOptions()));
    expect(err.kind).toBe('unsupported');
    expect(upstream.requests).toHaveLength(0);
  });

  it('treats a stream that ends before message-end as interrupted', async () => {
    const body = fixture('cohere-stream.chunks.txt');
    upstream.reply(sse(body.slice(0, body.indexOf('event: message-end'))));
    const { chunks, error } = await drain(await cohere.streamChat(ask(), callOptions()));
    expect(text(chunks)).toBe('The capital of France is Paris — «é».');
    expect(error).toMatchObject({ kind: 'stream_interrupted', retryable: false });
  });

  it('throws on a malformed event mid-stream, not retryable once text went out', async () => {
    const body = fixture('cohere-stream.chunks.txt');
    upstream.reply(sse(body.slice(0, body.indexOf('event: content-end')) + 'event: content-delta\ndata: {"type":"content-del\n\n'));
    const { chunks, error } = await drain(await cohere.streamChat(ask(), callOptions()));
    expect(chunks.length).toBeGreaterThan(1);
    expect(error).toMatchObject({ kind: 'malformed', retryable: false });
  });

  it('turns a message-end with ERROR into an error mid-stream', async () => {
    const body = fixture('cohere-stream.chunks.txt').replace('"finish_reason":"COMPLETE"', '"finish_reason":"ERROR"');
    upstream.reply(sse(body));
    const { error } = await drain(await cohere.streamChat(ask(), callOptions()));
    expect(error).toMatchObject({ kind: 'server', retryable: false });
  });

  it('stops with an aborted error when the caller aborts mid-stream', async () => {
    const body = fixture('cohere-stream.chunks.txt');
    upstream.reply({ ...sse(body.slice(0, body.indexOf('event: content-end'))), then: 'hold' });
    const ac = new AbortController();
    const iterator = (await cohere.streamChat(ask(), callOptions(ac.signal)))[Symbol.asyncIterator]();
    expect((await iterator.next()).done).toBe(false);
    ac.abort();
    let err: unknown;
    try {
      for (;;) if ((await iterator.next()).done) break;
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ kind: 'aborted' });
  });
});

describe('cohere embeddings and models', () => {
  it('embeds through /v2/embed as search documents', async () => {
    upstream.reply(json(fixture('cohere-embed.json')));
    const res = await cohere.embed({ model: 'embed-v4.0', input: ['hello', 'goodbye'] }, callOptions());
    expect(upstream.requests[0]?.pathname).toBe('/v2/embed');
    expect(upstream.requests[0]?.json).toEqual({
      model: 'embed-v4.0',
      texts: ['hello', 'goodbye'],
      input_type: 'search_document',
      embedding_types: ['float'],
    });
    expect(res.data.map((d) => d.embedding)).toEqual([
      [0.016296387, -0.008354187, -0.04699707],
      [-0.0152, 0.0321, 0.0093],
    ]);
    expect(res.usage).toEqual({ prompt_tokens: 2, total_tokens: 2 });
  });

  it('lists models from /v1/models', async () => {
    upstream.reply(json(fixture('cohere-models.json')));
    expect(await cohere.listModels(callOptions())).toEqual(['command-a-03-2025', 'embed-v4.0']);
    expect(upstream.requests[0]).toMatchObject({ method: 'GET', pathname: '/v1/models' });
  });
});

describe('cohere documents', () => {
  it('refuses a document as an unsupported request, not an internal error', () => {
    const req: ChatRequest = { model: 'command-r', messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0=' } }] }] };
    let err: unknown;
    try {
      toCohereRequest(req, false);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ kind: 'unsupported', retryable: false });
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

describe('cohere thinking', () => {
  it('asks for thinking as the client did: a budget, off, or a reasoning effort', () => {
    expect(toCohereRequest(ask({ thinking: { type: 'enabled', budget_tokens: 3000 } }), false).thinking).toEqual({ type: 'enabled', token_budget: 3000 });
    expect(toCohereRequest(ask({ thinking: { type: 'disabled' } }), false).thinking).toEqual({ type: 'disabled' });
    expect(toCohereRequest(ask({ reasoning_effort: 'medium' }), false).thinking).toEqual({ type: 'enabled', token_budget: 8192 });
    expect(toCohereRequest(ask({ reasoning_effort: 'none' }), false).thinking).toEqual({ type: 'disabled' });
    expect(toCohereRequest(ask(), false).thinking).toBeUndefined();
  });

  it("returns a reasoning model's thinking as reasoning_content, JSON and streamed", async () => {
    upstream.reply(json(fixture('cohere-thinking.json')));
    const result = await cohere.chat(ask({ model: 'command-a-reasoning-08-2025' }), callOptions());
    expect(result.choices[0]?.message).toMatchObject({ content: "Alice's brother has 3 sisters.", reasoning_content: 'Alice is one of the sisters, so her brother has three.' });

    upstream.reply(sse(fixture('cohere-thinking-stream.chunks.txt')));
    const chunks = await collect(await cohere.streamChat(ask({ model: 'command-a-reasoning-08-2025', stream: true }), callOptions()));
    expect(chunks.flatMap((c) => c.choices.map((x) => x.delta.reasoning_content ?? '')).join('')).toBe('Alice is one of the sisters.');
    expect(chunks.flatMap((c) => c.choices.map((x) => x.delta.content ?? '')).join('')).toBe('3 sisters.');
  });
});

describe('cohere: a message of several text parts', () => {
  it('reaches the model one part per line, not run together', async () => {
    upstream.reply(json(fixture('cohere-chat.json')));
    await cohere.chat(
      {
        model: 'command-r',
        messages: [
          { role: 'system', content: [{ type: 'text', text: 'You are a pirate.' }, { type: 'text', text: 'Answer in French.' }] },
          { role: 'user', content: [{ type: 'text', text: 'Describe this picture' }, { type: 'text', text: 'in one line' }] },
        ],
      },
      callOptions(),
    );
    const sent = upstream.requests[0]?.json as { messages: Array<{ role: string; content: unknown }> };
    expect(sent.messages[0]).toMatchObject({ role: 'system', content: 'You are a pirate.\nAnswer in French.' });
    // A user message keeps its parts as Cohere's content blocks.
    expect(sent.messages[1]?.content).toEqual([{ type: 'text', text: 'Describe this picture' }, { type: 'text', text: 'in one line' }]);
  });
});
