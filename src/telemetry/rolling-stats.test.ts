import { describe, expect, it } from 'vitest';
import { LogHistogram } from './log-histogram.js';
import { RollingStats } from './rolling-stats.js';

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
