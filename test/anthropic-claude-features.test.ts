// Claude's own features through the gateway's Anthropic route, with the official `@anthropic-ai/sdk`
// as the client and a stand-in that speaks Anthropic's wire format (fixtures written from Anthropic's
// API reference) and records what it receives: extended thinking both ways, the client's
// anthropic-beta header. Beside it an OpenAI
// stand-in checks that none of it leaks to an OpenAI upstream (its bodies validate against OpenAI's
// published spec), and the OpenAI route gives the thinking as `reasoning_content`.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { specForTests } from '../src/providers/__fixtures__/openai-spec.js';
import { startTestGateway } from './helpers/gateway.js';
import { readJsonBody } from './helpers/recording-upstream.js';

const spec = specForTests('anthropic-claude-features.test');
const fixture = (name: string) => readFile(new URL(`../src/providers/__fixtures__/${name}`, import.meta.url), 'utf8');

interface Received {
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
}
const claudeReceived: Received[] = [];
const openaiReceived: Received[] = [];
let claude: Server;
let openai: Server;
let gateway: RunningServer;
let client: Anthropic;
let openaiClient: OpenAI;

/** Claude: answers with thinking (the fixtures) when the request enables it, plain text otherwise. */
async function claudeStandIn(req: IncomingMessage, res: ServerResponse) {
  const body = await readJsonBody(req);
  claudeReceived.push({ headers: req.headers, body });
  // A deployment whose model name says so thinks whatever the request says (for the OpenAI route, which has no thinking parameter).
  const thinking = (body.thinking as { type?: string } | undefined)?.type === 'enabled' || String(body.model).includes('thinking');
  if (body.stream) {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end(await fixture(thinking ? 'anthropic-thinking-stream.chunks.txt' : 'anthropic-text-stream.chunks.txt'));
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(await fixture(thinking ? 'anthropic-message-thinking.json' : 'anthropic-message.json'));
}

async function openaiStandIn(req: IncomingMessage, res: ServerResponse) {
  const body = await readJsonBody(req);
  openaiReceived.push({ headers: req.headers, body });
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(
    JSON.stringify({
      id: 'chatcmpl-1',
      object: 'chat.completion',
      created: 1,
      model: body.model,
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hi.', refusal: null }, finish_reason: 'stop', logprobs: null }],
      usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
    }),
  );
}

const listen = (s: Server) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as { port: number }).port)));

beforeAll(async () => {
  claude = createServer((req, res) => void claudeStandIn(req, res));
  openai = createServer((req, res) => void openaiStandIn(req, res));
  const [claudePort, openaiPort] = await Promise.all([listen(claude), listen(openai)]);
  gateway = await startTestGateway({
    config: {
      providers: {
        claude: { type: 'anthropic', base_url: `http://127.0.0.1:${claudePort}`, api_key: 'sk-ant-test' },
        'claude-1m': { type: 'anthropic', base_url: `http://127.0.0.1:${claudePort}`, api_key: 'sk-ant-test', headers: { 'Anthropic-Beta': 'context-1m-2025-08-07' } },
        gpt: { type: 'openai', base_url: `http://127.0.0.1:${openaiPort}/v1`, api_key: 'sk-test' },
      },
      models: [
        { name: 'claude', deployments: [{ provider: 'claude', model: 'claude-sonnet-4-5-20250929' }] },
        { name: 'claude-thinking', deployments: [{ provider: 'claude', model: 'claude-thinking' }] },
        { name: 'claude-1m', deployments: [{ provider: 'claude-1m', model: 'claude-sonnet-4-5-20250929' }] },
        { name: 'gpt', deployments: [{ provider: 'gpt', model: 'gpt-4.1' }] },
      ],
    },
  });
  client = new Anthropic({ baseURL: gateway.url, apiKey: 'unused', maxRetries: 0 });
  openaiClient = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await gateway?.close();
  claude?.close();
  openai?.close();
});
beforeEach(() => {
  claudeReceived.length = 0;
  openaiReceived.length = 0;
});

