// Claude's server-tool blocks (server_tool_use, web_search_tool_result) and its text blocks'
// citations, through the anthropic adapter: kept in order on the canonical answer
// (`anthropic_content`, streamed as `delta.anthropic_content` pieces) when the request carries what
// only Anthropic reads, and through the stream folder and the cache's replay unchanged.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatRequest } from '../canonical/chat.js';
import { foldChunks, resultToChunks } from '../canonical/convert.js';
import { collect, fixture, startFixtureServer, type FixtureServer } from './__fixtures__/fixture-server.js';
import { createAnthropicProvider, type AnthropicProvider } from './anthropic.js';
import type { CallOptions } from './types.js';

let server: FixtureServer;
let provider: AnthropicProvider;
const opts = (): CallOptions => ({ signal: new AbortController().signal, timeoutMs: 5000, requestId: 'req-1' });
const sse = { 'content-type': 'text/event-stream' };
const webSearch: ChatRequest = {
  model: 'claude-sonnet-4-5',
  messages: [{ role: 'user', content: 'When was Claude Shannon born?' }],
  anthropic_tools: [{ position: 0, tool: { type: 'web_search_20250305', name: 'web_search', max_uses: 5 } }],
};

beforeAll(async () => {
  server = await startFixtureServer();
  provider = createAnthropicProvider('test-anthropic', { type: 'anthropic', base_url: server.url, api_key: 'sk-ant-test' });
});
afterAll(async () => {
  await provider.close();
  await server.close();
});

describe('anthropic provider: server-tool blocks and citations', () => {
  it('keeps the answer content in order, server-tool blocks and citations included, JSON and streamed alike', async () => {
    const wire = JSON.parse(await fixture('anthropic-message-web-search.json')) as { content: unknown[] };
    server.reply({ body: JSON.stringify(wire) });
    const json = await provider.chat(webSearch, opts());
    const message = json.choices[0]?.message;
    // The portable view is unchanged: the text blocks joined.
    expect(message?.content).toBe("I'll search for when Claude Shannon was born.Based on the search results, Claude Shannon was born on April 30, 1916, in Petoskey, Michigan");
    expect(message?.tool_calls).toBeUndefined();
    expect(message?.anthropic_content).toEqual(wire.content);

    server.reply({ headers: sse, body: await fixture('anthropic-web-search-stream.chunks.txt') });
    const chunks = await collect(await provider.streamChat({ ...webSearch, stream: true }, opts()));
    const folded = foldChunks(chunks);
    // The stream's text blocks have no `citations` field unless Claude cites (`[]` at the start, then deltas).
    const streamed = (wire.content as Record<string, unknown>[]).map((b) => (b.type === 'text' && b.citations === null ? { type: 'text', text: b.text } : b));
    expect(folded.choices[0]?.message.anthropic_content).toEqual(streamed);
    expect(folded.choices[0]?.message.content).toBe(message?.content);
    // A cache hit replayed and folded again keeps them.
    expect(foldChunks(resultToChunks(json)).choices[0]?.message).toEqual({ ...message, refusal: null });
    expect(foldChunks(resultToChunks(folded)).choices[0]?.message.anthropic_content).toEqual(streamed);
  });

  it('leaves the field out for a request without Anthropic-only features', async () => {
    server.reply({ body: await fixture('anthropic-message-web-search.json') });
    const json = await provider.chat({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'hi' }] }, opts());
    expect(json.choices[0]?.message.anthropic_content).toBeUndefined();
    server.reply({ headers: sse, body: await fixture('anthropic-web-search-stream.chunks.txt') });
    const chunks = await collect(await provider.streamChat({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'hi' }], stream: true }, opts()));
    expect(chunks.some((c) => c.choices.some((ch) => ch.delta.anthropic_content))).toBe(false);
  });
});
