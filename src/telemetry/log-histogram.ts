// A sparse log-scale histogram for latency percentiles in the rolling stats window: buckets grow by
// 2 % so any percentile is within about 1 % of the true value, memory stays bounded whatever the
// traffic, and merging two histograms (one per second of the window, or one per worker of a
// cluster) is a sum of counts.

const GROWTH = 1.02;
const LOG_GROWTH = Math.log(GROWTH);
/** Values below this share bucket 0 (sub-0.1 ms latencies are all "instant" for our purposes). */
const FLOOR = 0.1;

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  max: number;
  count: number;
}

/**
 * A histogram as plain JSON (what a `serve --workers N` worker reports of its /v1/stats window):
 * `buckets` is [index, count, index, count, …]; an empty histogram has count 0 and min = max = 0.
 */
export interface LogHistogramState {
  buckets: number[];
  count: number;
  sum: number;
  min: number;
  max: number;
}

export class LogHistogram {
  private readonly buckets = new Map<number, number>();
  count = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;

  record(value: number): void {
    if (!Number.isFinite(value) || value < 0) return;
    const index = value < FLOOR ? 0 : 1 + Math.floor(Math.log(value / FLOOR) / LOG_GROWTH);
    this.buckets.set(index, (this.buckets.get(index) ?? 0) + 1);
    this.count++;
    this.sum += value;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
  }

  /** This histogram as plain JSON (no infinities), for another process to merge. */
  state(): LogHistogramState {
    if (this.count === 0) return { buckets: [], count: 0, sum: 0, min: 0, max: 0 };
    const buckets: number[] = [];
    for (const [i, c] of this.buckets) buckets.push(i, c);
    return { buckets, count: this.count, sum: this.sum, min: this.min, max: this.max };
  }

  /** Adds another histogram's counts: a LogHistogram, or one given as `state()` made it (another process's). */
  merge(other: LogHistogram | LogHistogramState): void {
    if (!(other.count > 0)) return;
    if (other instanceof LogHistogram) {
      for (const [i, c] of other.buckets) this.buckets.set(i, (this.buckets.get(i) ?? 0) + c);
    } else {
      const b = other.buckets;
      for (let k = 0; k + 1 < b.length; k += 2) {
        const i = b[k] as number;
        this.buckets.set(i, (this.buckets.get(i) ?? 0) + (b[k + 1] as number));
      }
    }
    this.count += other.count;
    this.sum += other.sum;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
  }

  /** The value at quantile q (0..1): the geometric middle of its bucket, clamped to the seen range. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    const indices = [...this.buckets.keys()].sort((a, b) => a - b);
    let seen = 0;
    for (const i of indices) {
      seen += this.buckets.get(i) ?? 0;
      if (seen >= rank) return Math.min(this.max, Math.max(this.min, bucketMiddle(i)));
    }
    return this.max;
  }

  percentiles(): Percentiles {
    if (this.count === 0) return { p50: 0, p95: 0, p99: 0, mean: 0, max: 0, count: 0 };
    return {
      p50: round(this.quantile(0.5)),
      p95: round(this.quantile(0.95)),
      p99: round(this.quantile(0.99)),
      mean: round(this.sum / this.count),
      max: round(this.max),
      count: this.count,
    };
  }
}

function bucketMiddle(index: number): number {
  if (index === 0) return FLOOR / 2;
  const low = FLOOR * GROWTH ** (index - 1);
  return low * Math.sqrt(GROWTH);
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}
