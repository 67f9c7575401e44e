import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChatChunk, ChatRequest } from '../canonical/chat.js';
import { foldChunks, resultToChunks } from '../canonical/convert.js';
import { collect, fixture, rejection, startFixtureServer, type FixtureServer } from './__fixtures__/fixture-server.js';
import { createAnthropicProvider, type AnthropicProvider } from './anthropic.js';
import { anthropicStopReason, finishReasonFromAnthropic, toAnthropicToolChoice } from './anthropic-wire.js';
import { UpstreamError } from './errors.js';
import { createProvider } from './registry.js';
import type { CallOptions } from './types.js';

let server: FixtureServer;
let provider: AnthropicProvider;

const opts = (signal: AbortSignal = new AbortController().signal): CallOptions => ({ signal, timeoutMs: 5000, requestId: 'req-1' });
const baseReq: ChatRequest = { model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'Say hello' }] };
const sse = { 'content-type': 'text/event-stream' };

beforeAll(async () => {
  server = await startFixtureServer();
  provider = createAnthropicProvider('test-anthropic', { type: 'anthropic', base_url: server.url, api_key: 'sk-ant-test', headers: { 'anthropic-beta': 'x' } });
});
afterAll(async () => {
  await provider.close();
  await server.close();
});
beforeEach(() => {
  server.requests.length = 0;
});

const sentBody = (i = 0) => JSON.parse(server.requests[i]?.body ?? '{}') as Record<string, unknown>;

