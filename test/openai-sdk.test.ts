// The official `openai` package, unmodified, against a real gateway on the built-in simulator:
// chat, streams, n, tools, JSON mode, stop, embeddings, models, headers and error codes.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

let server: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  server = await startTestGateway();
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await server?.close();
});

describe('chat completions through the OpenAI SDK', () => {

  it("stops at a stop sequence and answers in OpenAI's shape (no Anthropic stop_sequence field)", async () => {
    const res = await client.chat.completions.create({ model: 'gpt-4o-mini', stop: ['simulator'], messages: [{ role: 'user', content: 'Hello there' }] });
    expect(res.choices[0]?.finish_reason).toBe('stop');
    expect(res.choices[0]?.message.content).not.toContain('simulator');
    expect(Object.keys(res.choices[0] ?? {})).not.toContain('stop_sequence');
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', stop: ['simulator'], stream: true, messages: [{ role: 'user', content: 'Hello there' }] });
    for await (const chunk of stream) for (const c of chunk.choices) expect(Object.keys(c)).not.toContain('stop_sequence');
  });
  it('answers with gateway fact headers and the request id it was given', async () => {
    const { data, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }] }, { headers: { 'x-request-id': 'req-abc.123' } })
      .withResponse();
    expect(data.object).toBe('chat.completion');
    expect(data.choices[0]?.message.content).toContain('Say hello');
    expect(data.usage?.total_tokens).toBe((data.usage?.prompt_tokens ?? 0) + (data.usage?.completion_tokens ?? 0));
    expect(response.headers.get('x-request-id')).toBe('req-abc.123');
    expect(response.headers.get('x-inferenceflow-provider')).toBe('simulator');
    expect(response.headers.get('x-inferenceflow-model')).toBe('gpt-4o-mini');
    expect(Number(response.headers.get('x-inferenceflow-latency-ms'))).toBeGreaterThanOrEqual(0);
    // gpt-4o-mini is priced in the table, so a non-empty answer costs something.
    expect(Number(response.headers.get('x-inferenceflow-cost-usd'))).toBeGreaterThan(0);
  });

  it('generates a request id when none is given', async () => {
    const { response } = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] }).withResponse();
    expect(response.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('streams chunks and ends with usage when include_usage is set', async () => {
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Tell me a story' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let contentChunks = 0;
    let usage: OpenAI.CompletionUsage | null | undefined;
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta.content;
      if (delta) {
        text += delta;
        contentChunks++;
      }
      finish ??= chunk.choices[0]?.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(contentChunks).toBeGreaterThan(3);
    expect(text).toContain('Tell me a story');
    expect(finish).toBe('stop');
    expect(usage?.completion_tokens).toBeGreaterThan(0);
  });

  it('leaves the usage chunk out when include_usage is not set', async () => {
    const stream = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true });
    for await (const chunk of stream) {
      expect(chunk.usage ?? null).toBeNull();
      expect(chunk.choices.length).toBe(1);
    }
  });

  it('returns n choices', async () => {
    const res = await client.chat.completions.create({ model: 'm', n: 3, messages: [{ role: 'user', content: 'pick' }] });
    expect(res.choices.map((c) => c.index)).toEqual([0, 1, 2]);
  });

  it('calls a tool and accepts the tool result back', async () => {
    const tools: OpenAI.ChatCompletionTool[] = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] },
        },
      },
    ];
    const first = await client.chat.completions.create({ model: 'm', tools, tool_choice: 'required', messages: [{ role: 'user', content: 'Weather in Paris?' }] });
    const call = first.choices[0]?.message.tool_calls?.[0];
    expect(first.choices[0]?.finish_reason).toBe('tool_calls');
    expect(call?.type === 'function' && call.function.name).toBe('get_weather');
    const args = JSON.parse(call?.type === 'function' ? call.function.arguments : '{}') as Record<string, unknown>;
    expect(typeof args.city).toBe('string');
    const second = await client.chat.completions.create({
      model: 'm',
      tools,
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: first.choices[0]?.message.tool_calls },
        { role: 'tool', tool_call_id: call?.id ?? '', content: '{"temp_c": 21}' },
      ],
    });
    expect(second.choices[0]?.message.content).toContain('21');
  });

  it('streams tool calls that the SDK reassembles', async () => {
    const runner = client.chat.completions.stream({
      model: 'm',
      tool_choice: { type: 'function', function: { name: 'lookup' } },
      tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }],
      messages: [{ role: 'user', content: 'find it' }],
    });
    const final = await runner.finalChatCompletion();
    const call = final.choices[0]?.message.tool_calls?.[0];
    expect(call?.type === 'function' && JSON.parse(call.function.arguments)).toEqual({ q: 'example' });
  });

  it('honours JSON mode and stop sequences', async () => {
    const json = await client.chat.completions.create({ model: 'm', response_format: { type: 'json_object' }, messages: [{ role: 'user', content: 'json please' }] });
    expect(() => JSON.parse(json.choices[0]?.message.content ?? '')).not.toThrow();
    const stopped = await client.chat.completions.create({ model: 'm', stop: ['simulator'], messages: [{ role: 'user', content: 'anything' }] });
    expect(stopped.choices[0]?.message.content).not.toContain('simulator');
  });
});

