// The Responses SDK methods beyond create/retrieve/delete, through the official `openai` package:
// `responses.inputItems.list` (GET /v1/responses/{id}/input_items, paginated as OpenAI's
// listInputItems), `responses.inputTokens.count` (POST /v1/responses/input_tokens, the gateway's
// tokenizer) and `responses.retrieve(id, {stream: true})` (the stored response replayed as its event
// stream). Every answer and event is checked against OpenAI's published schema.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { inputItemsOf } from '../src/server/responses-format.js';
import { startTestGateway } from './helpers/gateway.js';
import { specChecker } from './helpers/spec-check.js';

const expectValid = specChecker('responses-endpoints.test');


let server: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  server = await startTestGateway({ config: { auth: { tokens: ['tenant-a', 'tenant-b'] } } });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'tenant-a', maxRetries: 0 });
});
afterAll(async () => {
  await server?.close();
});

const tool: OpenAI.Responses.FunctionTool = { type: 'function', name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } }, strict: false };

describe('client.responses.inputItems.list', () => {
  it("lists a stored response's input items, newest first by default, paginated with after and limit", async () => {
    const input: OpenAI.Responses.ResponseInput = [
      { role: 'developer', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'input_text', text: 'What is the weather in Paris?' }] },
      { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' },
      { type: 'function_call_output', call_id: 'call_1', output: 'Sunny' },
      { role: 'assistant', content: 'It is sunny.' },
      // An item's own id is kept (the SDK's input type has none, OpenAI's schema does).
      { id: 'msg_mine', type: 'message', role: 'user', content: [{ type: 'input_text', text: 'And tomorrow?' }, { type: 'input_image', image_url: 'https://example.com/sky.png', detail: 'low' }] } as OpenAI.Responses.ResponseInputItem,
    ];
    const r = await client.responses.create({ model: 'gpt-4o-mini', instructions: 'Not an input item.', input, tools: [tool] });

    const page = await client.responses.inputItems.list(r.id);
    expect(page.data.map((i) => i.type)).toEqual(['message', 'message', 'function_call_output', 'function_call', 'message', 'message']);
    expect(page.data[0]).toMatchObject({ id: 'msg_mine', role: 'user', content: [{ type: 'input_text', text: 'And tomorrow?' }, { type: 'input_image', image_url: 'https://example.com/sky.png', detail: 'low' }] });
    expect(page.data[1]).toMatchObject({ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'It is sunny.' }] });
    expect(page.data[2]).toMatchObject({ call_id: 'call_1', output: 'Sunny' });
    expect(page.data[5]).toMatchObject({ role: 'developer', content: [{ type: 'input_text', text: 'Be brief.' }] });
    expect(page.has_more).toBe(false);

    // The raw list, as OpenAI's schema defines it.
    const raw = await fetch(`${server.url}/v1/responses/${r.id}/input_items?order=asc&limit=2`, { headers: { authorization: 'Bearer tenant-a' } });
    const list = (await raw.json()) as { data: { id: string }[]; first_id: string; last_id: string; has_more: boolean };
    expectValid('ResponseItemList', list);
    expect(list.data.map((i) => i.id)).toEqual(page.data.slice(-2).reverse().map((i) => i.id));
    expect(list).toMatchObject({ first_id: list.data[0]?.id, last_id: list.data[1]?.id, has_more: true });

    // The SDK follows has_more with `after`: every item once, in order.
    const all: string[] = [];
    for await (const item of client.responses.inputItems.list(r.id, { order: 'asc', limit: 2 })) all.push(item.id);
    expect(all).toEqual(page.data.map((i) => i.id).reverse());
    const second = await client.responses.inputItems.list(r.id, { order: 'asc', limit: 2, after: all[1] });
    expect(second.data.map((i) => i.id)).toEqual(all.slice(2, 4));
  });

  it('a string input is one user message; unknown ids are 404, bad parameters 400', async () => {
    const r = await client.responses.create({ model: 'gpt-4o-mini', input: 'Hello there' });
    const page = await client.responses.inputItems.list(r.id);
    expect(page.data).toHaveLength(1);
    expect(page.data[0]).toMatchObject({ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hello there' }] });

    await expect(client.responses.inputItems.list('resp_nope')).rejects.toMatchObject({ status: 404, code: 'not_found' });
    await expect(client.responses.inputItems.list(r.id, { limit: 101 })).rejects.toMatchObject({ status: 400, code: 'invalid_value', param: 'limit' });
    await expect(client.responses.inputItems.list(r.id, { order: 'up' as 'asc' })).rejects.toMatchObject({ status: 400, code: 'invalid_value', param: 'order' });
    await expect(client.responses.inputItems.list(r.id, { after: 'msg_unknown' })).rejects.toMatchObject({ status: 400, code: 'invalid_value', param: 'after' });
    // Another tenant's response reads as missing.
    const other = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'tenant-b', maxRetries: 0 });
    await expect(other.responses.inputItems.list(r.id)).rejects.toMatchObject({ status: 404 });
  });
});