const THINKING_TEXT = 'Let me solve this step by step:\n\n1. First break down 27 * 453\n2. 453 = 400 + 50 + 3';
const SIGNATURE = 'EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds';
const REDACTED = 'EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP';
const THINKING_CONTENT = [
  { type: 'thinking', thinking: THINKING_TEXT, signature: SIGNATURE },
  { type: 'redacted_thinking', data: REDACTED },
  expect.objectContaining({ type: 'text', text: '27 * 453 = 12,231' }),
];

/** A tool-using turn with thinking on, as a client sends it back: the signed thinking before the tool_use. */
const toolHistory: Anthropic.MessageParam[] = [
  { role: 'user', content: 'Weather in Paris?' },
  {
    role: 'assistant',
    content: [
      { type: 'thinking', thinking: 'The user wants the weather.', signature: 'EqQBCgIYAhIM1gbcDa9GJwZA2b3h' },
      { type: 'redacted_thinking', data: 'EmwKAhgBEgy3va3pzix' },
      { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } },
    ],
  },
  { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: '18C' }] },
];
const weatherTool: Anthropic.Tool = { name: 'get_weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } };

describe('extended thinking', () => {
  it('passes thinking (enabled or disabled) to Claude unchanged', async () => {
    await client.messages.create({ model: 'claude', max_tokens: 16000, thinking: { type: 'enabled', budget_tokens: 10000 }, messages: [{ role: 'user', content: '27 * 453?' }] });
    await client.messages.create({ model: 'claude', max_tokens: 100, thinking: { type: 'disabled' }, messages: [{ role: 'user', content: 'Hi' }] });
    expect(claudeReceived.map((r) => r.body.thinking)).toEqual([{ type: 'enabled', budget_tokens: 10000 }, { type: 'disabled' }]);
  });

  it("returns Claude's thinking and redacted thinking blocks, in order, in JSON", async () => {
    const msg = await client.messages.create({ model: 'claude', max_tokens: 16000, thinking: { type: 'enabled', budget_tokens: 10000 }, messages: [{ role: 'user', content: '27 * 453?' }] });
    expect(msg.content).toEqual(THINKING_CONTENT);
  });

  it('streams them as Anthropic does: thinking_delta and signature_delta, the redacted block whole in its start', async () => {
    const stream = client.messages.stream({ model: 'claude', max_tokens: 16000, thinking: { type: 'enabled', budget_tokens: 10000 }, messages: [{ role: 'user', content: '27 * 453?' }] });
    const events: Anthropic.MessageStreamEvent[] = [];
    stream.on('streamEvent', (e) => events.push(e));
    const final = await stream.finalMessage();
    expect(events.filter((e) => e.type === 'content_block_start').map((e) => e.content_block)).toEqual([
      { type: 'thinking', thinking: '', signature: '' },
      { type: 'redacted_thinking', data: REDACTED },
      expect.objectContaining({ type: 'text', text: '' }),
    ]);
    expect(events.filter((e) => e.type === 'content_block_delta').map((e) => e.delta.type)).toEqual(['thinking_delta', 'thinking_delta', 'signature_delta', 'text_delta']);
    expect(final.content).toEqual(THINKING_CONTENT);
  });

  it('sends thinking blocks in the history back to Claude intact and in place, before the tool call', async () => {
    await client.messages.create({ model: 'claude', max_tokens: 16000, thinking: { type: 'enabled', budget_tokens: 10000 }, tools: [weatherTool], messages: toolHistory });
    const sent = claudeReceived[0]?.body.messages as { role: string; content: unknown[] }[];
    expect(sent[1]).toEqual(toolHistory[1]);
    // Streamed requests too.
    await client.messages.stream({ model: 'claude', max_tokens: 16000, thinking: { type: 'enabled', budget_tokens: 10000 }, tools: [weatherTool], messages: toolHistory }).finalMessage();
    expect((claudeReceived[1]?.body.messages as unknown[])[1]).toEqual(toolHistory[1]);
  });

  it('leaves thinking out for an OpenAI upstream: neither the config nor the history blocks reach it', async () => {
    await client.messages.create({ model: 'gpt', max_tokens: 2000, thinking: { type: 'enabled', budget_tokens: 1024 }, tools: [weatherTool], messages: toolHistory });
    const sent = openaiReceived[0]?.body as Record<string, unknown>;
    expect(JSON.stringify(sent)).not.toMatch(/thinking|signature|EmwKAhgBEgy3va3pzix/);
    if (spec) expect(spec.errors('CreateChatCompletionRequest', sent)).toEqual([]);
  });

  it("gives the OpenAI route Claude's thinking as reasoning_content, in JSON and streamed, and takes it back in history", async () => {
    const reply = await openaiClient.chat.completions.create({ model: 'claude-thinking', messages: [{ role: 'user', content: '27 * 453?' }] });
    const message = reply.choices[0]?.message as OpenAI.ChatCompletionMessage & { reasoning_content?: string };
    expect(message.content).toBe('27 * 453 = 12,231');
    expect(message.reasoning_content).toBe(THINKING_TEXT);
    expect(message).not.toHaveProperty('thinking_blocks');

    const stream = await openaiClient.chat.completions.create({ model: 'claude-thinking', stream: true, messages: [{ role: 'user', content: '27 * 453?' }] });
    let reasoning = '';
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta as (OpenAI.ChatCompletionChunk.Choice.Delta & { reasoning_content?: string }) | undefined;
      expect(delta).not.toHaveProperty('thinking_blocks');
      reasoning += delta?.reasoning_content ?? '';
    }
    expect(reasoning).toBe(THINKING_TEXT);

    // A client that sends the answer back as it came (reasoning_content and all) is not refused.
    claudeReceived.length = 0;
    await openaiClient.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: '27 * 453?' }, message as OpenAI.ChatCompletionMessageParam, { role: 'user', content: 'And 28?' }] });
    expect(JSON.stringify(claudeReceived[0]?.body)).not.toContain('reasoning_content');
  });
});

