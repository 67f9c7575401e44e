// The router against scripted in-memory providers: fallbacks, retries, Retry-After, breakers,
// context windows and fallback groups, deadlines, dedup, hedging and the stream idle timeout.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { pino } from 'pino';
import type { ChatChunk, ChatRequest, ChatResult } from '../canonical/chat.js';
import { collectStream } from '../canonical/convert.js';
import { modelGroupSchema, routingSchema } from '../config/schema.js';
import { newFacts, defaultRequestOptions, ANONYMOUS, type RequestContext } from '../gateway/context.js';
import type { ChatOutcome } from '../gateway/pipeline.js';
import { UpstreamError, type UpstreamErrorKind } from '../providers/errors.js';
import type { CancelSignal } from '../providers/cancel.js';
import type { CallOptions, ProviderAdapter } from '../providers/types.js';
import { GatewayError } from '../server/errors.js';
import { wordEmbedder } from '../../test/helpers/word-embedder.js';
import { ModelCatalog } from './catalog.js';
import { Router } from './router.js';

const log = pino({ level: 'silent' });

type Behaviour = (req: ChatRequest, opts: CallOptions, call: number) => Promise<ChatResult | AsyncIterable<ChatChunk>>;

/** A provider whose answer per model is scripted; records every call. */
class ScriptedProvider implements ProviderAdapter {
  readonly type = 'simulator' as const;
  readonly calls: string[] = [];
  readonly cancelled: string[] = [];
  private readonly behaviours = new Map<string, Behaviour>();
  private readonly counts = new Map<string, number>();

  constructor(readonly name = 'fake') {}

  on(model: string, b: Behaviour): this {
    this.behaviours.set(model, b);
    return this;
  }

  private async run(req: ChatRequest, opts: CallOptions) {
    const n = this.counts.get(req.model) ?? 0;
    this.counts.set(req.model, n + 1);
    this.calls.push(req.model);
    opts.signal.addEventListener('abort', () => this.cancelled.push(req.model), { once: true });
    const b = this.behaviours.get(req.model) ?? (async () => answer(req.model));
    return b(req, opts, n);
  }

  async chat(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    const r = await this.run(req, opts);
    if (Symbol.asyncIterator in r) return collectStream(r);
    return r;
  }

  async streamChat(req: ChatRequest, opts: CallOptions): Promise<AsyncIterable<ChatChunk>> {
    const r = await this.run(req, opts);
    if (Symbol.asyncIterator in r) return r;
    return chunksOf(r);
  }

  async embed(): Promise<never> {
    throw new Error('no');
  }
  async ready() {
    return true;
  }
  async close() {}
}

function answer(model: string, text = `answer from ${model}`): ChatResult {
  return {
    id: `id-${model}`,
    object: 'chat.completion',
    created: 1,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop', logprobs: null }],
    usage: { prompt_tokens: 1_000, completion_tokens: 1_000, total_tokens: 2_000 },
  };
}

async function* chunksOf(r: ChatResult, gapMs = 0, signal?: CancelSignal): AsyncGenerator<ChatChunk> {
  const base = { id: r.id, object: 'chat.completion.chunk' as const, created: 1, model: r.model };
  for (const word of (r.choices[0]!.message.content ?? '').split(' ')) {
    if (gapMs) await sleep(gapMs, signal);
    yield { ...base, choices: [{ index: 0, delta: { content: word + ' ' }, finish_reason: null }] };
  }
  yield { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] };
  yield { ...base, choices: [], usage: r.usage };
}

function sleep(ms: number, signal?: CancelSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(new UpstreamError({ provider: 'fake', kind: 'aborted', message: 'aborted' }));
    }, { once: true });
  });
}

const fail = (kind: UpstreamErrorKind, extra: Partial<ConstructorParameters<typeof UpstreamError>[0]> = {}) =>
  async (): Promise<never> => {
    throw new UpstreamError({ provider: 'fake', kind, message: `injected ${kind}`, ...extra });
  };

function ctxFor(overrides: Partial<RequestContext> = {}, signal = new AbortController().signal): RequestContext {
  return {
    id: 'req-1',
    startedAt: performance.now(),
    endpoint: 'chat',
    tenant: ANONYMOUS,
    signal,
    log,
    options: defaultRequestOptions(),
    facts: newFacts(),
    headers: {},
    ...overrides,
  };
}

const routers: Router[] = [];
afterEach(async () => {
  for (const r of routers.splice(0)) await r.close();
});

function build(groups: Record<string, unknown>[], provider: ScriptedProvider, routing: Record<string, unknown> = {}, passthrough?: string) {
  const catalog = new ModelCatalog(groups.map((g) => modelGroupSchema.parse(g)), new Map([[provider.name, provider]]), passthrough);
  const router = new Router(catalog, { config: routingSchema.parse({ dedup: 'off', ...routing }), log, embedder: wordEmbedder(), random: Math.random });
  routers.push(router);
  return router;
}

const group = (name: string, models: string[], extra: Record<string, unknown> = {}) => ({
  name,
  deployments: models.map((model, priority) => ({ provider: 'fake', model, priority })),
  ...extra,
});

const chat = (model: string, extra: Partial<ChatRequest> = {}): ChatRequest => ({ model, messages: [{ role: 'user', content: 'hello there' }], ...extra });

async function text(outcome: ChatOutcome): Promise<string> {
  const r = outcome.kind === 'result' ? outcome.result : await collectStream(outcome.stream);
  return r.choices[0]!.message.content ?? '';
}