describe('legacy completions, embeddings and models', () => {
  it('serves /v1/completions', async () => {
    const res = await client.completions.create({ model: 'm', prompt: 'Once upon a time', max_tokens: 5 });
    expect(res.object).toBe('text_completion');
    expect(res.choices[0]?.finish_reason).toBe('length');
    expect(res.usage?.completion_tokens).toBeLessThanOrEqual(5);
  });

  it('embeds text (the SDK asks for base64 and decodes it)', async () => {
    const res = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a cat sat', 'a cat sat', 'stock prices fell'] });
    const [a, b, c] = res.data.map((d) => d.embedding);
    expect(a?.length).toBe(256);
    const dot = (x: number[], y: number[]) => x.reduce((s, v, i) => s + v * (y[i] ?? 0), 0);
    expect(dot(a ?? [], b ?? [])).toBeCloseTo(1, 5);
    expect(dot(a ?? [], c ?? [])).toBeLessThan(0.9);
  });

  it('lists models', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toContain('simulator');
  });
});

describe('errors reach the SDK as typed errors with stable codes', () => {
  it('rejects unknown parameters', async () => {
    await expect(client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], bogus: 1 } as never)).rejects.toMatchObject({
      status: 400,
      code: 'unknown_parameter',
      param: 'bogus',
    });
  });

  it('rejects out-of-range values and empty messages', async () => {
    await expect(client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], temperature: 3 })).rejects.toMatchObject({ status: 400, code: 'invalid_value', param: 'temperature' });
    await expect(client.chat.completions.create({ model: 'm', messages: [] })).rejects.toMatchObject({ status: 400, code: 'empty_messages' });
  });
});

