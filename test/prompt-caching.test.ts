// Provider prompt caching through the gateway, with the official SDKs as clients and stand-ins that
// speak Anthropic's and OpenAI's wire formats: a client's `cache_control` breakpoints reach Claude
// where the client put them (from the Anthropic route, and from OpenAI-shaped requests as LiteLLM
// clients send them) and never reach an OpenAI upstream; the upstream's cache counts come back in
// each dialect's usage, and the cost the gateway reports prices cached tokens at their own price.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { specForTests } from '../src/providers/__fixtures__/openai-spec.js';
import { costUsd, priceFor } from '../src/providers/pricing.js';
import { startTestGateway } from './helpers/gateway.js';
import { readJsonBody } from './helpers/recording-upstream.js';

const spec = specForTests('prompt-caching.test');

/** Claude's answer when 2,000 of the prompt's tokens were read from its cache and 300 written. */
const CLAUDE_USAGE = { input_tokens: 40, cache_creation_input_tokens: 300, cache_read_input_tokens: 2000, output_tokens: 12 };
/** OpenAI's answer when 1,024 of 1,100 prompt tokens were cached. */
const OPENAI_USAGE = { prompt_tokens: 1100, completion_tokens: 8, total_tokens: 1108, prompt_tokens_details: { cached_tokens: 1024 } };

let claude: Server;
let openai: Server;
const claudeBodies: Record<string, unknown>[] = [];
const openaiBodies: Record<string, unknown>[] = [];
let gateway: RunningServer;
let anthropicClient: Anthropic;
let openaiClient: OpenAI;

async function claudeStandIn(req: IncomingMessage, res: ServerResponse) {
  const body = await readJsonBody(req);
  claudeBodies.push(body);
  const message = { id: 'msg_cache1', type: 'message', role: 'assistant', model: body.model, content: [{ type: 'text', text: 'Cached hello.' }], stop_reason: 'end_turn', stop_sequence: null };
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ...message, usage: CLAUDE_USAGE }));
    return;
  }
  // As Claude streams it: the prompt's counts in message_start, the output's in message_delta.
  const { output_tokens: _, ...prompt } = CLAUDE_USAGE;
  const events: [string, unknown][] = [
    ['message_start', { type: 'message_start', message: { ...message, content: [], stop_reason: null, usage: { ...prompt, output_tokens: 1 } } }],
    ['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }],
    ['content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Cached hello.' } }],
    ['content_block_stop', { type: 'content_block_stop', index: 0 }],
    ['message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: CLAUDE_USAGE.output_tokens } }],
    ['message_stop', { type: 'message_stop' }],
  ];
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.end(events.map(([event, data]) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`).join(''));
}

async function openaiStandIn(req: IncomingMessage, res: ServerResponse) {
  const body = await readJsonBody(req);
  openaiBodies.push(body);
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(
    JSON.stringify({
      id: 'chatcmpl-cache1',
      object: 'chat.completion',
      created: 1,
      model: body.model,
      choices: [{ index: 0, message: { role: 'assistant', content: 'Cached hi.', refusal: null }, finish_reason: 'stop', logprobs: null }],
      usage: OPENAI_USAGE,
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
        gpt: { type: 'openai', base_url: `http://127.0.0.1:${openaiPort}/v1`, api_key: 'sk-test' },
      },
      models: [
        { name: 'claude', deployments: [{ provider: 'claude', model: 'claude-sonnet-4-5-20250929' }] },
        { name: 'gpt', deployments: [{ provider: 'gpt', model: 'gpt-4.1' }] },
      ],
    },
  });
  anthropicClient = new Anthropic({ baseURL: gateway.url, apiKey: 'unused', maxRetries: 0 });
  openaiClient = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await gateway?.close();
  claude?.close();
  openai?.close();
});

const LONG_CONTEXT = 'The reference manual, long enough to be worth caching. '.repeat(50);
const tools: Anthropic.Tool[] = [
  { name: 'lookup', description: 'Look a term up', input_schema: { type: 'object', properties: { q: { type: 'string' } } } },
  { name: 'cite', description: 'Cite a section', input_schema: { type: 'object', properties: { s: { type: 'string' } } }, cache_control: { type: 'ephemeral' } },
];

