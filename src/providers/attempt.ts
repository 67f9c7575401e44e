// One provider attempt's cancellation: the caller's signal (client gone, hedge won, deadline) plus
// the attempt's own timeout, as one AbortSignal for in-process engines that take a signal. Tells a
// timeout apart from a cancellation so the error kind is right.
import type { CancelSignal } from './cancel.js';
import { UpstreamError } from './errors.js';

/**
 * One attempt's cancellation: the caller's signal plus the attempt's own timeout. `finish()` stops
 * whatever is still running (sibling choices after a failure, a stream its reader left).
 */
export class Attempt {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  timedOut = false;

  constructor(
    private readonly outer: CancelSignal,
    timeoutMs: number,
  ) {
    if (outer.aborted) this.controller.abort(outer.reason);
    else outer.addEventListener('abort', this.onOuterAbort, { once: true });
    if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
      this.timer = setTimeout(() => {
        this.timedOut = true;
        this.controller.abort(new Error(`timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.timer.unref();
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Streams: the timeout covers the wait for the first token. */
  firstTokenArrived(): void {
    clearTimeout(this.timer);
  }

  finish(): void {
    clearTimeout(this.timer);
    this.outer.removeEventListener('abort', this.onOuterAbort);
    if (!this.controller.signal.aborted) this.controller.abort(new Error('attempt finished'));
  }

  /** What a call this attempt cut short fails with: a timeout when its own timer fired, else a cancellation. */
  abortError(provider: string, cause?: unknown): UpstreamError {
    return this.timedOut
      ? new UpstreamError({ provider, kind: 'timeout', message: `${provider}: no answer within the attempt's time`, cause })
      : new UpstreamError({ provider, kind: 'aborted', message: `request to ${provider} was cancelled`, cause });
  }

  private readonly onOuterAbort = () => this.controller.abort(this.outer.reason);
}

/** Waits for `work` but gives up when `signal` fires; the work itself goes on (a shared model load). */
export function untilAborted<T>(work: Promise<T>, signal: CancelSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