describe('Router: fallbacks and retries', () => {
  it('falls back to the next deployment on a retryable failure and reports who answered', async () => {
    const p = new ScriptedProvider().on('a', fail('server', { status: 500 }));
    const router = build([group('g', ['a', 'b'])], p);
    const ctx = ctxFor();
    const out = await router.handler(ctx, chat('g'));
    expect(await text(out)).toBe('answer from b');
    expect(ctx.facts).toMatchObject({ deployment: 'fake/b', model: 'b', attempts: 2 });
    expect(ctx.facts.route).toContain('strategy=fallback');
    expect(router.events.counters.fallbacks).toBe(1);
  });

  it('orders a fallback group by priority, not config order', async () => {
    const p = new ScriptedProvider().on('second', fail('server', { status: 500 }));
    const router = build([{ name: 'g', deployments: [{ provider: 'fake', model: 'third', priority: 3 }, { provider: 'fake', model: 'first', priority: 1 }, { provider: 'fake', model: 'second', priority: 1 }] }], p);
    await router.handler(ctxFor(), chat('g'));
    p.on('first', fail('server', { status: 500 }));
    await router.handler(ctxFor(), chat('g', { seed: 1 }));
    expect(p.calls).toEqual(['first', 'first', 'second', 'third']);
  });

  it('does not retry a request the upstream rejected (400)', async () => {
    const p = new ScriptedProvider().on('a', fail('bad_request', { status: 400 }));
    const router = build([group('g', ['a', 'b'])], p);
    const err = await router.handler(ctxFor(), chat('g')).catch((e: unknown) => e);
    expect((err as GatewayError).code).toBe('upstream_rejected_request');
    expect(p.calls).toEqual(['a']);
    // Nor is it held against the deployment.
    expect(router.breakerFor('fake/a').errorRate()).toMatchObject({ rate: 0 });
  });

  it('moves on from a deployment whose credentials are refused (401/403) or that lacks the model (404), and opens its breaker', async () => {
    for (const [kind, status] of [['auth', 401], ['auth', 403], ['not_found', 404]] as const) {
      const p = new ScriptedProvider().on('a', fail(kind, { status }));
      const router = build([group('g', ['a', 'b'])], p, { breaker: { consecutive_failures: 5, open_ms: 60_000 } });
      for (let i = 0; i < 20; i++) {
        const ctx = ctxFor();
        expect(await text(await router.handler(ctx, chat('g', { seed: i })))).toBe('answer from b');
        expect(ctx.facts.deployment).toBe('fake/b');
      }
      // Five different requests failed on a: its breaker opened and it is no longer called.
      expect(p.calls.filter((m) => m === 'a').length).toBe(5);
      const a = router.status().data.find((d) => d.id === 'fake/a')!;
      expect(a.breaker.state).toBe('open');
      expect(a.error_rate).toBeGreaterThan(0);
    }
  });

  it('does not retry a deployment fault after backoff, and answers with it when no deployment is left', async () => {
    const p = new ScriptedProvider().on('a', fail('auth', { status: 401 })).on('b', fail('server', { status: 500 }));
    const router = build([group('g', ['a', 'b'], { retry: { max_retries: 2, base_delay_ms: 1, max_delay_ms: 2 } })], p);
    await expect(router.handler(ctxFor(), chat('g'))).rejects.toMatchObject({ code: 'upstream_error' });
    // a once; b once and twice more after backoff; a (refused credentials) never again.
    expect(p.calls).toEqual(['a', 'b', 'b', 'b']);
    const only = new ScriptedProvider().on('a', fail('auth', { status: 401 }));
    const lone = build([group('g', ['a'])], only);
    await expect(lone.handler(ctxFor(), chat('g'))).rejects.toMatchObject({ code: 'upstream_auth_failed', status: 502 });
    expect(only.calls).toEqual(['a']);
  });

  it('falls back to another group when every deployment of the group refuses our credentials', async () => {
    const p = new ScriptedProvider().on('a', fail('auth', { status: 401 }));
    const router = build([group('main', ['a'], { fallbacks: ['backup'] }), group('backup', ['b'])], p);
    const ctx = ctxFor();
    expect(await text(await router.handler(ctx, chat('main')))).toBe('answer from b');
    // The facts name the group that stood in (the cache keeps no such answer).
    expect(ctx.facts.fallbackGroup).toBe('backup');
    const direct = ctxFor();
    await text(await router.handler(direct, chat('backup')));
    expect(direct.facts.fallbackGroup).toBeUndefined();
  });

  it('moves on from a deployment that cannot do what this request asks, without holding it against its breaker', async () => {
    const p = new ScriptedProvider().on('a', fail('unsupported'));
    const router = build([group('g', ['a', 'b'])], p, { breaker: { consecutive_failures: 2 } });
    for (let i = 0; i < 5; i++) expect(await text(await router.handler(ctxFor(), chat('g', { seed: i })))).toBe('answer from b');
    expect(router.breakerFor('fake/a').state).toBe('closed');
    expect(p.calls.filter((m) => m === 'a').length).toBe(5);
  });

  it('a feature a deployment lacks (unsupported) neither closes its half-open breaker nor counts as a success', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const p = new ScriptedProvider().on('a', async (_req, _o, n) => {
        if (n === 0) throw new UpstreamError({ provider: 'fake', kind: 'server', status: 500, message: 'down' });
        if (n === 1) throw new UpstreamError({ provider: 'fake', kind: 'unsupported', message: 'fake serves /v1/completions through chat, which cannot take suffix' });
        return answer('a');
      });
      const router = build([group('g', ['a', 'b'])], p, { breaker: { consecutive_failures: 1, open_ms: 1_000 }, retry: { max_retries: 0 } });
      await router.handler(ctxFor(), chat('g'));
      expect(router.breakerFor('fake/a').state).toBe('open');
      vi.setSystemTime(Date.now() + 1_500);
      // The half-open probe gets a refusal of the request, not an answer: the deployment is still unproven.
      expect(await text(await router.handler(ctxFor(), chat('g')))).toBe('answer from b');
      expect(router.breakerFor('fake/a').state).toBe('half_open');
      // Its slot was freed: the next request probes it, and an answer closes it.
      expect(await text(await router.handler(ctxFor(), chat('g')))).toBe('answer from a');
      expect(router.breakerFor('fake/a').state).toBe('closed');
      expect(p.calls).toEqual(['a', 'b', 'a', 'b', 'a']);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a 404 for a passthrough model name is the client\'s, not the deployment\'s', async () => {
    const p = new ScriptedProvider().on('no-such-model', fail('not_found', { status: 404 }));
    const router = build([group('g', ['a'])], p, { breaker: { consecutive_failures: 2 } }, 'fake');
    for (let i = 0; i < 4; i++) await expect(router.handler(ctxFor(), chat('no-such-model', { seed: i }))).rejects.toMatchObject({ code: 'model_not_found', status: 404 });
    expect(router.breakerFor('fake/no-such-model').state).toBe('closed');
    expect(p.calls.length).toBe(4);
  });

  it('retries after a jittered backoff when every deployment failed once', async () => {
    const p = new ScriptedProvider().on('a', async (req, _o, n) => {
      if (n < 2) throw new UpstreamError({ provider: 'fake', kind: 'connect', message: 'reset' });
      return answer('a');
    });
    const router = build([group('g', ['a'], { retry: { base_delay_ms: 5, max_delay_ms: 10 } })], p);
    const out = await router.handler(ctxFor(), chat('g'));
    expect(await text(out)).toBe('answer from a');
    expect(p.calls).toEqual(['a', 'a', 'a']);
    expect(router.events.counters.retries).toBe(2);
  });

  it('stops retrying when the retry budget is used up', async () => {
    const p = new ScriptedProvider().on('a', fail('server', { status: 500 }));
    const router = build([group('g', ['a'], { retry: { max_retries: 5, base_delay_ms: 0 } })], p, {
      retry_budget: { ratio: 0, min_per_s: 0.1, window_ms: 10_000 }, // one retry in the window
      breaker: { consecutive_failures: 100, min_requests: 100 },
    });
    await expect(router.handler(ctxFor(), chat('g'))).rejects.toMatchObject({ code: 'upstream_error' });
    expect(p.calls.length).toBe(2); // first try + the single budgeted retry
    expect(router.events.counters.retryBudgetExhausted).toBe(1);
  });

  it('spends the retry budget only on retries it makes, not on one given up for want of time', async () => {
    // One retry in the window. The first request's retry would have to wait past its deadline for a
    // Retry-After, so it is given up: the budget still holds the one retry for the next request.
    const p = new ScriptedProvider()
      .on('cool', fail('rate_limited', { status: 429, retryAfterMs: 60_000 }))
      .on('flaky', async (_r, _o, n) => {
        if (n === 0) throw new UpstreamError({ provider: 'fake', kind: 'server', status: 500, message: 'blip' });
        return answer('flaky');
      });
    const router = build([group('slow', ['cool'], { retry: { max_retries: 3, base_delay_ms: 0 } }), group('g', ['flaky'], { retry: { max_retries: 3, base_delay_ms: 0 } })], p, {
      retry_budget: { ratio: 0, min_per_s: 0.1, window_ms: 10_000 },
      deadline_ms: 1_000,
      breaker: { consecutive_failures: 100, min_requests: 100 },
    });
    await expect(router.handler(ctxFor(), chat('slow'))).rejects.toMatchObject({ code: 'upstream_rate_limited' });
    expect(await text(await router.handler(ctxFor(), chat('g')))).toBe('answer from flaky');
    expect(router.events.counters.retryBudgetExhausted).toBe(0);
  });

  it('honours Retry-After without waiting for it: the only deployment rate-limited -> 429 after one call, then none while it cools', async () => {
    const p = new ScriptedProvider().on('a', async (_r, _o, n) => {
      if (n === 0) throw new UpstreamError({ provider: 'fake', kind: 'rate_limited', status: 429, retryAfterMs: 1_000, message: 'slow down' });
      return answer('a');
    });
    const router = build([group('g', ['a'], { retry: { base_delay_ms: 0 } })], p);
    const err = (await router.handler(ctxFor(), chat('g')).catch((e: unknown) => e)) as GatewayError;
    expect(err.code).toBe('upstream_rate_limited');
    // What is left of the upstream's 1 s (most of it: the 429 came at once).
    expect(err.retryAfterMs).toBeGreaterThan(500);
    expect(err.retryAfterMs).toBeLessThanOrEqual(1_000);
    expect(p.calls).toEqual(['a']);
    expect(router.status().data[0]!.cooling_until).toBeDefined();
    // Once the wait is over, the deployment is called again.
    await new Promise((r) => setTimeout(r, 1_010));
    expect(await text(await router.handler(ctxFor(), chat('g')))).toBe('answer from a');
    expect(router.status().data[0]!.cooling_until).toBeUndefined();
  });

  it('answers 429 with Retry-After when the only deployment asks for longer than the deadline allows', async () => {
    const p = new ScriptedProvider().on('a', fail('rate_limited', { status: 429, retryAfterMs: 60_000 }));
    const router = build([group('g', ['a'])], p, { deadline_ms: 1_000 });
    const err = (await router.handler(ctxFor(), chat('g')).catch((e: unknown) => e)) as GatewayError;
    expect(err.code).toBe('upstream_rate_limited');
    expect(err.retryAfterMs).toBeGreaterThan(59_000);
    expect(err.retryAfterMs).toBeLessThanOrEqual(60_000);
    expect(p.calls).toEqual(['a']);
    // While it cools down, the next request is refused without calling it.
    const next = (await router.handler(ctxFor(), chat('g')).catch((e: unknown) => e)) as GatewayError;
    expect(next.code).toBe('upstream_rate_limited');
    expect(next.retryAfterMs).toBeGreaterThan(50_000);
    expect(p.calls).toEqual(['a']);
  });

  it('a rate limit cools the deployment, never opens its breaker; an insufficient_quota 429 still does', async () => {
    const p = new ScriptedProvider()
      .on('busy', fail('rate_limited', { status: 429, retryAfterMs: 5 }))
      .on('broke', fail('quota', { status: 429 }));
    const router = build([group('g', ['busy']), group('q', ['broke'])], p, { breaker: { consecutive_failures: 2, min_requests: 2, open_ms: 60_000 } });
    for (let i = 0; i < 6; i++) {
      const err = (await router.handler(ctxFor(), chat('g')).catch((e: unknown) => e)) as GatewayError;
      expect(err.code).toBe('upstream_rate_limited');
      await new Promise((r) => setTimeout(r, 10));
    }
    // One call per request (not retried after backoff), and the breaker stays closed.
    expect(p.calls.filter((m) => m === 'busy').length).toBe(6);
    expect(router.breakerFor('fake/busy').state).toBe('closed');
    expect(router.breakerFor('fake/busy').errorRate().requests).toBe(0);
    for (let i = 0; i < 2; i++) await router.handler(ctxFor(), chat('q')).catch(() => undefined);
    expect(router.breakerFor('fake/broke').state).toBe('open');
  });

  it('a 429 with Retry-After: 0 is not retried within the request either (the client retries), though it does not cool', async () => {
    const p = new ScriptedProvider().on('a', fail('rate_limited', { status: 429, retryAfterMs: 0 }));
    const router = build([group('g', ['a'], { retry: { max_retries: 2, base_delay_ms: 0 } })], p);
    const err = (await router.handler(ctxFor(), chat('g')).catch((e: unknown) => e)) as GatewayError;
    expect(err.code).toBe('upstream_rate_limited');
    expect(p.calls).toEqual(['a']);
    expect(router.events.counters.retries).toBe(0);
  });

  it('a 429 without Retry-After cools the deployment for 1 s; the request moves on to the next deployment at once', async () => {
    const p = new ScriptedProvider().on('a', fail('rate_limited', { status: 429 }));
    const router = build([group('g', ['a', 'b'])], p);
    expect(await text(await router.handler(ctxFor(), chat('g')))).toBe('answer from b');
    const a = router.status().data.find((d) => d.id === 'fake/a')!;
    const left = Date.parse(a.cooling_until!) - Date.now();
    expect(left).toBeGreaterThan(500);
    expect(left).toBeLessThanOrEqual(1_000);
    // While it cools, b takes the traffic without a to be called.
    expect(await text(await router.handler(ctxFor(), chat('g')))).toBe('answer from b');
    expect(p.calls).toEqual(['a', 'b', 'b']);
  });

  it('when every deployment is rate-limited, Retry-After is when the first one frees up, not the last one\'s wait', async () => {
    const p = new ScriptedProvider()
      .on('soon', fail('rate_limited', { status: 429, retryAfterMs: 5_000 }))
      .on('late', fail('rate_limited', { status: 429, retryAfterMs: 30_000 }));
    const router = build([group('g', ['soon', 'late'])], p);
    const err = (await router.handler(ctxFor(), chat('g')).catch((e: unknown) => e)) as GatewayError;
    expect(err.code).toBe('upstream_rate_limited');
    expect(err.status).toBe(429);
    expect(err.retryAfterMs).toBeGreaterThan(4_000);
    expect(err.retryAfterMs).toBeLessThanOrEqual(5_000);
    expect(p.calls).toEqual(['soon', 'late']);
  });

  it('a deployment rate-limited and one that failed: the failing one is retried, and the answer is the rate limit\'s 429', async () => {
    const p = new ScriptedProvider()
      .on('limited', fail('rate_limited', { status: 429, retryAfterMs: 5_000 }))
      .on('broken', fail('server', { status: 500 }));
    const router = build([group('g', ['limited', 'broken'], { retry: { max_retries: 2, base_delay_ms: 0 } })], p, { breaker: { consecutive_failures: 100, min_requests: 100 } });
    const err = (await router.handler(ctxFor(), chat('g')).catch((e: unknown) => e)) as GatewayError;
    expect(p.calls).toEqual(['limited', 'broken', 'broken', 'broken']);
    expect(err.code).toBe('upstream_rate_limited');
    expect(err.retryAfterMs).toBeGreaterThan(4_000);
  });

  it('falls back across model groups', async () => {
    const p = new ScriptedProvider().on('a', fail('overloaded', { status: 503 }));
    const router = build([group('main', ['a'], { fallbacks: ['backup'], retry: { max_retries: 0 } }), group('backup', ['b'])], p);
    const ctx = ctxFor();
    expect(await text(await router.handler(ctx, chat('main')))).toBe('answer from b');
    expect(ctx.facts.deployment).toBe('fake/b');
  });

  it('enforces a deadline over all attempts (504)', async () => {
    const p = new ScriptedProvider().on('a', (_r, o) => sleep(10_000, o.signal).then(() => answer('a')));
    const router = build([group('g', ['a'])], p, { deadline_ms: 100 });
    const err = (await router.handler(ctxFor(), chat('g')).catch((e: unknown) => e)) as GatewayError;
    expect(err.code).toBe('upstream_timeout');
    expect(err.message).toContain('deadline');
  });

  it('counts an attempt the deadline ended against its deployment: a hung deployment opens its breaker', async () => {
    const p = new ScriptedProvider().on('hung', (_r, o) => sleep(10_000, o.signal).then(() => answer('hung')));
    // timeout_ms (600 s by default) is longer than the deadline, so the deadline ends every attempt.
    const router = build([group('g', ['hung'])], p, { deadline_ms: 80, breaker: { consecutive_failures: 2, open_ms: 60_000 } });
    for (let i = 0; i < 2; i++) expect(((await router.handler(ctxFor(), chat('g')).catch((e: unknown) => e)) as GatewayError).code).toBe('upstream_timeout');
    expect(router.status().data.find((d) => d.id === 'fake/hung')?.breaker.state).toBe('open');
    // The third request is not sent to it.
    expect(((await router.handler(ctxFor(), chat('g')).catch((e: unknown) => e)) as GatewayError).code).toBe('no_healthy_deployment');
    expect(p.calls).toEqual(['hung', 'hung']);
  });

  it('times out one attempt after timeout_ms and falls back', async () => {
    const p = new ScriptedProvider().on('a', (_r, o) => sleep(10_000, o.signal).then(() => answer('a')));
    const router = build([{ name: 'g', deployments: [{ provider: 'fake', model: 'a', timeout_ms: 50 }, { provider: 'fake', model: 'b', priority: 1 }] }], p);
    expect(await text(await router.handler(ctxFor(), chat('g')))).toBe('answer from b');
  });
});

