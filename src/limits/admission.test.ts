import { describe, expect, it } from 'vitest';
import type { ChatChunk, ChatRequest } from '../canonical/chat.js';
import { budgetsSchema, rateLimitingSchema } from '../config/schema.js';
import { defaultRequestOptions, newFacts, type RequestContext, type Tenant } from '../gateway/context.js';
import type { ChatHandler, ChatOutcome } from '../gateway/pipeline.js';
import { Cancellation } from '../providers/cancel.js';
import { countTextTokens } from '../providers/tokens.js';
import { createLogger } from '../telemetry/logger.js';
import { errorHeaders } from '../server/errors.js';
import { createAdmissionStage, dimensionValue, refusedBy } from './admission.js';
import { BudgetManager, MemoryBudgetStore } from './budgets.js';
import { MemoryLimiterStore } from './sliding-window.js';

const ctx = (tenant: Tenant, sessionId: string): RequestContext =>
  ({ id: 'r', tenant, options: { ...defaultRequestOptions(), sessionId }, facts: newFacts() }) as unknown as RequestContext;

describe('per-session limit keys', () => {
  it('keep tenants apart even when a tenant id or a session id contains the separator', () => {
    const req = { model: 'm', messages: [] };
    const a = dimensionValue('session', ctx({ id: 'jwt:a/b', kind: 'jwt' } as Tenant, 'c'), req);
    const b = dimensionValue('session', ctx({ id: 'jwt:a', kind: 'jwt' } as Tenant, 'b/c'), req);
    expect(a).not.toBe(b);
    expect(dimensionValue('session', ctx({ id: 'key:k', kind: 'key' } as Tenant, 's1'), req)).toBe('key%3Ak/s1');
  });
});

const log = createLogger('silent');
/** $0.001 per completion token, prompts free: max_tokens 100 reserves $0.10. */
const PRICE = { input: 0, output: 1000 };
const REQ: ChatRequest = { model: 'm', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'hello' }] };

function chunk(content: string): ChatChunk {
  return { id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: null }] };
}

/** An upstream stream of words without a usage chunk, recording whether it was closed. */
function upstream(words: string[], gate?: Promise<void>) {
  const seen = { closed: false, read: 0 };
  const stream: AsyncIterable<ChatChunk> = {
    [Symbol.asyncIterator]() {
      let i = 0;
      return {
        async next() {
          if (gate && i === 1) await gate;
          if (i >= words.length) return { done: true, value: undefined };
          seen.read++;
          return { done: false, value: chunk(words[i++] as string) };
        },
        async return() {
          seen.closed = true;
          return { done: true, value: undefined };
        },
      };
    },
  };
  return { stream, seen };
}

/** An admission stage with a concurrency limit of 1 and a $0.15 budget (one $0.10 estimate at a time). */
function setup() {
  const budgets = new BudgetManager({ store: new MemoryBudgetStore(), config: budgetsSchema.parse({ alert_thresholds: [] }), log });
  const stage = createAdmissionStage({ limiter: new MemoryLimiterStore(), config: rateLimitingSchema.parse({}), budgets, priceOf: () => PRICE });
  const tenant: Tenant = { id: 'key:k1', kind: 'key', keyId: 'k1', limits: { maxConcurrency: 1, budgetUsd: 0.15, budgetPeriod: 'day' } };
  const request = () => {
    const signal = new Cancellation();
    const c = { id: 'r', startedAt: 0, endpoint: 'chat', tenant, signal, log, options: defaultRequestOptions(), facts: newFacts(), headers: {} } as RequestContext;
    return { ctx: c, signal };
  };
  const answering = (stream: AsyncIterable<ChatChunk>): ChatHandler => async (c) => {
    c.facts.model = 'm';
    return { kind: 'stream', stream };
  };
  const json: ChatHandler = async (c) => {
    c.facts.model = 'm';
    c.facts.usage = { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 };
    return { kind: 'result', result: { id: 'x', object: 'chat.completion', created: 0, model: 'm', choices: [], usage: c.facts.usage } };
  };
  return { stage, request, answering, json };
}

const settled = () => new Promise((r) => setTimeout(r, 20));

