// Request-level cancellation without AbortSignal: on Node 20 each AbortSignal costs ~10 µs and
// AbortSignal.any() far more, so routing links the client, the deadline, dedup and hedging through
// this plain listener list and creates one real AbortSignal per upstream attempt (what adapters take).

/** The part of AbortSignal that routing's own waits use; an AbortSignal satisfies it too. */
export interface CancelSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

export class Cancellation implements CancelSignal {
  aborted = false;
  reason: unknown;
  private listeners: (() => void)[] = [];

  addEventListener(_type: 'abort', listener: () => void): void {
    if (!this.aborted) this.listeners.push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const i = this.listeners.indexOf(listener);
    if (i >= 0) this.listeners.splice(i, 1);
  }

  abort(reason: unknown = new Error('cancelled')): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    for (const l of this.listeners.splice(0)) l();
  }

  /** Aborts this when `parent` aborts; returns the unlink function. */
  follow(parent: CancelSignal): () => void {
    if (parent.aborted) {
      this.abort(parent.reason);
      return () => undefined;
    }
    const onAbort = () => this.abort(parent.reason);
    parent.addEventListener('abort', onAbort, { once: true });
    return () => parent.removeEventListener('abort', onAbort);
  }
}