describe('Router: circuit breakers', () => {
  it('stops calling a deployment once its breaker opens, and shows it in the status', async () => {
    const p = new ScriptedProvider().on('dead', fail('connect'));
    const router = build([group('g', ['dead', 'ok'])], p, { breaker: { consecutive_failures: 3, open_ms: 60_000 } });
    for (let i = 0; i < 10; i++) expect(await text(await router.handler(ctxFor(), chat('g')))).toBe('answer from ok');
    expect(p.calls.filter((m) => m === 'dead').length).toBe(3);
    const dead = router.status().data.find((d) => d.id === 'fake/dead')!;
    expect(dead.breaker.state).toBe('open');
    expect(dead.breaker.retry_at).toBeDefined();
    expect(router.events.counters.breakerOpens).toBe(1);
  });

  it('answers 503 no_healthy_deployment with Retry-After when every breaker is open', async () => {
    const p = new ScriptedProvider().on('dead', fail('connect'));
    const router = build([group('g', ['dead'], { retry: { max_retries: 0 } })], p, { breaker: { consecutive_failures: 1, open_ms: 30_000 } });
    await router.handler(ctxFor(), chat('g')).catch(() => undefined);
    const err = (await router.handler(ctxFor(), chat('g')).catch((e: unknown) => e)) as GatewayError;
    expect(err.code).toBe('no_healthy_deployment');
    expect(err.retryAfterMs).toBeGreaterThan(25_000);
  });

  it("does not count a deadline that ended an attempt started with almost no time left (after the queue) against a healthy deployment", async () => {
    // Always answers in 100 ms; one at a time. A burst queues, and the requests at the back reach it
    // with a few ms of their 400 ms deadline left: they fail (504), the deployment is not at fault.
    const p = new ScriptedProvider().on('a', async (_r, o) => {
      await sleep(100, o.signal);
      return answer('a');
    });
    const router = build([{ name: 'g', deployments: [{ provider: 'fake', model: 'a', max_concurrency: 1 }] }], p, { deadline_ms: 400, breaker: { consecutive_failures: 5 } });
    const codes: string[] = [];
    const all: Promise<unknown>[] = [];
    for (let i = 0; i < 30; i++) {
      all.push(router.handler(ctxFor(), chat('g')).then(() => codes.push('ok'), (e: GatewayError) => codes.push(e.code)));
      await sleep(25);
    }
    await Promise.all(all);
    expect(codes).toContain('upstream_timeout');
    expect(codes).not.toContain('no_healthy_deployment');
    expect(router.breakerFor('fake/a').state).toBe('closed');
  });

  it('still opens the breaker of a deployment that hangs past a fair share of the deadline', async () => {
    const p = new ScriptedProvider().on('hung', async (_r, o) => {
      await sleep(60_000, o.signal);
      return answer('hung');
    });
    const router = build([{ name: 'g', deployments: [{ provider: 'fake', model: 'hung' }], retry: { max_retries: 0 } }], p, { deadline_ms: 1_200, breaker: { consecutive_failures: 2 } });
    for (let i = 0; i < 2; i++) expect(((await router.handler(ctxFor(), chat('g')).catch((e: unknown) => e)) as GatewayError).code).toBe('upstream_timeout');
    expect(router.breakerFor('fake/hung').state).toBe('open');
  }, 10_000);

  it('does not count client mistakes against the deployment', async () => {
    const p = new ScriptedProvider().on('a', fail('bad_request', { status: 400 }));
    const router = build([group('g', ['a'])], p, { breaker: { consecutive_failures: 2 } });
    for (let i = 0; i < 5; i++) await router.handler(ctxFor(), chat('g')).catch(() => undefined);
    expect(router.breakerFor('fake/a').state).toBe('closed');
  });
});

