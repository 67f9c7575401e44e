import { describe, expect, it } from 'vitest';
import { turnCork } from './turn-cork.js';

function counting() {
  const calls: string[] = [];
  return { calls, stream: { cork: () => calls.push('cork'), uncork: () => calls.push('uncork') } };
}

const nextTurn = () => new Promise((r) => setImmediate(r));

describe('turnCork', () => {
  it('corks once per turn and uncorks when the turn ends', async () => {
    const { calls, stream } = counting();
    const turn = turnCork(stream);
    turn.hold();
    turn.hold();
    expect(calls).toEqual(['cork']);
    await nextTurn();
    expect(calls).toEqual(['cork', 'uncork']);
    turn.hold();
    await nextTurn();
    expect(calls).toEqual(['cork', 'uncork', 'cork', 'uncork']);
  });

  it('an early release (backpressure) uncorks at once, and the end of the turn does not uncork again', async () => {
    const { calls, stream } = counting();
    const turn = turnCork(stream);
    turn.hold();
    turn.release();
    turn.release();
    await nextTurn();
    expect(calls).toEqual(['cork', 'uncork']);
  });
});
