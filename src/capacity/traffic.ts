// The autoscaler's memory of traffic: requests, tokens and queue depth summed into fixed time
// buckets (five minutes by default), kept for a bounded number of buckets. Recording is O(1) so the
// request path can call it; the series comes out gap-free, an idle bucket counting as zero.

export interface TrafficPoint {
  /** Bucket start, epoch ms. */
  start: number;
  requestsPerS: number;
  tokensPerS: number;
  /** Deepest queue seen in the bucket. */
  queueDepth: number;
}

interface Bucket {
  index: number;
  requests: number;
  tokens: number;
  queueDepth: number;
}

export interface TrafficRecorderOptions {
  bucketMs: number;
  historyBuckets: number;
  now?: () => number;
  /** Keep what was recorded since the last takePending() (for pushing to a shared store). */
  trackPending?: boolean;
}

/** What one replica recorded in one bucket since its last push. */
export interface BucketDelta {
  index: number;
  requests: number;
  tokens: number;
  /** This replica's deepest queue in the bucket so far (not a delta: it replaces the earlier value). */
  queueDepth: number;
}

export class TrafficRecorder {
  readonly bucketMs: number;
  private readonly historyBuckets: number;
  private readonly now: () => number;
  private readonly done: Bucket[] = [];
  private open: Bucket | undefined;
  private readonly pending: Map<number, BucketDelta> | undefined;

  constructor(opts: TrafficRecorderOptions) {
    this.bucketMs = opts.bucketMs;
    this.historyBuckets = opts.historyBuckets;
    this.now = opts.now ?? Date.now;
    this.pending = opts.trackPending ? new Map() : undefined;
  }

  /** One finished request and the tokens it produced. */
  recordRequest(tokens = 0): void {
    this.record(1, tokens);
  }

  /** Several requests at once (a batch, or a mesh node's periodic report). */
  record(requests: number, tokens: number): void {
    const b = this.bucket();
    b.requests += requests;
    b.tokens += tokens;
    if (this.pending) {
      const d = this.delta(b);
      d.requests += requests;
      d.tokens += tokens;
    }
  }

  /** A sample of the admission queue's depth (the gateway's queue or the mesh stream's backlog). */
  observeQueueDepth(depth: number): void {
    const b = this.bucket();
    b.queueDepth = Math.max(b.queueDepth, depth);
    if (this.pending) this.delta(b).queueDepth = b.queueDepth;
  }

  /** What was recorded since the last call, per bucket (only with trackPending). */
  takePending(): BucketDelta[] {
    if (!this.pending) return [];
    const out = [...this.pending.values()];
    this.pending.clear();
    return out;
  }

  /**
   * Puts back what takePending() returned when pushing it failed, merged with anything recorded
   * since, so the next push sends it again.
   */
  restorePending(deltas: readonly BucketDelta[]): void {
    if (!this.pending) return;
    for (const d of deltas) {
      const now = this.pending.get(d.index);
      if (!now) {
        this.pending.set(d.index, { ...d });
        continue;
      }
      now.requests += d.requests;
      now.tokens += d.tokens;
      now.queueDepth = Math.max(now.queueDepth, d.queueDepth);
    }
  }

  private delta(b: Bucket): BucketDelta {
    const pending = this.pending as Map<number, BucketDelta>;
    let d = pending.get(b.index);
    if (!d) {
      d = { index: b.index, requests: 0, tokens: 0, queueDepth: b.queueDepth };
      pending.set(b.index, d);
    }
    return d;
  }

  /** Completed buckets, oldest first, with idle buckets filled as zero. */
  series(): TrafficPoint[] {
    this.bucket();
    const out: TrafficPoint[] = [];
    const seconds = this.bucketMs / 1000;
    for (const b of this.done) {
      out.push({ start: b.index * this.bucketMs, requestsPerS: b.requests / seconds, tokensPerS: b.tokens / seconds, queueDepth: b.queueDepth });
    }
    return out;
  }

  /** Rates over the open bucket so far (the last completed bucket when the open one is very young). */
  current(): Omit<TrafficPoint, 'start'> {
    const b = this.bucket();
    const elapsed = (this.now() - b.index * this.bucketMs) / 1000;
    const last = this.done[this.done.length - 1];
    if (elapsed < 10 && last) {
      const s = this.bucketMs / 1000;
      return { requestsPerS: last.requests / s, tokensPerS: last.tokens / s, queueDepth: Math.max(last.queueDepth, b.queueDepth) };
    }
    const secs = Math.max(elapsed, 1);
    return { requestsPerS: b.requests / secs, tokensPerS: b.tokens / secs, queueDepth: b.queueDepth };
  }

  /** Seeds history (for a restart from stored figures, and for tests). */
  load(points: readonly TrafficPoint[]): void {
    const seconds = this.bucketMs / 1000;
    for (const p of points) {
      this.done.push({
        index: Math.floor(p.start / this.bucketMs),
        requests: p.requestsPerS * seconds,
        tokens: p.tokensPerS * seconds,
        queueDepth: p.queueDepth,
      });
    }
    this.trim();
  }

  private bucket(): Bucket {
    const index = Math.floor(this.now() / this.bucketMs);
    if (this.open && this.open.index === index) return this.open;
    if (this.open) {
      this.done.push(this.open);
      // Fill idle buckets between the closed one and now so the series stays evenly spaced.
      for (let i = Math.max(this.open.index + 1, index - this.historyBuckets); i < index; i++) {
        this.done.push({ index: i, requests: 0, tokens: 0, queueDepth: 0 });
      }
      this.trim();
    }
    this.open = { index, requests: 0, tokens: 0, queueDepth: 0 };
    return this.open;
  }

  private trim(): void {
    if (this.done.length > this.historyBuckets) this.done.splice(0, this.done.length - this.historyBuckets);
  }
}
