// OpenAI's Responses API through the gateway with the official `openai` package, unmodified:
// `client.responses.create` as JSON and as a stream (every event checked against OpenAI's published
// schema), function tools round trip, structured output, log-probabilities, stored responses
// (previous_response_id, retrieve, delete, per tenant), and clear refusals of what it cannot do.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';
import { specChecker } from './helpers/spec-check.js';

const expectValid = specChecker('responses-sdk.test');


let server: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  server = await startTestGateway();
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await server?.close();
});

const weatherTool: OpenAI.Responses.FunctionTool = {
  type: 'function',
  name: 'get_weather',
  description: 'Current weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
  strict: true,
};

describe('POST /v1/responses through the OpenAI SDK', () => {
  it('answers a string input with a valid Response object and its output_text', async () => {
    const { data, response } = await client.responses.create({ model: 'gpt-4o-mini', instructions: 'Be brief.', input: 'Say hello to the river', max_output_tokens: 200 }).withResponse();
    expectValid('Response', data);
    expect(data.object).toBe('response');
    expect(data.id).toMatch(/^resp_/);
    expect(data.status).toBe('completed');
    expect(data.instructions).toBe('Be brief.');
    expect((data as unknown as { store: boolean }).store).toBe(true);
    expect(data.output_text).toContain('Say hello to the river');
    expect(data.output[0]).toMatchObject({ type: 'message', role: 'assistant', status: 'completed' });
    expect(data.usage?.total_tokens).toBe((data.usage?.input_tokens ?? 0) + (data.usage?.output_tokens ?? 0));
    expect(response.headers.get('x-inferenceflow-provider')).toBe('simulator');
  });

  it('reports max_output_tokens as an incomplete response', async () => {
    const data = await client.responses.create({ model: 'gpt-4o-mini', input: 'Tell me a long story about mountains', max_output_tokens: 3 });
    expectValid('Response', data);
    expect(data.status).toBe('incomplete');
    expect(data.incomplete_details?.reason).toBe('max_output_tokens');
  });

  it('streams the Responses event sequence, each event valid, text deltas adding up to the final text', async () => {
    const stream = await client.responses.create({ model: 'gpt-4o-mini', input: [{ role: 'user', content: [{ type: 'input_text', text: 'Tell me a story' }] }], stream: true });
    const types: string[] = [];
    let text = '';
    let completed: OpenAI.Responses.Response | undefined;
    let seq = -1;
    for await (const event of stream) {
      expectValid('ResponseStreamEvent', event);
      expect(event.sequence_number).toBe(seq + 1);
      seq = event.sequence_number;
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') completed = event.response;
    }
    expect(types.slice(0, 4)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    expect(types.slice(-4)).toEqual(['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed']);
    expect(text.length).toBeGreaterThan(0);
    expect(completed?.output_text ?? (completed?.output[0] as OpenAI.Responses.ResponseOutputMessage | undefined)?.content[0]).toBeTruthy();
    const part = (completed?.output[0] as OpenAI.Responses.ResponseOutputMessage).content[0] as OpenAI.Responses.ResponseOutputText;
    expect(part.text).toBe(text);
  });

  it("works with the SDK's stream helper and finalResponse()", async () => {
    const stream = client.responses.stream({ model: 'gpt-4o-mini', input: 'Describe a quiet morning' });
    let deltas = '';
    stream.on('response.output_text.delta', (e) => (deltas += e.delta));
    const final = await stream.finalResponse();
    expect(final.output_text).toBe(deltas);
  });

  it('calls a function tool, and takes the function call and its output back as input', async () => {
    const first = await client.responses.create({ model: 'gpt-4o-mini', input: 'What is the weather in Paris?', tools: [weatherTool], tool_choice: 'required' });
    expectValid('Response', first);
    const call = first.output.find((o): o is OpenAI.Responses.ResponseFunctionToolCall => o.type === 'function_call');
    expect(call?.name).toBe('get_weather');
    expect(JSON.parse(call?.arguments ?? '{}')).toHaveProperty('city');

    const second = await client.responses.create({
      model: 'gpt-4o-mini',
      tools: [weatherTool],
      input: [
        { role: 'user', content: 'What is the weather in Paris?' },
        { type: 'function_call', call_id: call?.call_id ?? '', name: 'get_weather', arguments: call?.arguments ?? '{}' },
        { type: 'function_call_output', call_id: call?.call_id ?? '', output: '{"temp_c": 18}' },
      ],
    });
    expectValid('Response', second);
    expect(second.output[0]?.type).toBe('message');
    expect(second.output_text.length).toBeGreaterThan(0);
  });

  it('streams a function call as output_item and arguments events', async () => {
    const stream = await client.responses.create({ model: 'gpt-4o-mini', input: 'Weather in Oslo?', tools: [weatherTool], tool_choice: { type: 'function', name: 'get_weather' }, stream: true });
    let args = '';
    let done: OpenAI.Responses.ResponseFunctionCallArgumentsDoneEvent | undefined;
    for await (const event of stream) {
      expectValid('ResponseStreamEvent', event);
      if (event.type === 'response.function_call_arguments.delta') args += event.delta;
      if (event.type === 'response.function_call_arguments.done') done = event;
    }
    expect(done?.arguments).toBe(args);
    expect(done?.name).toBe('get_weather');
    expect(JSON.parse(args)).toHaveProperty('city');
  });

  it('answers structured output (text.format json_schema) as JSON', async () => {
    const data = await client.responses.create({
      model: 'gpt-4o-mini',
      input: 'Give me a city',
      text: { format: { type: 'json_schema', name: 'city', schema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] }, strict: true } },
    });
    expectValid('Response', data);
    expect(JSON.parse(data.output_text)).toHaveProperty('name');
  });

  it('returns output-text log-probabilities when include asks for them', async () => {
    const data = await client.responses.create({ model: 'gpt-4o-mini', input: 'Name a color', include: ['message.output_text.logprobs'], top_logprobs: 2 });
    expectValid('Response', data);
    const part = (data.output[0] as OpenAI.Responses.ResponseOutputMessage).content[0] as OpenAI.Responses.ResponseOutputText;
    expect(part.logprobs?.map((t) => t.token).join('')).toBe(part.text);
    expect(part.logprobs?.[0]?.top_logprobs).toHaveLength(2);
  });
});

