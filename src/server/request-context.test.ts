// The request context's cancellation signal: it fires when the client goes away before its answer is
// complete — also when the client was gone before the context was made.
import { EventEmitter } from 'node:events';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../telemetry/logger.js';
import { createRequestContext } from './request-context.js';

const log = createLogger('silent');

function exchange(state: { destroyed: boolean; writableEnded: boolean }, headers: Record<string, string> = {}) {
  const raw = Object.assign(new EventEmitter(), state);
  const request = { id: 'req-1', headers, ip: '127.0.0.1' } as unknown as FastifyRequest;
  return { request, reply: { raw } as unknown as FastifyReply, raw };
}

describe('the request signal', () => {
  it('fires when the client disconnects before the answer is complete, not after a complete answer', () => {
    const open = exchange({ destroyed: false, writableEnded: false });
    const ctx = createRequestContext(open.request, open.reply, 'chat', log);
    expect(ctx.signal.aborted).toBe(false);
    open.raw.destroyed = true;
    open.raw.emit('close');
    expect(ctx.signal.aborted).toBe(true);

    const done = exchange({ destroyed: false, writableEnded: false });
    const finished = createRequestContext(done.request, done.reply, 'chat', log);
    done.raw.writableEnded = true;
    done.raw.emit('close');
    expect(finished.signal.aborted).toBe(false);
  });

  it('has fired already when the client left before the context was made (its close event is past)', () => {
    const gone = exchange({ destroyed: true, writableEnded: false });
    expect(createRequestContext(gone.request, gone.reply, 'chat', log).signal.aborted).toBe(true);
  });
});

describe('gateway options', () => {
  it('takes the aggregation from the x-inferenceflow-aggregation header, a body field winning over it', () => {
    const open = { destroyed: false, writableEnded: false };
    const fromHeader = exchange(open, { 'x-inferenceflow-aggregation': ' Best_Of_N ' });
    expect(createRequestContext(fromHeader.request, fromHeader.reply, 'chat', log).options.aggregation).toBe('best_of_n');
    const both = exchange(open, { 'x-inferenceflow-aggregation': 'first' });
    expect(createRequestContext(both.request, both.reply, 'inference', log, { aggregation: 'adaptive' }).options.aggregation).toBe('adaptive');
    const none = exchange(open);
    expect(createRequestContext(none.request, none.reply, 'chat', log).options.aggregation).toBeUndefined();
  });
});
