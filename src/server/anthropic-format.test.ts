import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatChunk, ChatMessage, ChatRequest, ChatResult } from '../canonical/chat.js';
import { foldChunks } from '../canonical/convert.js';
import { collect, startFixtureServer, type FixtureServer } from '../providers/__fixtures__/fixture-server.js';
import { specForTests } from '../providers/__fixtures__/openai-spec.js';
import { createAnthropicProvider } from '../providers/anthropic.js';
import { toAnthropicMessages } from '../providers/anthropic-wire.js';
import { toCohereRequest } from '../providers/cohere.js';
import { ThoughtSignatureCache, toGeminiRequest } from '../providers/google-mapping.js';
import { createOpenAIProvider } from '../providers/openai.js';
import { UpstreamError } from '../providers/errors.js';
import { createSimulatorProvider } from '../providers/simulator.js';
import {
  anthropicErrorFromGateway,
  anthropicStreamEvents,
  anthropicToCanonical,
  canonicalToAnthropicMessage,
  formatAnthropicSse,
  type AnthropicSseEvent,
} from './anthropic-format.js';
import { GatewayError } from './errors.js';

// Present under CI (a missing spec fails the run there); elsewhere the spec checks skip with a warning.
const spec = specForTests('anthropic-format.test');

/** A Messages request with a 256-token budget, as canonical. */
const budgetRequest = () => anthropicToCanonical({ model: 'gpt-5', max_tokens: 256, messages: [{ role: 'user', content: 'Think briefly.' }] });
const openAIBody = (req: ChatRequest) => createOpenAIProvider('o', { type: 'openai', api_key: 'k' }).buildBody(req, false);

async function* fromArray<T>(items: T[]): AsyncGenerator<T> {
  for (const item of items) yield item;
}

const base = { id: 'chatcmpl-1', object: 'chat.completion.chunk' as const, created: 1, model: 'up' };
const chunk = (delta: ChatChunk['choices'][number]['delta'], finish: ChatChunk['choices'][number]['finish_reason'] = null): ChatChunk => ({
  ...base,
  choices: [{ index: 0, delta, finish_reason: finish }],
});
const usageChunk = (prompt: number, completion: number): ChatChunk => ({
  ...base,
  choices: [],
  usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
});

