// When and how long to wait before another attempt: exponential backoff with full jitter (a random
// delay between 0 and base * 2^n, capped), never shorter than an upstream's Retry-After; and a retry
// budget shared by the process, so retries stay a bounded share of recent traffic during an outage.
import { isUpstreamError, type UpstreamError } from '../providers/errors.js';
import type { CancelSignal } from '../providers/cancel.js';
import { GatewayError } from '../server/errors.js';

/** Full-jitter backoff for retry number `retry` (0 for the first retry). */
export function backoffMs(retry: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** retry);
  return Math.floor(random() * ceiling);
}

/**
 * Whether another deployment (or a later attempt) may take the request after this failure:
 * connect errors, timeouts, 408, 429, 5xx and malformed answers — the upstream error's own verdict.
 * Client mistakes (400, context length, content policy) and cancellations are not retried; for
 * auth, 404 and unsupported see isDeploymentFault.
 */
export function isRetryable(err: unknown): boolean {
  return isUpstreamError(err) && err.retryable;
}

/**
 * One second: the cooldown of a deployment that answered 429 (a rate limit) without saying how long
 * to wait, and the `Retry-After` the gateway gives a client when nothing tells it better (a full
 * queue, no deployment free).
 */
export const DEFAULT_COOLDOWN_MS = 1_000;

/** 429 for a group whose every deployment asked to wait: the client's SDK waits `retryAfterMs`. */
export function everyDeploymentWaiting(group: string, retryAfterMs: number): GatewayError {
  return new GatewayError('upstream_rate_limited', { message: `Every deployment of "${group}" asked to wait (Retry-After).`, retryAfterMs });
}

/**
 * A plain rate limit (429 that is not `insufficient_quota`): the deployment is busy, not broken. It
 * cools down for its Retry-After instead of counting against its breaker, other deployments take
 * the request, and no request waits for it to cool (docs/decisions.md).
 */
export function isRateLimit(err: unknown): err is UpstreamError {
  return isUpstreamError(err) && err.kind === 'rate_limited';
}

/**
 * Failures of one deployment that another may not share, so the request moves on to the next one
 * (no backoff retry: asking the same deployment again gives the same answer): our credentials
 * refused (401/403), the model missing there (404), the account's quota used up (429
 * insufficient_quota), or the adapter unable to do what was asked. A
 * 400 any deployment would give (bad_request, context length, content policy) is not one of them.
 */
export function isDeploymentFault(err: unknown): boolean {
  return isUpstreamError(err) && (err.kind === 'auth' || err.kind === 'not_found' || err.kind === 'quota' || err.kind === 'unsupported');
}

/**
 * Finagle-style retry budget: each request deposits `ratio` tokens (up to a cap), each retry spends
 * one; `minPerSecond` retries are always allowed so low traffic can still retry. Deposits older than
 * the window expire, so a long quiet period does not bank an unbounded burst of retries.
 */
export class RetryBudget {
  private readonly bucketMs: number;
  private readonly deposits: Float64Array;
  private readonly withdrawals: Float64Array;
  private readonly stamps: Float64Array;

  constructor(
    private readonly ratio: number,
    private readonly minPerSecond: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
    buckets = 10,
  ) {
    this.bucketMs = Math.max(1, Math.ceil(windowMs / buckets));
    this.deposits = new Float64Array(buckets);
    this.withdrawals = new Float64Array(buckets);
    this.stamps = new Float64Array(buckets).fill(-1);
  }

  /** A new request arrived. */
  deposit(): void {
    this.deposits[this.bucket(this.now())]! += 1;
  }

  /** Tries to spend one retry; false when the budget is used up. */
  tryWithdraw(): boolean {
    const now = this.now();
    if (!this.canWithdraw(now)) return false;
    this.withdrawals[this.bucket(now)]! += 1;
    return true;
  }

  /** Whether a retry would be allowed now (spends nothing). */
  canWithdraw(now = this.now()): boolean {
    const { requests, retries } = this.totals(now);
    return retries + 1 <= requests * this.ratio + (this.minPerSecond * this.windowMs) / 1000;
  }

  totals(now = this.now()): { requests: number; retries: number } {
    const slot = Math.floor(now / this.bucketMs);
    const oldest = slot - this.stamps.length + 1;
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < this.stamps.length; i++) {
      const s = this.stamps[i] as number;
      if (s < oldest || s > slot) continue;
      requests += this.deposits[i] as number;
      retries += this.withdrawals[i] as number;
    }
    return { requests, retries };
  }

  private bucket(now: number): number {
    const slot = Math.floor(now / this.bucketMs);
    const i = slot % this.stamps.length;
    if (this.stamps[i] !== slot) {
      this.stamps[i] = slot;
      this.deposits[i] = 0;
      this.withdrawals[i] = 0;
    }
    return i;
  }
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function delay(ms: number, signal: CancelSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