describe('admission of a stream whose client goes away', () => {
  it('gives back the concurrency slot and the budget reservation even when nobody ever reads or closes the stream', async () => {
    const { stage, request, answering, json } = setup();
    const first = request();
    const { stream, seen } = upstream(['a', 'b']);
    const outcome = await stage(first.ctx, REQ, answering(stream));
    expect(outcome.kind).toBe('stream');
    // The client hung up before the gateway started writing, and the writer never closed the stream.
    first.signal.abort();
    await settled();
    expect(seen.closed).toBe(true);
    expect(first.ctx.facts.costUsd).toBe(0);
    // The slot and the $0.10 estimate are free again: another request fits both.
    const second = request();
    await expect(stage(second.ctx, { ...REQ, stream: false }, json)).resolves.toMatchObject({ kind: 'result' });
  });

  it('settles once, with the text that went out, when the client leaves mid-stream and the stream is closed later', async () => {
    const { stage, request, answering, json } = setup();
    const first = request();
    const { stream, seen } = upstream(['one ', 'two ', 'three ', 'four']);
    const outcome = (await stage(first.ctx, REQ, answering(stream))) as Extract<ChatOutcome, { kind: 'stream' }>;
    const it = outcome.stream[Symbol.asyncIterator]();
    await it.next();
    await it.next();
    first.signal.abort();
    await settled();
    const charged = countTextTokens('one two ') * 0.001;
    expect(first.ctx.facts.costUsd).toBeCloseTo(charged, 9);
    expect(first.ctx.facts.usage?.completion_tokens).toBe(countTextTokens('one two '));
    // The writer notices later and closes it: nothing more is counted or settled.
    await expect(it.next()).resolves.toEqual({ done: true, value: undefined });
    await it.return?.();
    expect(first.ctx.facts.costUsd).toBeCloseTo(charged, 9);
    expect(seen.closed).toBe(true);
    expect(seen.read).toBe(2);
    // The slot is free and only what went out stays on the budget: another $0.10 estimate fits.
    const second = request();
    await expect(stage(second.ctx, { ...REQ, stream: false }, json)).resolves.toMatchObject({ kind: 'result' });
  });

  it('ends the stream when a chunk awaited while the client left arrives', async () => {
    const { stage, request, answering } = setup();
    const first = request();
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const { stream, seen } = upstream(['one ', 'two ', 'three '], gate);
    const outcome = (await stage(first.ctx, REQ, answering(stream))) as Extract<ChatOutcome, { kind: 'stream' }>;
    const it = outcome.stream[Symbol.asyncIterator]();
    await it.next();
    const pending = it.next();
    first.signal.abort();
    open();
    await expect(pending).resolves.toMatchObject({ done: false });
    await settled();
    expect(seen.closed).toBe(true);
    expect(first.ctx.facts.usage?.completion_tokens).toBe(countTextTokens('one two '));
    await expect(it.next()).resolves.toMatchObject({ done: true });
  });

  it('reserves and runs nothing for a client that left before admission', async () => {
    const { stage, request, json } = setup();
    const gone = request();
    gone.signal.abort();
    let ran = false;
    await expect(
      stage(gone.ctx, REQ, async (c, r) => {
        ran = true;
        return json(c, r);
      }),
    ).rejects.toMatchObject({ code: 'client_closed_request' });
    expect(ran).toBe(false);
    const next = request();
    await expect(stage(next.ctx, { ...REQ, stream: false }, json)).resolves.toMatchObject({ kind: 'result' });
  });
});

describe('admission of a request to a hedging group', () => {
  it('reserves a hedged call twice: the hedge may run and is costed too', async () => {
    const budgets = () => new BudgetManager({ store: new MemoryBudgetStore(), config: budgetsSchema.parse({ alert_thresholds: [] }), log });
    const tenant: Tenant = { id: 'key:k1', kind: 'key', keyId: 'k1', limits: { budgetUsd: 0.15, budgetPeriod: 'day' } };
    const ctx = () => ({ id: 'r', startedAt: 0, endpoint: 'chat', tenant, signal: new Cancellation(), log, options: defaultRequestOptions(), facts: newFacts(), headers: {} }) as RequestContext;
    const answer: ChatHandler = async (c) => {
      c.facts.model = 'm';
      c.facts.usage = { prompt_tokens: 1, completion_tokens: 10, total_tokens: 11 };
      c.facts.costUsd += 0.01;
      return { kind: 'result', result: { id: 'x', object: 'chat.completion', created: 0, model: 'm', choices: [], usage: c.facts.usage } };
    };
    const json = { ...REQ, stream: false };
    // $0.10 of max_tokens fits a $0.15 budget once, not twice.
    const hedged = createAdmissionStage({ limiter: new MemoryLimiterStore(), config: rateLimitingSchema.parse({}), budgets: budgets(), priceOf: () => PRICE, hedges: (m) => m === 'm' });
    await expect(hedged(ctx(), json, answer)).rejects.toMatchObject({ code: 'budget_exceeded' });
    const other = createAdmissionStage({ limiter: new MemoryLimiterStore(), config: rateLimitingSchema.parse({}), budgets: budgets(), priceOf: () => PRICE, hedges: (m) => m === 'other' });
    await expect(other(ctx(), json, answer)).resolves.toMatchObject({ kind: 'result' });
  });
});

