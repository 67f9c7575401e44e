import { describe, expect, it } from 'vitest';
import type { ChatChunk } from '../canonical/chat.js';
import { iterate } from '../canonical/convert.js';
import { GatewayError } from './errors.js';
import type { ChatMessage } from '../canonical/chat.js';
import { ResponseEventWriter, canonicalToResponse, responsesToCanonical, truncateConversation } from './responses-format.js';

describe('Responses input as a chat conversation', () => {
  it('maps instructions, messages, images, parallel function calls, their outputs, and drops reasoning', () => {
    const { req } = responsesToCanonical({
      model: 'm',
      instructions: 'Be brief.',
      input: [
        { role: 'developer', content: 'Use metric units.' },
        { role: 'user', content: [{ type: 'input_text', text: 'Weather here and there?' }, { type: 'input_image', image_url: 'data:image/png;base64,AAAA', detail: 'low' }] },
        { type: 'reasoning', id: 'rs_1', summary: [] },
        { type: 'function_call', call_id: 'c1', name: 'weather', arguments: '{"city":"Oslo"}' },
        { type: 'function_call', call_id: 'c2', name: 'weather', arguments: '{"city":"Rome"}' },
        { type: 'function_call_output', call_id: 'c1', output: '3C' },
        { type: 'function_call_output', call_id: 'c2', output: [{ type: 'input_text', text: '21C' }] },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Cold and warm.', annotations: [] }] },
        { role: 'user', content: 'Thanks' },
      ],
      max_output_tokens: 50,
      metadata: { team: 'search' },
      text: { format: { type: 'json_schema', name: 'w', schema: { type: 'object' }, strict: true }, verbosity: 'low' },
      reasoning: { effort: 'low' },
      tool_choice: { type: 'function', name: 'weather' },
      tools: [{ type: 'function', name: 'weather', parameters: { type: 'object' }, strict: true }],
    });
    expect(req.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'developer', content: 'Use metric units.' },
      { role: 'user', content: [{ type: 'text', text: 'Weather here and there?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA', detail: 'low' } }] },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'c1', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } },
          { id: 'c2', type: 'function', function: { name: 'weather', arguments: '{"city":"Rome"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'c1', content: '3C' },
      { role: 'tool', tool_call_id: 'c2', content: '21C' },
      { role: 'assistant', content: 'Cold and warm.' },
      { role: 'user', content: 'Thanks' },
    ]);
    expect(req.metadata).toBeUndefined();
    expect(req).toMatchObject({
      max_completion_tokens: 50,
      verbosity: 'low',
      reasoning_effort: 'low',
      response_format: { type: 'json_schema', json_schema: { name: 'w', schema: { type: 'object' }, strict: true } },
      tool_choice: { type: 'function', function: { name: 'weather' } },
      tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object' }, strict: true } }],
    });
  });

  it('refuses what needs stored state or hosted tools, naming the parameter', () => {
    const param = (body: object) => {
      try {
        responsesToCanonical({ model: 'm', input: 'hi', ...body });
      } catch (err) {
        return (err as GatewayError).param;
      }
      return 'accepted';
    };
    expect(param({ previous_response_id: 'resp_1' })).toBe('accepted'); // looked up by the route
    expect(param({ conversation: 'conv_1' })).toBe('conversation');
    expect(param({ tools: [{ type: 'file_search', vector_store_ids: ['vs'] }] })).toBe('tools.0.type');
    expect(param({ input: [{ role: 'user', content: [{ type: 'input_image', file_id: 'file-1' }] }] })).toBe('input.0.content.0.file_id');
    // An empty image_url is named as itself, not as a file_id the client never sent.
    expect(param({ input: [{ role: 'user', content: [{ type: 'input_image', image_url: '', detail: 'auto' }] }] })).toBe('input.0.content.0.image_url');
    expect(param({ input: [] })).toBe('input');
    expect(param({ store: true, metadata: { a: 'b' } })).toBe('accepted');
    // Documents: a base64 data URL or bare base64; a data URL of another encoding never reaches an adapter.
    const file = (file_data: string) => param({ input: [{ role: 'user', content: [{ type: 'input_file', file_data }] }] });
    expect(file('data:application/pdf;base64,JVBERi0=')).toBe('accepted');
    expect(file('JVBERi0=')).toBe('accepted');
    expect(file('data:application/pdf,%25PDF-1.4')).toBe('input.0.content.0.file_data');
  });

  it('a malformed function tool or function tool_choice fails validation at its own path (never taken for a hosted tool)', () => {
    const error = (body: object) => {
      try {
        responsesToCanonical({ model: 'm', input: 'hi', ...body });
      } catch (err) {
        const e = err as GatewayError;
        return { status: e.status, code: e.code, param: e.param };
      }
      return 'accepted';
    };
    const tool = (t: object) => error({ tools: [{ type: 'function', name: 'f', ...t }] });
    expect(error({ tools: [{ type: 'function' }] })).toEqual({ status: 400, code: 'missing_required_parameter', param: 'tools.0.name' });
    expect(tool({ name: 5 })).toEqual({ status: 400, code: 'invalid_type', param: 'tools.0.name' });
    expect(tool({ name: 'x'.repeat(300) })).toEqual({ status: 400, code: 'invalid_value', param: 'tools.0.name' });
    expect(tool({ parameters: 'x' })).toEqual({ status: 400, code: 'invalid_type', param: 'tools.0.parameters' });
    expect(tool({ description: 5 })).toEqual({ status: 400, code: 'invalid_type', param: 'tools.0.description' });
    expect(tool({ strict: 'yes' })).toEqual({ status: 400, code: 'invalid_type', param: 'tools.0.strict' });
    expect(tool({ colour: 'red' })).toEqual({ status: 400, code: 'unknown_parameter', param: 'tools.0.colour' });
    expect(tool({})).toBe('accepted');
    expect(error({ tools: [{ type: 'web_search' }] })).toMatchObject({ status: 400, param: 'tools.0.type' });
    expect(error({ tool_choice: { type: 'function' } })).toEqual({ status: 400, code: 'missing_required_parameter', param: 'tool_choice.name' });
    expect(error({ tool_choice: { type: 'function', name: 'f', colour: 'red' } })).toEqual({ status: 400, code: 'unknown_parameter', param: 'tool_choice.colour' });
    expect(error({ tool_choice: 'sometimes' })).toEqual({ status: 400, code: 'invalid_value', param: 'tool_choice' });
    expect(error({ tool_choice: { type: 'web_search' } })).toMatchObject({ status: 400, param: 'tool_choice' });
    expect(error({ tool_choice: 'required' })).toBe('accepted');
  });
});

