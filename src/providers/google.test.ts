// The Gemini adapter against a local upstream replaying wire fixtures written from the Gemini API
// reference (generateContent, streamGenerateContent?alt=sse, batchEmbedContents, models.list).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChatChunk, ChatRequest } from '../canonical/chat.js';
import { callOptions, collect, failure, fixture, fixtureJson, json, sse, ReplayServer } from './__fixtures__/replay-server.js';
import { GoogleProvider, createGoogleProvider } from './google.js';
import { SKIP_SIGNATURE } from './google-mapping.js';

let upstream: ReplayServer;
let google: GoogleProvider;

beforeAll(async () => {
  upstream = await ReplayServer.start();
  google = createGoogleProvider('my-gemini', { type: 'google', base_url: upstream.url, api_key: 'gk-test-123' });
});
afterAll(async () => {
  await google.close();
  await upstream.close();
});
beforeEach(() => upstream.reset());

const ask = (over: Partial<ChatRequest> = {}): ChatRequest => ({
  model: 'gemini-2.0-flash',
  messages: [{ role: 'user', content: 'What is the capital of France?' }],
  ...over,
});


describe('google documents', () => {
  it('sends a file part inline with its media type', async () => {
    upstream.reply(json(fixture('google-chat.json')));
    await google.chat(ask({ messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0x', filename: 'a.pdf' } }, { type: 'text', text: 'Summarise' }] }] }), callOptions());
    const body = upstream.requests[0]?.json as { contents: { parts: unknown[] }[] };
    expect(body.contents[0]?.parts).toEqual([{ inlineData: { mimeType: 'application/pdf', data: 'JVBERi0x' } }, { text: 'Summarise' }]);
  });
});

describe('google log-probabilities', () => {
  it('asks for them in generationConfig and maps logprobsResult to OpenAI\'s shape', async () => {
    upstream.reply(json(fixture('google-chat-logprobs.json')));
    const result = await google.chat(ask({ logprobs: true, top_logprobs: 2 }), callOptions());
    const body = upstream.requests[0]?.json as { generationConfig: Record<string, unknown> };
    expect(body.generationConfig).toMatchObject({ responseLogprobs: true, logprobs: 2 });
    expect(result.choices[0]?.logprobs).toEqual({
      content: [
        { token: 'Paris', logprob: -0.0021, bytes: [80, 97, 114, 105, 115], top_logprobs: [{ token: 'Paris', logprob: -0.0021, bytes: [80, 97, 114, 105, 115] }, { token: 'The', logprob: -6.4, bytes: [84, 104, 101] }] },
        { token: '.', logprob: -0.0225, bytes: [46], top_logprobs: [{ token: '.', logprob: -0.0225, bytes: [46] }, { token: '!', logprob: -4.1, bytes: [33] }] },
      ],
    });
  });

  it('without logprobs asks for none and reports null', async () => {
    upstream.reply(json(fixture('google-chat.json')));
    const result = await google.chat(ask(), callOptions());
    expect((upstream.requests[0]?.json as { generationConfig?: Record<string, unknown> }).generationConfig?.responseLogprobs).toBeUndefined();
    expect(result.choices[0]?.logprobs).toBeNull();
  });

  it('streams each event\'s tokens on its chunk', async () => {
    upstream.reply(sse(fixture('google-stream-logprobs.chunks.txt')));
    const chunks = await collect(await google.streamChat(ask({ stream: true, logprobs: true }), callOptions()));
    expect(chunks.map((c) => c.choices[0]?.logprobs?.content?.map((t) => t.token) ?? null).filter(Boolean)).toEqual([['Paris'], ['.']]);
  });
});

describe('google chat', () => {
  it('posts generateContent with the key header and maps a full request', async () => {
    upstream.reply(json(fixture('google-chat.json')));
    await google.chat(
      {
        model: 'gemini-2.0-flash',
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'developer', content: 'Answer in English.' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'What is in this picture?' },
              { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
              { type: 'image_url', image_url: { url: 'https://example.com/cat.webp' } },
            ],
          },
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"cat"}' } }],
          },
          { role: 'tool', tool_call_id: 'call_1', content: '{"found":true}' },
          { role: 'user', content: 'And the weather?' },
        ],
        tools: [
          {
            type: 'function',
            function: {
              name: 'lookup',
              description: 'Look something up',
              parameters: {
                $schema: 'http://json-schema.org/draft-07/schema#',
                type: 'object',
                additionalProperties: false,
                properties: { q: { type: 'string' }, limit: { type: ['integer', 'null'] } },
                required: ['q'],
              },
            },
          },
          { type: 'function', function: { name: 'now', parameters: { type: 'object', properties: {} } } },
        ],
        tool_choice: { type: 'function', function: { name: 'lookup' } },
        temperature: 0.2,
        top_p: 0.9,
        max_tokens: 128,
        stop: 'END',
        seed: 7,
        response_format: {
          type: 'json_schema',
          json_schema: { name: 'answer', schema: { type: 'object', additionalProperties: false, properties: { a: { const: 'x' } } } },
        },
      },
      callOptions(),
    );
    const [req] = upstream.requests;
    expect(req?.method).toBe('POST');
    expect(req?.pathname).toBe('/v1beta/models/gemini-2.0-flash:generateContent');
    expect([...(req?.query.keys() ?? [])]).toEqual([]);
    expect(req?.headers['x-goog-api-key']).toBe('gk-test-123');
    expect(req?.headers['content-type']).toBe('application/json');
    expect(req?.headers.authorization).toBeUndefined();
    expect(req?.json).toEqual({
      systemInstruction: { parts: [{ text: 'Be brief.' }, { text: 'Answer in English.' }] },
      contents: [
        {
          role: 'user',
          parts: [
            { text: 'What is in this picture?' },
            { inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } },
            { fileData: { mimeType: 'image/webp', fileUri: 'https://example.com/cat.webp' } },
          ],
        },
        { role: 'model', parts: [{ functionCall: { name: 'lookup', args: { q: 'cat' } } }] },
        {
          role: 'user',
          parts: [{ functionResponse: { name: 'lookup', response: { found: true } } }, { text: 'And the weather?' }],
        },
      ],
      tools: [
        {
          functionDeclarations: [
            {
              name: 'lookup',
              description: 'Look something up',
              parameters: {
                type: 'object',
                properties: { q: { type: 'string' }, limit: { type: 'integer', nullable: true } },
                required: ['q'],
              },
            },
            { name: 'now' },
          ],
        },
      ],
      toolConfig: { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['lookup'] } },
      generationConfig: {
        temperature: 0.2,
        topP: 0.9,
        maxOutputTokens: 128,
        stopSequences: ['END'],
        seed: 7,
      },
    });
  });

  it('applies response_format only to a request without tools of its own (Gemini refuses a JSON MIME type beside function calling)', async () => {
    const format: ChatRequest['response_format'] = {
      type: 'json_schema',
      json_schema: { name: 'answer', schema: { type: 'object', additionalProperties: false, properties: { a: { const: 'x' } } } },
    };
    upstream.reply(json(fixture('google-chat.json')), json(fixture('google-chat.json')), json(fixture('google-chat.json')));
    await google.chat(ask({ response_format: format }), callOptions());
    await google.chat(ask({ response_format: { type: 'json_object' } }), callOptions());
    await google.chat(ask({ response_format: format, tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }] }), callOptions());
    const sent = (i: number) => upstream.requests[i]?.json as { generationConfig?: Record<string, unknown>; tools?: { functionDeclarations: { name: string }[] }[] };
    expect(sent(0).generationConfig).toEqual({ responseMimeType: 'application/json', responseSchema: { type: 'object', properties: { a: { type: 'string', enum: ['x'] } } } });
    expect(sent(1).generationConfig).toEqual({ responseMimeType: 'application/json' });
    expect(sent(2).generationConfig).toBeUndefined();
    expect(sent(2).tools?.[0]?.functionDeclarations.map((d) => d.name)).toEqual(['lookup']);
  });

  it("keeps only string enums (Gemini's enum is strings, for STRING types), and sends no penalties (Gemini 2.5+ refuse them)", async () => {
    const schema = {
      type: 'object',
      properties: {
        colour: { enum: ['red', 'green'] },
        size: { type: 'integer', enum: [1, 2, 3] },
        ratio: { enum: [0.5, 1.5] },
        flag: { const: true },
        maybe: { enum: ['yes', null] },
        pinned: { const: 'v1' },
      },
    };
    upstream.reply(json(fixture('google-chat.json')));
    await google.chat(ask({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema } }, presence_penalty: 0.5, frequency_penalty: 0.3 }), callOptions());
    const config = (upstream.requests[0]?.json as { generationConfig: Record<string, unknown> }).generationConfig;
    expect(config.responseSchema).toEqual({
      type: 'object',
      properties: {
        colour: { type: 'string', enum: ['red', 'green'] },
        size: { type: 'integer' },
        ratio: { type: 'number' },
        flag: { type: 'boolean' },
        maybe: { type: 'string', enum: ['yes'], nullable: true },
        pinned: { type: 'string', enum: ['v1'] },
      },
    });
    expect(config.presencePenalty).toBeUndefined();
    expect(config.frequencyPenalty).toBeUndefined();
  });

  it('inlines local $ref schemas ($defs or definitions, as Pydantic writes nested models) in the response schema and tool parameters', async () => {
    const address = { title: 'Address', type: 'object', additionalProperties: false, properties: { city: { type: 'string' }, zip: { type: 'string' } }, required: ['city'] };
    // Pydantic v2: $defs, and a described field as $ref with a sibling description.
    const person = {
      $defs: { Address: address },
      title: 'Person',
      type: 'object',
      properties: { name: { type: 'string' }, home: { $ref: '#/$defs/Address', description: 'Where they live' }, past: { type: 'array', items: { $ref: '#/$defs/Address' } } },
      required: ['name', 'home'],
    };
    // Draft-07 / Pydantic v1: definitions, and a described field as allOf around the $ref.
    const personV1 = {
      definitions: { Address: address },
      title: 'Person',
      type: 'object',
      properties: { name: { type: 'string' }, home: { allOf: [{ $ref: '#/definitions/Address' }], description: 'Where they live' }, past: { type: 'array', items: { $ref: '#/definitions/Address' } } },
      required: ['name', 'home'],
    };
    const cleanAddress = { title: 'Address', type: 'object', properties: { city: { type: 'string' }, zip: { type: 'string' } }, required: ['city'] };
    const expected = {
      title: 'Person',
      type: 'object',
      properties: { name: { type: 'string' }, home: { ...cleanAddress, description: 'Where they live' }, past: { type: 'array', items: cleanAddress } },
      required: ['name', 'home'],
    };
    upstream.reply(json(fixture('google-chat.json')), json(fixture('google-chat.json')));
    await google.chat(ask({ response_format: { type: 'json_schema', json_schema: { name: 'person', schema: person } } }), callOptions());
    await google.chat(ask({ tools: [{ type: 'function', function: { name: 'save', parameters: personV1 } }] }), callOptions());
    expect((upstream.requests[0]?.json as { generationConfig: { responseSchema: unknown } }).generationConfig.responseSchema).toEqual(expected);
    expect((upstream.requests[1]?.json as { tools: { functionDeclarations: { parameters: unknown }[] }[] }).tools[0]?.functionDeclarations[0]?.parameters).toEqual(expected);
  });

  it('unrolls a recursive $ref a few levels, then leaves the recursive property out (Gemini rejects an object without properties)', async () => {
    const tree = {
      $defs: { Node: { type: 'object', properties: { label: { type: 'string' }, children: { type: 'array', items: { $ref: '#/$defs/Node' } } }, required: ['label', 'children'] } },
      $ref: '#/$defs/Node',
    };
    const chain = { type: 'object', properties: { name: { type: 'string' }, parent: { $ref: '#' } } };
    upstream.reply(json(fixture('google-chat.json')), json(fixture('google-chat.json')));
    await google.chat(ask({ response_format: { type: 'json_schema', json_schema: { name: 'tree', schema: tree } } }), callOptions());
    await google.chat(ask({ response_format: { type: 'json_schema', json_schema: { name: 'chain', schema: chain } } }), callOptions());
    type Node = { type: string; properties: Record<string, Node>; required?: string[]; items?: Node };
    const schema = (i: number) => (upstream.requests[i]?.json as { generationConfig: { responseSchema: Node } }).generationConfig.responseSchema;

    let node = schema(0);
    let levels = 0;
    while (node.properties.children) {
      expect(node).toMatchObject({ type: 'object', properties: { label: { type: 'string' } }, required: ['label', 'children'] });
      node = node.properties.children.items as Node;
      levels++;
    }
    expect(levels).toBeGreaterThanOrEqual(2);
    expect(node).toEqual({ type: 'object', properties: { label: { type: 'string' } }, required: ['label'] });

    let link = schema(1);
    let depth = 0;
    while (link.properties.parent) [link, depth] = [link.properties.parent, depth + 1];
    expect(depth).toBeGreaterThanOrEqual(2);
    expect(link).toEqual({ type: 'object', properties: { name: { type: 'string' } } });
    expect(JSON.stringify([schema(0), schema(1)])).not.toContain('$ref');
  });

  it('maps a text answer, its usage and id', async () => {
    upstream.reply(json(fixture('google-chat.json')));
    const res = await google.chat(ask({ n: 1 }), callOptions());
    expect(res).toMatchObject({
      id: 'chatcmpl-mS2yZ8KkLYqgz7IP7o2d6Ak',
      object: 'chat.completion',
      model: 'gemini-2.0-flash',
      choices: [{ index: 0, message: { role: 'assistant', content: 'The capital of France is Paris.' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 9, completion_tokens: 7, total_tokens: 16 },
    });
    // n: 1 is Gemini's default and is not sent; tool_choice strings map to modes.
    expect((upstream.requests[0]?.json as Record<string, unknown>).generationConfig).toBeUndefined();
  });

  it.each([
    ['none', 'NONE'],
    ['auto', 'AUTO'],
    ['required', 'ANY'],
  ] as const)('maps tool_choice %s to mode %s', async (choice, mode) => {
    upstream.reply(json(fixture('google-chat.json')));
    await google.chat(ask({ tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: choice, n: 2 }), callOptions());
    const body = upstream.requests[0]?.json as { toolConfig: unknown; generationConfig: unknown };
    expect(body.toolConfig).toEqual({ functionCallingConfig: { mode } });
    expect(body.generationConfig).toEqual({ candidateCount: 2 });
  });

  it('maps function calls to tool calls with fresh ids and replays their thought signatures', async () => {
    upstream.reply(json(fixture('google-tool-call.json')), json(fixture('google-chat.json')));
    const res = await google.chat(ask({ model: 'gemini-2.5-flash' }), callOptions());
    const choice = res.choices[0];
    expect(choice?.finish_reason).toBe('tool_calls');
    expect(choice?.message.content).toBeNull();
    const calls = choice?.message.tool_calls ?? [];
    expect(calls.map((c) => [c.function.name, JSON.parse(c.function.arguments)])).toEqual([
      ['get_weather', { city: 'Paris' }],
      ['get_weather', { city: 'Berlin', unit: 'celsius' }],
    ]);
    expect(calls[0]?.id).toMatch(/^call_/);
    expect(calls[0]?.id).not.toBe(calls[1]?.id);
    expect(res.usage).toEqual({ prompt_tokens: 52, completion_tokens: 58, total_tokens: 110, completion_tokens_details: { reasoning_tokens: 40 } });

    await google.chat(
      ask({
        model: 'gemini-2.5-flash',
        messages: [
          { role: 'user', content: 'Weather in Paris and Berlin?' },
          { role: 'assistant', content: null, tool_calls: calls },
          { role: 'tool', tool_call_id: calls[0]?.id, content: 'sunny' },
          { role: 'tool', tool_call_id: calls[1]?.id, content: '12' },
        ],
      }),
      callOptions(),
    );
    const body = upstream.requests[1]?.json as { contents: unknown[] };
    expect(body.contents.slice(1)).toEqual([
      {
        role: 'model',
        parts: [
          { functionCall: { name: 'get_weather', args: { city: 'Paris' } }, thoughtSignature: 'CiQBVKhc7sigParis' },
          { functionCall: { name: 'get_weather', args: { city: 'Berlin', unit: 'celsius' } } },
        ],
      },
      {
        role: 'user',
        parts: [
          { functionResponse: { name: 'get_weather', response: { output: 'sunny' } } },
          { functionResponse: { name: 'get_weather', response: { output: 12 } } },
        ],
      },
    ]);
  });

  it('marks an unknown replayed call with the skip-validator signature on Gemini 3 only', async () => {
    const messages: ChatRequest['messages'] = [
      { role: 'user', content: 'hi' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'call_from_elsewhere', type: 'function', function: { name: 'f', arguments: '{}' } },
          { id: 'call_second', type: 'function', function: { name: 'g', arguments: '' } },
        ],
      },
    ];
    upstream.reply(json(fixture('google-chat.json')), json(fixture('google-chat.json')));
    await google.chat(ask({ model: 'gemini-3-pro-preview', messages }), callOptions());
    await google.chat(ask({ model: 'gemini-2.5-pro', messages }), callOptions());
    const parts = (i: number) => (upstream.requests[i]?.json as { contents: { parts: unknown[] }[] }).contents[1]?.parts;
    expect(parts(0)).toEqual([
      { functionCall: { name: 'f', args: {} }, thoughtSignature: SKIP_SIGNATURE },
      { functionCall: { name: 'g', args: {} } },
    ]);
    expect(parts(1)).toEqual([{ functionCall: { name: 'f', args: {} } }, { functionCall: { name: 'g', args: {} } }]);
  });

  it('rejects a tool result that names no earlier call, without calling upstream', async () => {
    const err = await failure(
      google.chat(ask({ messages: [{ role: 'tool', tool_call_id: 'call_x', content: 'r' }] }), callOptions()),
    );
    expect(err.kind).toBe('bad_request');
    expect(upstream.requests).toHaveLength(0);
  });

  it.each([
    ['STOP', 'stop'],
    ['MAX_TOKENS', 'length'],
    ['SAFETY', 'content_filter'],
    ['RECITATION', 'content_filter'],
    ['BLOCKLIST', 'content_filter'],
    ['PROHIBITED_CONTENT', 'content_filter'],
    ['SPII', 'content_filter'],
    ['OTHER', 'stop'],
  ])('maps finishReason %s to %s', async (reason, expected) => {
    const body = fixtureJson<{ candidates: { finishReason: string }[] }>('google-chat.json');
    (body.candidates[0] as { finishReason: string }).finishReason = reason;
    upstream.reply(json(body));
    const res = await google.chat(ask(), callOptions());
    expect(res.choices[0]?.finish_reason).toBe(expected);
  });

  it('turns a blocked prompt into a content_policy error', async () => {
    upstream.reply(json(fixture('google-blocked.json')));
    const err = await failure(google.chat(ask(), callOptions()));
    expect(err.kind).toBe('content_policy');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('PROHIBITED_CONTENT');
  });

  it('reports a body that is not JSON as malformed and retryable', async () => {
    upstream.reply(json('{"candidates": [ {"content": '));
    const err = await failure(google.chat(ask(), callOptions()));
    expect(err.kind).toBe('malformed');
    expect(err.retryable).toBe(true);
  });
});