describe('tokens of a hedge race', () => {
  it("count the loser's tokens against token limits, as they count in the cost", async () => {
    const tenant: Tenant = { id: 'key:k1', kind: 'key', keyId: 'k1', limits: {} };
    const ctx = () => ({ id: 'r', startedAt: 0, endpoint: 'chat', tenant, signal: new Cancellation(), log, options: defaultRequestOptions(), facts: newFacts(), headers: {} }) as RequestContext;
    const req: ChatRequest = { model: 'm', max_tokens: 15, stream: false, messages: [{ role: 'user', content: 'hi' }] };
    const answer: ChatHandler = async (c) => {
      c.facts.model = 'm';
      c.facts.usage = { prompt_tokens: 5, completion_tokens: 15, total_tokens: 20 };
      // The hedge that lost had read its prompt and answered in full: 70 tokens the upstream counted.
      c.facts.discardedTokens = 70;
      return { kind: 'result', result: { id: 'x', object: 'chat.completion', created: 0, model: 'm', choices: [], usage: c.facts.usage } };
    };
    const stage = createAdmissionStage({ limiter: new MemoryLimiterStore(), config: rateLimitingSchema.parse({ tokens: 100, window_s: 60 }), priceOf: () => PRICE });
    await expect(stage(ctx(), req, answer)).resolves.toMatchObject({ kind: 'result' });
    // 90 of 100 tokens are used: the next request's reservation (its prompt and 15) does not fit.
    await expect(stage(ctx(), req, answer)).rejects.toMatchObject({ code: 'rate_limit_exceeded' });
  });
});

describe('n choices', () => {
  it('reserves the prompt once per choice where the answer may come from one upstream call per choice', async () => {
    const budgets = () => new BudgetManager({ store: new MemoryBudgetStore(), config: budgetsSchema.parse({ alert_thresholds: [] }), log });
    const tenant: Tenant = { id: 'key:k1', kind: 'key', keyId: 'k1', limits: { budgetUsd: 0.5, budgetPeriod: 'day' } };
    const ctx = () => ({ id: 'r', startedAt: 0, endpoint: 'chat', tenant, signal: new Cancellation(), log, options: defaultRequestOptions(), facts: newFacts(), headers: {} }) as RequestContext;
    const answer: ChatHandler = async (c) => {
      c.facts.model = 'm';
      c.facts.usage = { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 };
      return { kind: 'result', result: { id: 'x', object: 'chat.completion', created: 0, model: 'm', choices: [], usage: c.facts.usage } };
    };
    // A prompt of ~200 tokens at $1,000 per million input tokens: $0.20 each time it is read; 3
    // choices of 1 token at $1,000 per million output: $0.003.
    const req: ChatRequest = { model: 'm', n: 3, max_tokens: 1, stream: false, messages: [{ role: 'user', content: 'word '.repeat(200) }] };
    const price = { input: 1000, output: 1000 };
    const perChoice = createAdmissionStage({ limiter: new MemoryLimiterStore(), config: rateLimitingSchema.parse({}), budgets: budgets(), priceOf: () => price, promptPerChoice: (m) => m === 'm' });
    await expect(perChoice(ctx(), req, answer)).rejects.toMatchObject({ code: 'budget_exceeded' });
    // Native n (one call reads the prompt once): $0.20 + $0.003 fits the $0.50 budget.
    const native = createAdmissionStage({ limiter: new MemoryLimiterStore(), config: rateLimitingSchema.parse({}), budgets: budgets(), priceOf: () => price, promptPerChoice: () => false });
    await expect(native(ctx(), req, answer)).resolves.toMatchObject({ kind: 'result' });
    // One choice is one call either way.
    await expect(perChoice(ctx(), { ...req, n: 1 }, answer)).resolves.toMatchObject({ kind: 'result' });
  });
});

