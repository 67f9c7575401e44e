// The official `@anthropic-ai/sdk`, unmodified, against the gateway's /v1/messages: JSON, streaming
// with Anthropic's event sequence, tool use both ways, errors as the SDK's typed classes, and the key
// sent as x-api-key (the SDK's way) when auth is on.
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { FaultUpstream } from './helpers/fault-upstream.js';
import { startTestGateway } from './helpers/gateway.js';

let server: RunningServer;
let client: Anthropic;

beforeAll(async () => {
  server = await startTestGateway({ env: { TRUTHGPT_API_TOKEN: 'anthropic-test-token' } });
  client = new Anthropic({ baseURL: server.url, apiKey: 'anthropic-test-token', maxRetries: 0 });
});
afterAll(() => server?.close());

describe('/v1/messages through the Anthropic SDK', () => {
  it('answers a message with usage and gateway headers', async () => {
    const { data, response } = await client.messages
      .create({ model: 'claude-3-5-haiku-latest', max_tokens: 200, system: 'Be brief.', messages: [{ role: 'user', content: 'Hello from Anthropic land' }] })
      .withResponse();
    expect(data.type).toBe('message');
    expect(data.role).toBe('assistant');
    const text = data.content.find((b) => b.type === 'text');
    expect(text?.type === 'text' && text.text).toContain('Hello from Anthropic land');
    expect(data.stop_reason).toBe('end_turn');
    expect(data.usage.input_tokens).toBeGreaterThan(0);
    expect(data.usage.output_tokens).toBeGreaterThan(0);
    expect(response.headers.get('x-inferenceflow-provider')).toBe('simulator');
    expect(response.headers.get('x-request-id')).toBeTruthy();
  });

  it('streams the real event sequence and the SDK assembles the same text', async () => {
    const stream = client.messages.stream({ model: 'claude-3-5-haiku-latest', max_tokens: 200, messages: [{ role: 'user', content: 'stream me' }] });
    const events: string[] = [];
    stream.on('streamEvent', (e) => events.push(e.type));
    const final = await stream.finalMessage();
    expect(events[0]).toBe('message_start');
    expect(events).toContain('content_block_start');
    expect(events).toContain('content_block_delta');
    expect(events.slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
    const text = final.content.find((b) => b.type === 'text');
    expect(text?.type === 'text' && text.text).toContain('stream me');
    expect(final.usage.output_tokens).toBeGreaterThan(0);
  });

  it('answers structured outputs (output_config.format) with JSON of the schema, from any provider', async () => {
    const schema = { type: 'object', properties: { city: { type: 'string' }, population: { type: 'integer' } }, required: ['city', 'population'], additionalProperties: false };
    const msg = await client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 200, messages: [{ role: 'user', content: 'A big city?' }], output_config: { format: { type: 'json_schema', schema } } } as never);
    const block = (msg as Anthropic.Message).content[0];
    expect(block?.type).toBe('text');
    const parsed = JSON.parse((block as Anthropic.TextBlock).text) as Record<string, unknown>;
    expect(Object.keys(parsed).sort()).toEqual(['city', 'population']);
    expect(typeof parsed.population).toBe('number');
  });

  it('maps max_tokens to stop_reason max_tokens', async () => {
    const res = await client.messages.create({ model: 'm', max_tokens: 3, messages: [{ role: 'user', content: 'long please' }] });
    expect(res.stop_reason).toBe('max_tokens');
    expect(res.usage.output_tokens).toBeLessThanOrEqual(3);
  });

  it('reports the stop sequence that ended the answer, in JSON and in the stream', async () => {
    const params = { model: 'm', max_tokens: 200, stop_sequences: ['never-there', 'simulator'], messages: [{ role: 'user' as const, content: 'Hello there' }] };
    const msg = await client.messages.create(params);
    expect([msg.stop_reason, msg.stop_sequence]).toEqual(['stop_sequence', 'simulator']);
    expect(msg.content[0]).toMatchObject({ type: 'text' });
    expect((msg.content[0] as { text: string }).text).not.toContain('simulator');
    const streamed = await client.messages.stream(params).finalMessage();
    expect([streamed.stop_reason, streamed.stop_sequence]).toEqual(['stop_sequence', 'simulator']);
    // Without a match it is an ordinary end of turn.
    const plain = await client.messages.create({ ...params, stop_sequences: ['never-there'] });
    expect([plain.stop_reason, plain.stop_sequence]).toEqual(['end_turn', null]);
  });

  it('uses tools both ways', async () => {
    const tools: Anthropic.Tool[] = [{ name: 'get_time', description: 'Current time', input_schema: { type: 'object', properties: { zone: { type: 'string' } }, required: ['zone'] } }];
    const first = await client.messages.create({ model: 'm', max_tokens: 100, tools, tool_choice: { type: 'any' }, messages: [{ role: 'user', content: 'What time is it in Tokyo?' }] });
    expect(first.stop_reason).toBe('tool_use');
    const use = first.content.find((b) => b.type === 'tool_use');
    expect(use?.type === 'tool_use' && use.name).toBe('get_time');
    expect(use?.type === 'tool_use' && typeof (use.input as { zone: unknown }).zone).toBe('string');
    const second = await client.messages.create({
      model: 'm',
      max_tokens: 100,
      tools,
      messages: [
        { role: 'user', content: 'What time is it in Tokyo?' },
        { role: 'assistant', content: first.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use?.type === 'tool_use' ? use.id : '', content: '09:15 JST' }] },
      ],
    });
    const text = second.content.find((b) => b.type === 'text');
    expect(text?.type === 'text' && text.text).toContain('09:15 JST');
  });

  it('streams a tool call that the SDK parses', async () => {
    const final = await client.messages
      .stream({ model: 'm', max_tokens: 100, tool_choice: { type: 'tool', name: 'lookup' }, tools: [{ name: 'lookup', input_schema: { type: 'object', properties: { q: { type: 'string' } } } }], messages: [{ role: 'user', content: 'find' }] })
      .finalMessage();
    const use = final.content.find((b) => b.type === 'tool_use');
    expect(use?.type === 'tool_use' && use.input).toEqual({ q: 'example' });
  });

  it('raises the SDK error classes with Anthropic error bodies', async () => {
    await expect(client.messages.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] } as never)).rejects.toBeInstanceOf(Anthropic.BadRequestError);
    const bad = new Anthropic({ baseURL: server.url, apiKey: 'wrong-key-123', maxRetries: 0 });
    const err = await bad.messages.create({ model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((err as InstanceType<typeof Anthropic.AuthenticationError>).error).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
  });

  it('counts tokens as the SDK asks (more for a longer prompt and with tools)', async () => {
    const short = await client.messages.countTokens({ model: 'm', messages: [{ role: 'user', content: 'Hello' }] });
    const long = await client.messages.countTokens({ model: 'm', system: 'Answer in French.', messages: [{ role: 'user', content: 'Hello, how are you doing today, my friend?' }] });
    const tools = await client.messages.countTokens({
      model: 'm',
      messages: [{ role: 'user', content: 'Hello' }],
      tools: [{ name: 'get_weather', description: 'Weather for a city', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }],
    });
    expect(short.input_tokens).toBeGreaterThan(0);
    expect(long.input_tokens).toBeGreaterThan(short.input_tokens);
    expect(tools.input_tokens).toBeGreaterThan(short.input_tokens);
  });

  it('answers a route it does not serve with the Anthropic not-found body', async () => {
    const err = await client.messages.batches.retrieve('msgbatch_none').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.NotFoundError);
    expect((err as InstanceType<typeof Anthropic.NotFoundError>).error).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
  });
});