describe('anthropic-beta', () => {
  const ask = { max_tokens: 100, messages: [{ role: 'user' as const, content: 'Hi' }] };

  it("forwards the client's header, and the SDK's betas, to Claude, JSON and streamed", async () => {
    await client.messages.create({ model: 'claude', ...ask }, { headers: { 'anthropic-beta': 'token-efficient-tools-2025-02-19, interleaved-thinking-2025-05-14' } });
    await client.beta.messages.create({ model: 'claude', ...ask, betas: ['interleaved-thinking-2025-05-14'] });
    await client.beta.messages.stream({ model: 'claude', ...ask, betas: ['files-api-2025-04-14', 'interleaved-thinking-2025-05-14'] }).finalMessage();
    await client.messages.create({ model: 'claude', ...ask });
    expect(claudeReceived.map((r) => r.headers['anthropic-beta'])).toEqual([
      'token-efficient-tools-2025-02-19,interleaved-thinking-2025-05-14',
      'interleaved-thinking-2025-05-14',
      'files-api-2025-04-14,interleaved-thinking-2025-05-14',
      undefined,
    ]);
  });

  it("merges them with the betas the provider's configuration sets, each once", async () => {
    await client.beta.messages.create({ model: 'claude-1m', ...ask, betas: ['interleaved-thinking-2025-05-14', 'context-1m-2025-08-07'] });
    await client.messages.create({ model: 'claude-1m', ...ask });
    expect(claudeReceived.map((r) => r.headers['anthropic-beta'])).toEqual(['context-1m-2025-08-07,interleaved-thinking-2025-05-14', 'context-1m-2025-08-07']);
  });

  it('sends nothing of them to an OpenAI upstream', async () => {
    await client.beta.messages.create({ model: 'gpt', ...ask, betas: ['interleaved-thinking-2025-05-14'] });
    expect(openaiReceived[0]?.headers['anthropic-beta']).toBeUndefined();
    expect(JSON.stringify(openaiReceived[0]?.body)).not.toContain('interleaved');
    if (spec) expect(spec.errors('CreateChatCompletionRequest', openaiReceived[0]?.body)).toEqual([]);
  });
});