describe('which limit refused a request', () => {
  /**
   * Runs JSON requests through one admission stage until one is refused; returns that error, after
   * checking the stage told its onRefused listener of that one refusal, by the same limit.
   */
  async function refusal(config: Record<string, unknown>, tenantLimits: Tenant['limits'] = {}, withBudgets = false): Promise<unknown> {
    const budgets = withBudgets ? new BudgetManager({ store: new MemoryBudgetStore(), config: budgetsSchema.parse({ alert_thresholds: [] }), log }) : undefined;
    const told: string[] = [];
    const stage = createAdmissionStage({ limiter: new MemoryLimiterStore(), config: rateLimitingSchema.parse(config), budgets, priceOf: () => PRICE, onRefused: (limit) => told.push(limit) });
    const tenant: Tenant = { id: 'key:k1', kind: 'key', keyId: 'k1', limits: tenantLimits };
    // Requests left in flight (never answered) hold their concurrency slots.
    const hold = new Promise<never>(() => undefined);
    for (let i = 0; i < 10; i++) {
      const c = { id: `r${i}`, startedAt: 0, endpoint: 'chat', tenant, signal: new Cancellation(), log, options: defaultRequestOptions(), facts: newFacts(), headers: {} } as RequestContext;
      let started!: () => void;
      const running = new Promise<undefined>((r) => (started = () => r(undefined)));
      const run = stage(c, { ...REQ, stream: false }, async (ctx) => {
        started();
        if (tenantLimits.maxConcurrency) return hold;
        // Each answer uses 150 tokens and costs $0.10.
        ctx.facts.model = 'm';
        ctx.facts.usage = { prompt_tokens: 50, completion_tokens: 100, total_tokens: 150 };
        ctx.facts.costUsd += 0.1;
        return { kind: 'result', result: { id: 'x', object: 'chat.completion', created: 0, model: 'm', choices: [], usage: ctx.facts.usage } };
      }).then(
        () => undefined,
        (err: unknown) => err,
      );
      // A request held in flight counts once it runs; any other once it is settled.
      const admitted = await (tenantLimits.maxConcurrency ? Promise.race([running, run]) : run);
      if (admitted !== undefined) {
        expect(told).toEqual([refusedBy(admitted)]);
        return admitted;
      }
      expect(told).toEqual([]);
    }
    throw new Error('nothing was refused');
  }

  it('names the request window, the token window, the concurrency limit or the budget', async () => {
    const requests = await refusal({ requests: 2 });
    expect(requests).toMatchObject({ code: 'rate_limit_exceeded', status: 429, param: null });
    expect(refusedBy(requests)).toBe('requests');
    // 150 tokens used per request: the third does not fit 300.
    expect(refusedBy(await refusal({ tokens: 300 }))).toBe('tokens');
    // Larger than the token window allows at all.
    expect(refusedBy(await refusal({ tokens: 50 }))).toBe('tokens');
    expect(refusedBy(await refusal({ requests: 100, tokens: 300 }))).toBe('tokens');
    expect(refusedBy(await refusal({}, { tpm: 300 }))).toBe('tokens');
    expect(refusedBy(await refusal({ rules: [{ per: 'key', requests: 1 }] }))).toBe('requests');
    expect(refusedBy(await refusal({}, { maxConcurrency: 2 }))).toBe('concurrency');
    // $0.10 per request against a $0.25 daily budget: the third gets 402.
    const budget = await refusal({}, { budgetUsd: 0.25, budgetPeriod: 'day' }, true);
    expect(budget).toMatchObject({ code: 'budget_exceeded', status: 402 });
    expect(refusedBy(budget)).toBe('budget');
    expect(refusedBy(new Error('other'))).toBeUndefined();
  });
});

