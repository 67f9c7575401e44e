import { describe, expect, it } from 'vitest';
import { LogHistogram } from './log-histogram.js';
import { RollingStats, type StatsWindow } from './rolling-stats.js';

function exactQuantile(sorted: number[], q: number): number {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] as number;
}

describe('LogHistogram', () => {
  it('gives percentiles within 2 % of the exact ones over a wide spread of latencies', () => {
    const h = new LogHistogram();
    const values: number[] = [];
    let x = 12345;
    for (let i = 0; i < 5000; i++) {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      const v = 0.5 + (x / 2 ** 31) ** 3 * 20_000; // skewed: most fast, a long tail
      values.push(v);
      h.record(v);
    }
    values.sort((a, b) => a - b);
    for (const q of [0.5, 0.95, 0.99]) {
      const exact = exactQuantile(values, q);
      expect(Math.abs(h.quantile(q) - exact) / exact).toBeLessThan(0.02);
    }
    expect(h.count).toBe(5000);
  });

  it('merges as if every value had been recorded in one histogram', () => {
    const a = new LogHistogram();
    const b = new LogHistogram();
    const all = new LogHistogram();
    for (let i = 1; i <= 100; i++) {
      (i % 2 ? a : b).record(i);
      all.record(i);
    }
    a.merge(b);
    expect(a.percentiles()).toEqual(all.percentiles());
  });

  it('reports zeros when empty and ignores negative or non-finite values', () => {
    const h = new LogHistogram();
    h.record(-1);
    h.record(Number.NaN);
    expect(h.percentiles()).toEqual({ p50: 0, p95: 0, p99: 0, mean: 0, max: 0, count: 0 });
  });
});

