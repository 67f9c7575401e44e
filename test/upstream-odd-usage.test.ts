// An OpenAI-compatible server that reports nonsense usage (negative counts) still gets its answer
// to the client: the gateway's metrics take no negative count (a counter that threw failed the
// request with a 500 and counted the answered call against the deployment's breaker), and no budget
// is credited by a negative cost.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';
import { startJsonUpstream, type JsonUpstream } from './helpers/recording-upstream.js';

let upstream: JsonUpstream;
let gateway: RunningServer;
const usage = { prompt_tokens: -1, completion_tokens: 3, total_tokens: 2 };

beforeAll(async () => {
  upstream = await startJsonUpstream((_req, body, res) => {
    if (body.stream) {
      const chunk = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(
        chunk({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'up', choices: [{ index: 0, delta: { role: 'assistant', content: 'hi' }, finish_reason: null }] }) +
          chunk({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'up', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }) +
          chunk({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'up', choices: [], usage }) +
          'data: [DONE]\n\n',
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'up', choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }], usage }));
  });
  gateway = await startTestGateway({
    config: {
      providers: { vllm: { type: 'openai', base_url: upstream.url, api_key: 'k' } },
      models: [{ name: 'm', deployments: [{ provider: 'vllm', model: 'llama', price: { input: 1, output: 1 } }] }],
      monitoring: { metrics: { enabled: true } },
    },
  });
});
afterAll(async () => {
  await gateway?.close();
  await upstream?.close();
});

describe('an upstream reporting a negative token count', () => {
  it('still answers, JSON and streamed, and its deployment stays healthy', async () => {
    const ask = (stream: boolean) =>
      fetch(`${gateway.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content: 'hi' }] }) });
    const json = await ask(false);
    expect(json.status).toBe(200);
    expect(Number(json.headers.get('x-inferenceflow-cost-usd'))).toBeGreaterThanOrEqual(0);
    const stream = await ask(true);
    expect(stream.status).toBe(200);
    expect(await stream.text()).not.toContain('internal_error');
    const providers = (await (await fetch(`${gateway.url}/v1/providers`)).json()) as { data: Array<{ id: string; breaker: { state: string }; error_rate: number }> };
    expect(providers.data[0]).toMatchObject({ breaker: { state: 'closed' }, error_rate: 0 });
  });
});
