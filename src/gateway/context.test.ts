import pino from 'pino';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Cancellation } from '../providers/cancel.js';
import { ANONYMOUS, LazyLogContext, defaultRequestOptions, deriveContext, newFacts, type RequestContext } from './context.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

function context(log: pino.Logger, id = 'req-1'): LazyLogContext {
  return new LazyLogContext(
    { id, startedAt: 1, endpoint: 'chat', tenant: { id: 'acme', kind: 'token' }, signal: new Cancellation(), options: defaultRequestOptions(), facts: newFacts(), headers: {} },
    log,
  );
}

describe('LazyLogContext', () => {
  it('logs with the request id and tenant bound, making the child logger once', async () => {
    const { log, lines } = capture();
    const ctx = context(log);
    expect(ctx.log).toBe(ctx.log);
    ctx.log.warn({ extra: 1 }, 'hello');
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ reqId: 'req-1', tenant: 'acme', extra: 1, msg: 'hello' });
  });

  it('derives a copy with a new signal or facts that keeps every other field and still logs', async () => {
    const { log, lines } = capture();
    const ctx = context(log);
    const signal = new Cancellation();
    const facts = newFacts();
    const derived = deriveContext(ctx, { signal, facts });
    expect(derived.signal).toBe(signal);
    expect(derived.facts).toBe(facts);
    expect(ctx.facts).not.toBe(facts);
    for (const key of ['id', 'startedAt', 'endpoint', 'tenant', 'options', 'headers', 'settlements'] as const) expect(derived[key]).toBe(ctx[key]);
    derived.log.info('from the copy');
    await new Promise((r) => setImmediate(r));
    expect(lines[0]).toMatchObject({ reqId: 'req-1', tenant: 'acme', msg: 'from the copy' });
    // A spread would have lost the getter: this is why deriveContext exists.
    expect(({ ...ctx } as Partial<RequestContext>).log).toBeUndefined();
  });

  it('derives plain-object contexts by copying them', () => {
    const { log } = capture();
    const plain: RequestContext = { id: 'p', startedAt: 0, endpoint: 'batch', tenant: ANONYMOUS, signal: new Cancellation(), log, options: defaultRequestOptions(), facts: newFacts(), headers: {} };
    const signal = new Cancellation();
    const derived = deriveContext(plain, { signal });
    expect(derived).toEqual({ ...plain, signal });
    expect(derived.log).toBe(log);
  });
});

describe('Settlements', () => {
  it('owes nothing until work is tracked, then waits for it and for work tracked meanwhile, shared by derived contexts', async () => {
    const { log } = capture();
    const ctx = context(log);
    expect(ctx.settlements.done()).toBeUndefined();
    const order: string[] = [];
    let first!: () => void;
    ctx.settlements.track(new Promise<void>((r) => (first = r)));
    const done = ctx.settlements.done()!.then(() => order.push('done'));
    // A stage working on a derived context (a scaling pass, say) adds to the same settlements.
    let second!: () => void;
    deriveContext(ctx, { facts: newFacts() }).settlements!.track(new Promise<void>((r) => (second = r)));
    first();
    await new Promise((r) => setTimeout(r, 5));
    order.push('first settled');
    second();
    await done;
    expect(order).toEqual(['first settled', 'done']);
    expect(ctx.settlements.done()).toBeUndefined();
    // Failed work counts as settled.
    ctx.settlements.track(Promise.reject(new Error('x')));
    await expect(ctx.settlements.done()).resolves.toBeUndefined();
  });
});
