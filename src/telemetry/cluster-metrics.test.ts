// The cluster's scrape without processes: how each kind of metric adds up over the workers, and the
// primary's collection over an in-memory stand-in for the IPC channels (JSON, as Node's is), with a
// worker that never answers. test/cluster-metrics.test.ts does the same with a real `serve --workers 2`.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { samples } from '../../test/helpers/serve-cluster.js';
import { GatewayError } from '../server/errors.js';
import { ClusterMetricsCollector, ClusterMetricsLink, aggregateCluster, type IpcChannel, type MetricJson, type MetricsPeer } from './cluster-metrics.js';
import { GatewayMetrics } from './metrics.js';

const json = async (m: GatewayMetrics) => (await m.registry.getMetricsAsJSON()) as unknown as MetricJson[];
const chat = (durationMs: number) => ({ route: '/v1/chat/completions', method: 'POST', status: 200, durationMs, model: 'm', provider: 'sim' });

describe('aggregateCluster', () => {
  it('sums counters and histograms: two workers read as one process that saw every request', async () => {
    const [a, b, both] = [0, 1, 2].map(() => new GatewayMetrics({ processMetrics: false })) as [GatewayMetrics, GatewayMetrics, GatewayMetrics];
    const durations = [3, 40, 40, 700, 9000];
    durations.forEach((d, i) => {
      (i % 2 ? a : b).recordRequest(chat(d));
      both.recordRequest(chat(d));
    });
    a.recordRequest({ ...chat(20), status: 502 });
    both.recordRequest({ ...chat(20), status: 502 });
    const text = await aggregateCluster([
      { slot: 0, metrics: await json(a), state: 'answered' },
      { slot: 1, metrics: await json(b), state: 'answered' },
    ]).metrics();
    const expected = await both.render();
    for (const name of ['inference_requests_total', 'inference_request_duration_ms_bucket', 'inference_request_duration_ms_sum', 'inference_request_duration_ms_count', 'inference_errors_5xx_total']) {
      expect(samples(text, name), name).toEqual(samples(expected, name));
    }
    expect(samples(text, 'inference_request_duration_ms_bucket')).toContain('inference_request_duration_ms_bucket{le="50",model="m",provider="sim",route="/v1/chat/completions"} 4');
    expect(samples(text, 'inference_metrics_workers')).toEqual([
      'inference_metrics_workers{state="answered"} 2',
      'inference_metrics_workers{state="stale"} 0',
      'inference_metrics_workers{state="missing"} 0',
    ]);
  });

  it('adds up each gauge as it means: in-flight and queues summed, breaker state the worst, shared readings once', async () => {
    const a = new GatewayMetrics({ processMetrics: false });
    const b = new GatewayMetrics({ processMetrics: false });
    a.requestStarted();
    a.requestStarted();
    b.requestStarted();
    a.setQueueDepth(3);
    b.setQueueDepth(4);
    a.breakerOpened('d1');
    b.breakerOpened('d1');
    a.setBreakerState('d2', 'half_open');
    b.setBreakerState('d2', 'closed');
    a.setBreakerState('d3', 'closed');
    b.setBreakerState('d3', 'half_open');
    a.setMeshNodes([{ node: 'n1', health: 1, state: 'healthy' }]);
    b.setMeshNodes([{ node: 'n1', health: 0, state: 'down' }]);
    a.setGpuActiveAllocations(5);
    b.setGpuActiveAllocations(5);
    a.setGpuUtilization('gpu0', 0.5);
    b.setGpuUtilization('gpu0', 0.5);
    const text = await aggregateCluster([
      { slot: 0, metrics: await json(a), state: 'answered' },
      { slot: 1, metrics: await json(b), state: 'answered' },
    ]).metrics();
    expect(samples(text, 'inference_requests_in_flight')).toEqual(['inference_requests_in_flight 3']);
    expect(samples(text, 'inference_queue_depth')).toEqual(['inference_queue_depth{queue="admission"} 7']);
    expect(samples(text, 'circuit_breaker_state')).toEqual([
      'circuit_breaker_state{deployment="d1"} 2',
      'circuit_breaker_state{deployment="d2"} 1',
      'circuit_breaker_state{deployment="d3"} 1',
    ]);
    expect(samples(text, 'circuit_breaker_open_total')).toEqual(['circuit_breaker_open_total{deployment="d1"} 2']);
    expect(samples(text, 'inference_mesh_node_health')).toEqual(['inference_mesh_node_health{node="n1"} 0']);
    expect(samples(text, 'inference_gpu_allocations_active')).toEqual(['inference_gpu_allocations_active 5']);
    expect(samples(text, 'inference_gpu_utilization_ratio')).toEqual(['inference_gpu_utilization_ratio{device="gpu0"} 0.5']);
  });

  it('sums the ledger: rows queued in each worker and each outcome counter', async () => {
    const a = new GatewayMetrics({ processMetrics: false });
    const b = new GatewayMetrics({ processMetrics: false });
    a.watchLedger({ pending: 30, written: 100, rejected: 1, spooled: 0, dropped: 0, duplicate: 2 });
    b.watchLedger({ pending: 12, written: 7, rejected: 0, spooled: 500, dropped: 3, duplicate: 0 });
    const text = await aggregateCluster([
      { slot: 0, metrics: await json(a), state: 'answered' },
      { slot: 1, metrics: await json(b), state: 'answered' },
    ]).metrics();
    expect(samples(text, 'inference_ledger_pending_rows')).toEqual(['inference_ledger_pending_rows 42']);
    expect(samples(text, 'inference_ledger_rows_total')).toEqual([
      'inference_ledger_rows_total{outcome="written"} 107',
      'inference_ledger_rows_total{outcome="rejected"} 1',
      'inference_ledger_rows_total{outcome="spooled"} 500',
      'inference_ledger_rows_total{outcome="dropped"} 3',
      'inference_ledger_rows_total{outcome="duplicate"} 2',
    ]);
  });

  it('keeps process metrics per worker, labelled with its slot, even those prom-client would omit', async () => {
    const a = new GatewayMetrics();
    const b = new GatewayMetrics();
    const text = await aggregateCluster([
      { slot: 0, metrics: await json(a), state: 'answered' },
      { slot: 1, metrics: await json(b), state: 'stale' },
    ], 1).metrics();
    const rss = samples(text, 'process_resident_memory_bytes');
    expect(rss.map((l) => l.split(' ')[0])).toEqual(['process_resident_memory_bytes{worker="0"}', 'process_resident_memory_bytes{worker="1"}']);
    expect(samples(text, 'process_start_time_seconds')).toHaveLength(2);
    expect(samples(text, 'nodejs_version_info').every((l) => /worker="[01]"/.test(l))).toBe(true);
    expect(samples(text, 'inference_metrics_workers')).toEqual([
      'inference_metrics_workers{state="answered"} 1',
      'inference_metrics_workers{state="stale"} 1',
      'inference_metrics_workers{state="missing"} 1',
    ]);
  });
});

