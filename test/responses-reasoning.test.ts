// The Responses API over an upstream that thinks aloud (vLLM with a reasoning parser, DeepSeek:
// `reasoning_content` on the message and on stream deltas): the reasoning comes back as a `reasoning`
// output item with `reasoning_text` content, before the answer — in the Response object, as the
// `response.reasoning_text.*` events of a stream, and when a stored response is replayed. Every
// object and event is checked against OpenAI's published schema, through the official `openai` client.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';
import { specChecker } from './helpers/spec-check.js';

const expectValid = specChecker('responses-reasoning.test');

const REASONING = ['The user wants', ' a capital.'];
let upstream: Server;
let server: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  // A vLLM-like server: chat completions with reasoning_content, JSON or SSE.
  upstream = createServer((req, res) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw) as { stream?: boolean; model: string };
      const base = { id: 'chatcmpl-up', created: 1_800_000_000, model: body.model };
      if (!body.stream) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            ...base,
            object: 'chat.completion',
            choices: [{ index: 0, message: { role: 'assistant', content: 'Paris.', reasoning_content: REASONING.join('') }, finish_reason: 'stop' }],
            usage: { prompt_tokens: 12, completion_tokens: 9, total_tokens: 21 },
          }),
        );
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
        `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      res.write(chunk({ role: 'assistant', content: '' }));
      for (const r of REASONING) res.write(chunk({ reasoning_content: r }));
      res.write(chunk({ content: 'Paris.' }));
      res.write(chunk({}, 'stop'));
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
  server = await startTestGateway({
    config: { providers: { vllm: { type: 'openai', base_url: url, api_key: 'k' } }, models: [{ name: 'thinker', deployments: [{ provider: 'vllm', model: 'qwen3' }] }] },
  });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await server?.close();
  await new Promise((resolve) => upstream?.close(resolve));
});

describe('reasoning items on /v1/responses', () => {
  it('puts the reasoning before the answer in a Response', async () => {
    const r = await client.responses.create({ model: 'thinker', input: 'Capital of France?' });
    expectValid('Response', r);
    expect(r.output.map((o) => o.type)).toEqual(['reasoning', 'message']);
    expect(r.output[0]).toMatchObject({ type: 'reasoning', summary: [], content: [{ type: 'reasoning_text', text: 'The user wants a capital.' }], status: 'completed' });
    expect(r.output_text).toBe('Paris.');
  });

  it('streams it as response.reasoning_text events, closed before the answer starts, and replays it', async () => {
    const stream = client.responses.stream({ model: 'thinker', input: 'Capital of France?' });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const e of stream) {
      expectValid('ResponseStreamEvent', e);
      events.push(e);
    }
    const types = events.map((e) => e.type);
    const deltas = events.filter((e) => e.type === 'response.reasoning_text.delta').map((e) => (e as { delta: string }).delta);
    expect(deltas).toEqual(REASONING);
    const reasoningDone = types.indexOf('response.reasoning_text.done');
    expect(reasoningDone).toBeGreaterThan(-1);
    expect(reasoningDone).toBeLessThan(types.indexOf('response.output_text.delta'));
    const final = await stream.finalResponse();
    expect(final.output.map((o) => o.type)).toEqual(['reasoning', 'message']);
    expect(final.output[0]).toMatchObject({ content: [{ type: 'reasoning_text', text: 'The user wants a capital.' }], status: 'completed' });

    // The stored response, replayed: the same items, the reasoning as one delta.
    const replay = await client.responses.retrieve(final.id, { stream: true });
    const replayed: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const e of replay) {
      expectValid('ResponseStreamEvent', e);
      replayed.push(e);
    }
    expect(replayed.filter((e) => e.type === 'response.reasoning_text.delta').map((e) => (e as { delta: string }).delta)).toEqual(['The user wants a capital.']);

    // Fed back as input (previous_response_id), the reasoning is not replayed to the model and the turn goes on.
    const next = await client.responses.create({ model: 'thinker', previous_response_id: final.id, input: 'And of Spain?' });
    expect(next.output_text).toBe('Paris.');
  });
});