describe('what the gateway refuses, with clear 4xx errors', () => {
  it('previous_response_id, hosted tools and unknown parameters', async () => {
    const cases: [OpenAI.Responses.ResponseCreateParamsNonStreaming, string][] = [
      [{ model: 'm', input: 'hi', previous_response_id: 'resp_unknown' }, 'previous_response_id'],
      [{ model: 'm', input: 'hi', tools: [{ type: 'web_search' }] }, 'tools.0.type'],
      [{ model: 'm', input: 'hi', ...({ temprature: 1 } as object) }, 'temprature'],
      [{ model: 'm', input: [{ type: 'item_reference', id: 'msg_1' }] }, 'input.0.id'],
    ];
    for (const [params, param] of cases) {
      const err = await client.responses.create(params).catch((e: unknown) => e);
      expect(err, param).toBeInstanceOf(OpenAI.BadRequestError);
      expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe(param);
    }
  });

  it('a malformed function tool is a 400 naming the field, never a 500 or a call upstream', async () => {
    const cases: [unknown, string, string][] = [
      [{ type: 'function' }, 'tools.0.name', 'missing_required_parameter'],
      [{ type: 'function', name: 5 }, 'tools.0.name', 'invalid_type'],
      [{ type: 'function', name: 'x'.repeat(300) }, 'tools.0.name', 'invalid_value'],
      [{ type: 'function', name: 'f', parameters: 'x' }, 'tools.0.parameters', 'invalid_type'],
      [{ type: 'function', name: 'f', description: 5 }, 'tools.0.description', 'invalid_type'],
      [{ type: 'function', name: 'f', strict: 'yes' }, 'tools.0.strict', 'invalid_type'],
    ];
    for (const [tool, param, code] of cases) {
      const err = await client.responses.create({ model: 'gpt-4o-mini', input: 'hi', tools: [tool as OpenAI.Responses.FunctionTool] }).catch((e: unknown) => e);
      expect(err, param).toBeInstanceOf(OpenAI.BadRequestError);
      expect((err as InstanceType<typeof OpenAI.BadRequestError>).param, JSON.stringify(tool).slice(0, 60)).toBe(param);
      expect((err as InstanceType<typeof OpenAI.BadRequestError>).code).toBe(code);
    }
  });

  it('retrieving an unknown response id is a 404', async () => {
    const err = await client.responses.retrieve('resp_abc').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as Error).message).toMatch(/No response with id 'resp_abc'/);
  });
});