describe('google usage', () => {
  it('reports the prompt tokens served from the context cache and the thinking tokens', async () => {
    const body = fixtureJson<Record<string, unknown>>('google-chat.json');
    upstream.reply(json({ ...body, usageMetadata: { promptTokenCount: 4100, cachedContentTokenCount: 4096, candidatesTokenCount: 7, thoughtsTokenCount: 20, totalTokenCount: 4127 } }));
    const res = await google.chat(ask(), callOptions());
    expect(res.usage).toEqual({ prompt_tokens: 4100, completion_tokens: 27, total_tokens: 4127, prompt_tokens_details: { cached_tokens: 4096 }, completion_tokens_details: { reasoning_tokens: 20 } });
    // Without the cache count the usage says nothing about the cache.
    upstream.reply(json(fixture('google-chat.json')));
    expect((await google.chat(ask(), callOptions())).usage).not.toHaveProperty('prompt_tokens_details');
  });
});

describe('google errors', () => {
  const bodies = fixtureJson<Record<string, unknown>>('google-errors.json');
  it.each([
    [400, '400', {}, 'bad_request', false, undefined],
    [400, '400-key', {}, 'auth', false, undefined],
    [400, '400-context', {}, 'context_length', false, undefined],
    [400, '400-location', {}, 'auth', false, undefined],
    [401, '401', {}, 'auth', false, undefined],
    [403, '403', {}, 'auth', false, undefined],
    [404, '404', {}, 'not_found', false, undefined],
    [429, '429', {}, 'rate_limited', true, 34_000],
    [429, '429', { 'retry-after': '7' }, 'rate_limited', true, 7_000],
    [500, '500', {}, 'server', true, undefined],
    [503, '503', { 'retry-after': '2' }, 'overloaded', true, 2_000],
  ] as const)('%i (%s, headers %o) becomes %s', async (status, key, headers, kind, retryable, retryAfterMs) => {
    for (const streaming of [false, true]) {
      upstream.reply(json(bodies[key], status, headers));
      const err = await failure(streaming ? google.streamChat(ask(), callOptions()) : google.chat(ask(), callOptions()));
      expect(err).toMatchObject({ provider: 'my-gemini', kind, status, retryable, retryAfterMs });
      expect(err.message).toContain((bodies[key] as { error: { message: string } }).error.message);
    }
  });

  // Gemini can answer 200 and put the error in the stream; it must be classed as the same error over HTTP.
  it.each([
    [400, '400', 'bad_request', false, undefined],
    [400, '400-key', 'auth', false, undefined],
    [400, '400-context', 'context_length', false, undefined],
    [400, '400-location', 'auth', false, undefined],
    [401, '401', 'auth', false, undefined],
    [403, '403', 'auth', false, undefined],
    [404, '404', 'not_found', false, undefined],
    [429, '429', 'rate_limited', true, 34_000],
    [500, '500', 'server', true, undefined],
    [503, '503', 'overloaded', true, undefined],
  ] as const)('%i (%s) as the first stream event becomes %s, retryable as over HTTP', async (status, key, kind, retryable, retryAfterMs) => {
    upstream.reply(sse(`data: ${JSON.stringify(bodies[key])}\r\n\r\n`));
    const err = await failure(google.streamChat(ask(), callOptions()));
    expect(err).toMatchObject({ provider: 'my-gemini', kind, status, retryable, retryAfterMs });
    expect(err.message).toContain((bodies[key] as { error: { message: string } }).error.message);
  });

  it('keeps the kind of an error event after the first chunk but never retries it', async () => {
    const midstream = fixture('google-stream-error.chunks.txt').replace(/data: \{"error".*/, `data: ${JSON.stringify(bodies['429'])}`);
    upstream.reply(sse(midstream));
    const { chunks, error } = await drain(await google.streamChat(ask(), callOptions()));
    expect(text(chunks)).toBe('Once upon');
    expect(error).toMatchObject({ kind: 'rate_limited', status: 429, retryable: false });
  });
});

describe('google stream', () => {
  it('streams text over SSE, thought summaries apart as reasoning_content, and ends with a usage chunk', async () => {
    upstream.reply(sse(fixture('google-stream.chunks.txt')));
    const stream = await google.streamChat(ask({ stream: true }), callOptions());
    const chunks = await collect(stream);
    const req = upstream.requests[0];
    expect(req?.pathname).toBe('/v1beta/models/gemini-2.0-flash:streamGenerateContent');
    expect(req?.query.get('alt')).toBe('sse');
    expect(req?.headers.accept).toBe('text/event-stream');
    expect(req?.json).toEqual({ contents: [{ role: 'user', parts: [{ text: 'What is the capital of France?' }] }] });

    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    expect(text(chunks)).toBe('The capital of France is Paris — «é».');
    expect(chunks.flatMap((c) => c.choices.map((x) => x.delta.reasoning_content ?? '')).join('')).toBe('Comparing the two cities first.');
    expect(new Set(chunks.map((c) => c.id))).toEqual(new Set(['chatcmpl-sR7x-stream']));
    const finishes = chunks.flatMap((c) => c.choices.map((x) => x.finish_reason)).filter(Boolean);
    expect(finishes).toEqual(['stop']);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 9, completion_tokens: 21, total_tokens: 30 } });
    expect(chunks.slice(0, -1).every((c) => c.usage === undefined)).toBe(true);
  });

  it('streams function calls as whole tool-call deltas and finishes with tool_calls', async () => {
    upstream.reply(sse(fixture('google-tool-stream.chunks.txt')));
    const chunks = await collect(await google.streamChat(ask(), callOptions()));
    const deltas = chunks.flatMap((c) => c.choices.flatMap((x) => x.delta.tool_calls ?? []));
    expect(deltas.map((d) => [d.index, d.function?.name, d.function?.arguments])).toEqual([
      [0, 'get_weather', '{"city":"Paris"}'],
      [1, 'get_time', '{}'],
    ]);
    expect(deltas.every((d) => d.id?.startsWith('call_') && d.type === 'function')).toBe(true);
    expect(chunks.flatMap((c) => c.choices.map((x) => x.finish_reason)).filter(Boolean)).toEqual(['tool_calls']);
    expect(chunks.at(-1)?.usage).toEqual({ prompt_tokens: 29, completion_tokens: 21, total_tokens: 50 });
  });

  it('rejects before the first chunk when the prompt is blocked', async () => {
    upstream.reply(sse(`data: ${JSON.stringify(fixtureJson('google-blocked.json'))}\r\n\r\n`));
    const err = await failure(google.streamChat(ask(), callOptions()));
    expect(err.kind).toBe('content_policy');
  });

  it('rejects a first event that is not JSON as a retryable malformed answer', async () => {
    upstream.reply(sse('data: {"candidates": [\r\n\r\n'));
    const err = await failure(google.streamChat(ask(), callOptions()));
    expect(err).toMatchObject({ kind: 'malformed', retryable: true });
  });

  it('fails, retryably, an answer whose function call broke (MALFORMED_FUNCTION_CALL with no content), streamed or not', async () => {
    // What Gemini sends then: a candidate with the finish reason and no parts.
    const broken = { candidates: [{ finishReason: 'MALFORMED_FUNCTION_CALL', index: 0 }], usageMetadata: { promptTokenCount: 12, totalTokenCount: 12 }, modelVersion: 'gemini-2.5-flash' };
    const tools = [{ type: 'function' as const, function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }];
    upstream.reply(json(broken), sse(`data: ${JSON.stringify(broken)}\r\n\r\n`));
    const err = await failure(google.chat(ask({ tools, tool_choice: 'required' }), callOptions()));
    expect(err).toMatchObject({ kind: 'malformed', retryable: true });
    expect(err.message).toMatch(/MALFORMED_FUNCTION_CALL/);
    // Streamed, it fails before the first chunk: the stream is refused, so routing may retry it.
    const streamed = await failure(google.streamChat(ask({ tools, tool_choice: 'required' }), callOptions()));
    expect(streamed).toMatchObject({ kind: 'malformed', retryable: true });
    // With n > 1, a good candidate beside the broken one is still an answer (the broken one empty).
    const good = fixtureJson<{ candidates: Record<string, unknown>[] }>('google-chat.json');
    upstream.reply(json({ ...broken, candidates: [{ ...good.candidates[0], index: 0 }, { finishReason: 'MALFORMED_FUNCTION_CALL', index: 1 }] }));
    const mixed = await google.chat(ask({ tools, n: 2 }), callOptions());
    expect(mixed.choices.map((c) => [c.index, Boolean(c.message.content)])).toEqual([[0, true], [1, false]]);
  });

  it('fails, retryably, a broken function call whose candidate said only thoughts, streamed as JSON does', async () => {
    // Thoughts are not an answer: reasoning then an empty "stop" would be taken as one.
    const broken = {
      candidates: [{ content: { role: 'model', parts: [{ text: 'Which tool…', thought: true }] }, finishReason: 'MALFORMED_FUNCTION_CALL', index: 0 }],
      usageMetadata: { promptTokenCount: 12, totalTokenCount: 12 },
      modelVersion: 'gemini-2.5-flash',
    };
    const tools = [{ type: 'function' as const, function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }];
    upstream.reply(json(broken), sse(`data: ${JSON.stringify(broken)}\r\n\r\n`));
    const err = await failure(google.chat(ask({ tools, tool_choice: 'required' }), callOptions()));
    expect(err).toMatchObject({ kind: 'malformed', retryable: true });
    const streamed = await failure(google.streamChat(ask({ tools, tool_choice: 'required' }), callOptions()));
    expect(streamed).toMatchObject({ kind: 'malformed', retryable: true });
  });

  it('throws an error event that arrives mid-stream, not retryable once text went out', async () => {
    upstream.reply(sse(fixture('google-stream-error.chunks.txt')));
    const { chunks, error } = await drain(await google.streamChat(ask(), callOptions()));
    expect(text(chunks)).toBe('Once upon');
    expect(error).toMatchObject({ kind: 'server', status: 500, retryable: false });
  });

  it('treats a stream that ends before a finish reason as interrupted', async () => {
    const events = fixture('google-stream.chunks.txt').split('\r\n\r\n');
    upstream.reply(sse(events.slice(0, 3).join('\r\n\r\n') + '\r\n\r\n'));
    const { chunks, error } = await drain(await google.streamChat(ask(), callOptions()));
    expect(text(chunks)).toBe('The capital of France is Paris — «é».');
    expect(error).toMatchObject({ kind: 'stream_interrupted', retryable: false });
  });

  it('treats a connection reset mid-stream as interrupted', async () => {
    const body = fixture('google-stream.chunks.txt');
    upstream.reply({ ...sse(body.slice(0, body.indexOf('Paris'))), then: 'destroy' });
    const { chunks, error } = await drain(await google.streamChat(ask(), callOptions()));
    expect(chunks.length).toBeGreaterThan(0);
    expect(error).toMatchObject({ kind: 'stream_interrupted', retryable: false });
  });

  it('stops with an aborted error when the caller aborts mid-stream', async () => {
    const body = fixture('google-stream.chunks.txt');
    upstream.reply({ ...sse(body.slice(0, body.indexOf('data:', 10))), then: 'hold' });
    const ac = new AbortController();
    const iterator = (await google.streamChat(ask(), callOptions(ac.signal)))[Symbol.asyncIterator]();
    expect((await iterator.next()).done).toBe(false);
    ac.abort();
    const err = await failure(iterator.next());
    expect(err.kind).toBe('aborted');
  });

  it('rejects with aborted when the caller aborts before the upstream answers', async () => {
    upstream.reply({ stall: true });
    const ac = new AbortController();
    const pending = google.chat(ask(), callOptions(ac.signal));
    await upstream.waitForRequests(1);
    ac.abort();
    const err = await failure(pending);
    expect(err).toMatchObject({ kind: 'aborted', retryable: false });
  });
});

