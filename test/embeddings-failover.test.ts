// Embeddings move on to the next deployment on a deployment's own fault (quota, auth), as chat does
// (docs/errors.md), not only on a retryable error.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway } from './helpers/gateway.js';
import { startJsonUpstream, type JsonUpstream } from './helpers/recording-upstream.js';

let upstream: JsonUpstream;
let server: Awaited<ReturnType<typeof startTestGateway>>;
const calls: string[] = [];

beforeAll(async () => {
  upstream = await startJsonUpstream((_req, body, res) => {
  const { model } = body as { model?: string };
    calls.push(String(model));
    res.setHeader('content-type', 'application/json');
    if (model === 'no-credit') {
      res.statusCode = 429;
      res.end(JSON.stringify({ error: { message: 'You exceeded your current quota.', type: 'insufficient_quota', param: null, code: 'insufficient_quota' } }));
    } else if (model === 'bad-key') {
      res.statusCode = 401;
      res.end(JSON.stringify({ error: { message: 'Incorrect API key provided.', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } }));
    } else {
      res.end(JSON.stringify({ object: 'list', data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2] }], model, usage: { prompt_tokens: 2, total_tokens: 2 } }));
    }
  });
  const url = upstream.url;
  server = await startTestGateway({
    config: {
      providers: { up: { type: 'openai', base_url: url, api_key: 'upstream-key' } },
      models: [
        { name: 'emb', deployments: [{ provider: 'up', model: 'no-credit', id: 'e/quota' }, { provider: 'up', model: 'bad-key', id: 'e/auth', priority: 1 }, { provider: 'up', model: 'works', id: 'e/ok', priority: 2 }] },
      ],
    },
  });
});

afterAll(async () => {
  await server?.close();
  await upstream?.close();
});

describe('embeddings failover', () => {
  it('an exhausted quota or refused credentials at one deployment moves the request on to the next', async () => {
    const res = await fetch(`${server.url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer client-key' }, body: JSON.stringify({ model: 'emb', input: 'hello' }) });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: { embedding: number[] }[] };
    expect(body.data[0]?.embedding).toEqual([0.1, 0.2]);
    expect(calls).toEqual(['no-credit', 'bad-key', 'works']);
  });
});