describe('truncation "auto"', () => {
  const call = { id: 'c1', type: 'function' as const, function: { name: 'f', arguments: '{}' } };
  const conversation: ChatMessage[] = [
    { role: 'user', content: 'one' },
    { role: 'assistant', content: 'ONE' },
    { role: 'user', content: 'two' },
    { role: 'assistant', content: null, tool_calls: [call] },
    { role: 'tool', tool_call_id: 'c1', content: 'result' },
    { role: 'assistant', content: 'TWO' },
    { role: 'user', content: 'three' },
  ];
  const upTo = (n: number) => (tail: ChatMessage[]) => tail.length <= n;

  it('drops whole turns from the start until the rest fits, never parting a call from its output', () => {
    expect(truncateConversation(conversation, upTo(7))).toBe(conversation);
    expect(truncateConversation(conversation, upTo(6))).toEqual(conversation.slice(2));
    // Four would fit from the tool output on, but a cut falls only before a user message.
    expect(truncateConversation(conversation, upTo(4))).toEqual(conversation.slice(6));
  });

  it('keeps the last user turn when nothing fits, and a conversation with no later user turn whole', () => {
    expect(truncateConversation(conversation, () => false)).toEqual([{ role: 'user', content: 'three' }]);
    const calls: ChatMessage[] = [{ role: 'user', content: 'go' }, { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: 'c1', content: 'r' }];
    expect(truncateConversation(calls, () => false)).toBe(calls);
  });
});