describe('google embeddings, models, readiness', () => {
  it('embeds through batchEmbedContents', async () => {
    upstream.reply(json(fixture('google-embed.json')));
    const res = await google.embed({ model: 'text-embedding-004', input: ['hello', 'goodbye'], dimensions: 3 }, callOptions());
    const req = upstream.requests[0];
    expect(req?.pathname).toBe('/v1beta/models/text-embedding-004:batchEmbedContents');
    expect(req?.json).toEqual({
      requests: [
        { model: 'models/text-embedding-004', content: { parts: [{ text: 'hello' }] }, outputDimensionality: 3 },
        { model: 'models/text-embedding-004', content: { parts: [{ text: 'goodbye' }] }, outputDimensionality: 3 },
      ],
    });
    expect(res.data).toEqual([
      { object: 'embedding', index: 0, embedding: [0.0132, -0.0081, 0.0441] },
      { object: 'embedding', index: 1, embedding: [-0.0212, 0.0307, 0.0019] },
    ]);
    expect(res.usage.prompt_tokens).toBeGreaterThan(0);
  });

  it('refuses token-array embedding input', async () => {
    const err = await failure(google.embed({ model: 'text-embedding-004', input: [[1, 2, 3]] }, callOptions()));
    expect(err.kind).toBe('bad_request');
  });

  it('lists models across pages without the models/ prefix', async () => {
    upstream.reply(json(fixture('google-models.page1.json')), json(fixture('google-models.page2.json')));
    const names = await google.listModels(callOptions());
    expect(names).toEqual(['gemini-2.0-flash', 'text-embedding-004', 'gemini-2.5-pro']);
    expect(upstream.requests.map((r) => [r.method, r.pathname, r.query.get('pageToken')])).toEqual([
      ['GET', '/v1beta/models', null],
      ['GET', '/v1beta/models', 'Cg5nZW1pbmktMi41LXBybw=='],
    ]);
  });

  it('is ready when configured with a key', async () => {
    expect(await google.ready()).toBe(true);
    const keyless = createGoogleProvider('no-key', { type: 'google', base_url: upstream.url });
    expect(await keyless.ready()).toBe(false);
    await keyless.close();
  });
});