describe('anthropicToCanonical', () => {
  it('converts system, images, tool_use and tool_result turns and every option', () => {
    const req = anthropicToCanonical({
      model: 'claude-x',
      max_tokens: 500,
      system: [{ type: 'text', text: 'Be terse.', cache_control: { type: 'ephemeral' } }, { type: 'text', text: 'English only.' }],
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Weather here?' },
            { type: 'image', source: { type: 'base64', media_type: 'image/jpeg', data: '/9j/4AAQ' } },
            { type: 'image', source: { type: 'url', url: 'https://example.com/a.png' } },
          ],
        },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'hmm', signature: 'sig' },
            { type: 'text', text: 'Checking.' },
            { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: '18C' }] },
            { type: 'text', text: 'Thanks' },
          ],
        },
      ],
      stop_sequences: ['END'],
      temperature: 0.5,
      top_p: 0.9,
      top_k: 40,
      metadata: { user_id: 'u-1' },
      tools: [{ name: 'get_weather', description: 'Weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }],
      tool_choice: { type: 'any', disable_parallel_tool_use: true },
      stream: true,
    });
    expect(req).toEqual({
      model: 'claude-x',
      max_completion_tokens: 500,
      messages: [
        // The breakpoint keeps the system's blocks apart, one system message each.
        { role: 'system', content: [{ type: 'text', text: 'Be terse.', cache_control: { type: 'ephemeral' } }] },
        { role: 'system', content: 'English only.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Weather here?' },
            { type: 'image_url', image_url: { url: 'data:image/jpeg;base64,/9j/4AAQ' } },
            { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
          ],
        },
        {
          role: 'assistant',
          content: 'Checking.',
          tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
          // Kept for Anthropic upstreams, which need the signed thinking back.
          thinking_blocks: [{ type: 'thinking', thinking: 'hmm', signature: 'sig' }],
        },
        { role: 'tool', tool_call_id: 'toolu_1', content: '18C' },
        { role: 'user', content: 'Thanks' },
      ],
      stop: ['END'],
      temperature: 0.5,
      top_p: 0.9,
      top_k: 40,
      user: 'u-1',
      stream: true,
      tools: [{ type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
      tool_choice: 'required',
      parallel_tool_calls: false,
    } satisfies ChatRequest);
  });

  it('keeps every breakpoint where the client put it on the way to Anthropic and back to its wire format', () => {
    const marked = { type: 'ephemeral' as const };
    const req = anthropicToCanonical({
      model: 'claude-x',
      max_tokens: 100,
      system: [{ type: 'text', text: 'Rules.' }, { type: 'text', text: 'Manual.', cache_control: { type: 'ephemeral', ttl: '1h' } }],
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'Look it up', cache_control: marked }, { type: 'image', source: { type: 'url', url: 'https://example.com/a.png' }, cache_control: marked }] },
        { role: 'assistant', content: [{ type: 'text', text: 'Looking.' }, { type: 'tool_use', id: 't1', name: 'ls', input: {}, cache_control: marked }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'a.ts', cache_control: marked }, { type: 'text', text: 'And?' }] },
      ],
    });
    const wire = toAnthropicMessages(req.messages);
    expect(wire.system).toEqual([
      { type: 'text', text: 'Rules.' },
      { type: 'text', text: 'Manual.', cache_control: { type: 'ephemeral', ttl: '1h' } },
    ]);
    expect(wire.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Look it up', cache_control: marked },
          { type: 'image', source: { type: 'url', url: 'https://example.com/a.png' }, cache_control: marked },
        ],
      },
      { role: 'assistant', content: [{ type: 'text', text: 'Looking.' }, { type: 'tool_use', id: 't1', name: 'ls', input: {}, cache_control: marked }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'a.ts', cache_control: marked }, { type: 'text', text: 'And?' }] },
    ]);
    // Without breakpoints the system is one string, as before.
    expect(toAnthropicMessages(anthropicToCanonical({ model: 'm', max_tokens: 5, system: [{ type: 'text', text: 'A' }, { type: 'text', text: 'B' }], messages: [{ role: 'user', content: 'x' }] }).messages).system).toBe('A\n\nB');
  });

  it("joins a tool result's text blocks one per line rather than running them together", () => {
    const req = anthropicToCanonical({
      model: 'claude-x',
      max_tokens: 100,
      messages: [
        { role: 'user', content: 'List the files' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'ls', input: {} }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: 'Found 2 files:' }, { type: 'text', text: 'a.ts' }] }] },
      ],
    });
    expect(req.messages[2]).toEqual({ role: 'tool', tool_call_id: 't1', content: 'Found 2 files:\na.ts' });
  });

  it("keeps a tool result's images and is_error: inside the tool_result for Claude, as the user turn's images and an Error: prefix for the others", () => {
    const req = anthropicToCanonical({
      model: 'claude-x',
      max_tokens: 100,
      messages: [
        { role: 'user', content: 'Screenshot both pages' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'shot', input: {} }, { type: 'tool_use', id: 't2', name: 'shot', input: {} }] },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: 'page one' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] },
            { type: 'tool_result', tool_use_id: 't2', content: 'timed out', is_error: true },
            { type: 'text', text: 'What do you see?' },
          ],
        },
      ],
    });
    const image = { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } } as const;
    expect(req.messages.slice(2)).toEqual([
      { role: 'tool', tool_call_id: 't1', content: 'page one', tool_result: { parts: [{ type: 'text', text: 'page one' }, image], moved_parts: 2 } },
      { role: 'tool', tool_call_id: 't2', content: 'Error: timed out', tool_result: { parts: [{ type: 'text', text: 'timed out' }], is_error: true, moved_parts: 0 } },
      { role: 'user', content: [{ type: 'text', text: 'Images returned by tool call t1:' }, image, { type: 'text', text: 'What do you see?' }] },
    ]);
    // Claude gets the result as the tool gave it: the image inside the tool_result, is_error kept, no prefix.
    expect(toAnthropicMessages(req.messages).messages[2]).toEqual({
      role: 'user',
      content: [
        { type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: 'page one' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] },
        { type: 'tool_result', tool_use_id: 't2', content: 'timed out', is_error: true },
        { type: 'text', text: 'What do you see?' },
      ],
    });
    // An OpenAI upstream gets today's mapping, and none of the native form.
    const sent = openAIBody(req).messages as Record<string, unknown>[];
    expect(sent.slice(2)).toEqual([
      { role: 'tool', tool_call_id: 't1', content: 'page one' },
      { role: 'tool', tool_call_id: 't2', content: 'Error: timed out' },
      { role: 'user', content: [{ type: 'text', text: 'Images returned by tool call t1:' }, image, { type: 'text', text: 'What do you see?' }] },
    ]);
    if (spec) expect(spec.errors('CreateChatCompletionRequest', openAIBody(req))).toEqual([]);
  });

  it('turns a PDF document into a file part and a text document into titled text', () => {
    const req = anthropicToCanonical({
      model: 'claude-x',
      max_tokens: 10,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0x' }, title: 'Q3', context: 'Board pack', cache_control: { type: 'ephemeral' } },
            { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'Revenue grew.' }, title: 'notes', context: 'From the CFO' },
            { type: 'text', text: 'What changed?' },
          ],
        },
      ],
    });
    expect(req.messages[0]?.content).toEqual([
      { type: 'text', text: 'Context for Q3.pdf: Board pack' },
      // The document's breakpoint stays on its last part.
      { type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0x', filename: 'Q3.pdf' }, cache_control: { type: 'ephemeral' } },
      { type: 'text', text: 'Document: notes\nFrom the CFO\n\nRevenue grew.' },
      { type: 'text', text: 'What changed?' },
    ]);
    // By URL: Anthropic fetches it, so the turns go to Anthropic deployments (only) as they were sent.
    const byUrl = [{ role: 'user', content: [{ type: 'document', source: { type: 'url', url: 'https://x/a.pdf' } }] }];
    const urlReq = anthropicToCanonical({ model: 'c', max_tokens: 1, messages: byUrl });
    expect(urlReq.anthropic_messages).toBe(byUrl);
    expect(createAnthropicProvider('a', { type: 'anthropic', api_key: 'k' }).buildBody(urlReq, false).messages).toEqual(byUrl);
    // Untitled, and returned by a tool: moved into the user turn after the tool messages, named document.pdf.
    const fromTool = anthropicToCanonical({
      model: 'c',
      max_tokens: 1,
      messages: [
        { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'fetch', input: {} }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: 'fetched' }, { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0x' } }] }] },
      ],
    });
    const pdf = { type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0x', filename: 'document.pdf' } } as const;
    expect(fromTool.messages.slice(1)).toEqual([
      { role: 'tool', tool_call_id: 't1', content: 'fetched', tool_result: { parts: [{ type: 'text', text: 'fetched' }, pdf], moved_parts: 2 } },
      { role: 'user', content: [{ type: 'text', text: 'Documents returned by tool call t1:' }, pdf] },
    ]);
    // To Claude the document stays inside the tool_result.
    expect(toAnthropicMessages(fromTool.messages).messages[1]).toEqual({
      role: 'user',
      content: [
        {
          type: 'tool_result',
          tool_use_id: 't1',
          content: [
            { type: 'text', text: 'fetched' },
            { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0x' }, title: 'document.pdf' },
          ],
        },
      ],
    });
  });

  it('maps structured outputs (output_config.format, or the beta output_format) to the canonical response format', () => {
    const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false };
    for (const extra of [{ output_config: { format: { type: 'json_schema', schema } } }, { output_format: { type: 'json_schema', schema } }]) {
      const req = anthropicToCanonical({ model: 'c', max_tokens: 50, messages: [{ role: 'user', content: 'A city?' }], ...extra });
      expect(req.response_format).toEqual({ type: 'json_schema', json_schema: { name: 'output', schema, strict: true } });
    }
  });

  it('asks for max_tokens as max_completion_tokens, which OpenAI reasoning models accept and every adapter reads', () => {
    const req = budgetRequest();
    // OpenAI's o-series and gpt-5 answer 400 to max_tokens ("use max_completion_tokens instead").
    const openai = openAIBody(req);
    expect(openai.max_completion_tokens).toBe(256);
    expect(openai).not.toHaveProperty('max_tokens');
    // The other adapters still send the client's budget, each in its own field.
    expect(createAnthropicProvider('a', { type: 'anthropic', api_key: 'k' }).buildBody(req, false).max_tokens).toBe(256);
    expect(toGeminiRequest(req, new ThoughtSignatureCache()).generationConfig?.maxOutputTokens).toBe(256);
    expect(toCohereRequest(req, false).max_tokens).toBe(256);
  });

  it('carries top_k to the providers that sample by it, and not to OpenAI, whose spec has no such field', () => {
    const req = anthropicToCanonical({ model: 'm', max_tokens: 64, top_k: 5, messages: [{ role: 'user', content: 'Pick a word.' }] });
    expect(req.top_k).toBe(5);
    expect(createAnthropicProvider('a', { type: 'anthropic', api_key: 'k' }).buildBody(req, false).top_k).toBe(5);
    expect(toGeminiRequest(req, new ThoughtSignatureCache()).generationConfig?.topK).toBe(5);
    expect(toCohereRequest(req, false).k).toBe(5);
    const openai = openAIBody(req);
    expect(openai).not.toHaveProperty('top_k');
    if (spec) expect(spec.errors('CreateChatCompletionRequest', openai)).toEqual([]);
  });

  it.skipIf(!spec)('sends that budget to OpenAI in a body its OpenAPI spec accepts, with no field the spec does not know', () => {
    const openai = openAIBody(budgetRequest());
    expect(spec?.errors('CreateChatCompletionRequest', openai)).toEqual([]);
    const known = spec?.properties('CreateChatCompletionRequest') ?? new Set<string>();
    expect(known.has('max_completion_tokens')).toBe(true);
    expect(Object.keys(openai).filter((k) => !known.has(k))).toEqual([]);
  });

  it('round-trips with the provider conversion: canonical -> Messages -> canonical', () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'Sys' },
      { role: 'user', content: 'Look up Paris' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'toolu_9', type: 'function', function: { name: 'lookup', arguments: '{"q":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'toolu_9', content: 'Capital of France' },
      { role: 'assistant', content: 'Paris is the capital of France.' },
      { role: 'user', content: [{ type: 'text', text: 'And this?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] },
    ];
    const wire = toAnthropicMessages(messages);
    const back = anthropicToCanonical({ model: 'm', max_tokens: 10, system: wire.system, messages: wire.messages });
    expect(back.messages).toEqual(messages);
  });

  it('reports the path of the first problem as a GatewayError', () => {
    const cases: [unknown, string, string | null][] = [
      [{ model: 'm', messages: [{ role: 'user', content: 'hi' }] }, 'missing_required_parameter', 'max_tokens'],
      [{ model: 'm', max_tokens: 5, messages: [] }, 'empty_messages', 'messages'],
      [{ model: 'm', max_tokens: 5, messages: [{ role: 'user', content: [{ type: 'video', url: 'x' }] }] }, 'invalid_value', 'messages.0.content.0.type'],
      [{ model: 'm', max_tokens: 5, temperature: 1.5, messages: [{ role: 'user', content: 'hi' }] }, 'invalid_value', 'temperature'],
      [{ model: 'm', max_tokens: 'ten', messages: [{ role: 'user', content: 'hi' }] }, 'invalid_type', 'max_tokens'],
      [{ model: 'm', max_tokens: 5, messages: [{ role: 'system', content: 'hi' }] }, 'invalid_value', 'messages.0.role'],
    ];
    for (const [body, code, param] of cases) {
      let err: unknown;
      try {
        anthropicToCanonical(body);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(body)).toBeInstanceOf(GatewayError);
      expect({ code: (err as GatewayError).code, param: (err as GatewayError).param }).toEqual({ code, param });
      expect((err as GatewayError).status).toBe(400);
    }
  });
});

