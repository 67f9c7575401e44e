// `serve --workers 2` as a user runs it, scraped the way Prometheus scrapes it: every scrape of
// /metrics, /v1/metrics and the PROMETHEUS_PORT listener reports the whole cluster (counters and
// histograms summed over both workers), whichever worker accepted the scrape. A worker that hangs
// does not hang the scrape: it answers after the collection timeout, with that worker's last report.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionTo, freePort, send as sendTo, startServeCluster, total, type ServeCluster } from './helpers/serve-cluster.js';

/** METRICS_TOKEN: the scrapes present it (the API has no auth on loopback and ignores it). */
const TOKEN = 'cluster-metrics-token';

/** One request with the metrics token (unless `token` says otherwise), on its own connection unless an agent is given. */
const send = (url: string, opts: Parameters<typeof sendTo>[1] = {}) => sendTo(url, { token: TOKEN, ...opts });

describe('serve --workers 2: one scrape, the whole cluster', () => {
  const K = 14;
  const route = '/v1/chat/completions';
  let cluster: ServeCluster;
  let url: string;
  let metricsUrl: string;
  let pids: number[];

  beforeAll(async () => {
    const metricsPort = await freePort();
    metricsUrl = `http://127.0.0.1:${metricsPort}`;
    // No providers: the built-in simulator answers.
    cluster = await startServeCluster({ workers: 2, prefix: 'if-cluster-metrics-', env: { PROMETHEUS_PORT: String(metricsPort), METRICS_TOKEN: TOKEN } });
    ({ url, pids } = cluster);
    // K requests, each on its own connection: both workers answer some of them.
    const answeredBy = new Set<string>();
    for (let i = 0; i < K; i++) {
      const res = await send(`${url}${route}`, { method: 'POST', body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `Hello ${i}` }] } });
      expect(res.status).toBe(200);
      answeredBy.add(res.worker);
    }
    expect([...answeredBy].sort()).toEqual(pids.map(String).sort());
  }, 90_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('announces the API port, not the PROMETHEUS_PORT listener', () => {
    expect(url).not.toBe(metricsUrl);
  });

  it('reports every request on every scrape of /metrics, whichever worker takes it', async () => {
    const scrapedBy = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const res = await send(`${url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
      scrapedBy.add(res.worker);
      expect(total(res.text, 'inference_requests_total', { route, status: '200' }), `scrape ${i} by worker ${res.worker}`).toBe(K);
      expect(total(res.text, 'inference_request_duration_ms_count', { route })).toBe(K);
      expect(total(res.text, 'inference_request_duration_ms_bucket', { route, le: '+Inf' })).toBe(K);
      // Process metrics are per worker, named by a stable slot.
      expect(total(res.text, 'process_resident_memory_bytes', { worker: '0' })).toBeGreaterThan(0);
      expect(total(res.text, 'process_resident_memory_bytes', { worker: '1' })).toBeGreaterThan(0);
      expect(total(res.text, 'inference_metrics_workers', { state: 'answered' })).toBe(2);
    }
    // Both workers took scrapes, so this was not one worker answering every time.
    expect([...scrapedBy].sort()).toEqual(pids.map(String).sort());
  });

  it('still wants METRICS_TOKEN on every path', async () => {
    expect((await send(`${url}/metrics`, { token: null })).status).toBe(401);
    expect((await send(`${url}/v1/metrics`, { token: 'wrong-token-here' })).status).toBe(401);
    expect((await send(`${metricsUrl}/metrics`, { token: null })).status).toBe(401);
  });

  it('reports the same on /v1/metrics and on the PROMETHEUS_PORT listener', async () => {
    for (let i = 0; i < 6; i++) {
      const v1 = await send(`${url}/v1/metrics`);
      expect(v1.status).toBe(200);
      expect(total(v1.text, 'inference_requests_total', { route, status: '200' })).toBe(K);
      const separate = await send(`${metricsUrl}/metrics`);
      expect(separate.status).toBe(200);
      expect(separate.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(total(separate.text, 'inference_requests_total', { route, status: '200' })).toBe(K);
    }
  });

  it('answers a scrape while the other worker hangs, with that worker’s last report', async () => {
    // A kept-alive connection that is known to reach one worker; the other one is then stopped.
    const agent = await connectionTo(url, pids[0] as number);
    expect(agent, 'a connection to the first worker').toBeDefined();
    const hung = pids[1] as number;
    process.kill(hung, 'SIGSTOP');
    try {
      const res = await send(`${url}/metrics`, { agent });
      expect(res.status).toBe(200);
      expect(res.worker).toBe(String(pids[0]));
      expect(total(res.text, 'inference_requests_total', { route, status: '200' })).toBe(K);
      expect(total(res.text, 'inference_metrics_workers', { state: 'answered' })).toBe(1);
      expect(total(res.text, 'inference_metrics_workers', { state: 'stale' })).toBe(1);
    } finally {
      process.kill(hung, 'SIGCONT');
      agent?.destroy();
    }
  }, 30_000);
});