function text(chunks: ChatChunk[]): string {
  return chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
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

describe('google thinking', () => {
  const config = () => (upstream.requests[0]?.json as { generationConfig?: Record<string, unknown> }).generationConfig;

  it("sends Anthropic's thinking as a budget with thoughts returned, and reasoning_effort as Google's own budgets", async () => {
    const cases: Array<[Partial<ChatRequest>, unknown]> = [
      [{ thinking: { type: 'enabled', budget_tokens: 2048 } }, { thinkingBudget: 2048, includeThoughts: true }],
      [{ thinking: { type: 'disabled' } }, { thinkingBudget: 0 }],
      [{ reasoning_effort: 'low' }, { thinkingBudget: 1024 }],
      [{ reasoning_effort: 'medium' }, { thinkingBudget: 8192 }],
      [{ reasoning_effort: 'high' }, { thinkingBudget: 24576 }],
      [{ reasoning_effort: 'none' }, { thinkingBudget: 0 }],
      [{}, undefined],
    ];
    for (const [over, expected] of cases) {
      upstream.reset();
      upstream.reply(json(fixture('google-chat.json')));
      await google.chat(ask(over), callOptions());
      expect(config()?.thinkingConfig, JSON.stringify(over)).toEqual(expected);
    }
  });

  it('returns thought summaries as reasoning_content, apart from the answer', async () => {
    upstream.reply(
      json({
        candidates: [{ content: { role: 'model', parts: [{ text: 'Paris is the seat of government.', thought: true }, { text: 'Paris.' }] }, finishReason: 'STOP', index: 0 }],
        usageMetadata: { promptTokenCount: 8, candidatesTokenCount: 2, thoughtsTokenCount: 9, totalTokenCount: 19 },
        modelVersion: 'gemini-2.5-flash',
        responseId: 'think-1',
      }),
    );
    const result = await google.chat(ask({ thinking: { type: 'enabled', budget_tokens: 1024 } }), callOptions());
    expect(result.choices[0]?.message).toMatchObject({ content: 'Paris.', reasoning_content: 'Paris is the seat of government.' });
    expect(result.usage.completion_tokens_details).toEqual({ reasoning_tokens: 9 });
  });
});