describe('current OpenAI parameters and answers sent back as history', () => {
  let upstream: Server;
  let gw: RunningServer;
  let sdk: OpenAI;
  const received: Record<string, unknown>[] = [];

  beforeAll(async () => {
    upstream = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        const parsed = JSON.parse(body) as Record<string, unknown>;
        received.push(parsed);
        // A spoken answer when audio was asked for, as OpenAI gives it: null content, message.audio.
        const spoken = Array.isArray(parsed.modalities) && parsed.modalities.includes('audio');
        const message = spoken ? { role: 'assistant', content: null, audio: { id: 'audio_1', data: 'UklGRg==', expires_at: 1900000000, transcript: 'ok' } } : { role: 'assistant', content: 'ok' };
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'chatcmpl-x', object: 'chat.completion', created: 1, model: 'gpt-5', choices: [{ index: 0, message, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }));
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const port = (upstream.address() as AddressInfo).port;
    gw = await startTestGateway({ config: { providers: { up: { type: 'openai', base_url: `http://127.0.0.1:${port}/v1`, api_key: 'k' } }, models: [{ name: 'gpt-5', deployments: [{ provider: 'up', model: 'gpt-5' }] }] } });
    sdk = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(async () => {
    await gw?.close();
    await new Promise((r) => upstream?.close(r));
  });

  it('accepts them and passes them to an OpenAI-compatible upstream; history nulls and annotations are dropped', async () => {
    // What Python's `messages.append(resp.choices[0].message.model_dump())` sends back.
    const previous = { role: 'assistant', content: 'Hi!', refusal: null, annotations: [], audio: null, function_call: null, tool_calls: null, name: null };
    const res = await sdk.chat.completions.create({
      model: 'gpt-5',
      messages: [{ role: 'user', content: 'hello' }, previous as never, { role: 'user', content: 'again' }],
      reasoning_effort: 'none' as never,
      verbosity: 'low',
      prompt_cache_key: 'conversation-42',
      safety_identifier: 'user-hash-1',
    });
    expect(res.choices[0]?.message.content).toBe('ok');
    const sent = received.at(-1) as { messages: Record<string, unknown>[] } & Record<string, unknown>;
    expect(sent).toMatchObject({ reasoning_effort: 'none', verbosity: 'low', prompt_cache_key: 'conversation-42', safety_identifier: 'user-hash-1' });
    expect(sent.messages[1]).toEqual({ role: 'assistant', content: 'Hi!' });
  });

  it("accepts an assistant turn's refusal content part (OpenAI's own history shape) as that turn's refusal", async () => {
    const res = await sdk.chat.completions.create({
      model: 'gpt-5',
      messages: [
        { role: 'user', content: 'do the bad thing' },
        { role: 'assistant', content: [{ type: 'refusal', refusal: "I can't help with that." }] },
        { role: 'user', content: 'then say ok' },
      ],
    });
    expect(res.choices[0]?.message.content).toBe('ok');
    const sent = received.at(-1) as { messages: Record<string, unknown>[] };
    expect(sent.messages[1]).toEqual({ role: 'assistant', content: null, refusal: "I can't help with that." });
  });

  it("passes a spoken answer's message.audio back to the client, which it used to drop (the answer then had no content at all)", async () => {
    const res = await sdk.chat.completions.create({ model: 'gpt-5', modalities: ['text', 'audio'], audio: { voice: 'alloy', format: 'wav' }, messages: [{ role: 'user', content: 'say ok' }] });
    expect(res.choices[0]?.message.content).toBeNull();
    expect(res.choices[0]?.message.audio).toEqual({ id: 'audio_1', data: 'UklGRg==', expires_at: 1900000000, transcript: 'ok' });
    expect(received.at(-1)).toMatchObject({ modalities: ['text', 'audio'], audio: { voice: 'alloy', format: 'wav' } });
  });

  it("accepts a tool turn's name (LangChain.js and LangGraph send it) and does not pass it on", async () => {
    const res = await sdk.chat.completions.create({
      model: 'gpt-5',
      tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }],
      messages: [
        { role: 'user', content: 'weather?' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: 'call_1', name: 'get_weather', content: 'sunny' } as never,
      ],
    });
    expect(res.choices[0]?.message.content).toBe('ok');
    const sent = received.at(-1) as { messages: Record<string, unknown>[] };
    expect(sent.messages[2]).toEqual({ role: 'tool', tool_call_id: 'call_1', content: 'sunny' });
  });
});

describe('the deprecated functions API (functions, function_call, role "function")', () => {
  const functions = [{ name: 'get_weather', description: 'Weather now', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }];

  it('answers with message.function_call and finish_reason function_call, then takes the result back', async () => {
    const first = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Weather in Paris?' }], functions, function_call: { name: 'get_weather' } });
    const choice = first.choices[0];
    expect(choice?.finish_reason).toBe('function_call');
    expect(choice?.message.function_call?.name).toBe('get_weather');
    expect(JSON.parse(choice?.message.function_call?.arguments ?? '{}')).toHaveProperty('city');
    expect(choice?.message.tool_calls ?? undefined).toBeUndefined();

    const second = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      functions,
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: null, function_call: choice!.message.function_call! },
        { role: 'function', name: 'get_weather', content: '{"temp_c": 18}' },
      ],
    });
    expect(second.choices[0]?.finish_reason).toBe('stop');
    expect(second.choices[0]?.message.content).toBeTruthy();
  });

  it('streams function_call deltas the SDK reassembles', async () => {
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'Weather in Oslo?' }], functions, function_call: { name: 'get_weather' } });
    let name = '';
    let args = '';
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      name += c?.delta.function_call?.name ?? '';
      args += c?.delta.function_call?.arguments ?? '';
      expect(c?.delta.tool_calls ?? undefined).toBeUndefined();
      finish = c?.finish_reason ?? finish;
    }
    expect(name).toBe('get_weather');
    expect(JSON.parse(args)).toHaveProperty('city');
    expect(finish).toBe('function_call');
  });

  it('refuses functions together with tools, and a function result that answers no call', async () => {
    const both = await client.chat.completions
      .create({ model: 'm', messages: [{ role: 'user', content: 'x' }], functions, tools: [{ type: 'function', function: functions[0]! }] })
      .catch((e: unknown) => e);
    expect(both).toBeInstanceOf(OpenAI.BadRequestError);
    expect((both as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('functions');
    const orphan = await client.chat.completions
      .create({ model: 'm', messages: [{ role: 'user', content: 'x' }, { role: 'function', name: 'get_weather', content: '{}' }] })
      .catch((e: unknown) => e);
    expect(orphan).toBeInstanceOf(OpenAI.BadRequestError);
    expect((orphan as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('messages.1');
  });
});
