// What a forwarded call (audio, images) costs reaches the budgets, the ledger's facts and the spend
// metrics: the tokens its answer reports (an image model's usage, read from the body as it passes
// through, streamed or not) at the deployment's price, and a deployment's per_request fee, which is
// also reserved up front.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway } from './helpers/gateway.js';
import { startJsonUpstream, type JsonUpstream } from './helpers/recording-upstream.js';
import { call, createKey } from './helpers/http.js';

const ADMIN = 'admin-token-for-tests-0123456789';
const IMAGE_USAGE = { total_tokens: 4210, input_tokens: 50, output_tokens: 4160, input_tokens_details: { text_tokens: 50, image_tokens: 0 } };
/** 50 input tokens at $5 and 4,160 output tokens at $40 per million. */
const IMAGE_COST = (50 * 5 + 4160 * 40) / 1e6;
let upstream: JsonUpstream;
let server: Awaited<ReturnType<typeof startTestGateway>>;
let upstreamCalls = 0;

beforeAll(async () => {
  upstream = await startJsonUpstream((req, body, res) => {
    upstreamCalls++;
    if (req.url?.endsWith('/audio/speech')) {
      res.setHeader('content-type', 'audio/mpeg');
      res.end(Buffer.from([0xff, 0xfb, 0x90, 0x00]));
    } else if (body.stream) {
      res.setHeader('content-type', 'text/event-stream');
      res.write(`event: image_generation.partial_image\ndata: ${JSON.stringify({ type: 'image_generation.partial_image', b64_json: 'AAAA', partial_image_index: 0 })}\n\n`);
      if (body.model === 'gpt-image-1-linger') {
        // The last event, then a connection that stays open a while before it ends.
        res.write(`event: image_generation.completed\ndata: ${JSON.stringify({ type: 'image_generation.completed', b64_json: 'iVBORw0KGgo=', usage: IMAGE_USAGE })}\n\n`);
        setTimeout(() => res.end(), 3_000).unref();
        return;
      }
      res.end(`event: image_generation.completed\ndata: ${JSON.stringify({ type: 'image_generation.completed', b64_json: 'iVBORw0KGgo=', usage: IMAGE_USAGE })}\n\n`);
    } else {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ created: 1, data: [{ b64_json: 'iVBORw0KGgo=' }], usage: IMAGE_USAGE }));
    }
  });
  const url = upstream.url;
  server = await startTestGateway({
    config: {
      auth: { admin_token: ADMIN },
      providers: { up: { type: 'openai', base_url: url, api_key: 'upstream-key' } },
      models: [
        { name: 'img', deployments: [{ provider: 'up', model: 'gpt-image-1', price: { input: 5, output: 40 } }] },
        { name: 'img-stream', deployments: [{ provider: 'up', model: 'gpt-image-1-stream', price: { input: 5, output: 40 } }] },
        { name: 'img-linger', deployments: [{ provider: 'up', model: 'gpt-image-1-linger', price: { input: 5, output: 40 } }] },
        { name: 'tts', deployments: [{ provider: 'up', model: 'tts-1', price: { input: 0, output: 0, per_request: 0.1 } }] },
        // A fee-priced deployment beside a token-priced one: the reservation covers the fee.
        {
          name: 'tts-mixed',
          deployments: [
            { provider: 'up', model: 'tts-1', id: 'mixed/fee', price: { input: 0, output: 0, per_request: 0.5 } },
            { provider: 'up', model: 'gpt-4o-mini-tts', id: 'mixed/tokens', priority: 1, price: { input: 0.6, output: 12 } },
          ],
        },
      ],
    },
  });
});

afterAll(async () => {
  await server?.close();
  await upstream?.close();
});

/** inference_cost_usd_total and inference_tokens_total for one upstream model, from /metrics. */
async function spendMetrics(model: string): Promise<{ cost: number; input: number; output: number }> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const value = (name: string, extra = '') => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(`model="${model}"`) && l.includes(extra));
    return line === undefined ? 0 : Number(line.split(' ').pop());
  };
  return { cost: value('inference_cost_usd_total'), input: value('inference_tokens_total', 'type="input"'), output: value('inference_tokens_total', 'type="output"') };
}

