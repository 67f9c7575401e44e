// Cancellation without AbortSignal: on Node 20 an AbortController costs ~3.5 µs to make and ~5 µs
// with a listener, and AbortSignal.any() far more, so requests, routing and upstream attempts are
// linked through this plain listener list. undici takes it as a request signal as it is (it only
// reads `aborted`, `reason` and adds/removes an 'abort' listener); in-process engines that need a
// real AbortSignal make one from it (providers/attempt.ts).

/** The part of AbortSignal that the gateway and its adapters use; an AbortSignal satisfies it too. */
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
