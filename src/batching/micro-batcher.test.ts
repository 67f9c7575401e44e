import { describe, expect, it, vi } from 'vitest';
import { MicroBatcher, MicroBatcherFull } from './micro-batcher.js';

describe('MicroBatcher', () => {
  it('gathers concurrent submissions into one batch and keeps each caller its own result', async () => {
    const calls: number[][] = [];
    const b = new MicroBatcher<number, number>(async (xs) => {
      calls.push(xs);
      return xs.map((x) => x * 10);
    }, { maxSize: 8, flushTimeoutMs: 5 });
    const out = await Promise.all([1, 2, 3].map((x) => b.submit(x)));
    expect(out).toEqual([10, 20, 30]);
    expect(calls).toEqual([[1, 2, 3]]);
  });

  it('flushes as soon as a batch is full and splits larger loads by maxSize', async () => {
    vi.useFakeTimers();
    try {
      const sizes: number[] = [];
      const b = new MicroBatcher<number, number>(async (xs) => {
        sizes.push(xs.length);
        return xs;
      }, { maxSize: 4, flushTimeoutMs: 10_000 });
      const all = b.submitMany([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      await vi.advanceTimersByTimeAsync(0);
      // Two full batches went without waiting; the ninth waits for the timeout.
      expect(sizes).toEqual([4, 4]);
      expect(b.pending).toBe(1);
      await vi.advanceTimersByTimeAsync(10_000);
      expect(await all).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(sizes).toEqual([4, 4, 1]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('waits for the flush timeout before sending a partial batch', async () => {
    vi.useFakeTimers();
    try {
      const run = vi.fn(async (xs: string[]) => xs.map((x) => x.length));
      const b = new MicroBatcher(run, { maxSize: 32, flushTimeoutMs: 20 });
      const p = b.submit('abc');
      await vi.advanceTimersByTimeAsync(19);
      expect(run).not.toHaveBeenCalled();
      await vi.advanceTimersByTimeAsync(1);
      expect(await p).toBe(3);
    } finally {
      vi.useRealTimers();
    }
  });

  it('rejects every item of a failed batch, and only that batch', async () => {
    let n = 0;
    const b = new MicroBatcher<number, number>(async (xs) => {
      if (n++ === 0) throw new Error('upstream down');
      return xs;
    }, { maxSize: 2, flushTimeoutMs: 1 });
    const first = [b.submit(1), b.submit(2)];
    await expect(first[0]).rejects.toThrow('upstream down');
    await expect(first[1]).rejects.toThrow('upstream down');
    expect(await b.submit(3)).toBe(3);
  });

  it('rejects when the batch function returns the wrong number of results', async () => {
    const b = new MicroBatcher<number, number>(async () => [1], { maxSize: 2, flushTimeoutMs: 1 });
    await expect(Promise.all([b.submit(1), b.submit(2)])).rejects.toThrow(/1 results for 2 items/);
  });

  it('limits batches in flight and sends the queued items when a slot frees', async () => {
    let active = 0;
    let peak = 0;
    const b = new MicroBatcher<number, number>(async (xs) => {
      active++;
      peak = Math.max(peak, active);
      await new Promise((r) => setTimeout(r, 5));
      active--;
      return xs;
    }, { maxSize: 2, flushTimeoutMs: 1, maxConcurrency: 1 });
    const out = await b.submitMany([1, 2, 3, 4, 5]);
    expect(out).toEqual([1, 2, 3, 4, 5]);
    expect(peak).toBe(1);
    expect(b.batches).toBe(3);
  });

  it('refuses items after close', async () => {
    const b = new MicroBatcher<number, number>(async (xs) => xs, { maxSize: 2, flushTimeoutMs: 1 });
    b.close();
    await expect(b.submit(1)).rejects.toThrow(/closed/);
  });

  it('retryApart: a batch failure one item caused is retried a group at a time, so only that group fails', async () => {
    const calls: string[][] = [];
    let active = 0;
    let mostActive = 0;
    const run = async (xs: { v: string; g: string }[]) => {
      calls.push(xs.map((x) => x.v));
      mostActive = Math.max(mostActive, ++active);
      await new Promise((r) => setTimeout(r, 1));
      active--;
      if (xs.some((x) => x.v === 'bad')) throw Object.assign(new Error('refused'), { fault: 'input' });
      return xs.map((x) => x.v.toUpperCase());
    };
    const b = new MicroBatcher(run, { maxSize: 8, flushTimeoutMs: 1, maxConcurrency: 1, retryApart: (e) => (e as { fault?: string }).fault === 'input', groupOf: (x) => x.g });
    const [a, bad, c] = await Promise.allSettled([
      b.submitMany([{ v: 'a1', g: 'A' }, { v: 'a2', g: 'A' }]),
      b.submitMany([{ v: 'ok', g: 'B' }, { v: 'bad', g: 'B' }]),
      b.submit({ v: 'c', g: 'C' }),
    ]);
    expect(a).toEqual({ status: 'fulfilled', value: ['A1', 'A2'] });
    expect(bad).toMatchObject({ status: 'rejected', reason: { message: 'refused' } });
    expect(c).toEqual({ status: 'fulfilled', value: 'C' });
    // The batch, then one call per group (a group's items together).
    expect(calls).toEqual([['a1', 'a2', 'ok', 'bad', 'c'], ['a1', 'a2'], ['ok', 'bad'], ['c']]);
    // The groups go one after another: maxConcurrency holds for the retries too.
    expect(mostActive).toBe(1);
  });

  it('retryApart leaves other failures to fail the whole batch, with no retry', async () => {
    let calls = 0;
    const b = new MicroBatcher<number, number>(async () => {
      calls++;
      throw new Error('upstream down');
    }, { maxSize: 4, flushTimeoutMs: 1, retryApart: () => false });
    const results = await Promise.allSettled([b.submit(1), b.submit(2), b.submit(3)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(calls).toBe(1);
  });

  it("drops an aborted caller's items that are still queued: they are never sent, the others are", async () => {
    const calls: number[][] = [];
    const b = new MicroBatcher<number, number>(async (xs) => (calls.push(xs), xs), { maxSize: 8, flushTimeoutMs: 20 });
    const gone = new AbortController();
    const left = b.submitMany([1, 2], gone.signal);
    const stays = b.submit(3);
    gone.abort(new Error('client went away'));
    await expect(left).rejects.toThrow('client went away');
    expect(await stays).toBe(3);
    expect(calls).toEqual([[3]]);
    await expect(b.submitMany([4], gone.signal)).rejects.toThrow('client went away');
    expect(calls).toEqual([[3]]);
  });

  it('refuses a submission that would queue more than maxQueued items, but takes any into an empty queue', async () => {
    const waiting: (() => void)[] = [];
    /** Lets the batch in flight finish, once it has started. */
    const finishBatch = async () => {
      await vi.waitFor(() => expect(waiting).toHaveLength(1));
      waiting.shift()?.();
    };
    const b = new MicroBatcher<number, number>(async (xs) => (await new Promise<void>((r) => waiting.push(r)), xs), { maxSize: 2, flushTimeoutMs: 1, maxConcurrency: 1, maxQueued: 3 });
    const inFlight = b.submitMany([1, 2]); // a full batch, sent at once; the one slot is taken
    const queued = b.submitMany([3, 4, 5]);
    expect(b.pending).toBe(3);
    await expect(b.submit(6)).rejects.toBeInstanceOf(MicroBatcherFull);
    for (let i = 0; i < 3; i++) await finishBatch();
    expect(await inFlight).toEqual([1, 2]);
    expect(await queued).toEqual([3, 4, 5]);
    const big = b.submitMany([7, 8, 9, 10, 11]);
    for (let i = 0; i < 3; i++) await finishBatch();
    expect(await big).toEqual([7, 8, 9, 10, 11]);
  });

  it('says when it is idle: after its last batch, and once aborted items leave it empty', async () => {
    let idle = 0;
    const b = new MicroBatcher<number, number>(async (xs) => xs, { maxSize: 8, flushTimeoutMs: 10, onIdle: () => idle++ });
    expect(await b.submitMany([1, 2])).toEqual([1, 2]);
    expect([idle, b.idle]).toEqual([1, true]);
    const gone = new AbortController();
    const dropped = b.submit(3, gone.signal);
    expect(b.idle).toBe(false);
    gone.abort(new Error('gone'));
    await expect(dropped).rejects.toThrow('gone');
    expect([idle, b.idle]).toEqual([2, true]);
  });
});