describe('anthropic provider: request mapping', () => {
  it('posts /v1/messages with x-api-key and anthropic-version, and a default max_tokens', async () => {
    server.reply({ body: await fixture('anthropic-message.json') });
    await provider.chat(baseReq, opts());
    const req = server.requests[0];
    expect(req).toMatchObject({ method: 'POST', path: '/v1/messages' });
    expect(req?.headers['x-api-key']).toBe('sk-ant-test');
    expect(req?.headers['anthropic-version']).toBe('2023-06-01');
    expect(req?.headers['anthropic-beta']).toBe('x');
    expect(req?.headers.authorization).toBeUndefined();
    expect(sentBody()).toEqual({ model: 'claude-sonnet-4-5', max_tokens: 4096, messages: [{ role: 'user', content: [{ type: 'text', text: 'Say hello' }] }] });
  });

  it("adds the request's betas to the configured anthropic-beta header, each once, JSON and streamed", async () => {
    server.reply({ body: await fixture('anthropic-message.json') });
    await provider.chat({ ...baseReq, anthropic_beta: ['interleaved-thinking-2025-05-14', 'x'] }, opts());
    server.reply({ headers: sse, body: await fixture('anthropic-text-stream.chunks.txt') });
    await collect(await provider.streamChat({ ...baseReq, stream: true, anthropic_beta: ['files-api-2025-04-14'] }, opts()));
    expect(server.requests.map((r) => r.headers['anthropic-beta'])).toEqual(['x,interleaved-thinking-2025-05-14', 'x,files-api-2025-04-14']);
    expect(sentBody()).not.toHaveProperty('anthropic_beta');
  });

  it('lifts system messages, maps images and tool turns, merges same-role turns and maps every option', async () => {
    server.reply({ body: await fixture('anthropic-message.json') });
    const req: ChatRequest = {
      model: 'claude-sonnet-4-5',
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'developer', content: [{ type: 'text', text: 'Answer in English.' }] },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is in these and what is the weather?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
          ],
        },
        {
          role: 'assistant',
          content: 'Checking.',
          tool_calls: [
            { id: 'toolu_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
            { id: 'toolu_2', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'toolu_1', content: '18C' },
        { role: 'tool', tool_call_id: 'toolu_2', content: [{ type: 'text', text: '24C' }] },
        { role: 'user', content: 'Which is warmer?' },
        { role: 'user', content: '' },
      ],
      tools: [{ type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
      tool_choice: 'required',
      parallel_tool_calls: false,
      stop: 'END',
      temperature: 1.6,
      top_p: 0.9,
      max_completion_tokens: 300,
      user: 'user-42',
    };
    await provider.chat(req, opts());
    expect(sentBody()).toEqual({
      model: 'claude-sonnet-4-5',
      max_tokens: 300,
      system: 'You are terse.\n\nAnswer in English.',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is in these and what is the weather?' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
            { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
          ],
        },
        {
          role: 'assistant',
          content: [
            { type: 'text', text: 'Checking.' },
            { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } },
            { type: 'tool_use', id: 'toolu_2', name: 'get_weather', input: { city: 'Rome' } },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_1', content: '18C' },
            { type: 'tool_result', tool_use_id: 'toolu_2', content: '24C' },
            { type: 'text', text: 'Which is warmer?' },
          ],
        },
      ],
      tools: [{ name: 'get_weather', description: 'Weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }],
      tool_choice: { type: 'any', disable_parallel_tool_use: true },
      stop_sequences: ['END'],
      temperature: 1,
      metadata: { user_id: 'user-42' },
    });
  });

  it('leaves out whitespace-only stop sequences, which the Messages API refuses', async () => {
    // OpenAI clients commonly send stop: ["\n"]; Anthropic answers 400 "each stop sequence must contain non-whitespace".
    server.reply({ body: await fixture('anthropic-message.json') });
    await provider.chat({ ...baseReq, stop: ['\n', 'END', ' \t', '\nUser:'] }, opts());
    expect(sentBody(0).stop_sequences).toEqual(['END', '\nUser:']);
    await provider.chat({ ...baseReq, stop: '\n\n' }, opts());
    expect(sentBody(1)).not.toHaveProperty('stop_sequences');
  });

  it('applies whitespace-only stop sequences to the answer itself, JSON and streamed', async () => {
    // JSON: the text ends before the first stop, and the finish says which stop ended it.
    server.reply({ body: await fixture('anthropic-message.json') });
    const cut = await provider.chat({ ...baseReq, stop: ['END', ' '] }, opts());
    expect(cut.choices[0]).toMatchObject({ message: { content: 'Hi!' }, finish_reason: 'stop', stop_sequence: ' ' });
    expect(cut.usage.completion_tokens).toBe(503); // the upstream generated (and billed) all of it
    server.reply({ body: await fixture('anthropic-message.json') });
    expect((await provider.chat({ ...baseReq, stop: ['\n'] }, opts())).choices[0]?.message.content).toBe('Hi! My name is Claude. How can I help?');

    // Streamed: the stop spans two deltas; the text before it goes out, the stream ends with a stop
    // finish and usage at once, without waiting for the rest of the generation (the upstream hangs).
    const events = (await fixture('anthropic-text-stream.chunks.txt')).split('\n\n').filter((e) => e.trim() !== '');
    const delta = (text: string) => `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } })}`;
    const head = events.slice(0, 3); // message_start, content_block_start, ping
    server.reply({ headers: sse, hang: true, body: [...head, delta('Line one\n'), delta('\nLine two'), ''].join('\n\n') });
    const chunks = await collect(await provider.streamChat({ ...baseReq, stream: true, stop: '\n\n' }, opts()));
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Line one');
    expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]).toMatchObject({ finish_reason: 'stop', stop_sequence: '\n\n' });
    const usage = chunks.at(-1)?.usage;
    expect(usage?.prompt_tokens).toBe(28);
    expect(usage?.completion_tokens).toBeGreaterThanOrEqual(3);

    // Text held back as a possible stop start goes out when its block ends without the stop.
    server.reply({ headers: sse, body: [...head, delta('Ends with\n'), ...events.slice(5)].join('\n\n') + '\n\n' });
    const whole = await collect(await provider.streamChat({ ...baseReq, stream: true, stop: ['\n\n'] }, opts()));
    expect(whole.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Ends with\n');
    expect(whole.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason).toBe('length');
  });

  it('sends temperature or top_p, never both (newer Claude models refuse the pair): temperature wins', async () => {
    server.reply({ body: await fixture('anthropic-message.json') });
    await provider.chat({ ...baseReq, temperature: 0.3, top_p: 0.9 }, opts());
    expect(sentBody(0)).toMatchObject({ temperature: 0.3 });
    expect(sentBody(0)).not.toHaveProperty('top_p');
    await provider.chat({ ...baseReq, top_p: 0.9 }, opts());
    expect(sentBody(1)).toMatchObject({ top_p: 0.9 });
    expect(sentBody(1)).not.toHaveProperty('temperature');
  });

  it('maps tool_choice auto, none and a named function', () => {
    expect(toAnthropicToolChoice('auto', undefined)).toEqual({ type: 'auto' });
    expect(toAnthropicToolChoice('none', undefined)).toEqual({ type: 'none' });
    expect(toAnthropicToolChoice({ type: 'function', function: { name: 'f' } }, undefined)).toEqual({ type: 'tool', name: 'f' });
    expect(toAnthropicToolChoice(undefined, undefined)).toBeUndefined();
  });

  it('sends file parts as document blocks (PDF as base64, plain text decoded) and refuses other types', async () => {
    server.reply({ body: await fixture('anthropic-message.json') });
    const pdf = Buffer.from('%PDF-1.4 tiny').toString('base64');
    await provider.chat(
      {
        ...baseReq,
        messages: [
          {
            role: 'user',
            content: [
              { type: 'file', file: { file_data: `data:application/pdf;base64,${pdf}`, filename: 'report.pdf' } },
              { type: 'file', file: { file_data: `data:text/plain;base64,${Buffer.from('plain notes').toString('base64')}` } },
              { type: 'text', text: 'Summarise both.' },
            ],
          },
        ],
      },
      opts(),
    );
    expect((sentBody().messages as { content: unknown }[])[0]?.content).toEqual([
      { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: pdf }, title: 'report.pdf' },
      { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'plain notes' } },
      { type: 'text', text: 'Summarise both.' },
    ]);
    const err = await provider
      .chat({ ...baseReq, messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: 'data:application/zip;base64,UEsD' } }] }] }, opts())
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as UpstreamError).kind).toBe('unsupported');
  });

  it('serves response_format (json_schema, json_object) with one forced tool whose input is the answer', async () => {
    const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] };
    server.reply({ body: await fixture('anthropic-message-json.json') });
    const result = await provider.chat({ ...baseReq, response_format: { type: 'json_schema', json_schema: { name: 'city', schema, strict: true } } }, opts());
    const sent = sentBody();
    expect(sent.tools).toEqual([{ name: 'json_response', description: 'Give the answer as JSON (city).', input_schema: schema }]);
    expect(sent.tool_choice).toEqual({ type: 'tool', name: 'json_response', disable_parallel_tool_use: true });
    expect(JSON.parse(result.choices[0]?.message.content ?? '')).toEqual({ city: 'Paris', population_millions: 2.1 });
    expect(result.choices[0]?.message.tool_calls).toBeUndefined();
    expect(result.choices[0]?.finish_reason).toBe('stop');

    server.reply({ headers: sse, body: await fixture('anthropic-json-stream.chunks.txt') });
    const chunks = await collect(await provider.streamChat({ ...baseReq, stream: true, response_format: { type: 'json_object' } }, opts()));
    expect((sentBody(1).tools as { input_schema: unknown }[])[0]?.input_schema).toEqual({ type: 'object' });
    expect(JSON.parse(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''))).toEqual({ city: 'Paris' });
    expect(chunks.some((c) => c.choices[0]?.delta.tool_calls)).toBe(false);
    expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason).toBe('stop');

    // An empty object, streamed with no input deltas, is still JSON; a schema without a type gets one.
    const empty = (await fixture('anthropic-json-stream.chunks.txt')).replace(/event: content_block_delta\ndata: .*\n\n/g, '');
    server.reply({ headers: sse, body: empty });
    const none = await collect(await provider.streamChat({ ...baseReq, stream: true, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { properties: {} } } } }, opts()));
    expect(none.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('{}');
    expect((sentBody(2).tools as { input_schema: unknown }[])[0]?.input_schema).toEqual({ type: 'object', properties: {} });
  });

  it('leaves response_format aside when the request brings its own tools', async () => {
    server.reply({ body: await fixture('anthropic-message-tool.json') });
    await provider.chat({ ...baseReq, response_format: { type: 'json_object' }, tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }] }, opts());
    expect((sentBody().tools as { name: string }[]).map((t) => t.name)).toEqual(['get_weather']);
  });

  it('uses options.default_max_tokens when configured', async () => {
    const p = createAnthropicProvider('small', { type: 'anthropic', base_url: server.url, api_key: 'k', options: { default_max_tokens: 256 } });
    try {
      server.reply({ body: await fixture('anthropic-message.json') });
      await p.chat(baseReq, opts());
      expect(sentBody().max_tokens).toBe(256);
    } finally {
      await p.close();
    }
  });
});