describe('/v1/messages when the upstream fails mid-stream', () => {
  let upstream: FaultUpstream;
  let gateway: RunningServer;
  let sdk: Anthropic;

  beforeAll(async () => {
    upstream = new FaultUpstream();
    upstream.set('cut', { kind: 'sse_truncated', after: 2 });
    const url = await upstream.start();
    gateway = await startTestGateway({
      config: {
        providers: { fault: { type: 'openai', base_url: url, api_key: 'k' } },
        models: [{ name: 'cut', deployments: [{ provider: 'fault', model: 'cut' }], retry: { max_retries: 0 } }],
      },
    });
    sdk = new Anthropic({ baseURL: gateway.url, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
  });

  it("ends the stream with the gateway's error mapped to Anthropic's error event, which the SDK raises", async () => {
    const stream = sdk.messages.stream({ model: 'cut', max_tokens: 100, messages: [{ role: 'user', content: 'Hello there' }] });
    const text: string[] = [];
    stream.on('text', (t) => text.push(t));
    const err = await stream.finalMessage().catch((e: unknown) => e);
    // What arrived before the cut went out; then the error event, with the gateway's code.
    expect(text.join('')).not.toBe('');
    expect(err).toBeInstanceOf(Anthropic.APIError);
    expect((err as InstanceType<typeof Anthropic.APIError>).error).toEqual({
      type: 'error',
      error: { type: 'api_error', message: expect.stringMatching(/fault stream broke/), code: 'upstream_error' },
      request_id: expect.any(String),
    });
  });
});
