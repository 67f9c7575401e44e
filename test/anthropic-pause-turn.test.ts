// Claude's `pause_turn`: a server-tool loop (web search) stopped at its iteration limit with the
// answer unfinished, for the client to send back to be continued. The Anthropic route says so
// (stop_reason pause_turn, JSON and streamed) so SDK loops continue it instead of stopping on an
// unfinished answer; the OpenAI route's answer is a plain stop; and the response cache never keeps it.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';
import { startJsonUpstream, type JsonUpstream } from './helpers/recording-upstream.js';

/** Anthropic's web-search fixtures, cut where the loop paused. */
const paused = async (name: string) => (await readFile(new URL(`../src/providers/__fixtures__/${name}`, import.meta.url), 'utf8')).replaceAll('"end_turn"', '"pause_turn"');

let claude: JsonUpstream;
let calls = 0;
let gateway: RunningServer;

beforeAll(async () => {
  const json = await paused('anthropic-message-web-search.json');
  const stream = await paused('anthropic-web-search-stream.chunks.txt');
  claude = await startJsonUpstream((_req, body, res) => {
    calls++;
    if (body.stream) res.writeHead(200, { 'content-type': 'text/event-stream' }).end(stream);
    else res.writeHead(200, { 'content-type': 'application/json' }).end(json);
  });
  gateway = await startTestGateway({
    config: {
      providers: { claude: { type: 'anthropic', base_url: claude.url.replace(/\/v1$/, ''), api_key: 'sk-ant-test' } },
      models: [{ name: 'claude', deployments: [{ provider: 'claude', model: 'claude-sonnet-4-5-20250929' }] }],
      cache: { enabled: true },
    },
  });
});
afterAll(async () => {
  await gateway?.close();
  await claude?.close();
});

const ask = { model: 'claude', max_tokens: 1024, messages: [{ role: 'user' as const, content: 'When was Claude Shannon born?' }], tools: [{ type: 'web_search_20250305' as const, name: 'web_search' as const, max_uses: 5 }] };

describe("Claude's pause_turn", () => {
  it('reaches an Anthropic client as pause_turn, JSON and streamed, and is never served from the cache', async () => {
    const client = new Anthropic({ baseURL: gateway.url, apiKey: 'unused', maxRetries: 0 });
    const before = calls;
    expect((await client.messages.create(ask)).stop_reason).toBe('pause_turn');
    expect((await client.messages.create(ask)).stop_reason).toBe('pause_turn');
    expect((await client.messages.stream(ask).finalMessage()).stop_reason).toBe('pause_turn');
    expect(calls - before).toBe(3);
  });

  it('is a plain stop on the OpenAI route, with nothing only the Anthropic route reports', async () => {
    const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const res = await client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'When was Claude Shannon born? (openai)' }] });
    expect(res.choices[0]?.finish_reason).toBe('stop');
    expect(res.choices[0]).not.toHaveProperty('paused');
  });
});