describe('anthropic provider: text Anthropic refuses', () => {
  it('drops a whitespace-only text block (Claude\'s own "\\n\\n" before a tool call, sent back as history) and trims a final prefill\'s trailing whitespace', async () => {
    server.reply({ body: await fixture('anthropic-message.json') });
    await provider.chat(
      {
        model: 'claude-sonnet-4-5',
        tools: [{ type: 'function', function: { name: 'f' } }],
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: '\n\n', tool_calls: [{ id: 't1', type: 'function', function: { name: 'f', arguments: '{}' } }] },
          { role: 'tool', tool_call_id: 't1', content: 'ok' },
          { role: 'user', content: [{ type: 'text', text: ' ' }, { type: 'text', text: 'and now?' }] },
          { role: 'assistant', content: 'The answer is ' },
        ],
      },
      opts(),
    );
    const messages = sentBody().messages as Array<{ role: string; content: Array<{ type: string; text?: string }> }>;
    expect(messages[1]?.content.map((b) => b.type)).toEqual(['tool_use']);
    expect(messages[2]?.content).toEqual([expect.objectContaining({ type: 'tool_result' }), { type: 'text', text: 'and now?' }]);
    expect(messages[3]).toEqual({ role: 'assistant', content: [{ type: 'text', text: 'The answer is' }] });
  });

  it('keeps the text parts of one system message apart (one per line), not run together', async () => {
    server.reply({ body: await fixture('anthropic-message.json') });
    await provider.chat({ model: 'claude-sonnet-4-5', messages: [{ role: 'system', content: [{ type: 'text', text: 'You are a pirate.' }, { type: 'text', text: 'Answer in French.' }] }, { role: 'user', content: 'hi' }] }, opts());
    expect(sentBody().system).toBe('You are a pirate.\nAnswer in French.');
  });
});