describe('Router: context windows and content policy', () => {
  const long = 'word '.repeat(400);
  it('skips a deployment whose context window the prompt plus max_tokens does not fit', async () => {
    const p = new ScriptedProvider();
    const router = build([{ name: 'g', deployments: [{ provider: 'fake', model: 'small', context_window: 300 }, { provider: 'fake', model: 'big', priority: 1, context_window: 100_000 }] }], p);
    expect(await text(await router.handler(ctxFor(), chat('g', { messages: [{ role: 'user', content: long }] })))).toBe('answer from big');
    expect(await text(await router.handler(ctxFor(), chat('g', { max_tokens: 50 })))).toBe('answer from small');
    expect(await text(await router.handler(ctxFor(), chat('g', { max_tokens: 295 })))).toBe('answer from big');
    expect(p.calls).toEqual(['big', 'small', 'big']);
  });

  it('uses context_window_fallbacks when the prompt fits nothing in the group, else answers 400', async () => {
    const p = new ScriptedProvider();
    const router = build(
      [
        { name: 'g', deployments: [{ provider: 'fake', model: 'small', context_window: 100 }], context_window_fallbacks: ['long'] },
        { name: 'long', deployments: [{ provider: 'fake', model: 'huge', context_window: 1_000_000 }] },
        { name: 'nofallback', deployments: [{ provider: 'fake', model: 'small', context_window: 100 }] },
      ],
      p,
    );
    const req = (m: string) => chat(m, { messages: [{ role: 'user', content: long }] });
    expect(await text(await router.handler(ctxFor(), req('g')))).toBe('answer from huge');
    const err = (await router.handler(ctxFor(), req('nofallback')).catch((e: unknown) => e)) as GatewayError;
    expect(err.code).toBe('context_length_exceeded');
    expect(err.status).toBe(400);
  });

  it('falls back on an upstream context-length error and on a content-policy refusal', async () => {
    const p = new ScriptedProvider().on('a', fail('context_length', { status: 400 })).on('c', fail('content_policy', { status: 400 }));
    const router = build(
      [
        group('g1', ['a'], { context_window_fallbacks: ['big'] }),
        group('g2', ['c'], { content_policy_fallbacks: ['lenient'] }),
        group('big', ['b']),
        group('lenient', ['l']),
      ],
      p,
    );
    expect(await text(await router.handler(ctxFor(), chat('g1')))).toBe('answer from b');
    expect(await text(await router.handler(ctxFor(), chat('g2')))).toBe('answer from l');
    expect(router.events.counters.fallbacks).toBe(2);
  });
});

describe('Router: semantic routing', () => {
  it('sends a prompt to the deployment or group its examples match, and says so in the route', async () => {
    const p = new ScriptedProvider();
    const router = build(
      [
        {
          name: 'smart',
          strategy: 'semantic',
          deployments: [{ provider: 'fake', model: 'general' }, { provider: 'fake', model: 'coder', priority: 1 }],
          semantic: { threshold: 0.5, routes: [{ name: 'code', target: 'fake/coder', examples: ['write a python function'] }, { name: 'math', target: 'maths', examples: ['solve this equation for x'] }] },
        },
        group('maths', ['mathematician']),
      ],
      p,
    );
    const ctx = ctxFor();
    expect(await text(await router.handler(ctx, chat('smart', { messages: [{ role: 'user', content: 'write a python function to add' }] })))).toBe('answer from coder');
    expect(ctx.facts.route).toMatch(/strategy=semantic.*route=code/);
    const ctx2 = ctxFor();
    expect(await text(await router.handler(ctx2, chat('smart', { messages: [{ role: 'user', content: 'solve this equation for x please' }] })))).toBe('answer from mathematician');
    expect(ctx2.facts.route).toMatch(/route=math/);
    const ctx3 = ctxFor();
    expect(await text(await router.handler(ctx3, chat('smart', { messages: [{ role: 'user', content: 'good morning' }] })))).toBe('answer from general');
    expect(ctx3.facts.route).toMatch(/route=default/);
  });

  it('answers in priority order when the embedder fails', async () => {
    const p = new ScriptedProvider();
    const catalog = new ModelCatalog(
      [modelGroupSchema.parse({ name: 's', strategy: 'semantic', deployments: [{ provider: 'fake', model: 'a' }, { provider: 'fake', model: 'b', priority: 1 }], semantic: { routes: [{ name: 'x', target: 'fake/b', examples: ['x'] }] } })],
      new Map([[p.name, p]]),
    );
    const broken = { id: 'broken', dimensions: 4, embed: async () => Promise.reject(new Error('model not loaded')) };
    const router = new Router(catalog, { config: routingSchema.parse({}), log, embedder: broken });
    routers.push(router);
    const ctx = ctxFor();
    expect(await text(await router.handler(ctx, chat('s')))).toBe('answer from a');
    expect(ctx.facts.route).toContain('route=unavailable');
  });

  it('rejects a semantic target that names nothing', () => {
    const p = new ScriptedProvider();
    expect(() => build([{ name: 's', strategy: 'semantic', deployments: [{ provider: 'fake', model: 'a' }], semantic: { routes: [{ name: 'x', target: 'nope', examples: ['x'] }] } }], p)).toThrow(/nope/);
  });
});

