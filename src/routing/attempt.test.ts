// One attempt and the hedged race, as the metrics see them: an attempt the gateway cancels (a lost
// hedge race, the client gone mid-stream) is reported as a cancellation — never a provider error —
// while a silent stream is still an error, and the breaker hooks are called as before.
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { samples } from '../../test/helpers/serve-cluster.js';
import type { ChatChunk, ChatRequest, ChatResult } from '../canonical/chat.js';
import { monitoringSchema } from '../config/schema.js';
import { ANONYMOUS, defaultRequestOptions, newFacts, type RequestContext } from '../gateway/context.js';
import type { AttemptEnd } from '../gateway/execute.js';
import { Cancellation, type CancelSignal } from '../providers/cancel.js';
import { UpstreamError } from '../providers/errors.js';
import type { CallOptions, ProviderAdapter } from '../providers/types.js';
import { Telemetry } from '../telemetry/telemetry.js';
import { runAttempt, runHedged, type AttemptHooks, type AttemptSpec } from './attempt.js';
import type { Deployment } from './catalog.js';

const log = pino({ level: 'silent' });
const PRICE = { input: 1, output: 1 };

function result(model: string): ChatResult {
  return {
    id: 'x',
    object: 'chat.completion',
    created: 1,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: `from ${model}` }, finish_reason: 'stop', logprobs: null }],
    usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
  };
}

function chunk(content: string): ChatChunk {
  return { id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: null }] };
}

/** Rejects like an HTTP adapter does when its signal is aborted. */
function untilAborted(signal: CancelSignal, provider: string): Promise<never> {
  return new Promise((_resolve, reject) => {
    const fail = () => reject(new UpstreamError({ provider, kind: 'aborted', message: 'aborted' }));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail);
  });
}

type Mode = 'answer' | 'hang' | 'stream-then-hang' | 'stream' | 'silent-stream';

/** A provider whose every call behaves as its mode says. */
function provider(name: string, mode: Mode): ProviderAdapter {
  return {
    name,
    type: 'simulator',
    async chat(req: ChatRequest, opts: CallOptions) {
      if (mode === 'hang') return untilAborted(opts.signal, name);
      return result(req.model);
    },
    async streamChat(_req: ChatRequest, opts: CallOptions) {
      return (async function* () {
        yield chunk('first ');
        if (mode === 'stream') {
          yield chunk('second');
          return;
        }
        if (mode === 'silent-stream') await new Promise(() => undefined);
        await untilAborted(opts.signal, name);
      })();
    },
    async embed(): Promise<never> {
      throw new Error('no');
    },
    async ready() {
      return true;
    },
    async close() {},
  } as unknown as ProviderAdapter;
}

function deployment(name: string, mode: Mode): Deployment {
  return { id: `${name}/m`, group: 'g', providerName: name, provider: provider(name, mode), model: 'm', weight: 1, priority: 0, price: PRICE, timeoutMs: 60_000 };
}

const telemetries: Telemetry[] = [];
afterEach(async () => {
  for (const t of telemetries.splice(0)) await t.close();
});

/** Hooks that feed a real Telemetry (as the router does) and record what the breaker side was told. */
function setup(streamIdleTimeoutMs = 60_000) {
  const telemetry = Telemetry.create(monitoringSchema.parse({ metrics: { process_metrics: false }, tracing: { enabled: false } }), { version: 'test' });
  telemetries.push(telemetry);
  const seen = { settled: [] as [string, boolean][], cancelled: [] as string[], streamFailed: [] as string[], ended: [] as [string, AttemptEnd][] };
  let onEnded: () => void = () => undefined;
  const hooks: AttemptHooks = {
    streamIdleTimeoutMs,
    settled: (spec, ok) => seen.settled.push([spec.d.providerName, ok]),
    cancelled: (spec) => seen.cancelled.push(spec.d.providerName),
    release: () => undefined,
    streamFailed: (spec) => seen.streamFailed.push(spec.d.providerName),
    ended: (spec, end) => {
      seen.ended.push([spec.d.providerName, end]);
      telemetry.attemptEnded(spec.ctx, spec.d, end);
      onEnded();
    },
  };
  /** Resolves once `n` attempts have reported their end. */
  const ended = (n: number) =>
    new Promise<void>((resolve) => {
      onEnded = () => seen.ended.length >= n && resolve();
      onEnded();
    });
  const request = new Cancellation();
  const ctx = { id: 'r', startedAt: 0, endpoint: 'chat', tenant: ANONYMOUS, signal: request, log, options: defaultRequestOptions(), facts: newFacts(), headers: {} } as RequestContext;
  const spec = (d: Deployment, stream = false): AttemptSpec => ({ ctx, req: { model: 'g', stream, messages: [{ role: 'user', content: 'hi' }] }, d, signal: request, timeoutMs: 60_000, hedge: false, token: 'normal' });
  return { telemetry, hooks, seen, ended, request, spec };
}