describe('tool results', () => {
  const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
  const history: Anthropic.MessageParam[] = [
    { role: 'user', content: 'Screenshot the page, then read the log' },
    {
      role: 'assistant',
      content: [
        { type: 'tool_use', id: 'toolu_shot', name: 'screenshot', input: {} },
        { type: 'tool_use', id: 'toolu_log', name: 'read_log', input: {} },
      ],
    },
    {
      role: 'user',
      content: [
        { type: 'tool_result', tool_use_id: 'toolu_shot', content: [{ type: 'text', text: 'The page:' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } }] },
        { type: 'tool_result', tool_use_id: 'toolu_log', content: 'permission denied', is_error: true },
        { type: 'text', text: 'What went wrong?' },
      ],
    },
  ];
  const tools: Anthropic.Tool[] = [
    { name: 'screenshot', input_schema: { type: 'object', properties: {} } },
    { name: 'read_log', input_schema: { type: 'object', properties: {} } },
  ];

  it('reach Claude as the client sent them: is_error kept, images inside the tool_result', async () => {
    await client.messages.create({ model: 'claude', max_tokens: 100, tools, messages: history });
    await client.messages.stream({ model: 'claude', max_tokens: 100, tools, messages: history }).finalMessage();
    for (const received of claudeReceived) {
      const sent = received.body.messages as { role: string; content: unknown[] }[];
      expect(sent[2]).toEqual(history[2]);
    }
    expect(claudeReceived).toHaveLength(2);
  });

  it('reach an OpenAI upstream as before: an Error: prefix, and the images in the user turn after the tool messages', async () => {
    await client.messages.create({ model: 'gpt', max_tokens: 100, tools, messages: history });
    const sent = openaiReceived[0]?.body.messages as Record<string, unknown>[];
    expect(sent.slice(2)).toEqual([
      { role: 'tool', tool_call_id: 'toolu_shot', content: 'The page:' },
      { role: 'tool', tool_call_id: 'toolu_log', content: 'Error: permission denied' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Images returned by tool call toolu_shot:' },
          { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
          { type: 'text', text: 'What went wrong?' },
        ],
      },
    ]);
    if (spec) expect(spec.errors('CreateChatCompletionRequest', openaiReceived[0]?.body)).toEqual([]);
  });
});

describe("the Anthropic route's answer shape", () => {
  const ask = { max_tokens: 100, messages: [{ role: 'user' as const, content: 'Hi' }] };
  const unknownUsage = { cache_creation: null, server_tool_use: null, service_tier: null };

  it('gives text blocks citations: null and usage every field the SDK types declare, null where unknown — JSON and streamed', async () => {
    for (const model of ['claude', 'gpt']) {
      const msg = await client.messages.create({ model, ...ask });
      expect(msg.content[0]).toEqual({ type: 'text', text: expect.any(String), citations: null });
      expect(msg.usage).toMatchObject(unknownUsage);
    }
    const streamed = await client.messages.stream({ model: 'claude', ...ask }).finalMessage();
    expect(streamed.content[0]).toEqual({ type: 'text', text: expect.any(String), citations: null });
    expect(streamed.usage).toMatchObject(unknownUsage);
  });

  it("carries the request's id as request_id in Anthropic error bodies", async () => {
    const bad = await client.messages.create({ model: 'claude', max_tokens: 0, messages: [] }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(Anthropic.BadRequestError);
    const err = bad as InstanceType<typeof Anthropic.BadRequestError>;
    expect(err.requestID).toBeTruthy();
    expect(err.error).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' }, request_id: err.requestID });

    const res = await fetch(`${gateway.url}/v1/messages/nowhere`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'req-from-client' }, body: '{}' });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'not_found_error' }, request_id: 'req-from-client' });
  });
});

