// Counters and histograms for the metrics every request records (several per request), registered
// in prom-client's Registry and rendered by it exactly like its own. prom-client's Counter and
// Histogram build a closure, validate every label and hash the label object on each call; here a
// series is found by one map lookup per label value and updated in place.
// Label values are bounded by the caller (BoundedLabel in metrics.ts).
import type { Registry } from 'prom-client';

type Labels<L extends string> = Record<L, string>;

/** One exposition line as prom-client's Registry reads it. */
interface ValueLine {
  labels: Record<string, string | number>;
  sharedLabels?: Record<string, string>;
  value: number;
  metricName?: string;
}

interface Exposition {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  values: ValueLine[];
  aggregator: 'sum';
}

/** A tree of maps, one level per label, keyed by the label's value; the leaves are series. */
type Level<S> = Map<string, Level<S> | S>;

abstract class Series<L extends string, S extends { labels: Labels<L> }> {
  readonly aggregator = 'sum';
  /** Series in creation order, for rendering. */
  protected readonly series: S[] = [];
  private root: Level<S> = new Map();
  private single: S | undefined;

  constructor(
    readonly name: string,
    readonly help: string,
    protected readonly labelNames: readonly L[],
    registers: readonly Registry[],
  ) {
    // prom-client's Registry takes any object with a name and get(); its type names its own classes.
    for (const r of registers) r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /**
   * The series for these label values. One map lookup per label, each keyed by a value the caller
   * already holds: no key string is built (a concatenated key is hashed anew on every lookup).
   */
  protected find(labels: Labels<L>): S {
    const names = this.labelNames;
    if (names.length === 0) return (this.single ??= this.add({} as Labels<L>));
    let level = this.root;
    const last = names.length - 1;
    for (let i = 0; i < last; i++) {
      const value = labels[names[i] as L];
      let next = level.get(value) as Level<S> | undefined;
      if (next === undefined) {
        next = new Map();
        level.set(value, next);
      }
      level = next;
    }
    const leafValue = labels[names[last] as L];
    let s = level.get(leafValue) as S | undefined;
    if (s === undefined) {
      const copy = {} as Labels<L>;
      for (const n of names) copy[n] = labels[n];
      s = this.add(copy);
      level.set(leafValue, s);
    }
    return s;
  }

  private add(labels: Labels<L>): S {
    const s = this.create(labels);
    this.series.push(s);
    return s;
  }

  protected abstract create(labels: Labels<L>): S;

  abstract get(): Promise<Exposition>;

  reset(): void {
    this.series.length = 0;
    this.root = new Map();
    this.single = undefined;
  }
}

interface CounterSeries<L extends string> {
  labels: Labels<L>;
  value: number;
}

export class FastCounter<L extends string = never> extends Series<L, CounterSeries<L>> {
  readonly type = 'counter';

  constructor(opts: { name: string; help: string; labelNames?: readonly L[]; registers: readonly Registry[] }) {
    super(opts.name, opts.help, opts.labelNames ?? [], opts.registers);
  }

  protected create(labels: Labels<L>): CounterSeries<L> {
    return { labels, value: 0 };
  }

  /** Adds `value` (default 1; 0 makes the series appear at zero). Negative values are refused, as prom-client does. */
  inc(labels: Labels<L>, value = 1): void {
    if (!(value >= 0) || value === Infinity) throw new Error(`${this.name}: a counter only goes up by a finite amount (got ${value})`);
    this.find(labels).value += value;
  }

  async get(): Promise<Exposition> {
    const values: ValueLine[] = [];
    for (const s of this.series) values.push({ labels: { ...s.labels }, value: s.value });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

interface HistogramSeries<L extends string> {
  labels: Labels<L>;
  /** Observations per bucket (not cumulative); the last slot is above every bound. */
  counts: Float64Array;
  sum: number;
  count: number;
}

export class FastHistogram<L extends string = never> extends Series<L, HistogramSeries<L>> {
  readonly type = 'histogram';
  private readonly bounds: Float64Array;

  constructor(opts: { name: string; help: string; labelNames?: readonly L[]; buckets: readonly number[]; registers: readonly Registry[] }) {
    super(opts.name, opts.help, opts.labelNames ?? [], opts.registers);
    this.bounds = Float64Array.from([...opts.buckets].sort((a, b) => a - b));
  }

  protected create(labels: Labels<L>): HistogramSeries<L> {
    return { labels, counts: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 };
  }

  observe(labels: Labels<L>, value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`${this.name}: value is not a finite number: ${value}`);
    const s = this.find(labels);
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    (s.counts[i] as number)++;
    s.sum += value;
    s.count++;
  }

  /**
   * The same lines, in the same order, as prom-client's Histogram: per series its cumulative buckets,
   * +Inf, sum and count, with `le` first and the series' labels as shared labels (the Registry's text
   * rendering reads this).
   */
  async getForPromString(): Promise<Exposition> {
    const values: ValueLine[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.series) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.counts[i] as number;
        values.push({ labels: { le: this.bounds[i] as number }, sharedLabels: s.labels, value: acc, metricName: bucket });
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** The JSON form (Registry.getMetricsAsJSON): every line's labels in one object, as prom-client's get(). */
  async get(): Promise<Exposition> {
    const data = await this.getForPromString();
    data.values = data.values.map(({ labels, sharedLabels, value, metricName }) => ({ labels: { ...labels, ...sharedLabels }, value, metricName }));
    return data;
  }
}