describe('Router: deduplication', () => {
  it('by default coalesces only deterministic requests (temperature 0 or a seed)', async () => {
    const p = new ScriptedProvider().on('a', (_r, o) => sleep(30, o.signal).then(() => answer('a')));
    const router = build([group('g', ['a'])], p, { dedup: 'deterministic' });
    const twice = (req: ChatRequest) => Promise.all([router.handler(ctxFor(), req), router.handler(ctxFor(), req)]);
    await twice(chat('g', { temperature: 0.8 }));
    expect(p.calls.length).toBe(2); // two samples wanted, two calls
    await twice(chat('g', { temperature: 0 }));
    expect(p.calls.length).toBe(3);
    await twice(chat('g', { seed: 7 }));
    expect(p.calls.length).toBe(4);
  });

  it('coalesces identical in-flight requests of one tenant into one upstream call', async () => {
    const p = new ScriptedProvider().on('a', (_r, o) => sleep(50, o.signal).then(() => answer('a')));
    const router = build([{ name: 'g', deployments: [{ provider: 'fake', model: 'a', price: { input: 1, output: 1 } }] }], p, { dedup: 'all' });
    const ctxs = [ctxFor(), ctxFor(), ctxFor()];
    const outs = await Promise.all(ctxs.map((c) => router.handler(c, chat('g'))));
    expect(await Promise.all(outs.map(text))).toEqual(['answer from a', 'answer from a', 'answer from a']);
    expect(p.calls).toEqual(['a']);
    // Every client is billed the answer as if it had asked alone (1000 + 1000 tokens at $1/M).
    expect(ctxs.map((c) => c.facts.costUsd)).toEqual([0.002, 0.002, 0.002]);
    expect(ctxs.map((c) => c.facts.attempts)).toEqual([1, 0, 0]);
    expect(ctxs[1]!.facts.route).toContain('dedup=joined');
    expect(router.events.counters.dedupJoins).toBe(2);
    // Different tenants never share.
    await Promise.all([router.handler(ctxFor({ tenant: { id: 't1', kind: 'token' } }), chat('g')), router.handler(ctxFor({ tenant: { id: 't2', kind: 'token' } }), chat('g'))]);
    expect(p.calls.length).toBe(3);
  });

  it('fans one upstream stream out to every waiting client', async () => {
    const p = new ScriptedProvider().on('a', async (r, o) => chunksOf(answer('a', 'one two three four'), 10, o.signal));
    const router = build([group('g', ['a'])], p, { dedup: 'all' });
    const outs = await Promise.all([0, 1, 2].map(() => router.handler(ctxFor(), chat('g', { stream: true }))));
    const texts = await Promise.all(outs.map(text));
    expect(texts).toEqual(Array(3).fill('one two three four '));
    expect(p.calls).toEqual(['a']);
  });

  it('neither starts nor holds a shared call for a client that left before routing', async () => {
    const p = new ScriptedProvider().on('a', (_r, o) => sleep(80, o.signal).then(() => answer('a')));
    const router = build([group('g', ['a'])], p, { dedup: 'all' });
    const gone = new AbortController();
    gone.abort();
    await expect(router.handler(ctxFor({}, gone.signal), chat('g'))).rejects.toMatchObject({ code: 'client_closed_request' });
    expect(p.calls).toEqual([]);
    // A live client's call, joined by one already gone, is cancelled when the live one leaves.
    const leaving = new AbortController();
    const live = router.handler(ctxFor({}, leaving.signal), chat('g')).catch((e: unknown) => e);
    await expect(router.handler(ctxFor({}, gone.signal), chat('g'))).rejects.toMatchObject({ code: 'client_closed_request' });
    leaving.abort();
    await live;
    expect(p.cancelled).toEqual(['a']);
  });

  it('settles a joined client that leaves at once (499, charged nothing, not in flight), while the shared call goes on for the others', async () => {
    const p = new ScriptedProvider().on('a', (_r, o) => sleep(2_000, o.signal).then(() => answer('a')));
    const router = build([{ name: 'g', deployments: [{ provider: 'fake', model: 'a', price: { input: 1000, output: 1000 } }] }], p, { dedup: 'all' });
    const leader = router.handler(ctxFor(), chat('g'));
    const leaving = new AbortController();
    const joinerCtx = ctxFor({}, leaving.signal);
    const started = performance.now();
    const joiner = router.handler(joinerCtx, chat('g')).then(
      () => 'answered',
      (e: GatewayError) => e.code,
    );
    await sleep(30);
    leaving.abort(new Error('client went away'));
    expect(await joiner).toBe('client_closed_request');
    // At once, not when the shared call ends 2 s later (a wide margin for a loaded machine).
    expect(performance.now() - started).toBeLessThan(1_500);
    expect(joinerCtx.facts.costUsd).toBe(0);
    expect(router.inFlight).toBe(1);
    expect(await text(await leader)).toBe('answer from a');
    expect(p.calls).toEqual(['a']);
  });

  it('keeps the shared call alive while one client remains, and cancels it when all leave', async () => {
    const p = new ScriptedProvider().on('a', (_r, o) => sleep(80, o.signal).then(() => answer('a')));
    const router = build([group('g', ['a'])], p, { dedup: 'all' });
    const leaving = new AbortController();
    const first = router.handler(ctxFor({}, leaving.signal), chat('g')).catch((e: unknown) => e);
    const second = router.handler(ctxFor(), chat('g'));
    leaving.abort();
    expect(await text(await second)).toBe('answer from a');
    await first;
    expect(p.cancelled).toEqual([]);
    const a1 = new AbortController();
    const a2 = new AbortController();
    const r1 = router.handler(ctxFor({}, a1.signal), chat('g', { seed: 2 })).catch((e: unknown) => e);
    const r2 = router.handler(ctxFor({}, a2.signal), chat('g', { seed: 2 })).catch((e: unknown) => e);
    await sleep(20);
    a1.abort();
    a2.abort();
    await Promise.all([r1, r2]);
    expect(p.cancelled).toEqual(['a']);
  });
});

