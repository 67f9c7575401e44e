// Hands out the sequences of one llama.cpp context to concurrent requests. A context with N
// sequences evaluates all of them in one batch per step (llama.cpp's own batching), so N requests
// in flight cost far less than N requests in turn. A request waits here while all N are busy; a
// released sequence goes to the longest-waiting request first.

export interface SequencePoolStats {
  /** Sequences the context can hold. */
  capacity: number;
  /** Sequences created so far (created lazily, then kept for their cached prefix). */
  created: number;
  /** Sequences serving a request right now. */
  busy: number;
  /** Requests waiting for a free sequence. */
  waiting: number;
}

import type { CancelSignal } from './cancel.js';

interface Waiter<S> {
  resolve: (sequence: S) => void;
  reject: (err: unknown) => void;
  signal: CancelSignal;
  onAbort: () => void;
}

export class SequencePool<S> {
  private readonly idle: S[] = [];
  private readonly waiters: Waiter<S>[] = [];
  private created = 0;
  private closedWith: Error | undefined;

  constructor(
    readonly capacity: number,
    private readonly createSequence: () => S,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('a sequence pool needs a capacity of at least 1');
  }

  /**
   * A free sequence, or a promise of the next one released. `affinity` scores idle sequences
   * (higher is better, e.g. how many prompt tokens a sequence already holds) so a follow-up turn
   * lands on the sequence that has its conversation cached. Rejects with `signal.reason` if the
   * signal fires while waiting.
   */
  acquire(signal: CancelSignal, affinity?: (sequence: S) => number): Promise<S> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.idle.length > 0) return Promise.resolve(this.takeIdle(affinity));
    if (this.created < this.capacity) {
      const sequence = this.createSequence();
      this.created++;
      return Promise.resolve(sequence);
    }
    return new Promise<S>((resolve, reject) => {
      const waiter: Waiter<S> = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const at = this.waiters.indexOf(waiter);
          if (at >= 0) this.waiters.splice(at, 1);
          reject(signal.reason);
        },
      };
      signal.addEventListener('abort', waiter.onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Returns a sequence: straight to the first waiter, else to the idle list. */
  release(sequence: S): void {
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.resolve(sequence);
      return;
    }
    this.idle.push(sequence);
  }

  stats(): SequencePoolStats {
    return { capacity: this.capacity, created: this.created, busy: this.created - this.idle.length, waiting: this.waiters.length };
  }

  /** Rejects every waiter and all later acquires with `reason`. Busy sequences finish on their own. */
  close(reason: Error): void {
    this.closedWith = reason;
    for (const waiter of this.waiters.splice(0)) {
      waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.reject(reason);
    }
  }

  private takeIdle(affinity?: (sequence: S) => number): S {
    let best = this.idle.length - 1;
    if (affinity && this.idle.length > 1) {
      let bestScore = -Infinity;
      for (let i = 0; i < this.idle.length; i++) {
        const score = affinity(this.idle[i] as S);
        if (score > bestScore) {
          bestScore = score;
          best = i;
        }
      }
    }
    return this.idle.splice(best, 1)[0] as S;
  }
}