const HUNG_TIMEOUT_MS = 1_000;

/** A worker's end of an IPC channel whose messages cross as JSON, asynchronously, as Node's do. */
class Channel extends EventEmitter implements IpcChannel {
  connected = true;
  toPrimary: (message: unknown) => void = () => undefined;
  send(message: object, callback: (err: Error | null) => void): boolean {
    const copy: unknown = JSON.parse(JSON.stringify(message));
    setImmediate(() => this.toPrimary(copy));
    callback(null);
    return true;
  }
}

/** N workers (GatewayMetrics joined to a channel each) and the primary's collector. `hung` workers get nothing. */
/** `now`: the workers' clock (a test comparing per-second rates with another process's pins it). */
/** A hung worker costs a test one timeout; one that answers must do so within it, even on a loaded
 * machine (100 ms failed once in a full parallel run), so the tests that wait out hung workers use
 * HUNG_TIMEOUT_MS. */
function cluster(n: number, timeoutMs: number, now?: () => number) {
  const hung = new Set<number>();
  const collects: unknown[] = []; // every `collect` the primary sent
  const channels = Array.from({ length: n }, () => new Channel());
  const workers = channels.map((cluster) => new GatewayMetrics({ processMetrics: false, cluster, ...(now ? { now } : {}) }));
  const peers: MetricsPeer[] = channels.map((channel, id) => ({
    id,
    slot: id,
    send: (message, callback) => {
      const copy: unknown = JSON.parse(JSON.stringify(message));
      if ((copy as { type?: string }).type === 'inferenceflow:metrics-collect') collects.push(copy);
      if (!hung.has(id)) setImmediate(() => channel.emit('message', copy));
      callback(null);
    },
  }));
  let alive = [...peers];
  const collector = new ClusterMetricsCollector(() => alive, timeoutMs);
  channels.forEach((c, id) => (c.toPrimary = (m) => collector.handle(peers[id] as MetricsPeer, m)));
  return { workers, channels, collector, hung, collects, remove: (id: number) => (alive = alive.filter((p) => p.id !== id)) };
}

