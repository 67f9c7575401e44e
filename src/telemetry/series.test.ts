import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FastCounter, FastHistogram } from './series.js';

const BUCKETS = [5, 10, 25, 50, 100, 250];
const values = [0, 3, 5, 5.000001, 9.5, 10, 24, 26, 49.9, 50, 99, 250, 251, 1e6, 12.25];
const labelSets = [
  { provider: 'openai', model: 'gpt-4o-mini', outcome: 'ok' },
  { provider: 'anthropic', model: 'claude "3"\\x\nline', outcome: 'error' },
];

/** The same observations into prom-client's own metrics and into ours, each in its own registry. */
function both() {
  const theirs = new Registry();
  const ours = new Registry();
  const h1 = new Histogram({ name: 'lat_ms', help: 'Latency.', labelNames: ['provider', 'model', 'outcome'], buckets: BUCKETS, registers: [theirs] });
  const h2 = new FastHistogram({ name: 'lat_ms', help: 'Latency.', labelNames: ['provider', 'model', 'outcome'], buckets: BUCKETS, registers: [ours] });
  const c1 = new Counter({ name: 'calls_total', help: 'Calls.', labelNames: ['provider', 'model', 'outcome'], registers: [theirs] });
  const c2 = new FastCounter({ name: 'calls_total', help: 'Calls.', labelNames: ['provider', 'model', 'outcome'], registers: [ours] });
  const m1 = new Counter({ name: 'misses_total', help: 'Misses.', registers: [theirs] });
  const m2 = new FastCounter({ name: 'misses_total', help: 'Misses.', registers: [ours] });
  values.forEach((v, i) => {
    const labels = labelSets[i % labelSets.length]!;
    h1.observe(labels, v);
    h2.observe(labels, v);
    c1.inc(labels, v);
    c2.inc(labels, v);
    m1.inc();
    m2.inc({});
  });
  return { theirs, ours, h2, c2 };
}

describe('FastCounter and FastHistogram', () => {
  it('render the same Prometheus text as prom-client for the same observations', async () => {
    const { theirs, ours } = both();
    const text = await ours.metrics();
    expect(text).toBe(await theirs.metrics());
    // And it is what Prometheus reads: cumulative buckets, +Inf equal to the count, labels escaped.
    expect(text).toContain('lat_ms_bucket{le="5",provider="openai",model="gpt-4o-mini",outcome="ok"} 2');
    expect(text).toContain('lat_ms_bucket{le="+Inf",provider="openai",model="gpt-4o-mini",outcome="ok"} 8');
    expect(text).toContain('model="claude \\"3\\"\\\\x\\nline"');
    expect(text).toContain('misses_total 15');
  });

  it('give the same JSON as prom-client (what a registry merge reads)', async () => {
    const { theirs, ours } = both();
    const strip = (metrics: Awaited<ReturnType<Registry['getMetricsAsJSON']>>) =>
      metrics.map((m) => ({ name: m.name, type: m.type, values: (m as unknown as { values: { labels: object; value: number; metricName?: string }[] }).values.map(({ labels, value, metricName }) => ({ labels, value, metricName })) }));
    expect(strip(await ours.getMetricsAsJSON())).toEqual(strip(await theirs.getMetricsAsJSON()));
  });

  it('refuse what prom-client refuses, and reset', async () => {
    const { h2, c2, ours } = both();
    expect(() => c2.inc(labelSets[0]!, -1)).toThrow(/only goes up/);
    expect(() => h2.observe(labelSets[0]!, Number.NaN)).toThrow(/not a finite number/);
    c2.reset();
    h2.reset();
    expect(await ours.metrics()).not.toContain('lat_ms_bucket');
  });
});
