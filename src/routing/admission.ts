// Admission to deployments with a concurrency limit (`max_concurrency`): a request takes a slot when
// one is free; otherwise it waits in its group's bounded queue, ordered by priority (high, normal,
// low) then arrival. A freed slot is handed straight to the first waiter that can use it, so a new
// arrival never overtakes a waiter on a deployment that waiter can use (it may take any other). A
// full queue answers 429 queue_full with Retry-After. Deployments are matched by id: the same id in
// two groups is one deployment (one slot count, one breaker), though each group has its own object.
import type { Priority } from '../gateway/context.js';
import { GatewayError } from '../server/errors.js';
import type { CancelSignal } from '../providers/cancel.js';
import type { Deployment } from './catalog.js';
import type { DeploymentStats } from './stats.js';
import { DEFAULT_COOLDOWN_MS } from './retry.js';

interface Waiter {
  priority: Priority;
  /** Arrival order across every queue: a deployment two groups share serves their waiters in one order. */
  seq: number;
  /** Ids of the deployments this waiter can use. */
  accepts: ReadonlySet<string>;
  resolve: (d: Deployment) => void;
  reject: (err: unknown) => void;
  done: boolean;
}

const ORDER: readonly Priority[] = ['high', 'normal', 'low'];
let arrivals = 0;

export class AdmissionQueue {
  private readonly lanes: Record<Priority, Waiter[]> = { high: [], normal: [], low: [] };

  constructor(
    readonly group: string,
    readonly maxSize: number,
    readonly maxWaitMs: number,
    private readonly onDepth: (group: string, depth: number) => void = () => {},
  ) {}

  /** Requests waiting (a cancelled or timed-out waiter leaves its lane at once). */
  get depth(): number {
    return this.lanes.high.length + this.lanes.normal.length + this.lanes.low.length;
  }

  /**
   * Waits for a slot on one of the deployments whose ids `accepts` holds. Rejects with queue_full
   * when the queue is full, no_healthy_deployment when the wait passes maxWaitMs, or the signal's
   * reason. Admission.wait also offers the slots free right now; prefer it.
   */
  wait(priority: Priority, accepts: ReadonlySet<string>, signal: CancelSignal): Promise<Deployment> {
    if (this.depth >= this.maxSize) {
      return Promise.reject(
        new GatewayError('queue_full', { message: `Every deployment of "${this.group}" is at its concurrency limit and the queue (${this.maxSize}) is full.`, retryAfterMs: DEFAULT_COOLDOWN_MS }),
      );
    }
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    return new Promise<Deployment>((resolve, reject) => {
      const lane = this.lanes[priority];
      const finish = () => {
        waiter.done = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.onDepth(this.group, this.depth);
      };
      const waiter: Waiter = {
        priority,
        seq: ++arrivals,
        accepts,
        done: false,
        // handOff and rejectAll take the waiter out of its lane themselves.
        resolve: (d) => {
          finish();
          resolve(d);
        },
        reject: (err) => {
          finish();
          reject(err);
        },
      };
      // Cancelled or timed out: out of the lane now, not at some later hand-off (with every slot
      // held by hung calls, there may be none for a long time).
      const leave = (err: unknown) => {
        if (waiter.done) return;
        const i = lane.indexOf(waiter);
        if (i >= 0) lane.splice(i, 1);
        waiter.reject(err);
      };
      const onAbort = () => leave(signal.reason);
      const timer = setTimeout(
        () => leave(new GatewayError('no_healthy_deployment', { message: `No deployment of "${this.group}" had a free slot within ${this.maxWaitMs} ms.`, retryAfterMs: DEFAULT_COOLDOWN_MS })),
        this.maxWaitMs,
      );
      signal.addEventListener('abort', onAbort, { once: true });
      lane.push(waiter);
      this.onDepth(this.group, this.depth);
    });
  }

  /** Whether some waiter can use a slot on `d`. */
  wants(d: Deployment): boolean {
    for (const p of ORDER) for (const w of this.lanes[p]) if (w.accepts.has(d.id)) return true;
    return false;
  }

  /** The first waiter that can use a slot on `d`: its priority's rank (0 high) and arrival; none when none can. */
  first(d: Deployment): { rank: number; seq: number } | undefined {
    for (const [rank, p] of ORDER.entries()) for (const w of this.lanes[p]) if (w.accepts.has(d.id)) return { rank, seq: w.seq };
    return undefined;
  }

  /** Hands a slot on `d` to the first waiter that can use it; false when none can. */
  handOff(d: Deployment): boolean {
    for (const p of ORDER) {
      const lane = this.lanes[p];
      for (let i = 0; i < lane.length; i++) {
        const w = lane[i] as Waiter;
        if (!w.accepts.has(d.id)) continue;
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

  /** Whether a request of any group waits for a slot on `d` (new arrivals leave it to them). */
  waitedFor(d: Deployment): boolean {
    const queues = this.queuesByDeployment.get(d.id);
    if (!queues) return false;
    for (const q of queues) if (q.depth > 0 && q.wants(d)) return true;
    return false;
  }

  /**
   * Queues for a slot on one of `from` (by id). A slot already free on one of them (released while
   * no waiter could use it, say, or skipped by breaker state) is handed out at once, to the first
   * waiter in line for it, rather than at the next release.
   */
  wait(queue: AdmissionQueue, priority: Priority, from: readonly Deployment[], signal: CancelSignal): Promise<Deployment> {
    const waiting = queue.wait(priority, new Set(from.map((d) => d.id)), signal);
    for (const d of from) this.offer(d);
    return waiting;
  }

  /** Frees a slot: handed to a waiter when one can use it, else the in-flight count drops. */
  release(d: Deployment): void {
    if (d.maxConcurrency !== undefined && this.handToWaiter(d)) return;
    const s = this.stats(d.id);
    s.inFlight = Math.max(0, s.inFlight - 1);
  }

  /** Gives the free slots of `d` to waiters that can use them. */
  private offer(d: Deployment): void {
    if (d.maxConcurrency === undefined) return;
    while (this.hasFreeSlot(d)) {
      const s = this.stats(d.id);
      s.inFlight++;
      if (!this.handToWaiter(d)) {
        s.inFlight--;
        return;
      }
    }
  }

  /**
   * Hands a slot on `d` to the waiter first in line for it across every queue watching it — by
   * priority, then arrival — so with a deployment two groups share, one group's low-priority waiters
   * do not take every slot ahead of the other's high-priority ones.
   */
  private handToWaiter(d: Deployment): boolean {
    const queues = this.queuesByDeployment.get(d.id);
    if (!queues) return false;
    let best: AdmissionQueue | undefined;
    let bestAt: { rank: number; seq: number } | undefined;
    for (const q of queues) {
      if (q.depth === 0) continue;
      const at = q.first(d);
      if (at && (!bestAt || at.rank < bestAt.rank || (at.rank === bestAt.rank && at.seq < bestAt.seq))) {
        best = q;
        bestAt = at;
      }
    }
    return best !== undefined && best.handOff(d);
  }
}
