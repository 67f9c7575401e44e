// Batched embeddings (the default for openai deployments) under the routing health rules: a request
// waiting for its batch holds no deployment slot, so max_concurrency does not cap the batch's size,
// and one failed batch is not counted as a failure of every request in it (it would open a healthy
// deployment's breaker at once); open breakers are still honoured.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestGateway } from './helpers/gateway.js';
import { startJsonUpstream, type JsonUpstream } from './helpers/recording-upstream.js';

let upstream: JsonUpstream;
let server: Awaited<ReturnType<typeof startTestGateway>>;
/** Each upstream call: its model and how many inputs it carried. */
let calls: { model: string; inputs: number }[] = [];

beforeAll(async () => {
  upstream = await startJsonUpstream((req, body, res) => {
  const { model, input } = body as { model: string; input: string | string[] };
    const inputs = Array.isArray(input) ? input : [input];
    calls.push({ model, inputs: inputs.length });
    res.setHeader('content-type', 'application/json');
    if (model === 'dead') {
      res.statusCode = 500;
      res.end(JSON.stringify({ error: { message: 'The server had an error while processing your request.', type: 'server_error', param: null, code: null } }));
      return;
    }
    res.end(JSON.stringify({ object: 'list', data: inputs.map((_, index) => ({ object: 'embedding', index, embedding: [0.5, index] })), model, usage: { prompt_tokens: inputs.length, total_tokens: inputs.length } }));
  });
  const url = upstream.url;
  server = await startTestGateway({
    config: {
      providers: { up: { type: 'openai', base_url: url, api_key: 'upstream-key' } },
      batching: { max_size: 32, flush_timeout_ms: 50 },
      routing: { breaker: { consecutive_failures: 3, open_ms: 60_000 } },
      models: [
        { name: 'emb', deployments: [{ provider: 'up', model: 'text-embedding-3-small', max_concurrency: 2 }] },
        { name: 'emb-failing', deployments: [{ provider: 'up', model: 'dead', id: 'ef/dead' }, { provider: 'up', model: 'healthy', id: 'ef/healthy', priority: 1 }] },
      ],
    },
  });
});

afterAll(async () => {
  await server?.close();
  await upstream?.close();
});

beforeEach(() => {
  calls = [];
});

const embed = (model: string, input: string) =>
  fetch(`${server.url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer client' }, body: JSON.stringify({ model, input }) });

async function breakerOf(id: string): Promise<string | undefined> {
  const status = (await (await fetch(`${server.url}/v1/providers`, { headers: { authorization: 'Bearer client' } })).json()) as { data: { id: string; breaker: { state: string } }[] };
  return status.data.find((d) => d.id === id)?.breaker.state;
}

describe('batched embeddings and the routing health rules', () => {
  it("batches more requests than the deployment's max_concurrency: waiting for a batch holds no slot", async () => {
    const answers = await Promise.all(Array.from({ length: 32 }, (_, i) => embed('emb', `text ${i}`)));
    expect(answers.map((a) => a.status)).toEqual(Array(32).fill(200));
    // Batches as the batcher makes them, not sixteen batches of two (two slots, each held by a
    // request waiting in a batch of two).
    expect(calls.reduce((n, c) => n + c.inputs, 0)).toBe(32);
    expect(Math.max(...calls.map((c) => c.inputs))).toBeGreaterThan(2);
    expect(calls.length).toBeLessThan(16);
  });

  it('moves a failed batch on to the next deployment without counting it once per request against the first', async () => {
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => embed('emb-failing', `text ${i}`)));
    expect(answers.map((a) => a.status)).toEqual(Array(12).fill(200));
    expect(answers.every((a) => a.headers.get('x-inferenceflow-model') === 'healthy')).toBe(true);
    expect(calls.filter((c) => c.model === 'dead').length).toBeLessThanOrEqual(2);
    // Twelve requests failed in one call: three consecutive failures would have opened it.
    expect(await breakerOf('ef/dead')).toBe('closed');
  });
});