describe('anthropic provider: JSON mode with extended thinking', () => {
  const schema = { type: 'object', properties: { a: { type: 'string' } } };
  it('sends a JSON schema as output_config.format, not the forced tool Anthropic refuses beside thinking', async () => {
    server.reply({ body: await fixture('anthropic-message.json') });
    const res = await provider.chat({ ...baseReq, thinking: { type: 'enabled', budget_tokens: 2048 }, max_completion_tokens: 8000, response_format: { type: 'json_schema', json_schema: { name: 'o', schema } } }, opts());
    const body = sentBody();
    expect(body.output_config).toEqual({ format: { type: 'json_schema', schema } });
    expect(body).not.toHaveProperty('tool_choice');
    expect(body).not.toHaveProperty('tools');
    // The answer's text is the answer.
    expect(typeof res.choices[0]?.message.content).toBe('string');
  });

  it('offers the JSON tool for json_object without forcing it', async () => {
    server.reply({ body: await fixture('anthropic-message.json') });
    await provider.chat({ ...baseReq, thinking: { type: 'enabled', budget_tokens: 2048 }, max_completion_tokens: 8000, response_format: { type: 'json_object' } }, opts());
    expect(sentBody().tool_choice).toEqual({ type: 'auto', disable_parallel_tool_use: true });
    expect((sentBody().tools as Array<{ name: string }>).map((t) => t.name)).toHaveLength(1);
  });

  it('still forces the tool without thinking', async () => {
    server.reply({ body: await fixture('anthropic-message-json.json') });
    await provider.chat({ ...baseReq, response_format: { type: 'json_schema', json_schema: { name: 'o', schema } } }, opts());
    expect(sentBody().tool_choice).toMatchObject({ type: 'tool', disable_parallel_tool_use: true });
    expect(sentBody()).not.toHaveProperty('output_config');
  });
});