describe('a stream charged an estimate', () => {
  function stageWith(estimates: [string, number, number][]) {
    const budgets = new BudgetManager({ store: new MemoryBudgetStore(), config: budgetsSchema.parse({ alert_thresholds: [] }), log });
    return createAdmissionStage({
      limiter: new MemoryLimiterStore(),
      config: rateLimitingSchema.parse({}),
      budgets,
      priceOf: () => PRICE,
      onUsageEstimated: (c, usage, cost) => estimates.push([c.id, usage.completion_tokens, cost]),
    });
  }
  const tenant: Tenant = { id: 'key:k1', kind: 'key', keyId: 'k1', limits: { budgetUsd: 1, budgetPeriod: 'day' } };
  const newCtx = () => ({ id: 'r', startedAt: 0, endpoint: 'chat', tenant, signal: new Cancellation(), log, options: defaultRequestOptions(), facts: newFacts(), headers: {} }) as RequestContext;

  it('tells its listener the estimated usage and exactly the cost it added, once', async () => {
    const estimates: [string, number, number][] = [];
    const stage = stageWith(estimates);
    const c = newCtx();
    c.facts.costUsd = 0.5; // charged earlier (a hedge loser's prompt, say): not part of the estimate
    const { stream } = upstream(['one ', 'two']);
    const outcome = (await stage(c, REQ, async (x) => ((x.facts.model = 'm'), { kind: 'stream', stream }))) as Extract<ChatOutcome, { kind: 'stream' }>;
    for await (const _ of outcome.stream) void _;
    const tokens = countTextTokens('one two');
    expect(estimates).toEqual([['r', tokens, tokens * 0.001]]);
    expect(c.facts.costUsd).toBeCloseTo(0.5 + tokens * 0.001, 9);
  });

  it('is silent when the upstream reported usage, and for a cache hit', async () => {
    const estimates: [string, number, number][] = [];
    const stage = stageWith(estimates);
    const reported = newCtx();
    const out = (await stage(reported, REQ, async (x) => {
      x.facts.model = 'm';
      x.facts.usage = { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 };
      return { kind: 'stream', stream: upstream(['a']).stream };
    })) as Extract<ChatOutcome, { kind: 'stream' }>;
    for await (const _ of out.stream) void _;
    const hit = newCtx();
    const replay = (await stage(hit, REQ, async (x) => {
      x.facts.model = 'm';
      x.facts.cache = 'exact';
      return { kind: 'stream', stream: upstream(['a']).stream };
    })) as Extract<ChatOutcome, { kind: 'stream' }>;
    for await (const _ of replay.stream) void _;
    expect(estimates).toEqual([]);
  });
});

describe('a request larger than a token limit allows in a whole window', () => {
  it('is refused with 400 request_too_large and nothing that invites a retry, whatever the window', async () => {
    for (const config of [{ tokens: 500 }, { rules: [{ per: 'tenant', tokens: 500, window_s: 10 }] }]) {
      const stage = createAdmissionStage({ limiter: new MemoryLimiterStore(), config: rateLimitingSchema.parse(config), priceOf: () => PRICE });
      const tenant: Tenant = { id: 'key:k1', kind: 'key', keyId: 'k1', limits: {} };
      const c = { id: 'r', startedAt: 0, endpoint: 'chat', tenant, signal: new Cancellation(), log, options: defaultRequestOptions(), facts: newFacts(), headers: {} } as RequestContext;
      const err = await stage(c, { ...REQ, stream: false, max_tokens: 1000 }, () => Promise.reject(new Error('must not run'))).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'request_too_large', status: 400 });
      expect(refusedBy(err)).toBe('tokens');
      const headers = errorHeaders(err as never);
      expect(headers['retry-after']).toBeUndefined();
      expect(headers['x-ratelimit-limit-tokens']).toBe('500');
    }
  });
});

describe('a legacy completion with best_of', () => {
  it('reserves max_tokens for every candidate best_of generates, not for the n returned', async () => {
    const stage = createAdmissionStage({ limiter: new MemoryLimiterStore(), config: rateLimitingSchema.parse({ tokens: 500 }), priceOf: () => PRICE });
    const tenant: Tenant = { id: 'key:k1', kind: 'key', keyId: 'k1', limits: {} };
    const c = { id: 'r', startedAt: 0, endpoint: 'completions', tenant, signal: new Cancellation(), log, options: defaultRequestOptions(), facts: newFacts(), headers: {} } as RequestContext;
    const req: ChatRequest = { model: 'm', max_tokens: 100, stream: false, messages: [{ role: 'user', content: 'Once upon a time' }], text_completion: { prompt: 'Once upon a time', best_of: 6 } };
    // 6 candidates × 100 tokens is over the 500-token window: it can never be admitted (n alone, 100, would be).
    const err = await stage(c, req, () => Promise.reject(new Error('must not run'))).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'request_too_large' });
    const { text_completion: _t, ...plain } = req;
    await expect(stage(c, plain, async (x) => ({ kind: 'result', result: { id: 'x', object: 'chat.completion', created: 0, model: 'm', choices: [], usage: x.facts.usage ?? { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 } } }))).resolves.toMatchObject({ kind: 'result' });
  });
});