describe('Router: hedging', () => {
  it('sends a second attempt after the hedge delay; the first answer wins, the loser is cancelled and both are costed', async () => {
    const p = new ScriptedProvider()
      .on('slow', (_r, o) => sleep(2_000, o.signal).then(() => answer('slow')))
      .on('fast', (_r, o) => sleep(5, o.signal).then(() => answer('fast')));
    const price = { input: 1, output: 1 };
    const router = build([{ name: 'g', hedging: { enabled: true, delay_ms: 30 }, deployments: [{ provider: 'fake', model: 'slow', price }, { provider: 'fake', model: 'fast', priority: 1, price }] }], p);
    const ctx = ctxFor();
    const out = await router.handler(ctx, chat('g'));
    expect(await text(out)).toBe('answer from fast');
    expect(ctx.facts.deployment).toBe('fake/fast');
    await new Promise((r) => setTimeout(r, 10));
    expect(p.cancelled).toContain('slow');
    // Winner: 1000 in + 1000 out at $1/M = $0.002; the loser's prompt tokens are costed too, and
    // counted for token limits.
    expect(ctx.facts.costUsd).toBeGreaterThan(0.002);
    expect(ctx.facts.discardedTokens).toBeGreaterThan(0);
    expect(router.events.counters.hedges).toBe(1);
    expect(router.events.counters.hedgeWins).toBe(1);
  });

  it('reports a hedge that failed before the first attempt answered as no cancellation (its failure is counted as one)', async () => {
    const p = new ScriptedProvider()
      .on('slow', (_r, o) => sleep(200, o.signal).then(() => answer('slow')))
      .on('bad', fail('server', { status: 500 }));
    const router = build([{ name: 'g', hedging: { enabled: true, delay_ms: 20 }, retry: { max_retries: 0 }, deployments: [{ provider: 'fake', model: 'slow' }, { provider: 'fake', model: 'bad', priority: 1 }] }], p);
    const outcomes: string[] = [];
    router.events.on('hedge', (e) => outcomes.push(e.winner === undefined ? 'launched' : e.winner === e.hedge ? 'won' : 'cancelled'));
    expect(await text(await router.handler(ctxFor(), chat('g')))).toBe('answer from slow');
    expect(outcomes).toEqual(['launched']);
  });

  it('does not hedge to a deployment that started cooling down after the request began', async () => {
    const p = new ScriptedProvider()
      .on('slow', (_r, o) => sleep(300, o.signal).then(() => answer('slow')))
      .on('limited', fail('rate_limited', { status: 429, retryAfterMs: 60_000 }))
      .on('spare', (_r, o) => sleep(5, o.signal).then(() => answer('spare')));
    const dep = (model: string, priority: number) => ({ provider: 'fake', model, priority });
    const router = build(
      [
        { name: 'g', hedging: { enabled: true, delay_ms: 60 }, deployments: [dep('slow', 0), dep('limited', 1), dep('spare', 2)] },
        // Another group on the same deployment: its request is what gets the 429.
        { name: 'other', deployments: [dep('limited', 0)] },
      ],
      p,
      // A deadline shorter than the Retry-After: the other request gives up at once instead of waiting.
      { breaker: { consecutive_failures: 100, min_requests: 100 }, deadline_ms: 2_000 },
    );
    const hedged = router.handler(ctxFor(), chat('g'));
    await new Promise((r) => setTimeout(r, 10));
    await router.handler(ctxFor(), chat('other')).catch(() => undefined);
    expect(await text(await hedged)).toBe('answer from spare');
    expect(p.calls.filter((m) => m === 'limited')).toHaveLength(1);
  });

  it('uses the group p95 once enough samples exist, and does not hedge a fast answer', async () => {
    const p = new ScriptedProvider().on('a', (_r, o) => sleep(1, o.signal).then(() => answer('a')));
    const router = build([{ name: 'g', hedging: { enabled: true, min_samples: 5 }, deployments: [{ provider: 'fake', model: 'a' }, { provider: 'fake', model: 'b', priority: 1 }] }], p);
    for (let i = 0; i < 8; i++) await router.handler(ctxFor(), chat('g', { seed: i }));
    expect(p.calls.every((m) => m === 'a')).toBe(true);
    expect(router.events.counters.hedges).toBe(0);
  });

  it('keeps stream and JSON latencies apart: fast first chunks do not make every JSON answer look slow', async () => {
    let jsonDelay = 300;
    const p = new ScriptedProvider().on('a', async (r, o) => {
      if (r.stream) return chunksOf(answer('a')); // first chunk at once
      await sleep(jsonDelay, o.signal);
      return answer('a');
    });
    const router = build([{ name: 'g', hedging: { enabled: true, min_samples: 5 }, deployments: [{ provider: 'fake', model: 'a' }, { provider: 'fake', model: 'b', priority: 1 }] }], p);
    // Mostly streams, a few JSON answers that take ~300 ms in full.
    for (let i = 0; i < 100; i++) await text(await router.handler(ctxFor(), chat('g', { stream: true, seed: i })));
    for (let i = 0; i < 5; i++) await router.handler(ctxFor(), chat('g', { seed: 1_000 + i }));
    expect(router.events.counters.hedges).toBe(0);
    // JSON answers well inside the JSON p95 (≥ 300 ms) are not hedged, however fast the streams start.
    jsonDelay = 20;
    for (let i = 0; i < 5; i++) expect(await text(await router.handler(ctxFor(), chat('g', { seed: 2_000 + i })))).toBe('answer from a');
    expect(router.events.counters.hedges).toBe(0);
    expect(p.calls.includes('b')).toBe(false);
  });
});

