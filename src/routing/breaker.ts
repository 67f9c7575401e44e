// One circuit breaker per deployment: closed -> open on a failure rate over a rolling window (with a
// minimum number of requests) or on consecutive failures -> half-open after `open_ms`, letting a few
// probes through -> closed when they succeed, open again when one fails (while half-open only the
// probes' outcomes count, not calls let through before it opened). Pure in-process state; the
// shared (Redis) view is layered on top by BreakerSync, which calls forceOpen/forceClose.
import type { BreakerConfig } from '../config/schema.js';

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerTransition {
  deployment: string;
  from: BreakerState;
  to: BreakerState;
  reason: string;
  /** `local` when this process saw it, `remote` when another replica did (shared state). */
  source: 'local' | 'remote';
  /** For `open`: epoch ms when probes may start. */
  retryAt?: number;
}

/**
 * Permission for one attempt: `normal` while closed, or a half-open probe of one round (each
 * half-open period is a round). A probe's outcome counts only in its own round: a probe still out
 * when its round ended (it failed elsewhere, or another replica reopened the breaker) decides nothing
 * about the next one.
 */
export type BreakerToken = 'normal' | { readonly round: number };

/** Counts in one-second buckets over the window, so recording and reading are O(buckets). */
class RollingCounts {
  private readonly successes: Int32Array;
  private readonly failures: Int32Array;
  private readonly stamps: Float64Array;
  private readonly bucketMs: number;

  constructor(windowMs: number, buckets = 10) {
    this.bucketMs = Math.max(1, Math.ceil(windowMs / buckets));
    this.successes = new Int32Array(buckets);
    this.failures = new Int32Array(buckets);
    this.stamps = new Float64Array(buckets).fill(-1);
  }

  record(ok: boolean, now: number): void {
    const slot = Math.floor(now / this.bucketMs);
    const i = slot % this.stamps.length;
    if (this.stamps[i] !== slot) {
      this.stamps[i] = slot;
      this.successes[i] = 0;
      this.failures[i] = 0;
    }
    if (ok) this.successes[i]! += 1;
    else this.failures[i]! += 1;
  }

  totals(now: number): { total: number; failures: number } {
    const slot = Math.floor(now / this.bucketMs);
    const oldest = slot - this.stamps.length + 1;
    let total = 0;
    let failures = 0;
    for (let i = 0; i < this.stamps.length; i++) {
      const s = this.stamps[i] as number;
      if (s < oldest || s > slot) continue;
      failures += this.failures[i] as number;
      total += (this.failures[i] as number) + (this.successes[i] as number);
    }
    return { total, failures };
  }

  reset(): void {
    this.stamps.fill(-1);
  }
}

export class CircuitBreaker {
  private stateValue: BreakerState = 'closed';
  private consecutive = 0;
  private openedUntil = 0;
  private probesInFlight = 0;
  private probeSuccesses = 0;
  /** The half-open round: incremented each time the breaker goes half-open. */
  private round = 0;
  private readonly counts: RollingCounts;

  constructor(
    readonly deployment: string,
    private readonly cfg: BreakerConfig,
    private readonly onTransition: (t: BreakerTransition) => void = () => {},
    private readonly now: () => number = Date.now,
  ) {
    this.counts = new RollingCounts(cfg.window_ms);
  }

  /** Current state, moving open -> half_open once the open time has passed. */
  get state(): BreakerState {
    if (this.stateValue === 'open' && this.now() >= this.openedUntil) this.transition('half_open', 'open time elapsed', 'local');
    return this.stateValue;
  }

  /** Epoch ms when an open breaker lets probes through. */
  get retryAt(): number | undefined {
    return this.stateValue === 'open' ? this.openedUntil : undefined;
  }

  /** Whether a request may go to this deployment now (without taking a probe slot). */
  canPass(): boolean {
    const s = this.state;
    if (s === 'closed') return true;
    if (s === 'open') return false;
    return this.probesInFlight < this.cfg.half_open_probes;
  }

