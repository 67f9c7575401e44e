// Claude's web search through the gateway's Anthropic route, with the official `@anthropic-ai/sdk` as
// the client and a Claude stand-in answering from fixtures written from Anthropic's API reference:
// the server_tool_use and web_search_tool_result blocks and the text blocks' citations reach the
// client in place and in order, in JSON and streamed (and from the response cache), while the OpenAI
// route's answer to the same upstream answer stays the text.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';
import { readJsonBody } from './helpers/recording-upstream.js';

const fixture = (name: string) => readFile(new URL(`../src/providers/__fixtures__/${name}`, import.meta.url), 'utf8');

const received: Record<string, unknown>[] = [];
let claude: Server;
let gateway: RunningServer;
let cached: RunningServer;
let client: Anthropic;
let openaiClient: OpenAI;

/** Claude answering a web search, whatever it is asked. */
async function claudeStandIn(req: IncomingMessage, res: ServerResponse) {
  const body = await readJsonBody(req);
  received.push(body);
  if (body.stream) {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end(await fixture('anthropic-web-search-stream.chunks.txt'));
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(await fixture('anthropic-message-web-search.json'));
}

const listen = (s: Server) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as { port: number }).port)));

beforeAll(async () => {
  claude = createServer((req, res) => void claudeStandIn(req, res));
  const port = await listen(claude);
  const config = {
    providers: { claude: { type: 'anthropic', base_url: `http://127.0.0.1:${port}`, api_key: 'sk-ant-test' } },
    models: [{ name: 'claude', deployments: [{ provider: 'claude', model: 'claude-sonnet-4-5-20250929' }] }],
  };
  gateway = await startTestGateway({ config });
  cached = await startTestGateway({ config: { ...config, cache: { enabled: true } } });
  client = new Anthropic({ baseURL: gateway.url, apiKey: 'unused', maxRetries: 0 });
  openaiClient = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await gateway?.close();
  await cached?.close();
  claude?.close();
});

const SRV_ID = 'srvtoolu_01WYG3ziw53XMcoyKL4XcZmE';
const RESULT = { type: 'web_search_result', url: 'https://en.wikipedia.org/wiki/Claude_Shannon', title: 'Claude Shannon - Wikipedia', encrypted_content: 'EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5LTQ1NGUtODgxNC1kNjNjNTk1ZWI3Y', page_age: 'April 30, 2025' };
const CITATION = {
  type: 'web_search_result_location',
  url: 'https://en.wikipedia.org/wiki/Claude_Shannon',
  title: 'Claude Shannon - Wikipedia',
  encrypted_index: 'Eo8BCioIAhgBIiQyYjQ0OWJmZi1lNm..',
  cited_text: 'Claude Elwood Shannon (April 30, 1916 – February 24, 2001) was an American mathematician, electrical engineer, computer scientist, cryptographer and i...',
};
/** The answer's blocks in order; `citations` as Claude sent them (absent in the stream's uncited text blocks). */
const blocks = (uncited: Record<string, unknown>) => [
  { type: 'text', text: "I'll search for when Claude Shannon was born.", ...uncited },
  { type: 'server_tool_use', id: SRV_ID, name: 'web_search', input: { query: 'claude shannon birth date' } },
  { type: 'web_search_tool_result', tool_use_id: SRV_ID, content: [RESULT] },
  { type: 'text', text: 'Based on the search results, ', citations: null },
  { type: 'text', text: 'Claude Shannon was born on April 30, 1916, in Petoskey, Michigan', citations: [CITATION] },
];
const JSON_BLOCKS = blocks({});
const STREAMED_BLOCKS = (() => {
  const b: Record<string, unknown>[] = blocks({});
  b[3] = { type: 'text', text: 'Based on the search results, ' };
  return b;
})();
const webSearch = { type: 'web_search_20250305', name: 'web_search', max_uses: 5 } as const;
const ask = { model: 'claude', max_tokens: 1024, tools: [webSearch], messages: [{ role: 'user' as const, content: 'When was Claude Shannon born?' }] };

describe('web search through the Anthropic route', () => {
  it('gives the client the server-tool blocks and citations in place, in JSON', async () => {
    const msg = await client.messages.create(ask);
    expect(msg.content).toEqual(JSON_BLOCKS);
    expect(msg.stop_reason).toBe('end_turn');
  });

  it('streams them as Anthropic does (server_tool_use input as input_json_delta, the result whole in its start, citations_delta)', async () => {
    const stream = client.messages.stream(ask);
    const events: Anthropic.MessageStreamEvent[] = [];
    stream.on('streamEvent', (e) => events.push(e));
    const final = await stream.finalMessage();
    expect(final.content).toEqual(STREAMED_BLOCKS);
    expect(events.filter((e) => e.type === 'content_block_start').map((e) => (e.content_block as { type: string }).type)).toEqual(['text', 'server_tool_use', 'web_search_tool_result', 'text', 'text']);
    expect(events.filter((e) => e.type === 'content_block_delta').map((e) => e.delta.type)).toEqual(['text_delta', 'input_json_delta', 'input_json_delta', 'text_delta', 'citations_delta', 'text_delta', 'text_delta']);
  });

  it('lets the client send the blocks back on the next turn, to Claude as they came', async () => {
    const msg = await client.messages.create(ask);
    received.length = 0;
    const next = [...ask.messages, { role: 'assistant' as const, content: msg.content as Anthropic.ContentBlockParam[] }, { role: 'user' as const, content: 'And where did he die?' }];
    await client.messages.create({ ...ask, messages: next });
    const sent = (received[0]?.messages as { content: unknown }[] | undefined)?.[1]?.content;
    expect(sent).toEqual(JSON_BLOCKS);
  });

  it('keeps them in a cached answer, replayed as JSON and as a stream', async () => {
    const c = new Anthropic({ baseURL: cached.url, apiKey: 'unused', maxRetries: 0 });
    const cachedAsk = { ...ask, messages: [{ role: 'user' as const, content: 'When was Claude Shannon born? (cache)' }] };
    expect((await c.messages.create(cachedAsk)).content).toEqual(JSON_BLOCKS);
    received.length = 0;
    const again = await c.messages.create(cachedAsk);
    expect(received).toHaveLength(0);
    expect(again.content).toEqual(JSON_BLOCKS);
    expect((await c.messages.stream(cachedAsk).finalMessage()).content).toEqual(JSON_BLOCKS);
  });

  it("gives the OpenAI route the answer's text, as before, and none of the blocks", async () => {
    const res = await openaiClient.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'When was Claude Shannon born?' }] });
    expect(res.choices[0]?.message.content).toBe("I'll search for when Claude Shannon was born.Based on the search results, Claude Shannon was born on April 30, 1916, in Petoskey, Michigan");
    expect(JSON.stringify(res)).not.toMatch(/anthropic_content|srvtoolu|web_search/);
    const stream = await openaiClient.chat.completions.create({ model: 'claude', stream: true, messages: [{ role: 'user', content: 'When was Claude Shannon born?' }] });
    let text = '';
    for await (const chunk of stream) {
      expect(JSON.stringify(chunk)).not.toMatch(/anthropic_content|srvtoolu/);
      text += chunk.choices[0]?.delta.content ?? '';
    }
    expect(text).toBe(res.choices[0]?.message.content);
  });
});