describe('RollingStats', () => {
  function clock(start = 1_700_000_000_000) {
    let now = start;
    return { now: () => now, advance: (ms: number) => (now += ms) };
  }

  it('summarises requests, errors, latency and throughput over the window', () => {
    const c = clock();
    const stats = new RollingStats({ windowS: 60, now: c.now });
    for (let i = 0; i < 10; i++) {
      stats.request({ route: '/v1/chat/completions', method: 'POST', status: i === 0 ? 502 : i === 1 ? 400 : 200, durationMs: (i + 1) * 10 });
      c.advance(500);
    }
    const s = stats.summary();
    expect(s.requests.total).toBe(10);
    expect(s.requests.errors_5xx).toBe(1);
    expect(s.requests.errors_4xx).toBe(1);
    expect(s.requests.error_rate).toBe(0.1);
    expect(s.requests.per_second).toBeCloseTo(2, 0); // 10 requests over 5 seconds
    expect(s.latency_ms.p50).toBeGreaterThan(49);
    expect(s.latency_ms.p50).toBeLessThan(51);
    expect(s.latency_ms.max).toBe(100);
  });

  it('forgets what is older than the window', () => {
    const c = clock();
    const stats = new RollingStats({ windowS: 10, now: c.now });
    stats.request({ route: '/x', method: 'GET', status: 200, durationMs: 5 });
    c.advance(5_000);
    stats.request({ route: '/x', method: 'GET', status: 200, durationMs: 5 });
    expect(stats.summary().requests.total).toBe(2);
    c.advance(6_000);
    expect(stats.summary().requests.total).toBe(1);
    c.advance(10_000);
    expect(stats.summary().requests.total).toBe(0);
  });

  it('keeps per-provider error rates, latencies, time to first token, tokens and cost', () => {
    const stats = new RollingStats();
    stats.attempt({ provider: 'a', model: 'm', deployment: 'a/m', outcome: 'ok', durationMs: 100, ttftMs: 20, inputTokens: 10, outputTokens: 5, costUsd: 0.002 });
    stats.attempt({ provider: 'a', model: 'm', deployment: 'a/m', outcome: 'error', durationMs: 50, errorKind: 'timeout' });
    stats.attempt({ provider: 'b', model: 'm', deployment: 'b/m', outcome: 'ok', durationMs: 10, inputTokens: 1, outputTokens: 1, costUsd: 0.001 });
    stats.request({ route: '/v1/chat/completions', method: 'POST', status: 200, durationMs: 160 });
    stats.request({ route: '/v1/chat/completions', method: 'POST', status: 200, durationMs: 12 });
    const s = stats.summary();
    const a = s.providers.find((p) => p.provider === 'a');
    expect(a).toMatchObject({ calls: 2, errors: 1, error_rate: 0.5 });
    expect(a?.ttft_ms.count).toBe(1);
    expect(s.cost.total_usd).toBeCloseTo(0.003, 10);
    expect(s.cost.per_request_usd).toBeCloseTo(0.0015, 10);
    expect(s.cost.input_tokens).toBe(11);
    expect(s.cost.output_tokens).toBe(6);
  });

  it('keeps cancelled attempts out of the error rate and the latency percentiles', () => {
    const stats = new RollingStats();
    stats.attempt({ provider: 'a', model: 'm', deployment: 'a/m', outcome: 'ok', durationMs: 100 });
    stats.attempt({ provider: 'a', model: 'm', deployment: 'a/m', outcome: 'cancelled', durationMs: 5_000 });
    stats.attempt({ provider: 'a', model: 'm', deployment: 'a/m', outcome: 'error', durationMs: 50, errorKind: 'server' });
    const a = stats.summary().providers[0];
    expect(a).toMatchObject({ provider: 'a', calls: 3, errors: 1, cancelled: 1, error_rate: 0.5 });
    expect(a?.latency_ms.count).toBe(2);
    expect(a?.latency_ms.max).toBeLessThan(1_000);
  });

  it('marks a capability section enabled once it reports, and computes its figures', () => {
    const stats = new RollingStats();
    let s = stats.summary();
    expect([s.cache.enabled, s.breakers.enabled, s.queue.enabled, s.limits.enabled, s.routing.enabled, s.mesh.enabled, s.gpu.enabled]).toEqual([false, false, false, false, false, false, false]);
    stats.cacheHit('exact', 0.01);
    stats.cacheHit('semantic', 0.02);
    stats.cacheMiss();
    stats.cacheMiss();
    stats.breakerState('sim/a', 'open', true);
    stats.breakerState('sim/a', 'half_open', false);
    stats.breakerState('sim/b', 'open', true);
    stats.queueDepth('admission', 7);
    stats.rateLimited('requests');
    stats.rateLimited('requests');
    stats.rateLimited('budget');
    stats.hedge('launched');
    stats.meshNode('node-1', 1, 'healthy');
    stats.meshNode('node-2', 0.2, 'degraded');
    stats.gpuAllocation(true, 40);
    stats.gpuAllocation(false, 400);
    stats.gpuUtilization('gpu0', 0.75);
    s = stats.summary();
    expect(s.cache).toMatchObject({ enabled: true, lookups: 4, hit_rate: 0.5, hits: { exact: 1, semantic: 1 } });
    expect(s.cache.saved_usd).toBeCloseTo(0.03, 10);
    expect(s.breakers.open).toBe(1);
    expect(s.breakers.deployments.map((d) => [d.deployment, d.state, d.opened_total])).toEqual([['sim/a', 'half_open', 1], ['sim/b', 'open', 1]]);
    expect(s.queue).toMatchObject({ enabled: true, depth: 7 });
    expect(s.limits).toMatchObject({ enabled: true, rate_limited: 3, by_limit: { requests: 2, budget: 1 } });
    expect(s.routing.hedges.launched).toBe(1);
    expect(s.mesh).toMatchObject({ enabled: true, healthy: 1 });
    expect(s.gpu).toMatchObject({ enabled: true, allocations: 2, failures: 1, utilization: { gpu0: 0.75 } });
  });

  it('returns a per-second series of the chart width, newest last', () => {
    const c = clock();
    const stats = new RollingStats({ windowS: 300, seriesS: 30, now: c.now });
    stats.request({ route: '/x', method: 'GET', status: 200, durationMs: 5 });
    c.advance(2_000);
    stats.request({ route: '/x', method: 'GET', status: 503, durationMs: 5 });
    const { series } = stats.summary();
    expect(series).toHaveLength(30);
    expect(series.at(-1)).toMatchObject({ requests: 1, errors: 1 });
    expect(series.at(-3)).toMatchObject({ requests: 1, errors: 0 });
    expect(series.reduce((n, p) => n + p.requests, 0)).toBe(2);
  });
});

