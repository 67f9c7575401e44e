// `serve --workers 2` polled the way the dashboard polls it: every GET /v1/stats reports the whole
// cluster's rolling window (every worker's requests, latency percentiles from the merged histograms,
// per-second series summed), whichever worker answered the poll, and says how many workers it covers.
// A worker that hangs does not hang the poll: it is answered after the collection timeout, with that
// worker's last window (stale).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionTo, send, startServeCluster, type ServeCluster } from './helpers/serve-cluster.js';

interface Stats {
  requests: { total: number; errors_5xx: number };
  latency_ms: { count: number; p50: number; p99: number; max: number };
  providers: { provider: string; calls: number }[];
  series: { requests: number }[];
  workers?: { answered: number; stale: number; missing: number };
}

describe('serve --workers 2: every /v1/stats poll, the whole cluster', () => {
  const K = 12;
  let cluster: ServeCluster;

  beforeAll(async () => {
    cluster = await startServeCluster({ workers: 2, prefix: 'if-cluster-stats-' });
    // K requests, each on its own connection: both workers answer some of them.
    const answeredBy = new Set<string>();
    for (let i = 0; i < K; i++) {
      const res = await send(`${cluster.url}/v1/chat/completions`, { method: 'POST', body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `Hello ${i}` }] } });
      expect(res.status).toBe(200);
      answeredBy.add(res.worker);
    }
    expect([...answeredBy].sort()).toEqual(cluster.pids.map(String).sort());
  }, 90_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('shows all K requests on every poll, whichever worker answers it', async () => {
    const polledBy = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const res = await send(`${cluster.url}/v1/stats`);
      expect(res.status).toBe(200);
      polledBy.add(res.worker);
      const s = JSON.parse(res.text) as Stats;
      const by = `poll ${i} by worker ${res.worker}`;
      expect(s.requests.total, by).toBe(K);
      expect(s.requests.errors_5xx, by).toBe(0);
      expect(s.latency_ms.count, by).toBe(K);
      expect(s.latency_ms.p50, by).toBeGreaterThan(0);
      expect(s.latency_ms.p99, by).toBeLessThanOrEqual(s.latency_ms.max);
      expect(s.providers.reduce((n, p) => n + p.calls, 0), by).toBe(K);
      expect(s.series.reduce((n, p) => n + p.requests, 0), by).toBe(K);
      expect(s.workers, by).toEqual({ answered: 2, stale: 0, missing: 0 });
    }
    // Both workers answered polls, so this was not one worker answering every time.
    expect([...polledBy].sort()).toEqual(cluster.pids.map(String).sort());
  });

  it('answers while the other worker hangs, with that worker’s last window', async () => {
    // A kept-alive connection that is known to reach one worker; the other one is then stopped.
    const agent = await connectionTo(cluster.url, cluster.pids[0] as number);
    expect(agent, 'a connection to the first worker').toBeDefined();
    const hung = cluster.pids[1] as number;
    process.kill(hung, 'SIGSTOP');
    try {
      const res = await send(`${cluster.url}/v1/stats`, { agent });
      expect(res.status).toBe(200);
      expect(res.worker).toBe(String(cluster.pids[0]));
      const s = JSON.parse(res.text) as Stats;
      expect(s.requests.total).toBe(K);
      expect(s.latency_ms.count).toBe(K);
      expect(s.workers).toEqual({ answered: 1, stale: 1, missing: 0 });
    } finally {
      process.kill(hung, 'SIGCONT');
      agent?.destroy();
    }
  }, 30_000);
});
