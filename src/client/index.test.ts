// The SDK's stream reading: an error event that ends a started stream keeps what the gateway said.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { InferenceFlowError, OvershootInferenceWorker } from './index.js';

const sse = (events: unknown[]) =>
  new Response(events.map((e) => `data: ${typeof e === 'string' ? e : JSON.stringify(e)}\n\n`).join(''), {
    status: 200,
    headers: { 'content-type': 'text/event-stream', 'x-request-id': 'req-mid' },
  });
const piece = (text: string) => ({ choices: [{ index: 0, delta: { content: text } }] });

async function failureOf(code: string, type: string): Promise<InferenceFlowError> {
  const worker = new OvershootInferenceWorker({ endpoint: 'http://gateway.test', fetch: async () => sse([piece('Once '), { error: { message: 'it failed', type, code, param: null } }]) });
  try {
    for await (const token of worker.inferStream({ prompt: 'story' })) expect(token).toBe('Once ');
  } catch (err) {
    return err as InferenceFlowError;
  }
  throw new Error('the stream did not fail');
}

describe('inferStream: an error event after the stream started', () => {
  it('carries the status the code has (docs/errors.md), so retryable is right, and the request id', async () => {
    const timeout = await failureOf('upstream_timeout', 'upstream_error');
    expect(timeout).toBeInstanceOf(InferenceFlowError);
    expect(timeout).toMatchObject({ status: 504, code: 'upstream_timeout', type: 'upstream_error', requestId: 'req-mid' });
    expect(timeout.retryable).toBe(true);

    const policy = await failureOf('content_policy_violation', 'invalid_request_error');
    expect(policy).toMatchObject({ status: 400, code: 'content_policy_violation' });
    expect(policy.retryable).toBe(false);

    // A code the client does not know keeps the old reading: an upstream failure.
    expect(await failureOf('something_new', 'upstream_error')).toMatchObject({ status: 502, code: 'something_new' });
  });
});

describe("the gateway's x-should-retry", () => {
  const answering = (status: number, code: string, hint?: string) => {
    let calls = 0;
    const worker = new OvershootInferenceWorker({
      endpoint: 'http://gateway.test',
      initialBackoffMs: 1,
      fetch: async () => {
        calls++;
        return new Response(JSON.stringify({ error: { message: 'no', code, type: 'upstream_error', param: null } }), { status, headers: { 'content-type': 'application/json', ...(hint ? { 'x-should-retry': hint } : {}) } });
      },
    });
    return { worker, calls: () => calls };
  };

  it('false: a failure no retry cures (no quota or credentials upstream) is thrown at once, not retryable', async () => {
    for (const [status, code] of [
      [429, 'upstream_quota_exceeded'],
      [502, 'upstream_auth_failed'],
    ] as const) {
      const { worker, calls } = answering(status, code, 'false');
      const err = (await worker.infer({ prompt: 'x' }).catch((e: unknown) => e)) as InferenceFlowError;
      expect(err).toMatchObject({ status, code, retryable: false });
      expect(calls()).toBe(1);
      // batchInfer, which retries a 429, does not retry this one either.
      const batch = answering(status, code, 'false');
      await batch.worker.batchInfer([{ prompt: 'x' }]).catch(() => undefined);
      expect(batch.calls()).toBe(1);
    }
    // Without the header a 429 is still retried.
    const limited = answering(429, 'rate_limit_exceeded');
    await expect(limited.worker.infer({ prompt: 'x' })).rejects.toMatchObject({ retryable: true });
    expect(limited.calls()).toBe(4);
  });

  it('true: retried even where the status alone would not be', async () => {
    const { worker, calls } = answering(409, 'conflict', 'true');
    await expect(worker.infer({ prompt: 'x' })).rejects.toMatchObject({ status: 409, retryable: true });
    expect(calls()).toBe(4);
  });
});

describe("the gateway's Retry-After", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  const limited = (retryAfter: string, timeoutMs?: number) => {
    let calls = 0;
    const worker = new OvershootInferenceWorker({
      endpoint: 'http://gateway.test',
      maxRetries: 1,
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      fetch: async () => {
        calls++;
        if (calls > 1) return new Response(JSON.stringify({ choices: [{ message: { content: 'ok' }, finish_reason: 'stop' }] }), { status: 200 });
        return new Response(JSON.stringify({ error: { message: 'slow down', code: 'rate_limit_exceeded' } }), { status: 429, headers: { 'retry-after': retryAfter } });
      },
    });
    return { worker, calls: () => calls };
  };

  it('is waited out in full past 30 s, when the call may last that long', async () => {
    vi.useFakeTimers();
    const { worker, calls } = limited('45');
    const answer = worker.infer({ prompt: 'x' });
    await vi.advanceTimersByTimeAsync(30_000);
    // Not retried before the gateway said it would take the call.
    expect(calls()).toBe(1);
    await vi.advanceTimersByTimeAsync(15_000);
    expect((await answer).text).toBe('ok');
    expect(calls()).toBe(2);
  });

  it("ends the retries at once when it is longer than the call's timeout", async () => {
    const { worker, calls } = limited('3600', 60_000);
    await expect(worker.infer({ prompt: 'x' })).rejects.toMatchObject({ status: 429, code: 'rate_limit_exceeded' });
    expect(calls()).toBe(1);
  });
});

describe('batchSize', () => {
  it('refuses a batch size that is not a number of at least 1 instead of sending empty batches for ever', () => {
    for (const batchSize of [Number.NaN, 0, -3, Number.POSITIVE_INFINITY]) {
      expect(() => new OvershootInferenceWorker({ endpoint: 'http://gateway.test', batchSize, fetch: async () => new Response('{}') })).toThrow(RangeError);
    }
    expect(() => new OvershootInferenceWorker({ endpoint: 'http://gateway.test', batchSize: 2.7, fetch: async () => new Response('{}') })).not.toThrow();
  });
});
