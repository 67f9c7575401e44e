// Graceful shutdown under load: SIGTERM while 200 requests are in flight, a quarter of them streams.
// None is cut: every JSON answer arrives whole and every stream ends with [DONE]; new connections
// are refused while draining; the process then exits 0.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { startChildGateway, type ChildGateway } from './helpers/child-gateway.js';

describe('graceful shutdown', () => {
  let child: ChildGateway | undefined;
  let dir: string | undefined;
  const agent = new Agent({ connections: 256 });
  afterAll(async () => {
    if (child && child.process.exitCode === null) child.process.kill('SIGKILL');
    await agent.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('finishes 200 in-flight requests and streams after SIGTERM, then exits 0', async () => {
    dir = await mkdtemp(join(tmpdir(), 'routing-drain-'));
    child = await startChildGateway(dir, 'drain', {
      ledger: { enabled: false },
      server: { shutdown_timeout_ms: 20_000 },
      providers: { sim: { type: 'simulator', options: { latency_ms: 2_500, tokens_per_second: 20, answer_words: 8 } } },
      models: [{ name: 'slow', deployments: [{ provider: 'sim', model: 'slow' }] }],
    });
    const base = child.url;
    const results = Array.from({ length: 200 }, async (_, i) => {
      const stream = i % 4 === 0;
      const res = await request(`${base}/v1/chat/completions`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'slow', stream, messages: [{ role: 'user', content: `request number ${i}` }] }),
      });
      const text = await res.body.text();
      if (stream) return { status: res.statusCode, complete: text.trimEnd().endsWith('data: [DONE]') && !text.includes('"error"') };
      const body = JSON.parse(text) as { choices?: { message: { content: string }; finish_reason: string }[] };
      return { status: res.statusCode, complete: body.choices?.[0]?.finish_reason === 'stop' && body.choices[0].message.content.length > 0 };
    });
    // Wait until the gateway holds all 200 (they are in flight upstream), then ask it to stop.
    await expect
      .poll(
        async () => {
          const res = await request(`${base}/v1/providers`, { dispatcher: agent });
          const body = (await res.body.json()) as { data: { in_flight: number }[] };
          return body.data.reduce((n, d) => n + d.in_flight, 0);
        },
        { timeout: 20_000, interval: 100 },
      )
      .toBe(200);
    child.process.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    // Draining: no new connections are accepted.
    const refused = await request(`${base}/health`).then(
      () => false,
      () => true,
    );
    expect(refused).toBe(true);
    const settled = await Promise.all(results);
    expect(settled.filter((r) => r.status !== 200 || !r.complete)).toEqual([]);
    expect(await child.exited).toBe(0);
  }, 120_000);
});