describe('the cost of forwarded calls', () => {
  it("charges an image's reported tokens at the deployment's price: the budget refuses once they have spent it", async () => {
    const { key } = await createKey(server.url, ADMIN, { budget_usd: 0.2, budget_period: 'day' });
    const generate = () => call(server.url, '/v1/images/generations', { key, body: { model: 'img', prompt: 'a red kite over a beach' } });
    // Nothing is known up front: the first two are admitted, and together cost more than the budget.
    expect((await generate()).status).toBe(200);
    expect((await generate()).status).toBe(200);
    const before = upstreamCalls;
    const third = await generate();
    expect([third.status, third.json.error?.code]).toEqual([402, 'budget_exceeded']);
    expect(upstreamCalls).toBe(before);
    const metrics = await spendMetrics('gpt-image-1');
    expect(metrics.cost).toBeCloseTo(2 * IMAGE_COST, 9);
    expect([metrics.input, metrics.output]).toEqual([100, 8320]);
  });

  it('reads the usage from the last event of a streamed image', async () => {
    const { key } = await createKey(server.url, ADMIN, {});
    const res = await fetch(`${server.url}/v1/images/generations`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify({ model: 'img-stream', prompt: 'a kite', stream: true }) });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(await res.text()).toContain('image_generation.completed');
    await expect.poll(() => spendMetrics('gpt-image-1-stream')).toEqual({ cost: expect.closeTo(IMAGE_COST, 9) as number, input: 50, output: 4160 });
  });

  it('charges a streamed image whose client left after its last event, before the upstream closed', async () => {
    const { key } = await createKey(server.url, ADMIN, {});
    const controller = new AbortController();
    const res = await fetch(`${server.url}/v1/images/generations`, { method: 'POST', signal: controller.signal, headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify({ model: 'img-linger', prompt: 'a kite', stream: true }) });
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes('image_generation.completed')) {
      // A stream that ended early fails the test: read() would answer done at once for ever, a loop
      // that never yields to the test's timeout.
      const { done, value } = await reader.read();
      if (done) throw new Error(`the stream ended before its last event: ${text}`);
      text += decoder.decode(value, { stream: true });
    }
    controller.abort();
    await expect.poll(() => spendMetrics('gpt-image-1-linger')).toEqual({ cost: expect.closeTo(IMAGE_COST, 9) as number, input: 50, output: 4160 });
  });

  it("reserves a deployment's per_request fee before the call: the call that would overshoot the budget is refused", async () => {
    const { key } = await createKey(server.url, ADMIN, { budget_usd: 0.25, budget_period: 'day' });
    const speak = () => call(server.url, '/v1/audio/speech', { key, body: { model: 'tts', input: 'Hello there.', voice: 'alloy' } });
    const first = await speak();
    expect(first.status).toBe(200);
    expect(Number(first.headers['x-inferenceflow-cost-usd'])).toBeCloseTo(0.1, 9);
    expect((await speak()).status).toBe(200);
    const before = upstreamCalls;
    const third = await speak();
    expect([third.status, third.json.error?.code]).toEqual([402, 'budget_exceeded']);
    expect(upstreamCalls).toBe(before);
    expect((await spendMetrics('tts-1')).cost).toBeCloseTo(0.2, 9);
  });

  it('reserves the highest fee among the deployments that may answer, whichever prices tokens higher', async () => {
    const { key } = await createKey(server.url, ADMIN, { budget_usd: 0.3, budget_period: 'day' });
    const before = upstreamCalls;
    const res = await call(server.url, '/v1/audio/speech', { key, body: { model: 'tts-mixed', input: 'Hello there.', voice: 'alloy' } });
    expect([res.status, res.json.error?.code]).toEqual([402, 'budget_exceeded']);
    expect(upstreamCalls).toBe(before);
  });
});
