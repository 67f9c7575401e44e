// Upstream rate limits (429) through the gateway, driven by the real OpenAI SDK with its default
// retries (2) against a fault-injecting upstream: a rate-limited deployment cools down for its
// Retry-After and is called once per request, never opens its breaker, other deployments take the
// traffic, and when none is left the client gets 429 with a Retry-After saying when the first one
// frees up — not 503 from a breaker the 429s opened.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { FaultUpstream } from './helpers/fault-upstream.js';
import { startTestGateway } from './helpers/gateway.js';

let upstream: FaultUpstream;
let server: RunningServer;
const hi = [{ role: 'user' as const, content: 'hi' }];

beforeAll(async () => {
  upstream = new FaultUpstream();
  const url = await upstream.start();
  // OpenAI's own shape of a rate limit: Retry-After and the x-ratelimit-* headers.
  const openAiHeaders = { 'x-ratelimit-limit-requests': '500', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1s' };
  upstream.set('gpt-limited', { kind: 'status', status: 429, retryAfterS: 1, headers: openAiHeaders });
  upstream.set('gpt-now', { kind: 'status', status: 429, retryAfterS: 0 });
  // A reset other than the default 1 s cooldown, so only the x-ratelimit-reset-* reading can give it.
  upstream.set('gpt-reset-only', { kind: 'status', status: 429, headers: { ...openAiHeaders, 'x-ratelimit-reset-requests': '6s' } });
  upstream.set('busy-long', { kind: 'status', status: 429, retryAfterS: 30 });
  upstream.set('busy-short', { kind: 'status', status: 429, retryAfterS: 3 });
  server = await startTestGateway({
    // The passthrough: OPENAI_BASE_URL and a model name no group claims; default routing settings
    // (retry.max_retries 2, breaker min_requests 10 at a 50% failure rate).
    env: { OPENAI_BASE_URL: url, OPENAI_API_KEY: 'upstream-key' },
    config: {
      providers: { fault: { type: 'openai', base_url: url, api_key: 'upstream-key' } },
      models: [
        { name: 'spill', deployments: [{ provider: 'fault', model: 'busy-long' }, { provider: 'fault', model: 'ok', priority: 1 }] },
        { name: 'all-busy', deployments: [{ provider: 'fault', model: 'busy-long', id: 'b/long' }, { provider: 'fault', model: 'busy-short', id: 'b/short', priority: 1 }] },
      ],
    },
  });
});

afterAll(async () => {
  await server?.close();
  await upstream?.close();
});

const sdk = (maxRetries?: number) => new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'client-key', ...(maxRetries === undefined ? {} : { maxRetries }) });

async function failure(client: OpenAI, model: string): Promise<InstanceType<typeof OpenAI.APIError>> {
  const err = await client.chat.completions.create({ model, messages: hi }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(OpenAI.APIError);
  return err as InstanceType<typeof OpenAI.APIError>;
}

describe('a single deployment (the passthrough) rate-limited', () => {
  it('one upstream call per SDK attempt, 429 with Retry-After every time, and the breaker never opens', async () => {
    const client = sdk(); // the SDK's default retries
    for (let round = 1; round <= 2; round++) {
      // The last attempt's 429 cooled the deployment for 1 s: a request within it would be answered
      // by the gateway alone, without an upstream call.
      if (round > 1) await new Promise((r) => setTimeout(r, 1_050));
      const before = upstream.stats('gpt-limited').calls;
      const err = await failure(client, 'gpt-limited');
      expect(err).toBeInstanceOf(OpenAI.RateLimitError);
      expect(err.status).toBe(429);
      expect(err.code).toBe('upstream_rate_limited');
      expect(err.headers?.get('retry-after')).toBe('1');
      // The SDK's three attempts, each one upstream call: the gateway adds no retries of its own.
      expect(upstream.stats('gpt-limited').calls - before).toBe(3);
    }
    const providers = (await (await fetch(`${server.url}/v1/providers`)).json()) as { counters: { breakerOpens: number } };
    expect(providers.counters.breakerOpens).toBe(0);
  }, 30_000);

  it('Retry-After: 0 — one upstream call per SDK attempt still, the gateway adds no retries', async () => {
    const before = upstream.stats('gpt-now').calls;
    const err = await failure(sdk(), 'gpt-now');
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(err.headers?.get('retry-after')).toBe('1');
    expect(upstream.stats('gpt-now').calls - before).toBe(3);
  }, 15_000);

  it('a 429 without Retry-After (x-ratelimit-reset-* only) cools the deployment until that reset: 429 Retry-After 6, not retried by the gateway', async () => {
    const before = upstream.stats('gpt-reset-only').calls;
    const err = await failure(sdk(0), 'gpt-reset-only');
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(err.headers?.get('retry-after')).toBe('6');
    expect(upstream.stats('gpt-reset-only').calls - before).toBe(1);
  });
});

describe('several deployments', () => {
  it('a rate-limited deployment is skipped while it cools; the other takes the traffic', async () => {
    const client = sdk(0);
    for (let i = 0; i < 4; i++) {
      const res = await client.chat.completions.create({ model: 'spill', messages: hi }).withResponse();
      expect(res.response.headers.get('x-inferenceflow-deployment')).toBe('fault/ok');
    }
    expect(upstream.stats('busy-long').calls).toBe(1);
  });

  it('every deployment rate-limited: 429 whose Retry-After is when the first frees up, each called once; then answered by the gateway alone', async () => {
    const long = upstream.stats('busy-long').calls;
    const short = upstream.stats('busy-short').calls;
    const err = await failure(sdk(0), 'all-busy');
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(err.code).toBe('upstream_rate_limited');
    expect(err.headers?.get('retry-after')).toBe('3');
    expect(upstream.stats('busy-long').calls - long).toBe(1);
    expect(upstream.stats('busy-short').calls - short).toBe(1);
    // While both cool, the gateway answers 429 itself, with the same earliest time.
    const again = await failure(sdk(0), 'all-busy');
    expect(again.status).toBe(429);
    expect(Number(again.headers?.get('retry-after'))).toBeLessThanOrEqual(3);
    expect(upstream.stats('busy-short').calls - short).toBe(1);
  });
});
