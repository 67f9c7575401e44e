// A sparse log-scale histogram for latency percentiles in the rolling stats window: buckets grow by
// 2 % so any percentile is within about 1 % of the true value, memory stays bounded whatever the
// traffic, and merging two histograms (one per second of the window) is a sum of counts.

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

  merge(other: LogHistogram): void {
    for (const [i, c] of other.buckets) this.buckets.set(i, (this.buckets.get(i) ?? 0) + c);
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