describe('the windows of several workers (serve --workers N)', () => {
  const START = 1_700_000_000_000;
  /** A window's state as it crosses the IPC channel. */
  const wire = (w: StatsWindow): StatsWindow => JSON.parse(JSON.stringify(w)) as StatsWindow;

  /** Equal, numbers to 9 decimals (sums of costs may differ in the last bit when added in another order). */
  function expectSameSummary(actual: unknown, expected: unknown, path = 'summary'): void {
    if (typeof expected === 'number') {
      expect(typeof actual, path).toBe('number');
      expect(actual as number, path).toBeCloseTo(expected, 9);
    } else if (Array.isArray(expected)) {
      expect(Array.isArray(actual), path).toBe(true);
      expect((actual as unknown[]).length, path).toBe(expected.length);
      expected.forEach((v, i) => expectSameSummary((actual as unknown[])[i], v, `${path}[${i}]`));
    } else if (expected !== null && typeof expected === 'object') {
      expect(Object.keys(actual as object), path).toEqual(Object.keys(expected));
      for (const [k, v] of Object.entries(expected)) expectSameSummary((actual as Record<string, unknown>)[k], v, `${path}.${k}`);
    } else expect(actual, path).toEqual(expected);
  }

  it('merged, give the summary of one window that saw every request, percentiles included', () => {
    let now = START;
    const clock = () => now;
    const workers = [new RollingStats({ windowS: 60, now: clock }), new RollingStats({ windowS: 60, now: clock }), new RollingStats({ windowS: 60, now: clock })];
    const one = new RollingStats({ windowS: 60, now: clock });
    const latencies: number[] = [];
    let x = 987_654;
    const random = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    // 40 s of traffic: each event goes to one worker (at random, as connections are shared out) and to `one`.
    for (let i = 0; i < 1_200; i++) {
      now = START + Math.floor(i * 33.3);
      const w = workers[Math.floor(random() * workers.length)] as RollingStats;
      const durationMs = 1 + random() ** 3 * 8_000;
      latencies.push(durationMs);
      const status = i % 50 === 0 ? 502 : i % 37 === 0 ? 429 : 200;
      const provider = i % 3 ? 'openai' : 'anthropic';
      const outcome = status === 502 ? 'error' : i % 41 === 0 ? 'cancelled' : 'ok';
      const attempt = { provider, model: 'm', deployment: `${provider}/m`, outcome, durationMs: durationMs * 0.9, ttftMs: i % 2 ? durationMs / 4 : undefined, inputTokens: 12, outputTokens: 30, costUsd: 0.000_37 * (1 + (i % 5)) } as const;
      for (const s of [w, one]) {
        s.request({ route: '/v1/chat/completions', method: 'POST', status, durationMs });
        s.attempt(attempt);
        if (i % 4 === 0) s.cacheHit(i % 8 ? 'exact' : 'semantic', 0.001);
        else s.cacheMiss();
        if (status === 429) s.rateLimited('requests');
        if (i % 23 === 0) s.retry();
        if (i % 29 === 0) s.hedge('launched');
        if (i % 31 === 0) s.spend(provider, { inputTokens: 3, outputTokens: 4, costUsd: 0.000_01 });
        if (i % 97 === 0) s.gpuAllocation(i % 2 === 0, 20 + i);
      }
    }
    // Gauges each worker publishes: the same shared readings (breakers over Redis, GPU pool, mesh).
    for (const s of [...workers, one]) {
      s.breakerState('openai/m', 'open', true);
      s.gpuUtilization('gpu0', 0.5);
      s.gpuActiveAllocations(3);
      s.meshNode('node-1', 1, 'healthy');
    }
    workers.forEach((w, i) => w.queueDepth('admission', i + 1));
    one.queueDepth('admission', 1 + 2 + 3);
    now += 1_500;

    const summary = one.summaryOf(workers.map((w) => wire(w.window())));
    const expected = one.summary();
    // Everything but `opened_total` (each worker saw its breaker open: three openings, one in `one`).
    expect(summary.breakers.deployments[0]?.opened_total).toBe(3);
    summary.breakers.deployments[0]!.opened_total = 1;
    expectSameSummary(summary, expected);
    expect(summary.requests.total).toBe(1_200);
    expect(summary.queue.depth).toBe(6);
    expect(summary.gpu).toMatchObject({ active_allocations: 3, utilization: { gpu0: 0.5 } });
    expect(summary.series.reduce((n, p) => n + p.requests, 0)).toBe(1_200);
    // And the percentiles are the true ones within the histogram's precision (2 % buckets).
    latencies.sort((a, b) => a - b);
    for (const [q, p] of [[0.5, summary.latency_ms.p50], [0.95, summary.latency_ms.p95], [0.99, summary.latency_ms.p99]] as const) {
      const exact = exactQuantile(latencies, q);
      expect(Math.abs(p - exact) / exact, `p${q * 100}`).toBeLessThan(0.02);
    }
    // Whereas averaging the workers' own p95s is not the cluster's p95 in general: it is not what is done.
    expect(summary.latency_ms.count).toBe(1_200);
  });

  it('takes each gauge as the cluster’s scrape does: queues summed, the worst breaker, the least healthy node, one GPU pool reading', () => {
    let now = START;
    const clock = () => now;
    const [a, b] = [new RollingStats({ now: clock }), new RollingStats({ now: clock })] as [RollingStats, RollingStats];
    a.queueDepth('admission', 2);
    b.queueDepth('admission', 5);
    b.queueDepth('batch', 1);
    a.breakerState('d1', 'half_open', false);
    now += 1_000;
    b.breakerState('d1', 'open', true);
    a.breakerState('d2', 'open', true);
    now += 1_000;
    b.breakerState('d2', 'open', true);
    a.meshNode('n1', 1, 'healthy');
    b.meshNode('n1', 0.2, 'degraded');
    b.meshNode('n2', 1, 'healthy');
    a.gpuUtilization('gpu0', 0.4);
    b.gpuUtilization('gpu0', 0.6);
    a.gpuActiveAllocations(4);
    b.gpuActiveAllocations(2);
    b.cacheMiss();
    const s = a.summaryOf([wire(a.window()), wire(b.window())]);
    expect(s.queue).toEqual({ enabled: true, depth: 8, queues: { admission: 7, batch: 1 } });
    expect(s.breakers.open).toBe(2);
    expect(s.breakers.deployments).toEqual([
      { deployment: 'd1', state: 'open', opened_total: 1, since: new Date(START + 1_000).toISOString() },
      { deployment: 'd2', state: 'open', opened_total: 2, since: new Date(START + 1_000).toISOString() },
    ]);
    expect(s.mesh.healthy).toBe(1);
    expect(s.mesh.nodes.map((n) => [n.node, n.health, n.state])).toEqual([['n1', 0.2, 'degraded'], ['n2', 1, 'healthy']]);
    expect(s.gpu).toMatchObject({ enabled: true, active_allocations: 4, utilization: { gpu0: 0.6 } });
    // A section is enabled when any worker's capability reported.
    expect(s.cache.enabled).toBe(true);
    expect([s.limits.enabled, s.routing.enabled]).toEqual([false, false]);
  });

  it('sums the workers’ requests of one second into that second of the series, and ages them out as one window does', () => {
    let now = START;
    const clock = () => now;
    const [a, b] = [new RollingStats({ windowS: 10, seriesS: 10, now: clock }), new RollingStats({ windowS: 10, seriesS: 10, now: clock })] as [RollingStats, RollingStats];
    a.request({ route: '/x', method: 'GET', status: 200, durationMs: 10 });
    b.request({ route: '/x', method: 'GET', status: 503, durationMs: 1_000 });
    now += 3_000;
    b.request({ route: '/x', method: 'GET', status: 200, durationMs: 20 });
    const windows = [wire(a.window()), wire(b.window())];
    let s = a.summaryOf(windows);
    expect(s.series.at(-4)).toMatchObject({ requests: 2, errors: 1, p50_ms: 10 });
    expect(s.series.at(-4)?.p95_ms).toBeCloseTo(1_000, -1);
    expect(s.series.at(-1)).toMatchObject({ requests: 1, errors: 0 });
    expect(s.requests).toMatchObject({ total: 3, errors_5xx: 1 });
    // A stale report (a worker that did not answer this time) ages out of the window all the same.
    now += 8_000;
    s = a.summaryOf(windows);
    expect(s.requests.total).toBe(1);
    expect(s.latency_ms.count).toBe(1);
  });

  it('gives an empty summary for no windows, and its own window back unchanged', () => {
    const stats = new RollingStats({ now: () => START });
    expect(stats.summaryOf([]).requests.total).toBe(0);
    stats.request({ route: '/x', method: 'GET', status: 200, durationMs: 7 });
    expect(stats.summaryOf([wire(stats.window())])).toEqual(stats.summary());
  });
});
