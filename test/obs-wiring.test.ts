// The gateway's metrics as assembled: model labels take only the catalog's names (a client's
// passthrough name reads `passthrough`), a refusal is counted by the limit that refused, and a
// stream its client abandoned shows the cost admission charged it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

const CHAT = '/v1/chat/completions';
const post = (url: string, body: Record<string, unknown>) => request(url + CHAT, { method: 'POST', body: JSON.stringify({ messages: [{ role: 'user', content: 'hello there' }], ...body }), headers: { 'content-type': 'application/json' } });
const metrics = async (s: RunningServer) => (await request(`${s.url}/metrics`)).body.text();

describe('metrics wiring in the assembled gateway', () => {
  let pass: RunningServer;
  let conf: RunningServer;
  beforeAll(async () => {
    pass = await startTestGateway({ config: { rate_limiting: { tokens: 2000 } } });
    conf = await startTestGateway({
      config: {
        providers: { sim: { type: 'simulator', options: { tokens_per_second: 50, answer_words: 200 } } },
        models: [{ name: 'chat', deployments: [{ provider: 'sim', model: 'sim-chat', price: { input: 1, output: 2 } }] }],
        rate_limiting: { tokens: 100000 },
      },
    });
  });
  afterAll(async () => {
    await pass.close();
    await conf.close();
  });

  it('labels a passthrough model name `passthrough`, and counts a request over the token limit as limit="tokens"', async () => {
    for (const m of ['junk-a', 'junk-b']) expect((await post(pass.url, { model: m })).statusCode).toBe(200);
    // More than the whole 2,000-token window: it can never fit, so 400 request_too_large, not a 429
    // inviting a retry; still counted as refused by the token limit.
    expect((await post(pass.url, { model: 'junk-c', max_tokens: 5000 })).statusCode).toBe(400);
    const t = await metrics(pass);
    expect(t).toContain('model="passthrough"');
    expect(t).not.toContain('junk');
    expect(t).toContain('inference_rate_limited_total{limit="tokens"} 1');
  });

  it('counts a cache miss whose upstream call then failed', async () => {
    const failing = await startTestGateway({
      config: {
        cache: { enabled: true, semantic: { enabled: false } },
        providers: { sim: { type: 'simulator', options: { error_rate: 1 } } },
        models: [{ name: 'chat', deployments: [{ provider: 'sim', model: 'sim-chat' }] }],
      },
    });
    try {
      for (let i = 0; i < 3; i++) expect((await post(failing.url, { model: 'chat', messages: [{ role: 'user', content: `fails ${i}` }] })).statusCode).toBeGreaterThanOrEqual(500);
      expect(await metrics(failing)).toMatch(/^inference_cache_misses_total(\{[^}]*\})? 3$/m);
    } finally {
      await failing.close();
    }
  });

  it('shows the cost of a stream its client abandoned (499) in /metrics and /v1/stats', async () => {
    const res = await post(conf.url, { model: 'chat', stream: true });
    const it = res.body[Symbol.asyncIterator]();
    await it.next();
    await it.next();
    res.body.destroy();
    let t = '';
    for (let i = 0; i < 100; i++) {
      t = await metrics(conf);
      if (t.includes('status="499"')) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(t).toMatch(/inference_cost_usd_total\{provider="sim",model="sim-chat"\} [0-9.e-]+/);
    const stats = (await (await request(`${conf.url}/v1/stats`)).body.json()) as { cost: { total_usd: number } };
    expect(stats.cost.total_usd).toBeGreaterThan(0);
  });

  it('counts an attempt the request deadline ended as the deployment’s timeout, not as a cancellation', async () => {
    const hung = await startTestGateway({
      config: {
        routing: { deadline_ms: 200 },
        providers: { sim: { type: 'simulator', options: { latency_ms: 5_000 } } },
        // The deployment's own timeout is above the deadline: the deadline ends the attempt.
        models: [{ name: 'chat', retry: { max_retries: 0 }, deployments: [{ provider: 'sim', model: 'sim-hung', timeout_ms: 30_000 }] }],
      },
    });
    try {
      expect((await post(hung.url, { model: 'chat' })).statusCode).toBe(504);
      const t = await metrics(hung);
      expect(t).toContain('inference_provider_errors_total{provider="sim",kind="timeout"} 1');
      expect(t).toContain('inference_provider_latency_ms_count{provider="sim",model="sim-hung",outcome="error"} 1');
      expect(t).not.toMatch(/^inference_provider_cancelled_total\{[^}]*\} [1-9]/m);
      // What the scrape says the counter holds agrees.
      expect(t).not.toMatch(/^# HELP inference_provider_cancelled_total .*deadline\)/m);
    } finally {
      await hung.close();
    }
  });
});