describe('Anthropic-defined tools, server-tool blocks and documents by URL', () => {
  const tools = [
    { type: 'bash_20250124', name: 'bash' },
    { name: 'get_weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } },
    { type: 'text_editor_20250728', name: 'str_replace_based_edit_tool', max_characters: 10000 },
    {
      type: 'web_search_20250305',
      name: 'web_search',
      max_uses: 3,
      allowed_domains: ['example.com'],
      user_location: { type: 'approximate', city: 'Paris', country: 'FR', timezone: 'Europe/Paris' },
      cache_control: { type: 'ephemeral' },
    },
  ] as Anthropic.ToolUnion[];
  // A web search turn as Claude answered it (Anthropic's web search tool reference), sent back.
  const searched: Anthropic.MessageParam[] = [
    { role: 'user', content: 'What is new in Paris?' },
    {
      role: 'assistant',
      content: [
        { type: 'text', text: "I'll search for that." },
        { type: 'server_tool_use', id: 'srvtoolu_01WYG3ziw53XMcoyKL4XcZmE', name: 'web_search', input: { query: 'Paris news' } },
        {
          type: 'web_search_tool_result',
          tool_use_id: 'srvtoolu_01WYG3ziw53XMcoyKL4XcZmE',
          content: [{ type: 'web_search_result', url: 'https://example.com/paris', title: 'Paris today', encrypted_content: 'EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5LTQ1NGUtODgxNC1kNjNjNTk1ZWI3Y', page_age: 'April 30, 2025' }],
        },
        {
          type: 'text',
          text: 'A new bridge opened.',
          citations: [{ type: 'web_search_result_location', url: 'https://example.com/paris', title: 'Paris today', encrypted_index: 'Eo8BCioIAhgBIiQyYjQ0OWJmZi1lNm', cited_text: 'A new bridge opened on the Seine.' }],
        },
      ],
    },
    { role: 'user', content: [{ type: 'document', source: { type: 'url', url: 'https://example.com/report.pdf' } }, { type: 'text', text: 'And this report?' }] },
  ];

  it('go to Claude as the client sent them, in order', async () => {
    await client.messages.create({ model: 'claude', max_tokens: 1000, tools, tool_choice: { type: 'tool', name: 'bash' }, messages: [{ role: 'user', content: 'List the files' }] });
    expect(claudeReceived[0]?.body.tools).toEqual(tools);
    expect(claudeReceived[0]?.body.tool_choice).toEqual({ type: 'tool', name: 'bash' });
    await client.messages.create({ model: 'claude', max_tokens: 1000, tools, messages: searched });
    await client.messages.stream({ model: 'claude', max_tokens: 1000, tools, messages: searched }).finalMessage();
    expect(claudeReceived[1]?.body.messages).toEqual(searched);
    expect(claudeReceived[2]?.body.messages).toEqual(searched);
    // A document by URL alone is enough to send the turns as they are.
    const byUrl: Anthropic.MessageParam[] = [searched[2] as Anthropic.MessageParam];
    await client.messages.create({ model: 'claude', max_tokens: 100, messages: byUrl });
    expect(claudeReceived[3]?.body.messages).toEqual(byUrl);
  });

  it('are refused with 400 unsupported_capability for a model without an Anthropic deployment', async () => {
    for (const params of [
      { model: 'gpt', max_tokens: 100, tools, messages: [{ role: 'user' as const, content: 'List the files' }] },
      { model: 'gpt', max_tokens: 100, messages: searched },
    ]) {
      const err = await client.messages.create(params).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Anthropic.BadRequestError);
      expect((err as InstanceType<typeof Anthropic.BadRequestError>).error).toMatchObject({
        type: 'error',
        error: { type: 'invalid_request_error', code: 'unsupported_capability', message: expect.stringMatching(/Anthropic deployments only/) },
      });
    }
    expect(openaiReceived).toHaveLength(0);
  });
});