describe('canonicalToAnthropicMessage', () => {
  it('renders text and tool calls as content blocks with Anthropic stop reason and usage', () => {
    const result: ChatResult = {
      id: 'chatcmpl-abc',
      object: 'chat.completion',
      created: 1,
      model: 'gpt-4o',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'Let me check.', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }] },
          finish_reason: 'tool_calls',
          logprobs: null,
        },
      ],
      usage: { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 },
    };
    const msg = canonicalToAnthropicMessage(result, 'claude-alias');
    expect(msg.id).toMatch(/^msg_[0-9a-f]{24}$/);
    expect({ ...msg, id: 'x' }).toEqual({
      id: 'x',
      type: 'message',
      role: 'assistant',
      model: 'claude-alias',
      content: [
        { type: 'text', text: 'Let me check.', citations: null },
        { type: 'tool_use', id: 'call_1', name: 'f', input: { a: 1 } },
      ],
      stop_reason: 'tool_use',
      stop_sequence: null,
      // The cache counts are there, as in Anthropic's answers: null, since they are not broken out;
      // so are the other fields Anthropic's usage always has, null where the gateway cannot say.
      usage: { input_tokens: 12, output_tokens: 7, cache_creation_input_tokens: null, cache_read_input_tokens: null, cache_creation: null, server_tool_use: null, service_tier: null },
    });
    // A forced call (OpenAI's finish_reason "stop" for a named tool_choice) is still tool_use.
    const forced = canonicalToAnthropicMessage({ ...result, choices: [{ ...(result.choices[0] as ChatResult['choices'][number]), finish_reason: 'stop' }] }, 'm');
    expect(forced.stop_reason).toBe('tool_use');
    const lengthCut = canonicalToAnthropicMessage({ ...result, id: 'msg_keep', choices: [{ index: 0, message: { role: 'assistant', content: 'abc' }, finish_reason: 'length', logprobs: null }] }, 'm');
    expect(lengthCut).toMatchObject({ id: 'msg_keep', stop_reason: 'max_tokens', content: [{ type: 'text', text: 'abc' }] });
  });

  it("reports the upstream's prompt-cache counts as Anthropic does: input_tokens is the rest of the prompt", () => {
    const result: ChatResult = {
      id: 'chatcmpl-c',
      object: 'chat.completion',
      created: 1,
      model: 'gpt-4.1',
      choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop', logprobs: null }],
      usage: { prompt_tokens: 2200, completion_tokens: 7, total_tokens: 2207, prompt_tokens_details: { cached_tokens: 2048, cache_write_tokens: 100 } },
    };
    const unknown = { cache_creation: null, server_tool_use: null, service_tier: null };
    expect(canonicalToAnthropicMessage(result, 'm').usage).toEqual({ input_tokens: 52, output_tokens: 7, cache_creation_input_tokens: 100, cache_read_input_tokens: 2048, ...unknown });
    // OpenAI reports reads only: the write count is 0, not unknown.
    const readOnly = { ...result, usage: { ...result.usage, prompt_tokens_details: { cached_tokens: 2048 } } };
    expect(canonicalToAnthropicMessage(readOnly, 'm').usage).toEqual({ input_tokens: 152, output_tokens: 7, cache_creation_input_tokens: 0, cache_read_input_tokens: 2048, ...unknown });
  });

  it('renders an upstream refusal (OpenAI message.refusal) as a text block with stop_reason refusal', () => {
    const result: ChatResult = {
      id: 'chatcmpl-r',
      object: 'chat.completion',
      created: 1,
      model: 'gpt-4o',
      choices: [{ index: 0, message: { role: 'assistant', content: null, refusal: "I'm sorry, I can't help with that." }, finish_reason: 'stop', logprobs: null }],
      usage: { prompt_tokens: 20, completion_tokens: 9, total_tokens: 29 },
    };
    expect(canonicalToAnthropicMessage(result, 'm')).toMatchObject({
      content: [{ type: 'text', text: "I'm sorry, I can't help with that." }],
      stop_reason: 'refusal',
      stop_sequence: null,
    });
  });
});

