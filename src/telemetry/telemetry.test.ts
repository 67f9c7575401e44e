// Telemetry as the gateway wires it: the executor's attempts and admission's settlement of a stream
// that ended without a usage chunk both reach the spend metrics — together exactly what was charged.
import { afterEach, describe, expect, it } from 'vitest';
import type { ChatChunk, ChatRequest } from '../canonical/chat.js';
import { budgetsSchema, monitoringSchema, rateLimitingSchema } from '../config/schema.js';
import { ANONYMOUS, Settlements, defaultRequestOptions, newFacts, type RequestContext } from '../gateway/context.js';
import type { ChatOutcome } from '../gateway/pipeline.js';
import { createAdmissionStage } from '../limits/admission.js';
import { BudgetManager, MemoryBudgetStore } from '../limits/budgets.js';
import { MemoryLimiterStore } from '../limits/sliding-window.js';
import { Cancellation } from '../providers/cancel.js';
import { UpstreamError } from '../providers/errors.js';
import { countPromptTokens, countTextTokens } from '../providers/tokens.js';
import type { Deployment } from '../routing/catalog.js';
import { createLogger } from './logger.js';
import { Telemetry } from './telemetry.js';

const log = createLogger('silent');
/** $1 per million prompt tokens, $1,000 per million completion tokens. */
const PRICE = { input: 1, output: 1000 };
const REQ: ChatRequest = { model: 'chat', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'hello there' }] };
const D = { id: 'sim/sim-chat', group: 'chat', providerName: 'sim', model: 'sim-chat', price: PRICE } as Deployment;

const telemetries: Telemetry[] = [];
afterEach(async () => {
  for (const t of telemetries.splice(0)) await t.close();
});

function chunk(content: string): ChatChunk {
  return { id: 'c', object: 'chat.completion.chunk', created: 0, model: 'sim-chat', choices: [{ index: 0, delta: { content }, finish_reason: null }] };
}

function setup() {
  const telemetry = Telemetry.create(monitoringSchema.parse({ metrics: { process_metrics: false }, tracing: { enabled: false } }), { version: 'test' });
  telemetries.push(telemetry);
  const budgets = new BudgetManager({ store: new MemoryBudgetStore(), config: budgetsSchema.parse({ alert_thresholds: [] }), log });
  const stage = createAdmissionStage({ limiter: new MemoryLimiterStore(), config: rateLimitingSchema.parse({}), budgets, priceOf: () => PRICE, onUsageEstimated: telemetry.usageEstimated });
  const signal = new Cancellation();
  const tenant = { ...ANONYMOUS, id: 'key:k', kind: 'key' as const, limits: { budgetUsd: 10, budgetPeriod: 'day' as const } };
  const ctx = { id: 'r', startedAt: 0, endpoint: 'chat', tenant, signal, log, options: defaultRequestOptions(), facts: newFacts(), headers: {}, settlements: new Settlements() } as RequestContext;
  return { telemetry, stage, signal, ctx };
}

/** A routed stream of words, without a usage chunk, whose attempt reports to telemetry as the router's does. */
function routed(telemetry: Telemetry, words: string[]) {
  return async (ctx: RequestContext): Promise<ChatOutcome> => {
    ctx.facts.provider = D.providerName;
    ctx.facts.model = D.model;
    ctx.facts.deployment = D.id;
    const stream = (async function* () {
      try {
        for (const w of words) yield chunk(w);
      } finally {
        // The attempt ends with no usage to report (and here: cancelled, the client left).
        telemetry.attemptEnded(ctx, D, { ok: false, durationMs: 5, ttftMs: 1, error: new UpstreamError({ provider: 'sim', kind: 'aborted', message: 'gone' }) });
      }
    })();
    return { kind: 'stream', stream };
  };
}

const sample = (text: string, series: string) => Number(text.split('\n').find((l) => l.startsWith(`${series} `))?.split(' ')[1] ?? NaN);

describe('spend of a stream that ended without a usage chunk', () => {
  it('reaches inference_tokens_total, inference_cost_usd_total and /v1/stats as charged, once', async () => {
    const { telemetry, stage, signal, ctx } = setup();
    const outcome = (await stage(ctx, REQ, routed(telemetry, ['one ', 'two ', 'three']))) as Extract<ChatOutcome, { kind: 'stream' }>;
    const it = outcome.stream[Symbol.asyncIterator]();
    await it.next();
    await it.next();
    // The client leaves mid-stream (a 499): admission settles with the text that went out.
    signal.abort();
    await it.return?.();
    await ctx.settlements?.done();
    const output = countTextTokens('one two ');
    const input = countPromptTokens(REQ.messages);
    expect(ctx.facts.usage).toMatchObject({ prompt_tokens: input, completion_tokens: output });
    expect(ctx.facts.costUsd).toBeGreaterThan(0);

    const text = await telemetry.metrics.render();
    expect(sample(text, 'inference_cost_usd_total{provider="sim",model="sim-chat"}')).toBeCloseTo(ctx.facts.costUsd, 12);
    expect(sample(text, 'inference_tokens_total{provider="sim",model="sim-chat",type="input"}')).toBe(input);
    expect(sample(text, 'inference_tokens_total{provider="sim",model="sim-chat",type="output"}')).toBe(output);
    const s = telemetry.summary();
    expect(s.cost.total_usd).toBeCloseTo(ctx.facts.costUsd, 12);
    expect(s.cost).toMatchObject({ input_tokens: input, output_tokens: output });
    // The spend is the provider's too, without counting a second call.
    expect(s.providers).toEqual([expect.objectContaining({ provider: 'sim', calls: 1, cancelled: 1 })]);
    expect(s.providers[0]?.cost_usd).toBeCloseTo(ctx.facts.costUsd, 12);
  });

  it('a stream whose upstream reported usage is recorded by its attempt alone', async () => {
    const { telemetry, stage, ctx } = setup();
    const usage = { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 };
    const outcome = (await stage(ctx, REQ, async (c) => {
      c.facts.provider = 'sim';
      c.facts.model = 'sim-chat';
      c.facts.usage = usage;
      c.facts.costUsd += 0.003;
      const stream = (async function* () {
        yield chunk('hi');
        telemetry.attemptEnded(c, D, { ok: true, durationMs: 5, ttftMs: 1, usage, costUsd: 0.003 });
      })();
      return { kind: 'stream', stream };
    })) as Extract<ChatOutcome, { kind: 'stream' }>;
    for await (const _ of outcome.stream) void _;
    await ctx.settlements?.done();
    const text = await telemetry.metrics.render();
    expect(sample(text, 'inference_cost_usd_total{provider="sim",model="sim-chat"}')).toBeCloseTo(0.003, 12);
    expect(sample(text, 'inference_tokens_total{provider="sim",model="sim-chat",type="output"}')).toBe(3);
    expect(telemetry.summary().cost.total_usd).toBeCloseTo(0.003, 12);
  });
});