describe('cancelled attempts are not provider errors', () => {
  it('a hedge race: the loser is counted as cancelled, the providers show no errors and error rate 0', async () => {
    const { telemetry, hooks, seen, ended, spec } = setup();
    const slow = deployment('slow', 'hang');
    const fast = deployment('fast', 'answer');
    const won = await runHedged(spec(slow), hooks, { delayMs: 0, pick: () => ({ d: fast, token: 'normal' }), timeoutFor: () => 60_000, onHedge: () => undefined, onWinner: () => undefined });
    expect(won.d).toBe(fast);
    await ended(2);
    const text = await telemetry.metrics.render();
    expect(samples(text, 'inference_provider_errors_total')).toEqual([]);
    expect(text).toContain('inference_provider_cancelled_total{provider="slow"} 1');
    expect(text).not.toContain('outcome="error"');
    expect(text).not.toMatch(/inference_provider_latency_ms_count\{provider="slow"/);
    const providers = telemetry.summary().providers;
    expect(providers.find((p) => p.provider === 'slow')).toMatchObject({ calls: 1, errors: 0, cancelled: 1, error_rate: 0 });
    expect(providers.find((p) => p.provider === 'slow')?.latency_ms.count).toBe(0);
    expect(providers.find((p) => p.provider === 'fast')).toMatchObject({ calls: 1, errors: 0, cancelled: 0, error_rate: 0 });
    // The breaker side is told what it was before: a success for the winner, a cancellation (no verdict) for the loser.
    expect(seen.settled).toEqual([['fast', true]]);
    expect(seen.cancelled).toEqual(['slow']);
  });

  it('a stream whose client leaves between chunks is a cancellation, not a success and not a failure', async () => {
    const { telemetry, hooks, seen, ended, request, spec } = setup();
    const d = deployment('p', 'stream-then-hang');
    const attempt = await runAttempt(spec(d, true), hooks);
    if (attempt.outcome.kind !== 'stream') throw new Error('expected a stream');
    const it = attempt.outcome.stream[Symbol.asyncIterator]();
    await it.next();
    request.abort();
    await it.return?.();
    await ended(1);
    const [, end] = seen.ended[0] as [string, AttemptEnd];
    expect(end.ok).toBe(false);
    expect(end.error).toMatchObject({ kind: 'aborted' });
    const text = await telemetry.metrics.render();
    expect(text).toContain('inference_provider_cancelled_total{provider="p"} 1');
    expect(samples(text, 'inference_provider_latency_ms_count')).toEqual([]);
    // Time to first token was measured before the client left, and still counts.
    expect(text).toContain('inference_time_to_first_token_ms_count{provider="p",model="m"} 1');
    expect(seen.streamFailed).toEqual([]);
  });

  it('a stream whose client leaves while a chunk is awaited is a cancellation', async () => {
    const { telemetry, hooks, ended, request, spec } = setup();
    const attempt = await runAttempt(spec(deployment('p', 'stream-then-hang'), true), hooks);
    if (attempt.outcome.kind !== 'stream') throw new Error('expected a stream');
    const it = attempt.outcome.stream[Symbol.asyncIterator]();
    await it.next();
    const pending = it.next();
    request.abort();
    await expect(pending).rejects.toMatchObject({ kind: 'aborted' });
    await ended(1);
    expect(telemetry.summary().providers[0]).toMatchObject({ calls: 1, errors: 0, cancelled: 1, error_rate: 0 });
  });

  it('a streamed hedge loser that had started is cancelled when the winner is kept', async () => {
    const { telemetry, hooks, seen, ended, spec } = setup();
    const attempt = await runAttempt(spec(deployment('loser', 'stream-then-hang'), true), hooks);
    attempt.dispose();
    await ended(1);
    expect(seen.ended[0]?.[1].error).toMatchObject({ kind: 'aborted' });
    expect(await telemetry.metrics.render()).toContain('inference_provider_cancelled_total{provider="loser"} 1');
  });

  it('a stream read to its end is ok even if the client goes away afterwards', async () => {
    const { telemetry, hooks, ended, request, spec } = setup();
    const attempt = await runAttempt(spec(deployment('p', 'stream'), true), hooks);
    if (attempt.outcome.kind !== 'stream') throw new Error('expected a stream');
    for await (const _ of attempt.outcome.stream) void _;
    request.abort();
    await ended(1);
    const text = await telemetry.metrics.render();
    expect(text).toContain('inference_provider_latency_ms_count{provider="p",model="m",outcome="ok"} 1');
    expect(samples(text, 'inference_provider_cancelled_total')).toEqual([]);
  });

  it('a stream that goes silent is still an error (timeout), and counts against the deployment', async () => {
    const { telemetry, hooks, seen, ended, spec } = setup(5);
    const attempt = await runAttempt(spec(deployment('p', 'silent-stream'), true), hooks);
    if (attempt.outcome.kind !== 'stream') throw new Error('expected a stream');
    const it = attempt.outcome.stream[Symbol.asyncIterator]();
    await it.next();
    await expect(it.next()).rejects.toMatchObject({ kind: 'timeout' });
    await ended(1);
    const text = await telemetry.metrics.render();
    expect(text).toContain('inference_provider_errors_total{provider="p",kind="timeout"} 1');
    expect(samples(text, 'inference_provider_cancelled_total')).toEqual([]);
    expect(seen.streamFailed).toEqual(['p']);
  });
});