describe('stored responses: previous_response_id, retrieve and delete', () => {
  it('continues a conversation from a stored response, JSON and streamed, without the old instructions', async () => {
    const first = await client.responses.create({ model: 'gpt-4o-mini', instructions: 'Answer in French.', input: 'My name is Ada.' });
    const second = await client.responses.create({ model: 'gpt-4o-mini', previous_response_id: first.id, input: 'What is my name?' });
    expect(second.previous_response_id).toBe(first.id);
    // The simulator's answer counts the turns it was given: the earlier turn and its answer came along.
    const withHistory = await client.responses.create({ model: 'gpt-4o-mini', input: [{ role: 'user', content: 'My name is Ada.' }, { role: 'assistant', content: first.output_text }, { role: 'user', content: 'What is my name?' }] });
    expect(second.output_text).toBe(withHistory.output_text);
    expect(second.usage?.input_tokens).toBe(withHistory.usage?.input_tokens);

    const stream = await client.responses.create({ model: 'gpt-4o-mini', previous_response_id: second.id, input: 'And again?', stream: true });
    let completed: OpenAI.Responses.Response | undefined;
    for await (const e of stream) if (e.type === 'response.completed') completed = e.response;
    expect(completed?.previous_response_id).toBe(second.id);
    // A streamed answer is stored too.
    await expect.poll(async () => (await client.responses.retrieve(completed?.id ?? '').catch(() => undefined))?.id, { timeout: 2000, interval: 20 }).toBe(completed?.id);
  });

  it('continues after a function call with only the function output as input', async () => {
    const first = await client.responses.create({ model: 'gpt-4o-mini', input: 'What is the weather in Paris?', tools: [weatherTool], tool_choice: 'required' });
    const call = first.output.find((o): o is OpenAI.Responses.ResponseFunctionToolCall => o.type === 'function_call');
    // Without the call's output, the continuation is refused as OpenAI refuses it.
    const missing = await client.responses.create({ model: 'gpt-4o-mini', previous_response_id: first.id, input: 'Never mind.' }).catch((e: unknown) => e);
    expect((missing as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('input');
    const next = await client.responses.create({ model: 'gpt-4o-mini', previous_response_id: first.id, tools: [weatherTool], input: [{ type: 'function_call_output', call_id: call?.call_id ?? '', output: '{"temp_c": 18}' }] });
    expect(next.output[0]?.type).toBe('message');
  });

  it('retrieves and deletes a stored response; store: false keeps nothing', async () => {
    const r = await client.responses.create({ model: 'gpt-4o-mini', input: 'Keep this one.' });
    expect((await client.responses.retrieve(r.id)).output_text).toBe(r.output_text);
    await client.responses.delete(r.id);
    expect(await client.responses.retrieve(r.id).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.NotFoundError);
    const unstored = await client.responses.create({ model: 'gpt-4o-mini', input: 'Do not keep this.', store: false });
    expect((unstored as unknown as { store: boolean }).store).toBe(false);
    expect(await client.responses.retrieve(unstored.id).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.NotFoundError);
    const err = await client.responses.create({ model: 'gpt-4o-mini', previous_response_id: unstored.id, input: 'hi' }).catch((e: unknown) => e);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('previous_response_id');
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('previous_response_not_found');
  });
});

describe('what is stored, and what is not', () => {
  const image = (mib: number) => ({ type: 'input_image' as const, detail: 'auto' as const, image_url: `data:image/png;base64,${'A'.repeat(mib * 1024 * 1024)}` });

  it('a response whose entry is over the per-entry limit answers store: false, JSON and streamed, and is not kept', async () => {
    const first = await client.responses.create({ model: 'gpt-4o-mini', input: [{ role: 'user', content: [{ type: 'input_text', text: 'Describe this.' }, image(2.5)] }] });
    expect((first as unknown as { store: boolean }).store).toBe(true);
    // The continuation's entry holds both images: over the 4 MiB an entry may take.
    const next = await client.responses.create({ model: 'gpt-4o-mini', previous_response_id: first.id, input: [{ role: 'user', content: [{ type: 'input_text', text: 'And this?' }, image(2)] }] });
    expect((next as unknown as { store: boolean }).store).toBe(false);
    expect(await client.responses.retrieve(next.id).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.NotFoundError);
    const stream = await client.responses.create({ model: 'gpt-4o-mini', previous_response_id: first.id, input: [{ role: 'user', content: [{ type: 'input_text', text: 'And this?' }, image(2)] }], stream: true });
    let completed: OpenAI.Responses.Response | undefined;
    for await (const e of stream) if (e.type === 'response.completed') completed = e.response;
    expect((completed as unknown as { store: boolean }).store).toBe(false);
    expect(await client.responses.retrieve(completed?.id ?? '').catch((e: unknown) => e)).toBeInstanceOf(OpenAI.NotFoundError);
    // The first, small enough, is still there.
    expect((await client.responses.retrieve(first.id)).id).toBe(first.id);
  });

  it('truncation "auto" drops the oldest turns to fit the context window; "disabled" refuses what does not fit', async () => {
    const WINDOW = 400;
    const gw = await startTestGateway({
      config: {
        providers: { sim: { type: 'simulator', options: { latency_ms: 0 } } },
        models: [{ name: 'small', deployments: [{ provider: 'sim', model: 'small', context_window: WINDOW }] }],
      },
    });
    try {
      const c = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const turn = (i: number) => `Turn ${i}: ${'the river runs past the old mill '.repeat(12)}`;
      const input: OpenAI.Responses.ResponseInputItem[] = [];
      for (let i = 0; i < 6; i++) input.push({ role: 'user', content: turn(i) }, { role: 'assistant', content: `Answer ${i}.` });
      input.push({ role: 'user', content: 'What was the last turn about?' });
      const refused = await c.responses.create({ model: 'small', input, truncation: 'disabled' }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
      expect((refused as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('context_length_exceeded');
      const cut = await c.responses.create({ model: 'small', input, truncation: 'auto' });
      expect(cut.status).toBe('completed');
      expect(cut.truncation).toBe('auto');
      expect(cut.usage?.input_tokens).toBeLessThanOrEqual(WINDOW);
      expect(cut.output_text).toContain('What was the last turn about?');

      // A chain continued with previous_response_id keeps fitting: what is stored is what was sent.
      let previous: string | undefined;
      for (let i = 0; i < 8; i++) {
        const r = await c.responses.create({ model: 'small', input: turn(i), truncation: 'auto', ...(previous ? { previous_response_id: previous } : {}) });
        expect(r.usage?.input_tokens, `turn ${i}`).toBeLessThanOrEqual(WINDOW);
        previous = r.id;
      }
    } finally {
      await gw.close();
    }
  });
});

describe('stored responses belong to their tenant', () => {
  it("another tenant can neither read, delete nor continue them", async () => {
    const gw = await startTestGateway({ config: { server: { host: '127.0.0.1' }, auth: { tokens: ['tenant-a-token-123456', 'tenant-b-token-123456'] } } });
    try {
      const a = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'tenant-a-token-123456', maxRetries: 0 });
      const b = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'tenant-b-token-123456', maxRetries: 0 });
      const mine = await a.responses.create({ model: 'gpt-4o-mini', input: 'A secret of tenant A.' });
      expect((await a.responses.retrieve(mine.id)).id).toBe(mine.id);
      expect(await b.responses.retrieve(mine.id).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.NotFoundError);
      expect(await b.responses.delete(mine.id).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.NotFoundError);
      expect(await b.responses.create({ model: 'gpt-4o-mini', previous_response_id: mine.id, input: 'What was the secret?' }).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.BadRequestError);
    } finally {
      await gw.close();
    }
  });
});
