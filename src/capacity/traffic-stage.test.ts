// What the gateway feeds the traffic recorder: every request through the chat stages (answered,
// streamed, refused or failed) and the router's admission-queue depth.
import { describe, expect, it } from 'vitest';
import type { ChatChunk, ChatResult } from '../canonical/chat.js';
import type { RequestContext } from '../gateway/context.js';
import type { ChatHandler } from '../gateway/pipeline.js';
import { RoutingEvents } from '../routing/events.js';
import { GatewayError } from '../server/errors.js';
import { sampleQueueDepth, trafficRecorderStage } from './traffic-stage.js';
import { TrafficRecorder } from './traffic.js';

const ctx = {} as RequestContext;
const req = { model: 'm', messages: [{ role: 'user', content: 'hi' }] } as never;

function recorder() {
  const calls: number[] = [];
  return { recordRequest: (tokens = 0) => void calls.push(tokens), calls };
}

describe('trafficRecorderStage', () => {
  it('counts an answer with its tokens', async () => {
    const r = recorder();
    const next: ChatHandler = async () => ({ kind: 'result', result: { usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } } as ChatResult });
    await trafficRecorderStage(r)(ctx, req, next);
    expect(r.calls).toEqual([7]);
  });

  it('counts a request turned away for want of capacity, or failed, as demand, with no tokens, and rethrows', async () => {
    const r = recorder();
    const full = new GatewayError('queue_full');
    await expect(trafficRecorderStage(r)(ctx, req, async () => Promise.reject(full))).rejects.toBe(full);
    await expect(trafficRecorderStage(r)(ctx, req, async () => Promise.reject(new GatewayError('no_healthy_deployment')))).rejects.toThrow();
    await expect(trafficRecorderStage(r)(ctx, req, async () => Promise.reject(new Error('upstream broke')))).rejects.toThrow('upstream broke');
    expect(r.calls).toEqual([0, 0, 0]);
  });

  it('does not count a refusal by policy or of the request: a tenant retrying its 429s scales nothing', async () => {
    const r = recorder();
    for (const code of ['rate_limit_exceeded', 'budget_exceeded', 'invalid_request', 'invalid_api_key', 'request_too_large', 'model_not_found'] as const) {
      const refused = new GatewayError(code);
      await expect(trafficRecorderStage(r)(ctx, req, async () => Promise.reject(refused))).rejects.toBe(refused);
    }
    expect(r.calls).toEqual([]);
  });

  it('counts a stream when it ends, with the usage chunk tokens', async () => {
    const r = recorder();
    async function* chunks(): AsyncIterable<ChatChunk> {
      yield { choices: [] } as unknown as ChatChunk;
      yield { choices: [], usage: { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 } } as unknown as ChatChunk;
    }
    const out = await trafficRecorderStage(r)(ctx, req, async () => ({ kind: 'stream', stream: chunks() }));
    expect(r.calls).toEqual([]);
    if (out.kind !== 'stream') throw new Error('expected a stream');
    for await (const _ of out.stream) void _;
    expect(r.calls).toEqual([5]);
  });
});

describe('sampleQueueDepth', () => {
  it("records the router's total queue depth at every change; the bucket keeps the deepest", () => {
    const now = 300_000 * 5_000 + 60_000;
    const rec = new TrafficRecorder({ bucketMs: 300_000, historyBuckets: 12, now: () => now });
    const events = new RoutingEvents();
    let depth = 0;
    const stop = sampleQueueDepth(rec, { queueDepth: () => depth, events });
    for (const d of [1, 3, 2]) {
      depth = d;
      events.emit('queue_depth', { group: 'g', depth: d });
    }
    expect(rec.current().queueDepth).toBe(3);
    stop();
    depth = 9;
    events.emit('queue_depth', { group: 'g', depth: 9 });
    expect(rec.current().queueDepth).toBe(3);
    expect(events.listenerCount('queue_depth')).toBe(0);
  });
});