describe('ClusterMetricsCollector and the workers’ link', () => {
  it('answers a scrape of any worker with the sum over all of them', async () => {
    const c = cluster(3, 5_000);
    c.workers.forEach((w, i) => {
      for (let k = 0; k <= i; k++) w.recordRequest(chat(10));
    });
    for (const w of c.workers) {
      expect(samples(await w.render(), 'inference_requests_total')).toEqual(['inference_requests_total{model="m",provider="sim",route="/v1/chat/completions",status="200"} 6']);
    }
    c.workers.forEach((w) => w.close());
  });

  it('carries values JSON cannot (NaN, infinities) across the channel', async () => {
    const c = cluster(2, 5_000);
    (c.workers[0] as GatewayMetrics).setGpuUtilization('gpu0', Number.NaN);
    (c.workers[1] as GatewayMetrics).setGpuUtilization('gpu1', Infinity);
    const text = await (c.workers[0] as GatewayMetrics).render();
    expect(samples(text, 'inference_gpu_utilization_ratio')).toEqual(['inference_gpu_utilization_ratio{device="gpu0"} Nan', 'inference_gpu_utilization_ratio{device="gpu1"} +Inf']);
  });

  it('does not wait past the timeout for a hung worker: its last report stands in, or it is counted missing', async () => {
    const c = cluster(2, HUNG_TIMEOUT_MS);
    const [a, b] = c.workers as [GatewayMetrics, GatewayMetrics];
    a.recordRequest(chat(10));
    b.recordRequest(chat(10));
    b.recordRequest(chat(10));
    // Never heard from: missing, and its requests are not in the scrape.
    c.hung.add(1);
    let text = await a.render();
    expect(samples(text, 'inference_requests_total')).toEqual([expect.stringMatching(/ 1$/)]);
    expect(samples(text, 'inference_metrics_workers{state="missing"}')).toEqual(['inference_metrics_workers{state="missing"} 1']);
    // It answers once, then hangs: its counters stay at its last report rather than dropping out.
    c.hung.delete(1);
    expect(samples(await a.render(), 'inference_requests_total')).toEqual([expect.stringMatching(/ 3$/)]);
    b.recordRequest(chat(10));
    c.hung.add(1);
    text = await a.render();
    expect(samples(text, 'inference_requests_total')).toEqual([expect.stringMatching(/ 3$/)]);
    expect(samples(text, 'inference_metrics_workers{state="stale"}')).toEqual(['inference_metrics_workers{state="stale"} 1']);
    // It exits: forgotten, so a collection under way stops waiting and its last report is gone.
    const pending = a.render();
    c.remove(1);
    c.collector.forget(1);
    text = await pending;
    expect(samples(text, 'inference_requests_total')).toEqual([expect.stringMatching(/ 1$/)]);
    expect(samples(await a.render(), 'inference_metrics_workers{state="answered"}')).toEqual(['inference_metrics_workers{state="answered"} 1']);
  });

  it('answers /v1/stats of any worker with every worker’s window merged, and says how many answered', async () => {
    // One clock for the three workers and the single process they are compared with: per_second
    // counts the current second, which real time could leave between the two (per_second 3 against 6).
    const at = Date.now();
    const c = cluster(3, 5_000, () => at);
    const durations = [5, 50, 500, 5_000, 12, 120];
    durations.forEach((d, i) => (c.workers[i % 3] as GatewayMetrics).recordRequest(chat(d)));
    (c.workers[0] as GatewayMetrics).setQueueDepth(2);
    (c.workers[2] as GatewayMetrics).setQueueDepth(3);
    const one = new GatewayMetrics({ processMetrics: false, now: () => at });
    for (const d of durations) one.recordRequest(chat(d));
    for (const w of c.workers) {
      const s = await w.clusterSummary();
      expect(s.workers).toEqual({ answered: 3, stale: 0, missing: 0 });
      expect(s.requests).toEqual(one.summary().requests);
      expect(s.latency_ms).toEqual(one.summary().latency_ms);
      expect(s.queue).toEqual({ enabled: true, depth: 5, queues: { admission: 5 } });
    }
    // One process, no channel: its own summary, no `workers`.
    expect(await one.clusterSummary()).toEqual(one.summary());
    c.workers.forEach((w) => w.close());
  });

  it('lets polls that arrive while a stats collection is under way share it', async () => {
    const c = cluster(2, 5_000);
    c.workers.forEach((w) => w.recordRequest(chat(10)));
    const all = await Promise.all([...c.workers, ...c.workers].map((w) => w.clusterSummary()));
    expect(all.map((s) => s.requests.total)).toEqual([2, 2, 2, 2]);
    expect(c.collects.filter((m) => (m as { kind?: string }).kind === 'stats')).toHaveLength(2); // one collection: one `collect` per worker
    // Once it is done, the next poll collects afresh.
    c.workers[0]?.recordRequest(chat(10));
    expect((await (c.workers[1] as GatewayMetrics).clusterSummary()).requests.total).toBe(3);
    expect(c.collects.filter((m) => (m as { kind?: string }).kind === 'stats')).toHaveLength(4);
    c.workers.forEach((w) => w.close());
  });

  it('does not wait past the timeout for a hung worker’s window: its last window stands in, or it is counted missing', async () => {
    const c = cluster(2, HUNG_TIMEOUT_MS);
    const [a, b] = c.workers as [GatewayMetrics, GatewayMetrics];
    a.recordRequest(chat(10));
    b.recordRequest(chat(10));
    b.recordRequest(chat(10));
    c.hung.add(1);
    let s = await a.clusterSummary();
    expect(s.requests.total).toBe(1);
    expect(s.workers).toEqual({ answered: 1, stale: 0, missing: 1 });
    c.hung.delete(1);
    expect((await a.clusterSummary()).requests.total).toBe(3);
    b.recordRequest(chat(10));
    c.hung.add(1);
    s = await a.clusterSummary();
    expect(s.requests.total).toBe(3);
    expect(s.workers).toEqual({ answered: 1, stale: 1, missing: 0 });
    // A scrape keeps its own last reports: a worker seen by /v1/stats only is missing from it.
    expect(samples(await a.render(), 'inference_metrics_workers{state="missing"}')).toEqual(['inference_metrics_workers{state="missing"} 1']);
    c.remove(1);
    c.collector.forget(1);
    expect((await a.clusterSummary()).workers).toEqual({ answered: 1, stale: 0, missing: 0 });
    c.workers.forEach((w) => w.close());
  });

  it('rejects /v1/stats with a 503 when the primary does not answer, never with one worker’s window', async () => {
    const channel = new Channel(); // nothing on the other end
    const metrics = new GatewayMetrics({ processMetrics: false, cluster: channel });
    metrics.recordRequest(chat(10));
    const err = await metrics.clusterSummary().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).status).toBe(503);
    expect((err as Error).message).toMatch(/^Stats unavailable: the cluster primary did not answer within/);
    metrics.close();
  }, 10_000);

  it('rejects with a 503 when the primary does not answer or is gone, never with one worker’s numbers', async () => {
    const channel = new Channel(); // nothing on the other end
    const metrics = new GatewayMetrics({ processMetrics: false });
    const link = new ClusterMetricsLink(metrics.registry, channel, 50);
    const err = await link.render().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).status).toBe(503);
    expect((err as Error).message).toMatch(/did not answer within 50 ms/);
    channel.connected = false;
    await expect(link.render()).rejects.toThrow(/primary is gone/);
    link.close();
  });
});
