// Admission to deployments with a concurrency limit (`max_concurrency`): a request takes a slot when
// one is free; otherwise it waits in its group's bounded queue, ordered by priority (high, normal,
// low) then arrival. A freed slot is handed straight to the first waiter that can use it, so a new
// arrival never overtakes the queue. A full queue answers 429 queue_full with Retry-After.
import type { Priority } from '../gateway/context.js';
import { GatewayError } from '../server/errors.js';
import type { CancelSignal } from '../providers/cancel.js';
import type { Deployment } from './catalog.js';
import type { DeploymentStats } from './stats.js';

interface Waiter {
  priority: Priority;
  accepts: (d: Deployment) => boolean;
  resolve: (d: Deployment) => void;
  reject: (err: unknown) => void;
  done: boolean;
}

const ORDER: readonly Priority[] = ['high', 'normal', 'low'];

export class AdmissionQueue {
  private readonly lanes: Record<Priority, Waiter[]> = { high: [], normal: [], low: [] };
  private waiting = 0;

  constructor(
    readonly group: string,
    readonly maxSize: number,
    readonly maxWaitMs: number,
    private readonly onDepth: (group: string, depth: number) => void = () => {},
  ) {}

  get depth(): number {
    return this.waiting;
  }

  /**
   * Waits for a slot on one of the deployments `accepts` allows. Rejects with queue_full when the
   * queue is full, no_healthy_deployment when the wait passes maxWaitMs, or the signal's reason.
   */
  wait(priority: Priority, accepts: (d: Deployment) => boolean, signal: CancelSignal): Promise<Deployment> {
    if (this.waiting >= this.maxSize) {
      return Promise.reject(
        new GatewayError('queue_full', { message: `Every deployment of "${this.group}" is at its concurrency limit and the queue (${this.maxSize}) is full.`, retryAfterMs: 1_000 }),
      );
    }
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    return new Promise<Deployment>((resolve, reject) => {
      const finish = () => {
        waiter.done = true;
        this.waiting--;
        this.onDepth(this.group, this.waiting);
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      const waiter: Waiter = {
        priority,
        accepts,
        done: false,
        resolve: (d) => {
          finish();
          resolve(d);
        },
        reject: (err) => {
          finish();
          reject(err);
        },
      };
      const onAbort = () => waiter.reject(signal.reason);
      const timer = setTimeout(
        () => waiter.reject(new GatewayError('no_healthy_deployment', { message: `No deployment of "${this.group}" had a free slot within ${this.maxWaitMs} ms.`, retryAfterMs: 1_000 })),
        this.maxWaitMs,
      );
      signal.addEventListener('abort', onAbort, { once: true });
      this.lanes[priority].push(waiter);
      this.waiting++;
      this.onDepth(this.group, this.waiting);
    });
  }

  /** Hands a freed slot on `d` to the first waiter that can use it; false when none can. */
  handOff(d: Deployment): boolean {
    for (const p of ORDER) {
      const lane = this.lanes[p];
      // Drop finished waiters from the front as we go; they were cancelled or timed out.
      while (lane.length > 0 && (lane[0] as Waiter).done) lane.shift();
      for (let i = 0; i < lane.length; i++) {
        const w = lane[i] as Waiter;
        if (w.done || !w.accepts(d)) continue;
        lane.splice(i, 1);
        w.resolve(d);
        return true;
      }
    }
    return false;
  }

  /** Rejects every waiter (shutdown). */
  rejectAll(err: unknown): void {
    for (const p of ORDER) for (const w of this.lanes[p].splice(0)) if (!w.done) w.reject(err);
  }
}

/** Slots per deployment (DeploymentStats.inFlight is the count) and the queues waiting for them. */
export class Admission {
  private readonly queuesByDeployment = new Map<string, Set<AdmissionQueue>>();

  constructor(private readonly stats: (id: string) => DeploymentStats) {}

  hasFreeSlot(d: Deployment): boolean {
    return d.maxConcurrency === undefined || this.stats(d.id).inFlight < d.maxConcurrency;
  }

  /** Takes a slot on `d` if one is free (no queue). */
  tryAcquire(d: Deployment): boolean {
    if (!this.hasFreeSlot(d)) return false;
    this.stats(d.id).inFlight++;
    return true;
  }

  /** Registers a queue as interested in slots of the given deployments. */
  watch(queue: AdmissionQueue, deployments: readonly Deployment[]): void {
    for (const d of deployments) {
      let set = this.queuesByDeployment.get(d.id);
      if (!set) this.queuesByDeployment.set(d.id, (set = new Set()));
      set.add(queue);
    }
  }

  /** Drops what is kept for a deployment that is gone (pruned passthrough names). */
  forget(id: string): void {
    this.queuesByDeployment.delete(id);
  }

  /** Frees a slot: handed to a waiter when one can use it, else the in-flight count drops. */
  release(d: Deployment): void {
    const queues = this.queuesByDeployment.get(d.id);
    if (queues && d.maxConcurrency !== undefined) {
      for (const q of queues) if (q.depth > 0 && q.handOff(d)) return;
    }
    const s = this.stats(d.id);
    s.inFlight = Math.max(0, s.inFlight - 1);
  }
}
