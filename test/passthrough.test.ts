// `OPENAI_BASE_URL=… npm start` fronts any OpenAI-compatible server as it is: unclaimed model names
// pass through the real `openai` adapter to a local stand-in upstream, JSON and streaming, and the
// OpenAI SDK sees the upstream's answer with the gateway's headers. Upstream failures come back as
// 502/503/504 naming the provider.
import OpenAI from 'openai';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startUpstream } from '../bench/lib/upstream.js';
import { startTestGateway } from './helpers/gateway.js';

let upstream: Server;
let broken: Server;
let server: RunningServer;
let client: OpenAI;
const seenModels: string[] = [];

beforeAll(async () => {
  upstream = await startUpstream(0);
  upstream.prependListener('request', (req) => {
    if (req.url?.includes('chat')) seenModels.push(String(req.headers['content-length']));
  });
  broken = createServer((_req, res) => {
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'upstream exploded', type: 'server_error' } }));
  });
  await new Promise<void>((r) => broken.listen(0, '127.0.0.1', () => r()));
  const port = (s: Server) => (s.address() as { port: number }).port;
  server = await startTestGateway({
    env: { OPENAI_BASE_URL: `http://127.0.0.1:${port(upstream)}/v1` },
    config: {
      providers: { broken: { type: 'openai', base_url: `http://127.0.0.1:${port(broken)}/v1` } },
      models: [{ name: 'fragile', deployments: [{ provider: 'broken', model: 'x' }] }],
    },
  });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'k', maxRetries: 0 });
});
afterAll(async () => {
  await server?.close();
  upstream?.close();
  broken?.close();
});

describe('passthrough to an OpenAI-compatible server', () => {
  it('serves any model name from the environment provider', async () => {
    const { data, response } = await client.chat.completions.create({ model: 'meta-llama/Llama-3-8B', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
    expect(data.choices[0]?.message.content).toBe('The quick brown fox jumps over the lazy dog.');
    expect(response.headers.get('x-inferenceflow-provider')).toBe('openai');
    expect(response.headers.get('x-inferenceflow-deployment')).toBe('openai/meta-llama/Llama-3-8B');
    expect(seenModels.length).toBeGreaterThan(0);
  });

  it('streams through, chunk by chunk', async () => {
    const stream = await client.chat.completions.create({ model: 'any', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] });
    const pieces: string[] = [];
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const c of stream) {
      if (c.choices[0]?.delta.content) pieces.push(c.choices[0].delta.content);
      if (c.usage) usage = c.usage;
    }
    expect(pieces.join('')).toBe('The quick brown fox jumps over the lazy dog . ');
    expect(pieces.length).toBe(10);
    expect(usage?.total_tokens).toBe(22);
  });

  it('answers a model name that cannot go in a header as it is (control characters, non-Latin), JSON and streamed', async () => {
    for (const model of ['a\u0000b', 'модель-7b', 'line\nbreak', 'emoji-🦙']) {
      const { data, response } = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] }).withResponse();
      expect(response.status).toBe(200);
      expect(data.choices[0]?.message.content).toBe('The quick brown fox jumps over the lazy dog.');
      // The header names the deployment, percent-encoded where a header could not carry it.
      expect(decodeURIComponent(response.headers.get('x-inferenceflow-deployment') ?? '')).toBe(`openai/${model}`);
      const stream = await client.chat.completions.create({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] });
      let text = '';
      for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
      expect(text).toBe('The quick brown fox jumps over the lazy dog . ');
    }
  });

  it('answers a model name holding a lone UTF-16 surrogate (valid JSON, no valid UTF-8), JSON and streamed', async () => {
    // The raw body: JSON.stringify would write the escape too, but through a client's UTF-8 encoder.
    const send = (stream: boolean) =>
      fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: `{"model":"gpt-4o\\ud800","stream":${stream},"messages":[{"role":"user","content":"hi"}]}`,
        signal: AbortSignal.timeout(10_000),
      });
    const json = await send(false);
    expect(json.status).toBe(200);
    expect(((await json.json()) as { choices: { message: { content: string } }[] }).choices[0]?.message.content).toBe('The quick brown fox jumps over the lazy dog.');
    expect(decodeURIComponent(json.headers.get('x-inferenceflow-deployment') ?? '')).toBe('openai/gpt-4o\uFFFD');
    const stream = await send(true);
    expect(stream.status).toBe(200);
    expect(await stream.text()).toContain('data: [DONE]');
  });

  it('answers a model name too long for a response header, its header cut short', async () => {
    const model = `m-${'x'.repeat(100_000)}`;
    const { data, response } = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] }).withResponse();
    expect(data.choices[0]?.message.content).toBe('The quick brown fox jumps over the lazy dog.');
    expect(response.headers.get('x-inferenceflow-model')).toBe(model.slice(0, 512));
  });

  it('answers 502 naming the provider when the upstream fails', async () => {
    const err = (await client.chat.completions.create({ model: 'fragile', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(err.status).toBe(502);
    expect(err.code).toBe('upstream_error');
    expect(err.message).toContain('broken');
  });
});