describe('anthropic provider: responses', () => {
  it('joins text blocks and counts cache tokens as prompt tokens', async () => {
    server.reply({ body: await fixture('anthropic-message.json') });
    const result = await provider.chat(baseReq, opts());
    expect(result).toMatchObject({
      id: 'msg_013Zva2CMHLNnXjNJJKqJ2EF',
      object: 'chat.completion',
      model: 'claude-sonnet-4-5-20250929',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hi! My name is Claude. How can I help?' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 2095 + 100 + 5, completion_tokens: 503, total_tokens: 2095 + 100 + 5 + 503 },
    });
    // Which of them the prompt cache read and wrote, for pricing and for the routes to report.
    expect(result.usage.prompt_tokens_details).toEqual({ cached_tokens: 5, cache_write_tokens: 100 });
  });

  it('keeps the stop sequence that ended the message', async () => {
    const body = JSON.parse(await fixture('anthropic-message.json')) as Record<string, unknown>;
    server.reply({ body: JSON.stringify({ ...body, stop_reason: 'stop_sequence', stop_sequence: '###' }) });
    const result = await provider.chat({ ...baseReq, stop: ['###'] }, opts());
    expect(result.choices[0]).toMatchObject({ finish_reason: 'stop', stop_sequence: '###' });
    server.reply({ body: await fixture('anthropic-message.json') });
    expect((await provider.chat(baseReq, opts())).choices[0]).not.toHaveProperty('stop_sequence');
  });

  it('maps tool_use blocks to tool_calls with JSON arguments and keeps the thinking before them', async () => {
    server.reply({ body: await fixture('anthropic-message-tool.json') });
    const result = await provider.chat(baseReq, opts());
    expect(result.choices[0]?.message).toEqual({
      role: 'assistant',
      content: "I'll check the weather in San Francisco.",
      tool_calls: [{ id: 'toolu_01A09q90qw90lq917835lq9', type: 'function', function: { name: 'get_weather', arguments: '{"location":"San Francisco, CA","unit":"celsius"}' } }],
      reasoning_content: 'The user wants the weather.',
      thinking_blocks: [{ type: 'thinking', thinking: 'The user wants the weather.', signature: 'EqQBCgIYAhIM1gbcDa9GJwZA2b3h' }],
    });
    expect(result.choices[0]?.finish_reason).toBe('tool_calls');
  });

  it('sends thinking as the client asked, and history thinking blocks back in place before the turn\'s text and tool calls', async () => {
    server.reply({ body: await fixture('anthropic-message.json') });
    const signed = { type: 'thinking' as const, thinking: 'The user wants the weather.', signature: 'EqQBCgIYAhIM1gbcDa9GJwZA2b3h' };
    const redacted = { type: 'redacted_thinking' as const, data: 'EmwKAhgBEgy3va3pzix' };
    await provider.chat(
      {
        ...baseReq,
        max_completion_tokens: 16000,
        thinking: { type: 'enabled', budget_tokens: 10000 },
        messages: [
          { role: 'user', content: 'Weather in Paris?' },
          {
            role: 'assistant',
            content: 'Checking.',
            thinking_blocks: [signed, redacted],
            tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
          },
          { role: 'tool', tool_call_id: 'toolu_1', content: '18C' },
        ],
      },
      opts(),
    );
    const body = sentBody();
    expect(body.thinking).toEqual({ type: 'enabled', budget_tokens: 10000 });
    expect((body.messages as unknown[])[1]).toEqual({
      role: 'assistant',
      content: [signed, redacted, { type: 'text', text: 'Checking.' }, { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }],
    });
    server.reply({ body: await fixture('anthropic-message.json') });
    await provider.chat({ ...baseReq, thinking: { type: 'disabled' } }, opts());
    expect(sentBody(1).thinking).toEqual({ type: 'disabled' });
  });

  it('returns thinking and redacted thinking in order, in JSON and streamed alike', async () => {
    server.reply({ body: await fixture('anthropic-message-thinking.json') });
    const json = await provider.chat(baseReq, opts());
    const thinkingText = 'Let me solve this step by step:\n\n1. First break down 27 * 453\n2. 453 = 400 + 50 + 3';
    const blocks = [
      { type: 'thinking', thinking: thinkingText, signature: 'EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds' },
      { type: 'redacted_thinking', data: 'EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP' },
    ];
    expect(json.choices[0]?.message).toEqual({ role: 'assistant', content: '27 * 453 = 12,231', reasoning_content: thinkingText, thinking_blocks: blocks });

    server.reply({ headers: sse, body: await fixture('anthropic-thinking-stream.chunks.txt') });
    const chunks = await collect(await provider.streamChat({ ...baseReq, stream: true }, opts()));
    const deltas = chunks.flatMap((c) => c.choices.map((ch) => ch.delta)).filter((d) => d.thinking_blocks);
    expect(deltas.map((d) => d.thinking_blocks)).toEqual([
      [{ index: 0, type: 'thinking', thinking: '', signature: '' }],
      [{ index: 0, type: 'thinking', thinking: 'Let me solve this step by step:\n\n1. First break down 27 * 453' }],
      [{ index: 0, type: 'thinking', thinking: '\n2. 453 = 400 + 50 + 3' }],
      [{ index: 0, type: 'thinking', signature: 'EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds' }],
      [{ index: 1, type: 'redacted_thinking', data: 'EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP' }],
    ]);
    const folded = foldChunks(chunks);
    expect(folded.choices[0]?.message).toEqual({ ...json.choices[0]?.message, refusal: null });
    // Replayed (a cache hit streamed) and folded again, nothing is lost.
    expect(foldChunks(resultToChunks(folded)).choices[0]?.message).toEqual({ ...json.choices[0]?.message, refusal: null });
  });

  it('maps every stop reason both ways', () => {
    const table = ['end_turn', 'stop_sequence', 'max_tokens', 'tool_use', 'refusal', 'pause_turn', 'model_context_window_exceeded', null];
    expect(table.map(finishReasonFromAnthropic)).toEqual(['stop', 'stop', 'length', 'tool_calls', 'content_filter', 'stop', 'length', null]);
    expect((['stop', 'length', 'tool_calls', 'content_filter', null] as const).map(anthropicStopReason)).toEqual([
      'end_turn',
      'max_tokens',
      'tool_use',
      'refusal',
      'end_turn',
    ]);
  });

  it('runs n parallel calls for n > 1 and numbers the choices', async () => {
    server.reply({ body: await fixture('anthropic-message.json') });
    const result = await provider.chat({ ...baseReq, n: 3 }, opts());
    expect(server.requests.length).toBe(3);
    for (let i = 0; i < 3; i++) expect(sentBody(i).n).toBeUndefined();
    expect(result.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(result.usage.completion_tokens).toBe(3 * 503);
    expect(result.usage.prompt_tokens).toBe(3 * 2200);
    expect(result.usage.prompt_tokens_details).toEqual({ cached_tokens: 3 * 5, cache_write_tokens: 3 * 100 });
  });
});

describe('anthropic provider: streaming', () => {
  it('turns a text event stream into canonical chunks ending with usage', async () => {
    server.reply({ headers: sse, body: await fixture('anthropic-text-stream.chunks.txt') });
    const chunks = await collect(await provider.streamChat({ ...baseReq, stream: true }, opts()));
    expect(sentBody().stream).toBe(true);
    expect(server.requests[0]?.headers.accept).toBe('text/event-stream');
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello, wörld ✓');
    expect(chunks.filter((c) => c.choices[0]?.finish_reason).map((c) => c.choices[0]?.finish_reason)).toEqual(['length']);
    const last = chunks[chunks.length - 1] as ChatChunk;
    expect(last).toMatchObject({ id: 'msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY', choices: [], usage: { prompt_tokens: 28, completion_tokens: 15, total_tokens: 43 } });
    // message_start reported 3 tokens read from the prompt cache and no cache write count.
    expect(last.usage?.prompt_tokens_details).toEqual({ cached_tokens: 3 });
    expect(chunks.filter((c) => c.usage).length).toBe(1);
  });

  it('streams tool_use blocks as tool-call deltas numbered per tool, the first carrying id and name', async () => {
    server.reply({ headers: sse, body: await fixture('anthropic-tool-stream.chunks.txt') });
    const chunks = await collect(await provider.streamChat(baseReq, opts()));
    const deltas = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    expect(deltas[0]).toEqual({ index: 0, id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6', type: 'function', function: { name: 'get_weather', arguments: '' } });
    const args = (i: number) => deltas.filter((d) => d.index === i).map((d) => d.function?.arguments ?? '').join('');
    expect(JSON.parse(args(0))).toEqual({ location: 'San Francisco, CA', unit: 'fahrenheit' });
    expect(deltas.find((d) => d.index === 1 && d.id)).toMatchObject({ id: 'toolu_02', function: { name: 'get_time' } });
    expect(JSON.parse(args(1))).toEqual({ tz: 'PST' });
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe("Okay, let's check the weather for San Francisco, CA:");
    expect(chunks.some((c) => c.choices[0]?.finish_reason === 'tool_calls')).toBe(true);
    expect(chunks[chunks.length - 1]?.usage).toEqual({ prompt_tokens: 472, completion_tokens: 89, total_tokens: 561 });
  });

  it('gives a streamed call to a tool without input the arguments "{}", as the non-streamed answer does', async () => {
    // A no-input tool streams as content_block_start (input {}), one empty input_json_delta, content_block_stop.
    server.reply({ headers: sse, body: await fixture('anthropic-tool-noargs-stream.chunks.txt') });
    const chunks = await collect(await provider.streamChat(baseReq, opts()));
    const deltas = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    expect(deltas[0]).toMatchObject({ index: 0, id: 'toolu_01NoArgs', function: { name: 'get_time' } });
    const streamed = deltas.map((d) => d.function?.arguments ?? '').join('');
    expect(streamed).toBe('{}');

    const message = JSON.parse(await fixture('anthropic-message-tool.json')) as { content: { type: string; input?: unknown }[] };
    const noInput = { ...message, content: message.content.map((b) => (b.type === 'tool_use' ? { ...b, input: {} } : b)) };
    server.reply({ body: JSON.stringify(noInput) });
    const whole = await provider.chat(baseReq, opts());
    expect(whole.choices[0]?.message.tool_calls?.[0]?.function.arguments).toBe(streamed);
  });

  it('skips event types it does not know, as Anthropic versioning asks', async () => {
    const text = await fixture('anthropic-text-stream.chunks.txt');
    const withNew = text.replace('event: ping', 'event: future_event\ndata: {"type":"future_event","x":1}\n\nevent: ping');
    server.reply({ headers: sse, body: withNew });
    const chunks = await collect(await provider.streamChat(baseReq, opts()));
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello, wörld ✓');
  });

  it('rejects n > 1 on a stream as unsupported without calling the upstream', async () => {
    const err = await rejection(provider.streamChat({ ...baseReq, n: 2 }, opts()));
    expect(err).toMatchObject({ kind: 'unsupported', retryable: false });
    expect(server.requests.length).toBe(0);
  });

  it('turns a mid-stream overloaded_error into an UpstreamError that is not retryable once output was sent', async () => {
    server.reply({ headers: sse, body: await fixture('anthropic-stream-midstream-error.chunks.txt') });
    const seen: ChatChunk[] = [];
    const err = await rejection(
      (async () => {
        for await (const c of await provider.streamChat(baseReq, opts())) seen.push(c);
      })(),
    );
    expect(seen.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Partial');
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ kind: 'overloaded', status: 529, retryable: false });
  });

  it('reports a stream that ends before message_stop as interrupted', async () => {
    server.reply({ headers: sse, body: await fixture('anthropic-stream-truncated.chunks.txt') });
    expect(await rejection(collect(await provider.streamChat(baseReq, opts())))).toMatchObject({ kind: 'stream_interrupted' });
  });

  it('stops reading and closes the upstream socket when the caller aborts', async () => {
    const text = await fixture('anthropic-text-stream.chunks.txt');
    const head = text.slice(0, text.indexOf('event: content_block_stop'));
    server.reply({ headers: sse, body: head, hang: true });
    const controller = new AbortController();
    const err = await rejection(
      (async () => {
        for await (const c of await provider.streamChat(baseReq, opts(controller.signal))) {
          if (c.choices[0]?.delta.content === ', wörld ✓') controller.abort();
        }
      })(),
    );
    expect(err).toMatchObject({ kind: 'aborted' });
    await server.requests[0]?.closed;
  });
});

describe('anthropic provider: upstream errors', () => {
  const cases = [
    { file: 'anthropic-error-400.json', status: 400, kind: 'bad_request', retryable: false },
    { file: 'anthropic-error-400-context.json', status: 400, kind: 'context_length', retryable: false },
    { file: 'anthropic-error-401.json', status: 401, kind: 'auth', retryable: false },
    { file: 'anthropic-error-500.json', status: 500, kind: 'server', retryable: true },
    { file: 'anthropic-error-529.json', status: 529, kind: 'overloaded', retryable: true },
  ];
  for (const c of cases) {
    it(`maps ${c.status} (${c.file}) to kind ${c.kind}`, async () => {
      const body = await fixture(c.file);
      server.reply({ status: c.status, body });
      const err = (await rejection(provider.chat(baseReq, opts()))) as UpstreamError;
      expect(err).toBeInstanceOf(UpstreamError);
      expect(err).toMatchObject({ kind: c.kind, status: c.status, retryable: c.retryable, provider: 'test-anthropic' });
      expect(err.message).toContain(JSON.parse(body).error.message);
    });
  }

  it('maps 429 with Retry-After on a stream request', async () => {
    server.reply({ status: 429, headers: { 'retry-after': '7' }, body: await fixture('anthropic-error-429.json') });
    const err = await rejection(provider.streamChat(baseReq, opts()));
    expect(err).toMatchObject({ kind: 'rate_limited', status: 429, retryable: true, retryAfterMs: 7000 });
  });

  it("without Retry-After, a 429's wait is when the exhausted limit resets (anthropic-ratelimit-*-reset)", async () => {
    const reset = new Date(Date.now() + 30_000).toISOString();
    const later = new Date(Date.now() + 50_000).toISOString();
    server.reply({
      status: 429,
      headers: { 'anthropic-ratelimit-requests-remaining': '40', 'anthropic-ratelimit-requests-reset': later, 'anthropic-ratelimit-input-tokens-remaining': '0', 'anthropic-ratelimit-input-tokens-reset': reset },
      body: await fixture('anthropic-error-429.json'),
    });
    const err = (await rejection(provider.chat(baseReq, opts()))) as UpstreamError;
    expect(err).toMatchObject({ kind: 'rate_limited', status: 429 });
    expect(err.retryAfterMs).toBeGreaterThan(28_000);
    expect(err.retryAfterMs).toBeLessThanOrEqual(30_000);
  });

  it('rejects a 200 body that is not a Message as malformed', async () => {
    server.reply({ body: '{"id":"msg_1","type":"message","content":"oops"}' });
    const err = await rejection(provider.chat(baseReq, opts()));
    expect(err).toMatchObject({ kind: 'malformed' });
    expect((err as Error).message).toMatch(/content/);
  });
});

describe('anthropic provider: wiring', () => {
  it('has no embeddings', async () => {
    expect(await rejection(provider.embed({ model: 'x', input: 'a' }, opts()))).toMatchObject({ kind: 'unsupported' });
  });

  it('is built by the registry for type anthropic, ready only with a key or base URL', async () => {
    const withKey = await createProvider('a', { type: 'anthropic', api_key: 'k' });
    const without = await createProvider('b', { type: 'anthropic' });
    expect(withKey.type).toBe('anthropic');
    expect(await withKey.ready()).toBe(true);
    expect(await without.ready()).toBe(false);
    await withKey.close();
    await without.close();
  });
});