describe('inputItemsOf', () => {
  it('renders the stored input messages as items in order, ids matched from the end (a truncated input keeps its tail)', () => {
    const messages = [
      { role: 'assistant' as const, content: 'Earlier.', tool_calls: [{ id: 'c1', type: 'function' as const, function: { name: 'f', arguments: '{}' } }] },
      { role: 'tool' as const, tool_call_id: 'c1', content: 'out' },
      { role: 'user' as const, content: [{ type: 'file' as const, file: { file_data: 'data:application/pdf;base64,JVBERi0=', filename: 'a.pdf' } }] },
    ];
    // Five items were given; truncation dropped the first user message.
    const items = inputItemsOf(messages, ['msg_0', 'msg_1', 'fc_2', 'fco_3', 'msg_4']);
    expect(items.map((i) => [i.id, i.type])).toEqual([
      ['msg_1', 'message'],
      ['fc_2', 'function_call'],
      ['fco_3', 'function_call_output'],
      ['msg_4', 'message'],
    ]);
    for (const item of items) expectValid('ItemResource', item);
    expect(items[3]).toMatchObject({ content: [{ type: 'input_file', file_data: 'data:application/pdf;base64,JVBERi0=', filename: 'a.pdf' }] });
  });
});

describe('client.responses.inputTokens.count', () => {
  it('counts with the tokenizer /v1/messages/count_tokens uses: instructions, input and tools', async () => {
    const t = await client.responses.inputTokens.count({ model: 'gpt-4o-mini', input: 'Tell me a joke.' });
    expectValid('TokenCountsResource', t);
    expect(t.object).toBe('response.input_tokens');
    const anthropic = await fetch(`${server.url}/v1/messages/count_tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer tenant-a' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Tell me a joke.' }] }),
    });
    expect(t.input_tokens).toBe(((await anthropic.json()) as { input_tokens: number }).input_tokens);

    const more = await client.responses.inputTokens.count({ model: 'gpt-4o-mini', instructions: 'Answer in French.', input: 'Tell me a joke.', tools: [tool] });
    expect(more.input_tokens).toBeGreaterThan(t.input_tokens + 10);
  });

  it('counts a stored conversation continued by previous_response_id; refuses what create refuses', async () => {
    const r = await client.responses.create({ model: 'gpt-4o-mini', input: 'Tell me a story about a lighthouse keeper.' });
    const alone = await client.responses.inputTokens.count({ model: 'gpt-4o-mini', input: 'And then?' });
    const continued = await client.responses.inputTokens.count({ model: 'gpt-4o-mini', input: 'And then?', previous_response_id: r.id });
    expect(continued.input_tokens).toBeGreaterThan(alone.input_tokens);

    await expect(client.responses.inputTokens.count({ input: 'x', previous_response_id: 'resp_nope' })).rejects.toMatchObject({ status: 400, code: 'previous_response_not_found' });
    await expect(client.responses.inputTokens.count({ input: 'x', tools: [{ type: 'web_search' }] })).rejects.toMatchObject({ status: 400, code: 'invalid_value', param: 'tools.0.type' });
    await expect(client.responses.inputTokens.count({ input: 'x', bogus: 1 } as OpenAI.Responses.InputTokenCountParams)).rejects.toMatchObject({ status: 400, code: 'unknown_parameter' });
  });
});

describe('client.responses.retrieve(id, {stream: true})', () => {
  it('replays the stored response as the event stream a streamed create sends', async () => {
    const r = await client.responses.create({ model: 'gpt-4o-mini', input: 'Tell me a story' });
    const stream = await client.responses.retrieve(r.id, { stream: true });
    const types: string[] = [];
    let text = '';
    let done: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      expectValid('ResponseStreamEvent', event);
      expect(event.sequence_number).toBe(types.length);
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') done = event.response;
    }
    expect(types).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(text).toBe(r.output_text);
    expect(done?.id).toBe(r.id);
    expect(done?.output).toEqual(r.output);

    // starting_after resumes after a sequence number.
    const resumed = await client.responses.retrieve(r.id, { stream: true, starting_after: 5 });
    const later: number[] = [];
    for await (const event of resumed) later.push(event.sequence_number);
    expect(later).toEqual([6, 7, 8]);
  });

  it('replays function calls as argument events', async () => {
    const r = await client.responses.create({ model: 'gpt-4o-mini', input: 'Weather in Paris? Use the tool.', tools: [tool], tool_choice: 'required' });
    expect(r.output.some((o) => o.type === 'function_call')).toBe(true);
    const types: string[] = [];
    for await (const event of await client.responses.retrieve(r.id, { stream: true })) {
      expectValid('ResponseStreamEvent', event);
      types.push(event.type);
    }
    expect(types).toContain('response.function_call_arguments.done');
    expect(types.at(-1)).toBe('response.completed');
  });
});
