// An OpenAI-compatible upstream (vLLM, DeepSeek, a LiteLLM or Azure endpoint) behind the gateway,
// with the official SDKs as clients: what such a server adds to OpenAI's shapes (reasoning text,
// vLLM's stop_reason, usage details) reaches each dialect's answer, and what the client sent reaches
// the upstream as it was sent. The stand-in answers with wire fixtures or the bodies a test gives.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { fixture } from '../src/providers/__fixtures__/fixture-server.js';
import { specForTests } from '../src/providers/__fixtures__/openai-spec.js';
import { startTestGateway } from './helpers/gateway.js';
import { readJsonBody } from './helpers/recording-upstream.js';

const spec = specForTests('openai-compatible-upstream.test');

interface Reply {
  status?: number;
  headers?: Record<string, string>;
  body: string;
}

let upstream: Server;
let gateway: RunningServer;
let openaiClient: OpenAI;
let anthropicClient: Anthropic;
/** What the upstream answers next (JSON unless headers say otherwise); a stream request gets `stream`. */
let json: Reply;
let stream: Reply;
const bodies: Record<string, unknown>[] = [];

async function standIn(req: IncomingMessage, res: ServerResponse) {
  const body = await readJsonBody(req);
  bodies.push(body);
  const reply = body.stream ? stream : json;
  res.writeHead(reply.status ?? 200, reply.headers ?? { 'content-type': body.stream ? 'text/event-stream' : 'application/json' });
  res.end(reply.body);
}

const listen = (s: Server) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as { port: number }).port)));

