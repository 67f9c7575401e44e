// The semantic cache embedding with one of the gateway's own providers (`cache.semantic.embedder:
// openai` with `provider: <name>`, docs/caching.md): it must find that provider, which the gateway
// builds itself, and answer a reworded question from the cache.
import OpenAI from 'openai';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

let server: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  server = await startTestGateway({
    config: {
      providers: { sim: { type: 'simulator' } },
      models: [{ name: 'chat', deployments: [{ provider: 'sim', model: 'sim-chat' }] }],
      cache: { enabled: true, semantic: { enabled: true, embedder: 'openai', provider: 'sim', model: 'sim-embed', threshold: 0.8 } },
    },
  });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'k', maxRetries: 0 });
}, 60_000);
afterAll(() => server?.close());

async function ask(content: string) {
  const { response } = await client.chat.completions.create({ model: 'chat', temperature: 0, messages: [{ role: 'user', content }] }).withResponse();
  return response.headers.get('x-inferenceflow-cache');
}

it('embeds with the named provider and answers a reworded question from the semantic cache', async () => {
  const stats = async () => (await (await fetch(`${server.url}/v1/cache/stats`)).json()) as { stores: number; semantic: { enabled: boolean; embedder?: string } };
  expect((await stats()).semantic.enabled).toBe(true);
  expect(await ask('How do I reverse a list in Python?')).toBe('miss');
  await expect.poll(async () => (await stats()).stores, { timeout: 5000, interval: 20 }).toBeGreaterThanOrEqual(1);
  expect(await ask('How do I reverse a Python list?')).toBe('semantic');
});