describe('anthropicStreamEvents', () => {
  it('emits the exact event sequence of a text stream', async () => {
    const events = await collect(
      anthropicStreamEvents(fromArray([chunk({ role: 'assistant', content: '' }), chunk({ content: 'Hel' }), chunk({ content: 'lo' }), chunk({}, 'stop'), usageChunk(11, 2)]), 'claude-alias', 9),
    );
    expect(events.map((e) => e.event)).toEqual([
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(events[0]?.data).toMatchObject({ type: 'message_start', message: { type: 'message', role: 'assistant', model: 'claude-alias', content: [], stop_reason: null, usage: { input_tokens: 9, output_tokens: 0 } } });
    expect(events[1]?.data).toEqual({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '', citations: null } });
    expect(events[2]?.data).toEqual({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hel' } });
    expect(events[4]?.data).toEqual({ type: 'content_block_stop', index: 0 });
    expect(events[5]?.data).toEqual({ type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { input_tokens: 11, output_tokens: 2 } });
    expect(events[6]?.data).toEqual({ type: 'message_stop' });
    for (const e of events) expect((e.data as { type: string }).type).toBe(e.event);
  });

  it("carries the upstream's prompt-cache counts in message_delta, where the SDK reads them", async () => {
    const cached: ChatChunk = { ...base, choices: [], usage: { prompt_tokens: 3000, completion_tokens: 4, total_tokens: 3004, prompt_tokens_details: { cached_tokens: 2900, cache_write_tokens: 0 } } };
    const events = await collect(anthropicStreamEvents(fromArray([chunk({ role: 'assistant', content: 'hi' }), chunk({}, 'stop'), cached]), 'm', 3000));
    expect(events.at(-2)?.data).toEqual({
      type: 'message_delta',
      delta: { stop_reason: 'end_turn', stop_sequence: null },
      usage: { input_tokens: 100, cache_creation_input_tokens: 0, cache_read_input_tokens: 2900, output_tokens: 4 },
    });
  });

  it('emits the exact event sequence of a text + two tool_use stream', async () => {
    const events = await collect(
      anthropicStreamEvents(
        fromArray([
          chunk({ role: 'assistant', content: 'Checking' }),
          chunk({ tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '' } }] }),
          chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
          chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
          chunk({ tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { name: 'get_time', arguments: '{}' } }] }),
          chunk({}, 'tool_calls'),
          usageChunk(30, 20),
        ]),
        'm',
        0,
      ),
    );
    expect(events.map((e) => [e.event, (e.data as { index?: number }).index])).toEqual([
      ['message_start', undefined],
      ['content_block_start', 0],
      ['content_block_delta', 0],
      ['content_block_stop', 0],
      ['content_block_start', 1],
      ['content_block_delta', 1],
      ['content_block_stop', 1],
      ['content_block_start', 2],
      ['content_block_delta', 2],
      ['content_block_stop', 2],
      ['message_delta', undefined],
      ['message_stop', undefined],
    ]);
    expect(events[4]?.data).toEqual({ type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: 'call_a', name: 'get_weather', input: {} } });
    // A tool's arguments go whole, in one delta, once the answer has ended.
    expect(events[5]?.data).toEqual({ type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '{"city":"Paris"}' } });
    expect(events[10]?.data).toMatchObject({ delta: { stop_reason: 'tool_use' }, usage: { output_tokens: 20 } });
  });

  it('sends arguments a model got wrong as the JSON answer reads them ({_raw}), and interleaved parallel calls each whole in its own block', async () => {
    const events = await collect(
      anthropicStreamEvents(
        fromArray([
          chunk({ role: 'assistant', tool_calls: [{ index: 0, id: 'c1', type: 'function', function: { name: 'Bash', arguments: '' } }, { index: 1, id: 'c2', type: 'function', function: { name: 'Bash', arguments: '' } }] }),
          chunk({ tool_calls: [{ index: 0, function: { arguments: '{"cmd":"ls"}}' } }, { index: 1, function: { arguments: '{"cmd":' } }] }),
          chunk({ tool_calls: [{ index: 1, function: { arguments: '"pwd"}' } }] }),
          chunk({}, 'tool_calls'),
          usageChunk(30, 20),
        ]),
        'm',
        0,
      ),
    );
    // Every delta of a block comes before its stop.
    const stopped = new Set<number>();
    for (const e of events) {
      const index = (e.data as { index?: number }).index;
      if (e.event === 'content_block_stop') stopped.add(index as number);
      if (e.event === 'content_block_delta') expect(stopped.has(index as number)).toBe(false);
    }
    const inputs = events.filter((e) => e.event === 'content_block_delta').map((e) => JSON.parse((e.data as { delta: { partial_json: string } }).delta.partial_json) as unknown);
    expect(inputs).toEqual([{ _raw: '{"cmd":"ls"}}' }, { cmd: 'pwd' }]);
  });

  it('renders a streamed refusal (OpenAI delta.refusal) as a text block and ends with stop_reason refusal', async () => {
    const events = await collect(
      anthropicStreamEvents(fromArray([chunk({ role: 'assistant', content: '' }), chunk({ refusal: "I'm sorry, " }), chunk({ refusal: "I can't help." }), chunk({}, 'stop'), usageChunk(20, 6)]), 'm', 20),
    );
    expect(events.map((e) => e.event)).toEqual(['message_start', 'content_block_start', 'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
    expect(events[1]?.data).toEqual({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '', citations: null } });
    expect(events[2]?.data).toEqual({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: "I'm sorry, " } });
    expect(events[5]?.data).toMatchObject({ delta: { stop_reason: 'refusal', stop_sequence: null } });
  });

  it('closes the open block and throws the failure on when the chunk stream fails (its writer renders the error event)', async () => {
    const failure = new UpstreamError({ provider: 'p', kind: 'overloaded', message: 'p is overloaded' });
    async function* failing(): AsyncGenerator<ChatChunk> {
      yield chunk({ role: 'assistant', content: 'Part' });
      throw failure;
    }
    const events: AnthropicSseEvent[] = [];
    const thrown = await (async () => {
      for await (const e of anthropicStreamEvents(failing(), 'm', 1)) events.push(e);
    })().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(thrown).toBe(failure);
    expect(events.map((e) => e.event)).toEqual(['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop']);
  });

  it('sends unsigned reasoning text after a thinking block into the open block, not an earlier closed one', async () => {
    const events = await collect(
      anthropicStreamEvents(
        fromArray([
          chunk({ role: 'assistant', reasoning_content: 'a' }),
          chunk({ thinking_blocks: [{ index: 0, type: 'thinking', thinking: 't', signature: 's' }] }),
          chunk({ reasoning_content: 'b' }),
          chunk({ content: 'x' }),
          chunk({}, 'stop'),
        ]),
        'm',
        0,
      ),
    );
    expect(events.slice(1, -2).map((e) => e.data)).toEqual([
      { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'a' } },
      { type: 'content_block_stop', index: 0 },
      { type: 'content_block_start', index: 1, content_block: { type: 'thinking', thinking: '', signature: '' } },
      { type: 'content_block_delta', index: 1, delta: { type: 'thinking_delta', thinking: 't' } },
      { type: 'content_block_delta', index: 1, delta: { type: 'signature_delta', signature: 's' } },
      { type: 'content_block_delta', index: 1, delta: { type: 'thinking_delta', thinking: 'b' } },
      { type: 'content_block_stop', index: 1 },
      { type: 'content_block_start', index: 2, content_block: { type: 'text', text: '', citations: null } },
      { type: 'content_block_delta', index: 2, delta: { type: 'text_delta', text: 'x' } },
      { type: 'content_block_stop', index: 2 },
    ]);
  });

  it('ends a forced tool call that the upstream finished with `stop` with stop_reason tool_use', async () => {
    // OpenAI answers a named tool_choice (and `required`) with the call and finish_reason "stop".
    const events = await collect(
      anthropicStreamEvents(
        fromArray([
          chunk({ role: 'assistant', content: null }),
          chunk({ tool_calls: [{ index: 0, id: 'call_w', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] }),
          chunk({}, 'stop'),
          usageChunk(30, 9),
        ]),
        'm',
        0,
      ),
    );
    expect(events.find((e) => e.event === 'message_delta')?.data).toMatchObject({ delta: { stop_reason: 'tool_use', stop_sequence: null } });
    // Text alone with `stop` is still end_turn.
    const text = await collect(anthropicStreamEvents(fromArray([chunk({ role: 'assistant', content: 'Hi' }), chunk({}, 'stop')]), 'm', 0));
    expect(text.find((e) => e.event === 'message_delta')?.data).toMatchObject({ delta: { stop_reason: 'end_turn' } });
  });
});

