// `n` > 1 against an upstream that answers one choice per call (`options.choices: fan_out`, the
// Anthropic, Cohere and Ollama adapters): when one of the calls fails, the others are cancelled, and
// what the ones that answered used is charged — the upstream billed it — before the retry answers.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { FaultUpstream } from './helpers/fault-upstream.js';
import { startTestGateway } from './helpers/gateway.js';

let up: FaultUpstream;
let server: RunningServer;

beforeAll(async () => {
  up = new FaultUpstream();
  const url = await up.start();
  server = await startTestGateway({
    config: {
      providers: { fan: { type: 'openai', base_url: url, api_key: 'k', options: { choices: 'fan_out' } } },
      // $1 a token either way: the cost header counts tokens.
      models: [{ name: 'fan', deployments: [{ provider: 'fan', model: 'fan-model', price: { input: 1e6, output: 1e6 } }] }],
    },
  });
});
afterAll(async () => {
  await server?.close();
  await up?.close();
});

it('cancels the other calls when one fails and charges the answers the upstream gave before the retry', async () => {
  // The first three calls (in whatever order they arrive): an answer, a 500, one that never answers;
  // then answers. Each answer is 10 prompt + 5 completion tokens.
  up.set('fan-model', { kind: 'sequence', steps: [{ kind: 'ok' }, { kind: 'status', status: 500 }, { kind: 'hang' }, { kind: 'ok' }] });
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'fan', n: 3, messages: [{ role: 'user', content: 'Name a colour.' }] }),
  });
  const body = (await res.json()) as { choices: unknown[]; usage: { total_tokens: number } };
  expect(res.status).toBe(200);
  expect(body.choices).toHaveLength(3);
  expect(body.usage.total_tokens).toBe(45);
  // The retry's three answers (45) and the first try's one answer (15).
  expect(Number(res.headers.get('x-inferenceflow-cost-usd'))).toBe(60);
  expect(up.stats('fan-model').calls).toBe(6);
  // The call that never answered was cancelled, not left to run (and be billed) to its end.
  await expect.poll(() => up.stats('fan-model').aborted, { timeout: 5000 }).toBe(1);
});