  /**
   * Claims permission for one attempt. Returns a release token: a probe of the current round when
   * it took a half-open probe slot, 'normal' otherwise, undefined when the breaker refuses.
   */
  acquire(): BreakerToken | undefined {
    const s = this.state;
    if (s === 'closed') return 'normal';
    if (s === 'open') return undefined;
    if (this.probesInFlight >= this.cfg.half_open_probes) return undefined;
    this.probesInFlight++;
    return { round: this.round };
  }

  /** A probe of the half-open round now running (one from an earlier round frees and decides nothing). */
  private current(token: BreakerToken): boolean {
    return token !== 'normal' && token.round === this.round && this.stateValue === 'half_open';
  }

  /**
   * Outcome of an attempt that counted (aborted attempts are released with `release`). A repeat
   * failure of a request that already failed here (`repeat`) feeds the rolling failure rate but not
   * the consecutive count: one bad request retried must not look like a dead deployment.
   */
  record(ok: boolean, token: BreakerToken, repeat = false): void {
    const now = this.now();
    if (token !== 'normal') {
      if (!this.current(token)) return; // a probe of a round that is over: it decides nothing now
      this.probesInFlight = Math.max(0, this.probesInFlight - 1);
    }
    if (this.stateValue === 'half_open') {
      // Only this round's probes decide: a 'normal' pass was issued while still closed (a call that
      // hung through the outage and times out now), so it says nothing about the deployment today.
      if (token === 'normal') return;
      if (!ok) {
        this.open('a half-open probe failed', now);
        return;
      }
      if (++this.probeSuccesses >= this.cfg.half_open_probes) this.close('half-open probes succeeded', 'local');
      return;
    }
    if (this.stateValue === 'open') return; // a straggler from before the breaker opened
    this.counts.record(ok, now);
    if (ok) {
      this.consecutive = 0;
      return;
    }
    if (!repeat) this.consecutive++;
    if (this.consecutive >= this.cfg.consecutive_failures) {
      this.open(`${this.consecutive} consecutive failures`, now);
      return;
    }
    const { total, failures } = this.counts.totals(now);
    if (total >= this.cfg.min_requests && failures / total >= this.cfg.failure_rate_threshold) {
      this.open(`failure rate ${Math.round((failures / total) * 100)}% over ${total} requests`, now);
    }
  }

  /** An attempt that ended without a verdict (cancelled): frees its probe slot. */
  release(token: BreakerToken): void {
    if (this.current(token)) this.probesInFlight = Math.max(0, this.probesInFlight - 1);
  }

  /** Recent failure share over the rolling window (0 with no traffic). */
  errorRate(): { rate: number; requests: number } {
    const { total, failures } = this.counts.totals(this.now());
    return { rate: total === 0 ? 0 : failures / total, requests: total };
  }

  /** Another replica opened it: open here until `until` without counting anything. */
  forceOpen(until: number, reason: string): void {
    if (this.stateValue === 'open' && this.openedUntil >= until) return;
    this.openedUntil = until;
    this.probeSuccesses = 0;
    if (this.stateValue !== 'open') this.transition('open', reason, 'remote');
  }

  /** Another replica's probes succeeded. */
  forceClose(reason: string): void {
    if (this.stateValue !== 'closed') this.close(reason, 'remote');
  }

  private open(reason: string, now: number): void {
    this.openedUntil = now + this.cfg.open_ms;
    this.probeSuccesses = 0;
    this.transition('open', reason, 'local');
  }

  private close(reason: string, source: 'local' | 'remote'): void {
    this.consecutive = 0;
    this.probeSuccesses = 0;
    this.counts.reset();
    this.transition('closed', reason, source);
  }

  private transition(to: BreakerState, reason: string, source: 'local' | 'remote'): void {
    const from = this.stateValue;
    if (from === to) return;
    this.stateValue = to;
    if (to === 'half_open') {
      this.round++;
      this.probeSuccesses = 0;
      this.probesInFlight = 0;
    }
    this.onTransition({ deployment: this.deployment, from, to, reason, source, ...(to === 'open' ? { retryAt: this.openedUntil } : {}) });
  }
}