describe('Responses output', () => {
  const echo = responsesToCanonical({ model: 'm', input: 'hi', include: ['message.output_text.logprobs'] }).echo;

  it('a refusal and a tool call become output items; a cut answer is incomplete', () => {
    const r = canonicalToResponse(
      {
        id: 'chatcmpl-x',
        object: 'chat.completion',
        created: 5,
        model: 'm',
        choices: [{ index: 0, message: { role: 'assistant', content: null, refusal: 'No.', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] }, finish_reason: 'length', logprobs: null }],
        usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
      },
      echo,
    );
    expect(r.id).toMatch(/^resp_[0-9a-f]{32}$/);
    expect(r.status).toBe('incomplete');
    expect(r.output.map((o) => o.type)).toEqual(['message', 'function_call']);
    expect(r.output[0]).toMatchObject({ content: [{ type: 'refusal', refusal: 'No.' }] });
    expect(r.usage).toMatchObject({ input_tokens: 1, output_tokens: 2, total_tokens: 3 });
  });

  it("reports the upstream's cached prompt tokens and reasoning tokens in the usage details", () => {
    const r = canonicalToResponse(
      {
        id: 'chatcmpl-u',
        object: 'chat.completion',
        created: 5,
        model: 'm',
        choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop', logprobs: null }],
        usage: { prompt_tokens: 2000, completion_tokens: 300, total_tokens: 2300, prompt_tokens_details: { cached_tokens: 1024 }, completion_tokens_details: { reasoning_tokens: 256 } },
      },
      echo,
    );
    expect(r.usage).toEqual({ input_tokens: 2000, input_tokens_details: { cached_tokens: 1024, cache_write_tokens: 0 }, output_tokens: 300, output_tokens_details: { reasoning_tokens: 256 }, total_tokens: 2300 });
  });

  it('keeps a call open until the answer ends, so arguments arriving after the next call began are not lost', async () => {
    const base = { id: 'chatcmpl-z', object: 'chat.completion.chunk' as const, created: 1, model: 'm' };
    const chunks: ChatChunk[] = [
      { ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'a', type: 'function', function: { name: 'f', arguments: '{"x"' } }] }, finish_reason: null }] },
      { ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 1, id: 'b', type: 'function', function: { name: 'g', arguments: '{}' } }] }, finish_reason: null }] },
      { ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: ':1}' } }] }, finish_reason: 'tool_calls' }] },
    ];
    const events: { type: string; arguments?: string; output_index?: number }[] = [];
    for await (const e of new ResponseEventWriter(echo).events(iterate(chunks))) events.push(JSON.parse(e.data) as { type: string });
    const done = events.filter((e) => e.type === 'response.function_call_arguments.done');
    expect(done.map((e) => [e.output_index, e.arguments])).toEqual([[0, '{"x":1}'], [1, '{}']]);
    // No delta after its call's done event.
    const lastDelta = events.map((e) => e.type).lastIndexOf('response.function_call_arguments.delta');
    expect(lastDelta).toBeLessThan(events.findIndex((e) => e.type === 'response.function_call_arguments.done'));
  });

  it('a stream that fails mid-way ends with an error event carrying the next sequence number', async () => {
    const writer = new ResponseEventWriter(echo);
    const chunks: ChatChunk[] = [{ id: 'chatcmpl-y', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { role: 'assistant', content: 'Hel' }, finish_reason: null }] }];
    const events = [];
    for await (const e of writer.events(iterate(chunks))) events.push(JSON.parse(e.data) as { type: string; sequence_number: number });
    const err = JSON.parse(writer.error(new GatewayError('upstream_error')).data) as { type: string; code: string; sequence_number: number };
    expect(err).toMatchObject({ type: 'error', code: 'upstream_error' });
    expect(err.sequence_number).toBe((events.at(-1)?.sequence_number ?? -1) + 1);
  });
});

describe('a tool_choice with no tools', () => {
  it('is dropped (with parallel_tool_calls): chat completions refuse a tool_choice without tools', () => {
    for (const tool_choice of ['auto', 'required', 'none'] as const) {
      const { req } = responsesToCanonical({ model: 'm', input: 'hi', tool_choice, parallel_tool_calls: false });
      expect(req.tool_choice).toBeUndefined();
      expect(req.parallel_tool_calls).toBeUndefined();
    }
    // Hosted tools the gateway does not forward leave no function tool either.
    expect(responsesToCanonical({ model: 'm', input: 'hi', tools: [], tool_choice: 'auto' }).req.tool_choice).toBeUndefined();
  });
});