describe('prompt caching from the Anthropic route', () => {
  it('sends the breakpoints to Claude where the client put them, and reports its cache counts and their price', async () => {
    claudeBodies.length = 0;
    const { data, response } = await anthropicClient.messages
      .create({
        model: 'claude',
        max_tokens: 100,
        system: [
          { type: 'text', text: 'You answer from the manual.' },
          { type: 'text', text: LONG_CONTEXT, cache_control: { type: 'ephemeral', ttl: '1h' } },
        ],
        tools,
        messages: [
          { role: 'user', content: [{ type: 'text', text: 'Earlier question', cache_control: { type: 'ephemeral' } }] },
          { role: 'assistant', content: 'Earlier answer.' },
          { role: 'user', content: 'What does section 2 say?' },
        ],
      })
      .withResponse();
    const sent = claudeBodies[0] as Record<string, unknown>;
    expect(sent.system).toEqual([
      { type: 'text', text: 'You answer from the manual.' },
      { type: 'text', text: LONG_CONTEXT, cache_control: { type: 'ephemeral', ttl: '1h' } },
    ]);
    expect((sent.tools as Record<string, unknown>[]).map((t) => t.cache_control)).toEqual([undefined, { type: 'ephemeral' }]);
    expect(sent.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'Earlier question', cache_control: { type: 'ephemeral' } }] },
      { role: 'assistant', content: [{ type: 'text', text: 'Earlier answer.' }] },
      { role: 'user', content: [{ type: 'text', text: 'What does section 2 say?' }] },
    ]);

    expect(data.usage).toMatchObject(CLAUDE_USAGE);
    const cost = Number(response.headers.get('x-inferenceflow-cost-usd'));
    const prompt = CLAUDE_USAGE.input_tokens + CLAUDE_USAGE.cache_creation_input_tokens + CLAUDE_USAGE.cache_read_input_tokens;
    const expected = costUsd(
      { prompt_tokens: prompt, completion_tokens: 12, total_tokens: prompt + 12, prompt_tokens_details: { cached_tokens: 2000, cache_write_tokens: 300 } },
      priceFor('claude-sonnet-4-5-20250929'),
    );
    expect(cost).toBeCloseTo(expected, 9);
    // Reads at a tenth of the input price, writes at 1.25 times it: not the undiscounted prompt.
    expect(cost).toBeLessThan((prompt * 3 + 12 * 15) / 1e6);
  });

  it('streams the cache counts to the SDK, which assembles them into the final message', async () => {
    const final = await anthropicClient.messages
      .stream({ model: 'claude', max_tokens: 100, system: [{ type: 'text', text: LONG_CONTEXT, cache_control: { type: 'ephemeral' } }], messages: [{ role: 'user', content: 'Hi' }] })
      .finalMessage();
    expect(final.usage).toMatchObject(CLAUDE_USAGE);
  });

  it('drops the breakpoints for an OpenAI upstream, which caches by itself, and reports its cached tokens as Anthropic does', async () => {
    openaiBodies.length = 0;
    const msg = await anthropicClient.messages.create({
      model: 'gpt',
      max_tokens: 50,
      system: [{ type: 'text', text: LONG_CONTEXT, cache_control: { type: 'ephemeral' } }],
      tools,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi', cache_control: { type: 'ephemeral' } }] }],
    });
    const sent = openaiBodies[0] as Record<string, unknown>;
    expect(JSON.stringify(sent)).not.toContain('cache_control');
    if (spec) expect(spec.errors('CreateChatCompletionRequest', sent)).toEqual([]);
    expect(msg.usage).toMatchObject({ input_tokens: 1100 - 1024, cache_read_input_tokens: 1024, cache_creation_input_tokens: 0, output_tokens: 8 });
  });
});

describe('prompt caching from the OpenAI route', () => {
  it('takes breakpoints on content parts and tools to Claude, and reports the cached tokens in OpenAI usage', async () => {
    claudeBodies.length = 0;
    const { data, response } = await openaiClient.chat.completions
      .create({
        model: 'claude',
        messages: [
          { role: 'system', content: [{ type: 'text', text: LONG_CONTEXT, cache_control: { type: 'ephemeral' } } as OpenAI.ChatCompletionContentPartText] },
          { role: 'user', content: 'Hi' },
        ],
        tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } }, cache_control: { type: 'ephemeral' } } as OpenAI.ChatCompletionTool],
      })
      .withResponse();
    const sent = claudeBodies[0] as Record<string, unknown>;
    expect(sent.system).toEqual([{ type: 'text', text: LONG_CONTEXT, cache_control: { type: 'ephemeral' } }]);
    expect((sent.tools as Record<string, unknown>[])[0]?.cache_control).toEqual({ type: 'ephemeral' });
    expect(data.usage).toMatchObject({ prompt_tokens: 2340, completion_tokens: 12, prompt_tokens_details: { cached_tokens: 2000, cache_write_tokens: 300 } });
    expect(Number(response.headers.get('x-inferenceflow-cost-usd'))).toBeGreaterThan(0);
  });

  it("passes an OpenAI upstream's cached tokens on and prices them at the cached-input price", async () => {
    openaiBodies.length = 0;
    const { data, response } = await openaiClient.chat.completions
      .create({ model: 'gpt', messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi', cache_control: { type: 'ephemeral' } } as OpenAI.ChatCompletionContentPartText] }] })
      .withResponse();
    expect(JSON.stringify(openaiBodies[0])).not.toContain('cache_control');
    if (spec) expect(spec.errors('CreateChatCompletionRequest', openaiBodies[0])).toEqual([]);
    expect(data.usage?.prompt_tokens_details?.cached_tokens).toBe(1024);
    // gpt-4.1: input 2, cached input 0.5, output 8 (USD per million tokens).
    expect(Number(response.headers.get('x-inferenceflow-cost-usd'))).toBeCloseTo((76 * 2 + 1024 * 0.5 + 8 * 8) / 1e6, 9);
  });

  it('refuses a breakpoint of an unknown type with the usual 400', async () => {
    const res = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi', cache_control: { type: 'forever' } }] }] }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { param?: string } }).error.param).toMatch(/cache_control/);
  });
});
