// Test-time scaling's passes against a real gateway: each pass goes through routing like any request
// (a failing deployment fails over to the next one).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

async function post(server: RunningServer, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

describe('scaled passes fail over like any request', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestGateway({
      config: {
        providers: { broken: { type: 'simulator', options: { error_rate: 1 } }, sim: { type: 'simulator', options: { oracle: { p: 1, seed: 3 } } } },
        // `fallback`: the broken deployment is tried first, every time.
        models: [{ name: 'm', strategy: 'fallback', deployments: [{ provider: 'broken', model: 'm' }, { provider: 'sim', model: 'm' }] }],
      },
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('answers a hard request whose first deployment fails from the healthy one', async () => {
    const res = await post(server, '/v1/inference', { prompt: 'What is 20+22?', difficulty: 'hard', model_preference: 'm' });
    const body = (await res.json()) as { response: string; provider: string; metadata: { passes: number; scaling: { votes: Record<string, number> } } };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.provider).toBe('sim');
    expect(body.response).toContain('42');
    expect(body.metadata.passes).toBe(3);
    expect(body.metadata.scaling.votes).toEqual({ '42': 3 });
  });
});
