// Live numbers the strategies read: per deployment the in-flight count, a latency EWMA, and a
// "cooling until" time set by an upstream's Retry-After; per group rings of recent latencies (one
// for streams, one for JSON answers) whose percentile drives hedging. All O(1) to update; the
// percentile is recomputed at most every 16 samples.

export class DeploymentStats {
  inFlight = 0;
  /** Exponentially weighted latency, ms (streams: to the first chunk); undefined before any sample. */
  ewmaMs: number | undefined;
  /** The same over answers only (failures do not move it): how long the deployment takes when it answers. */
  answeredMs: number | undefined;
  /** Epoch ms before which the deployment asked not to be called (Retry-After on 429/503). */
  coolingUntil = 0;
  successes = 0;
  failures = 0;

  constructor(
    readonly id: string,
    private readonly alpha: number,
  ) {}

  observeLatency(ms: number): void {
    this.move(ms);
    this.answeredMs = this.answeredMs === undefined ? ms : this.answeredMs + this.alpha * (ms - this.answeredMs);
  }

  private move(ms: number): void {
    this.ewmaMs = this.ewmaMs === undefined ? ms : this.ewmaMs + this.alpha * (ms - this.ewmaMs);
  }

  /**
   * A failure also moves the EWMA: towards the time it took, at least doubling the estimate, so a
   * deployment that fails fast does not look like the fastest one to the latency strategy.
   */
  observeFailure(ms: number): void {
    this.failures++;
    const penalty = Math.max(ms, (this.ewmaMs ?? ms) * 2, 1);
    this.move(penalty);
  }

  cooling(now: number): boolean {
    return this.coolingUntil > now;
  }
}

/** Recent latencies of one group (streams and JSON answers apart), for its hedge delay. */
export class LatencyRing {
  private readonly samples: Float64Array;
  private count = 0;
  private next = 0;
  private sinceSort = 0;
  private cached = new Map<number, number>();

  constructor(size = 256) {
    this.samples = new Float64Array(size);
  }

  add(ms: number): void {
    this.samples[this.next] = ms;
    this.next = (this.next + 1) % this.samples.length;
    if (this.count < this.samples.length) this.count++;
    if (++this.sinceSort >= 16) this.cached.clear();
  }

  get size(): number {
    return this.count;
  }

  /** The q-quantile (0..1) of the recent samples; undefined with none. */
  quantile(q: number): number | undefined {
    if (this.count === 0) return undefined;
    const hit = this.cached.get(q);
    if (hit !== undefined) return hit;
    const sorted = Array.from(this.samples.subarray(0, this.count)).sort((a, b) => a - b);
    const value = sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
    this.cached.set(q, value);
    this.sinceSort = 0;
    return value;
  }
}
