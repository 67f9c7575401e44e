// The response cache seen from a client: an exact repeat is answered from the cache, a paraphrase
// by the semantic cache (with its similarity), a near miss with other numbers is not, streams are
// replayed with their chunking, Cache-Control is honoured and the stats endpoint counts it all.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

let server: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  server = await startTestGateway({ config: { cache: { enabled: true, semantic: { enabled: true } } } });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'k', maxRetries: 0 });
}, 120_000);
afterAll(() => server?.close());

/** Stores happen after the answer has gone out; wait until the cache has taken `n` of them. */
async function storedAtLeast(n: number) {
  await expect
    .poll(async () => ((await (await fetch(`${server.url}/v1/cache/stats`)).json()) as { stores: number }).stores, { timeout: 5000, interval: 20 })
    .toBeGreaterThanOrEqual(n);
}
let stores = 0;

async function ask(content: string, headers: Record<string, string> = {}) {
  const { data, response } = await client.chat.completions
    .create({ model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content }] }, { headers })
    .withResponse();
  const cache = response.headers.get('x-inferenceflow-cache');
  // A bypass (Cache-Control: no-cache) is stored too: left uncounted, a later wait would end early.
  if (cache === 'miss' || (cache === 'bypass' && !/no-store/.test(headers['cache-control'] ?? ''))) await storedAtLeast(++stores);
  return { text: data.choices[0]?.message.content, cache, similarity: response.headers.get('x-inferenceflow-similarity') };
}

describe('response cache through the gateway', () => {
  it('answers an exact repeat from the cache', async () => {
    const first = await ask('How do I reset my password?');
    const second = await ask('How do I reset my password?');
    expect(first.cache).toBe('miss');
    expect(second.cache).toBe('exact');
    expect(second.text).toBe(first.text);
  });

  it('answers a paraphrase from the semantic cache and reports the similarity', async () => {
    await ask('How do I reverse a list in Python?');
    const para = await ask('How can I reverse a Python list?');
    expect(para.cache).toBe('semantic');
    expect(Number(para.similarity)).toBeGreaterThanOrEqual(0.85);
  });

  it('does not answer a question about other numbers', async () => {
    await ask('What is 2+2?');
    const other = await ask('What is 3+5?');
    expect(other.cache).toBe('miss');
    expect(other.text).toContain('3+5');
  });

  it('honours Cache-Control: no-cache', async () => {
    await ask('Tell me about rivers in spring.');
    const fresh = await ask('Tell me about rivers in spring.', { 'cache-control': 'no-cache' });
    expect(fresh.cache).toBe('bypass');
  });

  it('replays a cached stream with its chunks', async () => {
    const collect = async () => {
      const { data: stream, response } = await client.chat.completions
        .create({ model: 'gpt-4o-mini', temperature: 0, stream: true, messages: [{ role: 'user', content: 'Stream a short story about a fox.' }] })
        .withResponse();
      const pieces: string[] = [];
      for await (const c of stream) if (c.choices[0]?.delta.content) pieces.push(c.choices[0].delta.content);
      return { pieces, cache: response.headers.get('x-inferenceflow-cache') };
    };
    const first = await collect();
    await storedAtLeast(++stores);
    const again = await collect();
    expect(first.cache).toBe('miss');
    expect(again.cache).toBe('exact');
    expect(again.pieces).toEqual(first.pieces);
    expect(again.pieces.length).toBeGreaterThan(3);
  });

  it('counts hits and misses in the stats endpoint', async () => {
    const res = await fetch(`${server.url}/v1/cache/stats`);
    const stats = (await res.json()) as { hits: Record<string, number>; misses: number };
    expect(res.status).toBe(200);
    expect(JSON.stringify(stats)).toMatch(/exact/);
  });
});
