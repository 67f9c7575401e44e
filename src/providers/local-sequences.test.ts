import { describe, expect, it } from 'vitest';
import { SequencePool } from './local-sequences.js';

function pool(capacity: number): { pool: SequencePool<string>; made: string[] } {
  const made: string[] = [];
  return { pool: new SequencePool(capacity, () => { const s = `s${made.length}`; made.push(s); return s; }), made };
}

const live = () => new AbortController().signal;

describe('SequencePool', () => {
  it('creates sequences up to its capacity, then reuses released ones', async () => {
    const { pool: p, made } = pool(2);
    const a = await p.acquire(live());
    const b = await p.acquire(live());
    expect(new Set([a, b]).size).toBe(2);
    p.release(a);
    expect(await p.acquire(live())).toBe(a);
    expect(made).toHaveLength(2);
    expect(p.stats()).toEqual({ capacity: 2, created: 2, busy: 2, waiting: 0 });
  });

  it('hands a released sequence to the longest waiter first', async () => {
    const { pool: p } = pool(1);
    const held = await p.acquire(live());
    const order: string[] = [];
    const first = p.acquire(live()).then((s) => { order.push('first'); return s; });
    const second = p.acquire(live()).then((s) => { order.push('second'); return s; });
    expect(p.stats().waiting).toBe(2);
    p.release(held);
    p.release(await first);
    await second;
    expect(order).toEqual(['first', 'second']);
  });

  it('drops a waiter whose signal aborts, with the signal reason', async () => {
    const { pool: p } = pool(1);
    const held = await p.acquire(live());
    const controller = new AbortController();
    const waiting = p.acquire(controller.signal);
    controller.abort(new Error('client left'));
    await expect(waiting).rejects.toThrow('client left');
    expect(p.stats().waiting).toBe(0);
    p.release(held);
    expect(p.stats().busy).toBe(0);
  });

  it('prefers the idle sequence the affinity scores highest', async () => {
    const { pool: p } = pool(3);
    const seqs = await Promise.all([p.acquire(live()), p.acquire(live()), p.acquire(live())]);
    for (const s of seqs) p.release(s);
    expect(await p.acquire(live(), (s) => (s === 's1' ? 10 : 0))).toBe('s1');
  });

  it('rejects waiters and later acquires once closed', async () => {
    const { pool: p } = pool(1);
    await p.acquire(live());
    const waiting = p.acquire(live());
    p.close(new Error('closed'));
    await expect(waiting).rejects.toThrow('closed');
    await expect(p.acquire(live())).rejects.toThrow('closed');
  });
});