describe('Router: streams', () => {
  it('retries a stream that fails before its first chunk, on another deployment', async () => {
    const p = new ScriptedProvider().on('a', async () => ({
      // eslint-disable-next-line require-yield
      async *[Symbol.asyncIterator]() {
        throw new UpstreamError({ provider: 'fake', kind: 'connect', message: 'reset before first byte' });
      },
    }));
    const router = build([group('g', ['a', 'b'])], p);
    const out = await router.handler(ctxFor(), chat('g', { stream: true }));
    expect(out.kind).toBe('stream');
    expect(await text(out)).toBe('answer from b ');
  });

  it('retries a stream whose adapter failed while reading ahead to the first event, and counts it against the deployment', async () => {
    // Gemini, Cohere and Ollama look at the first event inside streamChat: a reset there arrives as
    // the transport's non-retryable stream_interrupted (or timeout) before any chunk was returned.
    const p = new ScriptedProvider()
      .on('reset', async () => {
        throw new UpstreamError({ provider: 'fake', kind: 'stream_interrupted', message: 'fake stream broke: socket hang up', retryable: false });
      })
      .on('silent', async () => {
        throw new UpstreamError({ provider: 'fake', kind: 'timeout', message: 'fake stream broke: no data', retryable: false });
      });
    const router = build([group('g', ['reset', 'silent', 'ok'], { strategy: 'fallback' })], p, { breaker: { consecutive_failures: 2, open_ms: 60_000 } });
    for (let i = 0; i < 2; i++) expect(await text(await router.handler(ctxFor(), chat('g', { stream: true })))).toBe('answer from ok ');
    // Both failures counted: after two each, neither deployment is called again.
    for (const id of ['fake/reset', 'fake/silent']) expect(router.status().data.find((d) => d.id === id)?.breaker.state).toBe('open');
    expect(await text(await router.handler(ctxFor(), chat('g', { stream: true })))).toBe('answer from ok ');
    expect(p.calls.filter((m) => m !== 'ok')).toEqual(['reset', 'silent', 'reset', 'silent']);
  });

  it('gives the transport a body timeout no shorter than the attempt timeout and the routing idle timeout', async () => {
    const seen: (number | undefined)[] = [];
    const p = new ScriptedProvider().on('a', async (req, opts) => {
      seen.push(opts.streamIdleTimeoutMs);
      return answer(req.model);
    });
    const slow = (name: string) => ({ name, deployments: [{ provider: 'fake', model: 'a', timeout_ms: 200_000 }] });
    const router = build([slow('g')], p, { stream_idle_timeout_ms: 300_000, deadline_ms: 600_000 });
    await text(await router.handler(ctxFor(), chat('g', { stream: true })));
    const short = build([slow('h')], p, { stream_idle_timeout_ms: 5_000, deadline_ms: 600_000 });
    await text(await short.handler(ctxFor(), chat('h', { stream: true })));
    // Before, the transport cut any silence at its fixed 60 s, whatever the configuration said.
    expect(seen).toEqual([300_000, 200_000]);
  });

  it('ends a stream that goes silent longer than the idle timeout', async () => {
    const p = new ScriptedProvider().on('a', async (_r, o) => ({
      async *[Symbol.asyncIterator]() {
        yield { id: 'x', object: 'chat.completion.chunk' as const, created: 1, model: 'a', choices: [{ index: 0, delta: { content: 'hi' }, finish_reason: null }] };
        await sleep(5_000, o.signal);
      },
    }));
    const router = build([group('g', ['a'])], p, { stream_idle_timeout_ms: 50 });
    const out = await router.handler(ctxFor(), chat('g', { stream: true }));
    const err = await collectStream((out as { stream: AsyncIterable<ChatChunk> }).stream).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as UpstreamError).kind).toBe('timeout');
    const row = router.status().data[0]!;
    expect(row.in_flight).toBe(0);
    // The silent stream counts against the deployment (one success at the first chunk, then a failure).
    expect(row.error_rate).toBe(0.5);
  });

  it('does not count a slow reader\'s pauses as upstream silence', async () => {
    const p = new ScriptedProvider().on('a', async () => chunksOf(answer('a', 'one two three four')));
    const router = build([group('g', ['a'])], p, { stream_idle_timeout_ms: 50 });
    const out = await router.handler(ctxFor(), chat('g', { stream: true }));
    let received = '';
    // The client drains slowly (writeSse waits for it): every chunk sits with the reader for far
    // longer than the idle timeout, while the upstream always has the next one ready.
    for await (const chunk of (out as { stream: AsyncIterable<ChatChunk> }).stream) {
      received += chunk.choices[0]?.delta.content ?? '';
      await sleep(150);
    }
    expect(received).toBe('one two three four ');
    expect(p.cancelled).toEqual([]);
    const row = router.status().data[0]!;
    expect(row.error_rate).toBe(0);
    expect(row.in_flight).toBe(0);
  });

  it('frees the deployment slot of a routed stream closed before its first read (a client gone before the first chunk)', async () => {
    const router = build([{ name: 'g', deployments: [{ provider: 'fake', model: 'a', max_concurrency: 1 }] }], new ScriptedProvider(), { queue: { max_size: 10, max_wait_ms: 200 } });
    const out = await router.handler(ctxFor(), chat('g', { stream: true }));
    expect(out.kind).toBe('stream');
    await (out as { stream: AsyncIterable<ChatChunk> }).stream[Symbol.asyncIterator]().return?.();
    expect(router.status().data[0]!.in_flight).toBe(0);
    expect(await text(await router.handler(ctxFor(), chat('g')))).toBe('answer from a');
  });

  it('still ends a stream whose upstream goes silent after the reader paused', async () => {
    const p = new ScriptedProvider().on('a', async (_r, o) => ({
      async *[Symbol.asyncIterator]() {
        yield { id: 'x', object: 'chat.completion.chunk' as const, created: 1, model: 'a', choices: [{ index: 0, delta: { content: 'one' }, finish_reason: null }] };
        yield { id: 'x', object: 'chat.completion.chunk' as const, created: 1, model: 'a', choices: [{ index: 0, delta: { content: ' two' }, finish_reason: null }] };
        await sleep(5_000, o.signal);
      },
    }));
    const router = build([group('g', ['a'])], p, { stream_idle_timeout_ms: 50 });
    const out = await router.handler(ctxFor(), chat('g', { stream: true }));
    let received = '';
    const err = await (async () => {
      for await (const chunk of (out as { stream: AsyncIterable<ChatChunk> }).stream) {
        received += chunk.choices[0]?.delta.content ?? '';
        await sleep(150); // the reader's pause does not count…
      }
    })().catch((e: unknown) => e);
    // …but the upstream's silence afterwards does.
    expect(received).toBe('one two');
    expect((err as UpstreamError).kind).toBe('timeout');
    expect(p.cancelled).toEqual(['a']);
  });
});

