import { describe, expect, it } from 'vitest';
import { breakerSchema } from '../config/schema.js';
import { CircuitBreaker, type BreakerTransition } from './breaker.js';

function setup(overrides: Partial<ReturnType<typeof breakerSchema.parse>> = {}) {
  let now = 1_000_000;
  const transitions: BreakerTransition[] = [];
  const cfg = breakerSchema.parse({ min_requests: 10, failure_rate_threshold: 0.5, consecutive_failures: 5, open_ms: 1_000, window_ms: 10_000, ...overrides });
  const b = new CircuitBreaker('p/m', cfg, (t) => transitions.push(t), () => now);
  return { b, transitions, advance: (ms: number) => (now += ms) };
}

describe('CircuitBreaker', () => {
  it('opens after the configured number of consecutive failures', () => {
    const { b, transitions } = setup();
    for (let i = 0; i < 4; i++) b.record(false, b.acquire()!);
    expect(b.state).toBe('closed');
    b.record(false, b.acquire()!);
    expect(b.state).toBe('open');
    expect(b.acquire()).toBeUndefined();
    expect(transitions).toEqual([expect.objectContaining({ from: 'closed', to: 'open', source: 'local', reason: '5 consecutive failures' })]);
  });

  it('does not count a retried request\'s repeat failures as consecutive (one bad request is not a dead deployment)', () => {
    const { b } = setup({ min_requests: 1000 });
    for (let i = 0; i < 3; i++) {
      b.record(false, b.acquire()!); // a request fails…
      b.record(false, b.acquire()!, true); // …and fails again on each retry
      b.record(false, b.acquire()!, true);
      b.record(true, b.acquire()!); // others succeed in between
    }
    expect(b.state).toBe('closed');
    for (let i = 0; i < 5; i++) b.record(false, b.acquire()!); // five different requests in a row
    expect(b.state).toBe('open');
  });

  it('opens on the failure rate over the window only once min_requests is reached', () => {
    const { b } = setup({ consecutive_failures: 100 });
    // 4 failures of 8: 50% but under min_requests
    for (let i = 0; i < 4; i++) {
      b.record(true, 'normal');
      b.record(false, 'normal');
    }
    expect(b.state).toBe('closed');
    b.record(true, 'normal');
    b.record(false, 'normal'); // 5 of 10
    expect(b.state).toBe('open');
  });

  it('forgets failures older than the window', () => {
    const { b, advance } = setup({ consecutive_failures: 100, window_ms: 10_000 });
    for (let i = 0; i < 9; i++) b.record(false, 'normal');
    advance(11_000);
    for (let i = 0; i < 9; i++) b.record(true, 'normal');
    b.record(false, 'normal');
    expect(b.errorRate().requests).toBe(10);
    expect(b.state).toBe('closed');
  });

  it('goes half-open after open_ms, lets one probe through, and closes when it succeeds', () => {
    const { b, advance, transitions } = setup();
    for (let i = 0; i < 5; i++) b.record(false, 'normal');
    advance(999);
    expect(b.canPass()).toBe(false);
    advance(1);
    expect(b.state).toBe('half_open');
    const probe = b.acquire();
    expect(probe).toEqual({ round: 1 });
    expect(b.acquire()).toBeUndefined(); // one probe at a time
    b.record(true, probe!);
    expect(b.state).toBe('closed');
    expect(transitions.map((t) => t.to)).toEqual(['open', 'half_open', 'closed']);
  });

  it('re-opens when a half-open probe fails', () => {
    const { b, advance } = setup();
    for (let i = 0; i < 5; i++) b.record(false, 'normal');
    advance(1_000);
    const probe = b.acquire()!;
    b.record(false, probe);
    expect(b.state).toBe('open');
    advance(500);
    expect(b.canPass()).toBe(false);
  });

  it('while half-open, only probes decide: calls let through before it opened change nothing', () => {
    const { b, advance } = setup({ open_ms: 15_000 });
    // Calls taken while closed hang through the outage (attempt timeout 30 s > open_ms)…
    const hung = Array.from({ length: 5 }, () => b.acquire()!);
    expect(hung.every((t) => t === 'normal')).toBe(true);
    for (let i = 0; i < 5; i++) b.record(false, 'normal');
    expect(b.state).toBe('open');
    advance(15_000);
    expect(b.state).toBe('half_open');
    const probe = b.acquire()!;
    expect(probe).toEqual({ round: 1 });
    // …and time out while the probe is out: the breaker stays half-open, the probe slot stays taken.
    for (const t of hung) b.record(false, t);
    expect(b.state).toBe('half_open');
    expect(b.acquire()).toBeUndefined();
    b.record(true, probe);
    expect(b.state).toBe('closed');
  });

  it('a remote open (shared breaker) is not re-opened here by local calls that hung through it', () => {
    const { b, advance, transitions } = setup({ open_ms: 15_000 });
    const hung = [b.acquire()!, b.acquire()!];
    b.forceOpen(1_000_000 + 15_000, 'shared: 10 consecutive failures');
    advance(15_000);
    expect(b.state).toBe('half_open');
    const probe = b.acquire()!;
    for (const t of hung) b.record(false, t);
    b.record(true, probe);
    expect(b.state).toBe('closed');
    // No local open was published for the others to follow.
    expect(transitions.filter((t) => t.to === 'open' && t.source === 'local')).toEqual([]);
  });

  it("counts a probe only in its own half-open round: a late one neither takes the next round's slots nor decides it", () => {
    const { b, advance, transitions } = setup({ half_open_probes: 2, open_ms: 1_000 });
    for (let i = 0; i < 5; i++) b.record(false, 'normal');
    advance(1_000);
    const p1 = b.acquire()!;
    const p2 = b.acquire()!; // hangs past its round
    b.record(false, p1); // reopens
    expect(b.state).toBe('open');
    advance(1_000);
    const p3 = b.acquire()!;
    const p4 = b.acquire()!;
    expect(b.acquire()).toBeUndefined();
    // p2 ends now: it frees no slot of this round (a fifth probe would go through) and decides nothing.
    b.record(true, p2);
    expect(b.acquire()).toBeUndefined();
    expect(b.state).toBe('half_open');
    b.record(true, p3);
    b.record(true, p4);
    expect(b.state).toBe('closed');
    expect(transitions.map((t) => t.to)).toEqual(['open', 'half_open', 'open', 'half_open', 'closed']);
  });

  it("a probe out when another replica reopened the breaker does not close it for everyone when it succeeds", () => {
    const { b, advance } = setup({ open_ms: 1_000 });
    for (let i = 0; i < 5; i++) b.record(false, 'normal');
    advance(1_000);
    const late = b.acquire()!;
    b.forceOpen(1_000_000 + 3_000, 'shared: a probe failed elsewhere');
    advance(2_000);
    expect(b.state).toBe('half_open');
    b.record(true, late);
    expect(b.state).toBe('half_open');
    expect(b.acquire()).toEqual({ round: 2 });
  });

  it('frees a probe slot when the probe is cancelled', () => {
    const { b, advance } = setup();
    for (let i = 0; i < 5; i++) b.record(false, 'normal');
    advance(1_000);
    const probe = b.acquire()!;
    b.release(probe);
    expect(b.acquire()).toEqual({ round: 1 });
  });

  it('obeys a remote open until its time and a remote close', () => {
    const { b, advance, transitions } = setup();
    b.forceOpen(1_000_000 + 5_000, 'shared');
    expect(b.canPass()).toBe(false);
    expect(transitions[0]).toMatchObject({ to: 'open', source: 'remote' });
    advance(5_000);
    expect(b.state).toBe('half_open');
    b.forceClose('shared');
    expect(b.state).toBe('closed');
  });
});
