import { describe, expect, it } from 'vitest';
import { GatewayError } from '../server/errors.js';
import { Admission, AdmissionQueue } from './admission.js';
import type { Deployment } from './catalog.js';
import { DeploymentStats } from './stats.js';

function deployment(id: string, maxConcurrency?: number, group = 'g'): Deployment {
  return { id, group, providerName: 'p', provider: undefined as never, model: id, weight: 1, priority: 0, price: { input: 0, output: 0 }, timeoutMs: 1_000, maxConcurrency };
}

function setup(maxSize = 10, maxWaitMs = 5_000) {
  const stats = new Map<string, DeploymentStats>();
  const statsFor = (id: string) => stats.get(id) ?? stats.set(id, new DeploymentStats(id, 0.3)).get(id)!;
  const admission = new Admission(statsFor);
  const queue = new AdmissionQueue('g', maxSize, maxWaitMs);
  return { admission, queue, statsFor };
}

const ids = (...names: string[]) => new Set(names);

describe('Admission', () => {
  it('takes slots up to max_concurrency', () => {
    const { admission, statsFor } = setup();
    const d = deployment('a', 2);
    expect(admission.tryAcquire(d)).toBe(true);
    expect(admission.tryAcquire(d)).toBe(true);
    expect(admission.tryAcquire(d)).toBe(false);
    expect(statsFor('a').inFlight).toBe(2);
    admission.release(d);
    expect(statsFor('a').inFlight).toBe(1);
  });

  it('never limits a deployment without max_concurrency', () => {
    const { admission } = setup();
    const d = deployment('free');
    for (let i = 0; i < 100; i++) expect(admission.tryAcquire(d)).toBe(true);
  });

  it('hands freed slots to waiters by priority, then arrival', async () => {
    const { admission, queue, statsFor } = setup();
    const d = deployment('a', 1);
    admission.watch(queue, [d]);
    admission.tryAcquire(d);
    const served: string[] = [];
    const signal = new AbortController().signal;
    const waits = [
      queue.wait('low', ids('a'), signal).then(() => served.push('low-1')),
      queue.wait('normal', ids('a'), signal).then(() => served.push('normal-1')),
      queue.wait('high', ids('a'), signal).then(() => served.push('high-1')),
      queue.wait('normal', ids('a'), signal).then(() => served.push('normal-2')),
    ];
    expect(queue.depth).toBe(4);
    for (let i = 0; i < 4; i++) {
      admission.release(d); // the slot passes straight to the next waiter
      await new Promise((r) => setImmediate(r));
      expect(statsFor('a').inFlight).toBe(1);
    }
    await Promise.all(waits);
    expect(served).toEqual(['high-1', 'normal-1', 'normal-2', 'low-1']);
    expect(queue.depth).toBe(0);
    admission.release(d);
    expect(statsFor('a').inFlight).toBe(0);
  });

  it('answers queue_full (429 with Retry-After) when the queue is full', async () => {
    const { queue } = setup(1);
    const signal = new AbortController().signal;
    void queue.wait('normal', ids('a'), signal).catch(() => undefined);
    const err = await queue.wait('high', ids('a'), signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('queue_full');
    expect((err as GatewayError).status).toBe(429);
    expect((err as GatewayError).retryAfterMs).toBeGreaterThan(0);
    queue.rejectAll(new Error('done'));
  });

  it('gives up after max_wait_ms and when the request is cancelled', async () => {
    const { queue } = setup(10, 20);
    const timedOut = await queue.wait('normal', ids('a'), new AbortController().signal).catch((e: unknown) => e);
    expect((timedOut as GatewayError).code).toBe('no_healthy_deployment');
    const ac = new AbortController();
    const p = queue.wait('normal', ids('a'), ac.signal);
    ac.abort(new Error('client left'));
    await expect(p).rejects.toThrow('client left');
    expect(queue.depth).toBe(0);
  });

  it('skips waiters that cannot use the freed deployment', async () => {
    const { admission, queue } = setup();
    const a = deployment('a', 1);
    const b = deployment('b', 1);
    admission.watch(queue, [a, b]);
    admission.tryAcquire(a);
    admission.tryAcquire(b);
    const signal = new AbortController().signal;
    const onlyB = queue.wait('high', ids('b'), signal);
    const any = queue.wait('low', ids('a', 'b'), signal);
    admission.release(a);
    expect((await any).id).toBe('a');
    admission.release(b);
    expect((await onlyB).id).toBe('b');
  });

  it('drops a waiter from its lane as soon as it is cancelled or times out, while every slot stays held', async () => {
    const { admission, queue } = setup(10_000, 20);
    const d = deployment('a', 1);
    admission.watch(queue, [d]);
    admission.tryAcquire(d); // a hung call holds the only slot
    const lanes = (queue as unknown as { lanes: Record<string, unknown[]> }).lanes;
    const held = () => lanes.high!.length + lanes.normal!.length + lanes.low!.length;
    const cancelled = Array.from({ length: 50 }, () => {
      const ac = new AbortController();
      const p = queue.wait('normal', ids('a'), ac.signal).catch((e: unknown) => e);
      ac.abort(new Error('client left'));
      return p;
    });
    await Promise.all(cancelled);
    expect(held()).toBe(0);
    const timedOut = await Promise.all(Array.from({ length: 50 }, () => queue.wait('low', ids('a'), new AbortController().signal).catch((e: unknown) => e)));
    expect(timedOut.every((e) => (e as GatewayError).code === 'no_healthy_deployment')).toBe(true);
    expect(held()).toBe(0);
    expect(queue.depth).toBe(0);
  });

  it('matches deployments by id: a slot freed through one group\'s object goes to another group\'s waiter', async () => {
    const stats = new Map<string, DeploymentStats>();
    const admission = new Admission((id) => stats.get(id) ?? stats.set(id, new DeploymentStats(id, 0.3)).get(id)!);
    const inA = deployment('fake/m', 1, 'A');
    const inB = deployment('fake/m', 1, 'B');
    const queueA = new AdmissionQueue('A', 10, 5_000);
    const queueB = new AdmissionQueue('B', 10, 5_000);
    admission.watch(queueA, [inA]);
    admission.watch(queueB, [inB]);
    expect(admission.tryAcquire(inA)).toBe(true);
    expect(admission.tryAcquire(inB)).toBe(false); // one deployment, one slot
    const waiting = admission.wait(queueB, 'normal', [inB], new AbortController().signal);
    expect(admission.waitedFor(inA)).toBe(true);
    admission.release(inA);
    expect((await waiting).id).toBe('fake/m');
    expect(stats.get('fake/m')!.inFlight).toBe(1);
  });

  it('hands a slot that is already free to a new waiter at once', async () => {
    const { admission, queue, statsFor } = setup();
    const a = deployment('a', 1);
    admission.watch(queue, [a]);
    // Free, yet a request queued for it (it was left to a waiter that has gone since, say).
    const got = await admission.wait(queue, 'normal', [a], new AbortController().signal);
    expect(got.id).toBe('a');
    expect(statsFor('a').inFlight).toBe(1);
    expect(queue.depth).toBe(0);
  });
});