describe('Router: admission', () => {
  it("does not hand a freed slot's waiters a deployment that started cooling while they waited: the gateway answers their 429", async () => {
    let calls = 0;
    const p = new ScriptedProvider().on('a', async (_r, o) => {
      calls++;
      await sleep(50, o.signal);
      throw new UpstreamError({ provider: 'fake', kind: 'rate_limited', status: 429, message: 'slow down', retryAfterMs: 10_000 });
    });
    const router = build([{ name: 'g', deployments: [{ provider: 'fake', model: 'a', max_concurrency: 1 }] }], p);
    const errs = await Promise.all(Array.from({ length: 5 }, () => router.handler(ctxFor(), chat('g')).catch((e: unknown) => e as GatewayError)));
    expect(calls).toBe(1);
    for (const e of errs) expect(e).toMatchObject({ status: 429 });
  });

  it('queues beyond max_concurrency, serves by priority, and rejects when the queue is full', async () => {
    const gates: (() => void)[] = [];
    const served: string[] = [];
    const p = new ScriptedProvider().on('a', (r) => new Promise<ChatResult>((resolve) => gates.push(() => {
      served.push(String(r.metadata?.tag));
      resolve(answer('a'));
    })));
    const router = build([{ name: 'g', queue_size: 2, deployments: [{ provider: 'fake', model: 'a', max_concurrency: 1 }] }], p);
    const req = (tag: string) => chat('g', { metadata: { tag } });
    const withPriority = (priority: 'low' | 'high') => ctxFor({ options: { ...defaultRequestOptions(), priority } });
    const first = router.handler(ctxFor(), req('first'));
    await new Promise((r) => setImmediate(r));
    const low = router.handler(withPriority('low'), req('low'));
    const high = router.handler(withPriority('high'), req('high'));
    await new Promise((r) => setImmediate(r));
    expect(router.queueDepth()).toBe(2);
    const rejected = (await router.handler(ctxFor(), req('overflow')).catch((e: unknown) => e)) as GatewayError;
    expect(rejected.code).toBe('queue_full');
    expect(rejected.status).toBe(429);
    expect(rejected.retryAfterMs).toBeGreaterThan(0);
    while (served.length < 3) {
      gates.shift()?.();
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all([first, low, high]);
    expect(served).toEqual(['first', 'high', 'low']);
    expect(router.events.counters.queueRejections).toBe(1);
  });
});

describe('Router: admission across groups and waiters', () => {
  it('serves the waiters of two groups sharing a deployment by priority, then arrival, across both groups', async () => {
    const p = new ScriptedProvider().on('m', async (_r, o) => {
      await sleep(40, o.signal);
      return answer('m');
    });
    const dep = { provider: 'fake', model: 'm', id: 'shared', max_concurrency: 1 };
    const router = build([{ name: 'A', deployments: [dep] }, { name: 'B', deployments: [dep] }], p, { queue: { max_size: 256, max_wait_ms: 5_000 } });
    const order: string[] = [];
    const run = (g: string, priority: 'low' | 'high', tag: string) =>
      router.handler(ctxFor({ options: { ...defaultRequestOptions(), priority } }), chat(g)).then(() => order.push(tag), (e: GatewayError) => order.push(`${tag}:${e.code}`));
    const all = [run('A', 'low', 'A0')];
    await sleep(5);
    for (let i = 1; i <= 4; i++) all.push(run('A', 'low', `A${i}`));
    await sleep(5);
    all.push(run('B', 'high', 'B-high'));
    await Promise.all(all);
    // A0 held the slot; the high-priority request of the other group goes next.
    expect(order).toEqual(['A0', 'B-high', 'A1', 'A2', 'A3', 'A4']);
  });

  /** A provider call that answers only when the test says so. */
  function gate() {
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    return { open, opened };
  }
  const queued = (router: Router, n: number) => expect.poll(() => router.queueDepth(), { timeout: 5_000, interval: 2 }).toBe(n);

  it('a slot freed by one group goes to the other group waiting for the same deployment', async () => {
    const held = gate();
    const p = new ScriptedProvider().on('m', async (_r, _o, n) => {
      if (n === 0) await held.opened;
      return answer('m');
    });
    const dep = { provider: 'fake', model: 'm', max_concurrency: 1 };
    const router = build([{ name: 'A', deployments: [dep] }, { name: 'B', deployments: [dep] }], p, { queue: { max_wait_ms: 2_000 } });
    const first = router.handler(ctxFor(), chat('A'));
    await expect.poll(() => p.calls.length).toBe(1);
    const second = router.handler(ctxFor(), chat('B'));
    await queued(router, 1);
    held.open();
    expect(await text(await first)).toBe('answer from m');
    // B's waiter is served as soon as A is done (before: 503 once its wait passed).
    expect(await text(await second)).toBe('answer from m');
    expect(router.queueDepth()).toBe(0);
    expect(router.status().data.every((d) => d.in_flight === 0)).toBe(true);
  });

  /**
   * Group `g` over `a` (one slot) and `b` (priority 1, four slots) with the given retry setting:
   * `a`'s first call waits for `held`; `b`'s first call fails once (a 500), later calls answer.
   * Returns once the first request (`r1`) holds `a`.
   */
  async function busyAThenFailingB(retry: Record<string, unknown>) {
    const held = gate();
    const p = new ScriptedProvider()
      .on('a', async (_r, _o, n) => {
        if (n === 0) await held.opened;
        return answer('a');
      })
      .on('b', async (_r, _o, n) => {
        if (n === 0) throw new UpstreamError({ provider: 'fake', kind: 'server', status: 500, message: 'once' });
        return answer('b');
      });
    const router = build(
      [{ name: 'g', retry, deployments: [{ provider: 'fake', model: 'a', max_concurrency: 1 }, { provider: 'fake', model: 'b', priority: 1, max_concurrency: 4 }] }],
      p,
      { queue: { max_wait_ms: 2_000 } },
    );
    const r1 = router.handler(ctxFor(), chat('g', { seed: 1 })); // holds a
    await expect.poll(() => p.calls.length).toBe(1);
    return { held, p, router, r1 };
  }

  it('a new arrival takes an idle deployment that no waiter can use, rather than queueing behind them', async () => {
    const { held, router, r1 } = await busyAThenFailingB({ max_retries: 0 });
    const r2 = router.handler(ctxFor(), chat('g', { seed: 2 })); // fails on b, then waits for a
    await queued(router, 1);
    const ctx3 = ctxFor();
    expect(await text(await router.handler(ctx3, chat('g', { seed: 3 })))).toBe('answer from b');
    expect(ctx3.facts.deployment).toBe('fake/b');
    held.open();
    expect(await text(await r1)).toBe('answer from a');
    expect(await text(await r2)).toBe('answer from a');
  });

  it('a request that failed on an idle deployment retries there rather than queueing for a busy one', async () => {
    const { held, p, router, r1 } = await busyAThenFailingB({ max_retries: 1, base_delay_ms: 1, max_delay_ms: 2 });
    const ctx2 = ctxFor();
    expect(await text(await router.handler(ctx2, chat('g', { seed: 2 })))).toBe('answer from b');
    expect(ctx2.facts.attempts).toBe(2);
    expect(router.events.counters.retries).toBe(1);
    held.open();
    expect(await text(await r1)).toBe('answer from a');
    // The retry went back to b; a served only the first request.
    expect(p.calls).toEqual(['a', 'b', 'b']);
  });

  it('counts queue rejections by their cause: not a request whose deadline passed, and shutdown as shutdown', async () => {
    const held = gate();
    const p = new ScriptedProvider().on('a', async (_r, _o, n) => {
      if (n === 0) await held.opened;
      return answer('a');
    });
    const router = build([{ name: 'g', deployments: [{ provider: 'fake', model: 'a', max_concurrency: 1 }] }], p, { deadline_ms: 100, queue: { max_wait_ms: 30_000 } });
    const reasons: string[] = [];
    router.events.on('queue_rejected', (e) => reasons.push(e.reason));
    const r1 = router.handler(ctxFor(), chat('g', { seed: 1 })).catch((e: unknown) => e);
    await expect.poll(() => p.calls.length).toBe(1);
    const late = (await router.handler(ctxFor(), chat('g', { seed: 2 })).catch((e: unknown) => e)) as GatewayError;
    expect(late.code).toBe('upstream_timeout');
    expect(router.events.counters.queueRejections).toBe(0);
    const patient = build([{ name: 'g', deployments: [{ provider: 'fake', model: 'a', max_concurrency: 1 }] }], new ScriptedProvider().on('a', () => held.opened.then(() => answer('a'))), { queue: { max_wait_ms: 30_000 } });
    patient.events.on('queue_rejected', (e) => reasons.push(e.reason));
    const holder = patient.handler(ctxFor(), chat('g', { seed: 1 }));
    await new Promise((r) => setImmediate(r));
    const waiting = patient.handler(ctxFor(), chat('g', { seed: 2 })).catch((e: unknown) => e);
    await queued(patient, 1);
    await patient.close();
    expect(((await waiting) as GatewayError).code).toBe('shutting_down');
    expect(reasons).toEqual(['shutdown']);
    held.open();
    await Promise.all([r1, holder]);
  });
});

describe('Router: passthrough model names', () => {
  it('routes any model name to the passthrough provider and keeps bounded state for them', async () => {
    const p = new ScriptedProvider();
    const router = build([group('g', ['a'])], p, {}, 'fake');
    for (let i = 0; i < 1_100; i++) await router.handler(ctxFor(), chat(`client-model-${i}`));
    expect(p.calls.length).toBe(1_100);
    expect(p.calls[1_099]).toBe('client-model-1099');
    expect(router.tracked.groups).toBeLessThanOrEqual(1_024);
    expect(router.tracked.deployments).toBeLessThanOrEqual(1_025);
  });

  it('shows the passthrough model names it has served in GET /v1/providers, not the ones that got 404', async () => {
    const p = new ScriptedProvider().on('no-such-model', fail('not_found', { status: 404 })).on('flaky-model', fail('server', { status: 500 }));
    const router = build([group('g', ['a'])], p, { retry: { max_retries: 0 } }, 'fake');
    await router.handler(ctxFor(), chat('client-model'));
    await router.handler(ctxFor(), chat('flaky-model')).catch(() => undefined);
    await router.handler(ctxFor(), chat('no-such-model')).catch(() => undefined);
    const rows = router.status().data;
    expect(rows.map((r) => r.id)).toEqual(['fake/a', 'fake/client-model', 'fake/flaky-model']);
    expect(rows[0]?.passthrough).toBeUndefined();
    expect(rows[1]).toMatchObject({ group: 'client-model', provider: 'fake', model: 'client-model', strategy: 'fallback', passthrough: true, breaker: { state: 'closed' }, error_rate: 0, requests_in_window: 1 });
    expect(rows[1]?.latency_ewma_ms).not.toBeNull();
    expect(rows[2]).toMatchObject({ group: 'flaky-model', passthrough: true, error_rate: 1, requests_in_window: 1 });
  });

  it('forgets a dropped passthrough deployment kept for its open breaker once the breaker lets calls through', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const p = new ScriptedProvider();
      for (let i = 0; i < 1_100; i++) p.on(`bad-${i}`, fail('server', { status: 500 }));
      const router = build([group('g', ['a'])], p, { breaker: { consecutive_failures: 1, open_ms: 60_000 }, retry: { max_retries: 0 } }, 'fake');
      for (let i = 0; i < 1_100; i++) await router.handler(ctxFor(), chat(`bad-${i}`)).catch(() => undefined);
      // Open breakers outlive their dropped groups (a dead deployment stays skipped)…
      expect(router.tracked.deployments).toBeGreaterThan(1_025);
      vi.setSystemTime(Date.now() + 61_000);
      for (let i = 0; i < 1_100; i++) await router.handler(ctxFor(), chat(`good-${i}`));
      // …but not once they have closed: the table is bounded again.
      expect(router.tracked.deployments).toBeLessThanOrEqual(1_025);
    } finally {
      vi.useRealTimers();
    }
  });
});