beforeAll(async () => {
  upstream = createServer((req, res) => void standIn(req, res));
  const port = await listen(upstream);
  gateway = await startTestGateway({
    config: {
      providers: { vllm: { type: 'openai', base_url: `http://127.0.0.1:${port}/v1`, api_key: 'sk-test' } },
      models: [{ name: 'qwq', deployments: [{ provider: 'vllm', model: 'Qwen/QwQ-32B' }] }],
    },
  });
  openaiClient = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  anthropicClient = new Anthropic({ baseURL: gateway.url, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await gateway?.close();
  upstream?.close();
});
beforeEach(() => {
  bodies.length = 0;
});

describe('reasoning text from a vLLM / DeepSeek upstream', () => {
  beforeEach(async () => {
    json = { body: await fixture('openai-vllm-reasoning.json') };
    stream = { body: await fixture('openai-vllm-reasoning-stream.chunks.txt') };
  });

  it('reaches OpenAI clients as message.reasoning_content and delta.reasoning_content', async () => {
    const res = await openaiClient.chat.completions.create({ model: 'qwq', messages: [{ role: 'user', content: '9.11 or 9.8?' }] });
    const message = res.choices[0]?.message as OpenAI.ChatCompletionMessage & { reasoning_content?: string };
    expect(message.content).toBe('9.8 is greater than 9.11.');
    expect(message.reasoning_content).toBe('The user asks for 9.11 vs 9.8. Compare the tenths: 1 < 8, so 9.8 is larger.');
    const chunks = await openaiClient.chat.completions.create({ model: 'qwq', stream: true, messages: [{ role: 'user', content: '9.11 or 9.8?' }] });
    let reasoning = '';
    let text = '';
    for await (const chunk of chunks) {
      const delta = chunk.choices[0]?.delta as (OpenAI.ChatCompletionChunk.Choice.Delta & { reasoning_content?: string }) | undefined;
      reasoning += delta?.reasoning_content ?? '';
      text += delta?.content ?? '';
    }
    expect(reasoning).toBe('Compare the tenths: 1 < 8.');
    expect(text).toBe('9.8 is greater.');
  });

  it('reaches Anthropic clients as a thinking block (unsigned: signature "") before the text, JSON and streamed', async () => {
    const message = await anthropicClient.messages.create({ model: 'qwq', max_tokens: 256, messages: [{ role: 'user', content: '9.11 or 9.8?' }] });
    expect(message.content).toEqual([
      { type: 'thinking', thinking: 'The user asks for 9.11 vs 9.8. Compare the tenths: 1 < 8, so 9.8 is larger.', signature: '' },
      { type: 'text', text: '9.8 is greater than 9.11.', citations: null },
    ]);
    const events: string[] = [];
    const s = anthropicClient.messages.stream({ model: 'qwq', max_tokens: 256, messages: [{ role: 'user', content: '9.11 or 9.8?' }] });
    s.on('streamEvent', (e) => events.push(e.type === 'content_block_start' ? `start:${e.content_block.type}:${e.index}` : e.type));
    const final = await s.finalMessage();
    expect(final.content).toEqual([
      { type: 'thinking', thinking: 'Compare the tenths: 1 < 8.', signature: '' },
      { type: 'text', text: '9.8 is greater.', citations: null },
    ]);
    expect(events.filter((e) => e.startsWith('start:'))).toEqual(['start:thinking:0', 'start:text:1']);
  });
});

describe("vLLM's stop_reason", () => {
  beforeEach(async () => {
    json = { body: await fixture('openai-vllm-stop-reason.json') };
    stream = { body: await fixture('openai-vllm-stop-reason-stream.chunks.txt') };
  });

  it('answers Anthropic clients stop_reason "stop_sequence" with the matched string, JSON and streamed', async () => {
    const params = { model: 'qwq', max_tokens: 64, stop_sequences: ['END'], messages: [{ role: 'user' as const, content: 'Count to three, then say END' }] };
    const message = await anthropicClient.messages.create(params);
    expect(message.stop_reason).toBe('stop_sequence');
    expect(message.stop_sequence).toBe('END');
    expect(bodies[0]?.stop).toEqual(['END']);
    const final = await anthropicClient.messages.stream(params).finalMessage();
    expect(final.stop_reason).toBe('stop_sequence');
    expect(final.stop_sequence).toBe('END');
  });

  it('leaves OpenAI clients an answer without the field', async () => {
    const res = await openaiClient.chat.completions.create({ model: 'qwq', stop: ['END'], messages: [{ role: 'user', content: 'Count' }] });
    expect(res.choices[0]?.finish_reason).toBe('stop');
    expect(Object.keys(res.choices[0] ?? {})).not.toContain('stop_sequence');
    expect(Object.keys(res.choices[0] ?? {})).not.toContain('stop_reason');
  });
});

describe('the token limit field', () => {
  beforeEach(async () => {
    json = { body: await fixture('openai-vllm-stop-reason.json') };
  });

  it("reaches the upstream in the field the OpenAI client used; the Anthropic route's max_tokens as max_tokens", async () => {
    await openaiClient.chat.completions.create({ model: 'qwq', max_completion_tokens: 100, messages: [{ role: 'user', content: 'hi' }] });
    await openaiClient.chat.completions.create({ model: 'qwq', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] });
    await anthropicClient.messages.create({ model: 'qwq', max_tokens: 70, messages: [{ role: 'user', content: 'hi' }] });
    const limits = bodies.map((b) => Object.fromEntries(Object.entries(b).filter(([k]) => k.startsWith('max_'))));
    expect(limits).toEqual([{ max_completion_tokens: 100 }, { max_tokens: 50 }, { max_tokens: 70 }]);
    expect(bodies.every((b) => !('token_limit_field' in b))).toBe(true);
  });
});

describe("OpenAI's answer fields, passed on", () => {
  it('gives OpenAI clients the upstream usage details, service_tier and refusal: null, valid per the spec, JSON and streamed', async () => {
    json = { body: await fixture('openai-chat.json') };
    const upstreamAnswer = JSON.parse(json.body) as { usage: unknown };
    const res = await openaiClient.chat.completions.create({ model: 'qwq', messages: [{ role: 'user', content: 'hi' }] });
    expect(res.usage).toEqual(upstreamAnswer.usage);
    expect(res.service_tier).toBe('default');
    expect(res.choices[0]?.message.refusal).toBeNull();
    if (spec) expect(spec.errors('CreateChatCompletionResponse', res)).toEqual([]);

    const usage = { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12, prompt_tokens_details: { cached_tokens: 0, audio_tokens: 2 }, completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 2, rejected_prediction_tokens: 1 } };
    const chunk = (extra: Record<string, unknown>) => `data: ${JSON.stringify({ id: 'chatcmpl-s', object: 'chat.completion.chunk', created: 1, model: 'gpt-4.1', service_tier: 'priority', ...extra })}\n\n`;
    stream = { body: chunk({ choices: [{ index: 0, delta: { role: 'assistant', content: 'ok' }, finish_reason: null }] }) + chunk({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }) + chunk({ choices: [], usage }) + 'data: [DONE]\n\n' };
    const chunks = await openaiClient.chat.completions.create({ model: 'qwq', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] });
    const seen: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of chunks) seen.push(c);
    expect(seen.map((c) => c.service_tier)).toEqual(['priority', 'priority', 'priority']);
    expect(seen.at(-1)?.usage).toEqual(usage);
  });

  it('leaves details and service_tier out when the upstream sent none', async () => {
    json = { body: await fixture('openai-vllm-stop-reason.json') };
    const res = await openaiClient.chat.completions.create({ model: 'qwq', messages: [{ role: 'user', content: 'hi' }] });
    expect(res.usage).toEqual({ prompt_tokens: 18, completion_tokens: 7, total_tokens: 25 });
    expect(res).not.toHaveProperty('service_tier');
    expect(res.choices[0]?.message.refusal).toBeNull();
  });
});

describe('an exhausted quota reported mid-stream', () => {
  it('reaches the OpenAI client as 429 upstream_quota_exceeded, marked not to be retried, as the HTTP 429 does', async () => {
    stream = { body: await fixture('openai-stream-midstream-quota.chunks.txt') };
    const res = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'qwq', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(res.status).toBe(429);
    expect(body.error).toMatchObject({ code: 'upstream_quota_exceeded', upstream_code: 'insufficient_quota' });
    expect(res.headers.get('x-should-retry')).toBe('false');
    expect(bodies.length).toBe(1);
    const err = (await openaiClient.chat.completions.create({ model: 'qwq', stream: true, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(err.code).toBe('upstream_quota_exceeded');
  });
});