describe('the official @anthropic-ai/sdk reads what these functions produce', () => {
  let server: FixtureServer;
  let client: Anthropic;
  beforeAll(async () => {
    server = await startFixtureServer();
    client = new Anthropic({ baseURL: server.url, apiKey: 'test', maxRetries: 0 });
  });
  afterAll(async () => {
    await server.close();
  });

  const sim = createSimulatorProvider('sim');
  const callOpts = { signal: new AbortController().signal, timeoutMs: 5000, requestId: 'r' };
  const serveStream = async (events: AsyncIterable<AnthropicSseEvent>) => {
    let text = '';
    for await (const e of events) text += formatAnthropicSse(e);
    server.reply({ headers: { 'content-type': 'text/event-stream' }, body: text });
  };

  it('accumulates a streamed text answer into the same message the JSON path renders', async () => {
    const req: ChatRequest = { model: 'sim', messages: [{ role: 'user', content: 'Tell me about rivers' }] };
    const expected = canonicalToAnthropicMessage(await sim.chat(req, callOpts), 'sim');
    await serveStream(anthropicStreamEvents(await sim.streamChat(req, callOpts), 'sim', expected.usage.input_tokens));
    const final = await client.messages.stream({ model: 'sim', max_tokens: 100, messages: [{ role: 'user', content: 'Tell me about rivers' }] }).finalMessage();
    expect(final.content).toEqual(expected.content);
    expect(final.stop_reason).toBe(expected.stop_reason);
    expect(final.usage).toMatchObject(expected.usage);
  });

  it('accumulates a streamed tool call with its parsed input', async () => {
    const req: ChatRequest = {
      model: 'sim',
      messages: [{ role: 'user', content: 'Use get_weather for Paris' }],
      tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
    };
    const expected = canonicalToAnthropicMessage(await sim.chat(req, callOpts), 'sim');
    expect(expected.content[0]?.type).toBe('tool_use');
    await serveStream(anthropicStreamEvents(await sim.streamChat(req, callOpts), 'sim', 3));
    const final = await client.messages.stream({ model: 'sim', max_tokens: 100, messages: [{ role: 'user', content: 'x' }] }).finalMessage();
    expect(final.content).toEqual(expected.content);
    expect(final.stop_reason).toBe('tool_use');
    // The hint (3) in message_start is replaced by the upstream's count carried in message_delta.
    expect(final.usage.input_tokens).toBe(expected.usage.input_tokens);
  });

  it('accumulates a streamed refusal into the same message the JSON path renders', async () => {
    const chunks = [chunk({ role: 'assistant', content: '' }), chunk({ refusal: "I can't " }), chunk({ refusal: 'assist with that.' }), chunk({}, 'stop'), usageChunk(15, 5)];
    const expected = canonicalToAnthropicMessage(foldChunks(chunks), 'm');
    await serveStream(anthropicStreamEvents(fromArray(chunks), 'm', 15));
    const final = await client.messages.stream({ model: 'm', max_tokens: 100, messages: [{ role: 'user', content: 'x' }] }).finalMessage();
    expect(final.content).toEqual([{ type: 'text', text: "I can't assist with that.", citations: null }]);
    expect(final.content).toEqual(expected.content);
    expect(final.stop_reason).toBe('refusal');
    expect(expected.stop_reason).toBe('refusal');
  });

  it('surfaces an error body as the SDK error class for its status', async () => {
    const err = new GatewayError('rate_limit_exceeded');
    server.reply({ status: err.status, body: JSON.stringify(anthropicErrorFromGateway(err, 'req_123')) });
    const thrown = await client.messages.create({ model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(thrown).toBeInstanceOf(Anthropic.RateLimitError);
    // request_id as Anthropic's error bodies carry it (the SDK's ErrorResponse type).
    expect((thrown as InstanceType<typeof Anthropic.RateLimitError>).error).toEqual({
      type: 'error',
      error: { type: 'rate_limit_error', message: err.message, code: 'rate_limit_exceeded' },
      request_id: 'req_123',
    });
  });
});

describe('thinking sent back', () => {
  it("keeps Claude's signed blocks and drops unsigned ones (another provider's reasoning, rendered with signature '')", () => {
    const req = anthropicToCanonical({
      model: 'mixed',
      max_tokens: 100,
      messages: [
        { role: 'user', content: 'Capital of France?' },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'From vLLM, unsigned.', signature: '' },
            { type: 'thinking', thinking: 'From Claude.', signature: 'EqQBCkYIBx' },
            { type: 'redacted_thinking', data: 'EmwKAhgBEgy3' },
            { type: 'text', text: 'Paris.' },
          ],
        },
        { role: 'user', content: 'And Spain?' },
      ],
    });
    expect(req.messages[1]?.thinking_blocks).toEqual([
      { type: 'thinking', thinking: 'From Claude.', signature: 'EqQBCkYIBx' },
      { type: 'redacted_thinking', data: 'EmwKAhgBEgy3' },
    ]);
  });
});

describe('an Anthropic tool_choice with no tools', () => {
  it('is dropped, with its disable_parallel_tool_use (an OpenAI-compatible upstream refuses a tool_choice without tools); kept beside a server tool', () => {
    for (const tool_choice of [{ type: 'auto' as const }, { type: 'any' as const, disable_parallel_tool_use: true }, { type: 'none' as const }]) {
      const req = anthropicToCanonical({ model: 'claude-x', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }], tool_choice });
      expect(req.tool_choice).toBeUndefined();
      expect(req.parallel_tool_calls).toBeUndefined();
    }
    const withServerTool = anthropicToCanonical({ model: 'claude-x', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'web_search_20250305', name: 'web_search' }], tool_choice: { type: 'any' } });
    expect(withServerTool.tool_choice).toBe('required');
  });
});
