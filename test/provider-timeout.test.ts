// `providers.<name>.timeout_ms` through the whole gateway (config -> catalog -> router -> upstream):
// it is the attempt timeout of that provider's deployments unless a deployment sets its own.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { FaultUpstream } from './helpers/fault-upstream.js';
import { startTestGateway } from './helpers/gateway.js';

describe('providers.<name>.timeout_ms', () => {
  const upstream = new FaultUpstream();
  let server: RunningServer;
  let client: OpenAI;

  beforeAll(async () => {
    const base = await upstream.start();
    upstream.set('slow', { kind: 'ok', delayMs: 4_000 });
    server = await startTestGateway({
      config: {
        providers: { up: { type: 'openai', base_url: base, timeout_ms: 300 } },
        models: [
          { name: 'by-provider', deployments: [{ provider: 'up', model: 'slow' }] },
          { name: 'by-deployment', deployments: [{ provider: 'up', model: 'slow', timeout_ms: 10_000 }] },
        ],
        routing: { retry: { max_retries: 0 } },
      },
    });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });

  afterAll(async () => {
    await server?.close();
    await upstream.close();
  });

  it('ends an attempt of a deployment without its own timeout_ms after the provider\'s (504)', async () => {
    const before = upstream.stats('slow').calls;
    const t0 = performance.now();
    const err = (await client.chat.completions.create({ model: 'by-provider', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    const took = performance.now() - t0;
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err.status).toBe(504);
    expect(err.code).toBe('upstream_timeout');
    // Cut at the provider's 300 ms, not after the upstream's 4 s (a wide margin for a loaded machine).
    expect(took).toBeLessThan(3_000);
    expect(upstream.stats('slow').calls - before).toBe(1);
  });

  it('lets a deployment\'s own timeout_ms win over the provider\'s', async () => {
    const r = await client.chat.completions.create({ model: 'by-deployment', messages: [{ role: 'user', content: 'hi' }] });
    expect(r.choices[0]?.message.content).toBeTruthy();
  });
});
