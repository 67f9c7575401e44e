// Ollama's native API through the whole gateway, with the official SDKs: an Anthropic client (Claude
// Code and the like) asking a model without the thinking capability to think gets its answer, not
// Ollama's 400 "\"llama3.2\" does not support thinking"; the operator's num_ctx reaches Ollama and
// no keep_alive overrides the server's own.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { fixture } from '../src/providers/__fixtures__/replay-server.js';
import { startTestGateway } from './helpers/gateway.js';
import { readJsonBody } from './helpers/recording-upstream.js';

/** What the stand-in Ollama received: path and body of every POST. */
const calls: { path: string; body: Record<string, unknown> }[] = [];
let ollama: Server;
let server: RunningServer;
let anthropic: Anthropic;
let openai: OpenAI;

beforeAll(async () => {
  const refusal = fixture('ollama-error-400-no-thinking.json');
  // Like Ollama with llama3.2 pulled (no thinking capability): think on is refused before the model runs.
  ollama = createServer((req, res) => {
    void readJsonBody(req).then((body) => {
      if (req.method !== 'POST') {
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' }).end('{"version":"0.12.6"}');
        return;
      }
      calls.push({ path: req.url ?? '', body });
      if (body.think === true || typeof body.think === 'string') {
        res.writeHead(400, { 'content-type': 'application/json; charset=utf-8' }).end(refusal);
        return;
      }
      const line = (content: string, done: boolean) =>
        JSON.stringify({
          model: body.model,
          created_at: '2025-01-01T00:00:00Z',
          message: { role: 'assistant', content },
          done,
          ...(done ? { done_reason: 'stop', prompt_eval_count: 12, eval_count: 3 } : {}),
        });
      if (body.stream === true) {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' }).end(`${line('Hello', false)}\n${line('!', false)}\n${line('', true)}\n`);
      } else {
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' }).end(line('Hello!', true));
      }
    });
  });
  await new Promise<void>((resolve) => ollama.listen(0, '127.0.0.1', resolve));
  const baseUrl = `http://127.0.0.1:${(ollama.address() as AddressInfo).port}`;
  server = await startTestGateway({
    config: {
      providers: {
        ollama: { type: 'ollama', base_url: baseUrl },
        sized: { type: 'ollama', base_url: baseUrl, options: { num_ctx: 32768 } },
      },
      models: [
        { name: 'llama3.2', retry: { max_retries: 0 }, deployments: [{ provider: 'ollama', model: 'llama3.2' }] },
        { name: 'qwen2.5', deployments: [{ provider: 'sized', model: 'qwen2.5:7b', context_window: 32768 }] },
      ],
    },
  });
  anthropic = new Anthropic({ baseURL: server.url, apiKey: 'unused', maxRetries: 0 });
  openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  await server?.close();
  await new Promise((resolve) => ollama?.close(resolve));
});

beforeEach(() => {
  calls.length = 0;
});

describe('Ollama through the gateway', () => {
  it('answers /v1/messages with thinking enabled on a model that cannot think, then stops asking it to think', async () => {
    const msg = await anthropic.messages.create({
      model: 'llama3.2',
      max_tokens: 2048,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(msg.content).toEqual([expect.objectContaining({ type: 'text', text: 'Hello!' })]);
    expect(msg.stop_reason).toBe('end_turn');
    expect(calls.map((c) => [c.path, c.body.think])).toEqual([
      ['/api/chat', true],
      ['/api/chat', undefined],
    ]);

    // Streamed, as Claude Code asks: straight to the answer, the model now known not to think.
    const stream = anthropic.messages.stream({ model: 'llama3.2', max_tokens: 2048, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: [{ role: 'user', content: 'hi again' }] });
    const final = await stream.finalMessage();
    expect(final.content.find((b) => b.type === 'text')).toMatchObject({ text: 'Hello!' });
    expect(calls.map((c) => c.body.think)).toEqual([true, undefined, undefined]);

    // And the OpenAI route's reasoning_effort likewise.
    const chat = await openai.chat.completions.create({ model: 'llama3.2', reasoning_effort: 'low', messages: [{ role: 'user', content: 'hi' }] });
    expect(chat.choices[0]?.message.content).toBe('Hello!');
    expect(calls).toHaveLength(4);
  });

  it("sends the provider's num_ctx and no keep_alive", async () => {
    await openai.chat.completions.create({ model: 'qwen2.5', messages: [{ role: 'user', content: 'a long document' }] });
    expect(calls).toHaveLength(1);
    expect(calls[0]?.body.options).toEqual({ num_ctx: 32768 });
    expect(calls[0]?.body).not.toHaveProperty('keep_alive');
  });
});
