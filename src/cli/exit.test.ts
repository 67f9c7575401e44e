import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { exitAfterFlush } from './exit.js';

describe('exitAfterFlush', () => {
  it('exits once the lines are written, and after a failed write leaves nothing for the exit hook to retry', () => {
    const state: { syncFlushes: number; fail?: Error } = { syncFlushes: 0 };
    const stream = Object.assign(new Writable({ write: (_c, _e, cb) => cb() }), {
      flush: (cb: (err?: Error) => void) => cb(state.fail),
      flushSync: () => void state.syncFlushes++,
    });
    const log = pino(stream);
    const exits: number[] = [];
    exitAfterFlush(log, 0, (c) => exits.push(c));
    stream.flushSync(); // what pino's exit hook calls
    expect([exits, state.syncFlushes]).toEqual([[0], 1]);
    // A write that failed (a full disk): the exit hook's flushSync would retry it for ever.
    state.fail = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
    exitAfterFlush(log, 1, (c) => exits.push(c));
    stream.flushSync();
    expect([exits, state.syncFlushes]).toEqual([[0, 1], 1]);
  });
});
