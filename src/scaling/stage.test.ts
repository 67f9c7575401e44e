import { describe, expect, it } from 'vitest';
import type { ChatRequest, ChatResult } from '../canonical/chat.js';
import { collectStream } from '../canonical/convert.js';
import { ANONYMOUS, defaultRequestOptions, newFacts, type RequestContext } from '../gateway/context.js';
import type { ChatHandler } from '../gateway/pipeline.js';
import { createSimulatorProvider } from '../providers/simulator.js';
import { GatewayError } from '../server/errors.js';
import { createLogger } from '../telemetry/logger.js';
import { testTimeScalingSchema, type TestTimeScalingConfig } from './config.js';
import { DifficultyEstimator } from './estimator.js';
import { countPromptTokens } from '../providers/tokens.js';
import { createScalingStage, planFor, plannedUsage, type PlannedUsage } from './stage.js';
import { DifficultyLevel } from './levels.js';

const log = createLogger('silent');

function context(opts: { difficulty?: string; aggregation?: string; headers?: Record<string, string> } = {}): RequestContext {
  const options = defaultRequestOptions();
  if (opts.difficulty) options.difficulty = opts.difficulty;
  if (opts.aggregation) options.aggregation = opts.aggregation;
  return { id: 'req-1', startedAt: 0, endpoint: 'chat', tenant: ANONYMOUS, signal: new AbortController().signal, log, options, facts: newFacts(), headers: opts.headers ?? {} };
}

function result(text: string, tokens = 10, model = 'm'): ChatResult {
  return {
    id: 'chatcmpl-x',
    object: 'chat.completion',
    created: 1,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop', logprobs: null }],
    usage: { prompt_tokens: 5, completion_tokens: tokens, total_tokens: 5 + tokens },
  };
}

/** A terminal handler answering from a script, charging $0.001 per call and recording each request. */
function scripted(answers: string[], opts: { delayMs?: (i: number) => number } = {}) {
  const calls: ChatRequest[] = [];
  const handler: ChatHandler = async (ctx, req) => {
    const i = calls.length;
    calls.push(req);
    const delay = opts.delayMs?.(i) ?? 0;
    if (delay > 0) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(resolve, delay);
        ctx.signal.addEventListener('abort', () => {
          clearTimeout(t);
          reject(new GatewayError('upstream_timeout'));
        });
      });
    }
    ctx.facts.costUsd += 0.001;
    ctx.facts.attempts++;
    ctx.facts.provider = `p${i}`;
    ctx.facts.model = req.model;
    ctx.facts.latencyMs = (ctx.facts.latencyMs ?? 0) + 1;
    const n = req.n ?? 1;
    if (n > 1) {
      const choices = Array.from({ length: n }, (_, k) => ({ index: k, message: { role: 'assistant' as const, content: answers[k % answers.length] as string }, finish_reason: 'stop' as const, logprobs: null }));
      return { kind: 'result', result: { ...result(''), choices, usage: { prompt_tokens: 5, completion_tokens: 10 * n, total_tokens: 5 + 10 * n } } };
    }
    return { kind: 'result', result: result(answers[i % answers.length] as string) };
  };
  return { calls, handler };
}

function config(raw: Record<string, unknown> = {}): TestTimeScalingConfig {
  return testTimeScalingSchema.parse(raw);
}

const ask: ChatRequest = { model: 'm', messages: [{ role: 'user', content: 'What is 2+3?' }] };

describe('scaling stage', () => {
  it('leaves a request that names no difficulty alone under apply: explicit', async () => {
    const { calls, handler } = scripted(['hi']);
    const ctx = context();
    await createScalingStage({ config: config() })(ctx, ask, handler);
    expect(calls).toEqual([ask]);
    expect(ctx.facts.passes).toBeUndefined();
  });

  it('runs the level’s passes as separate calls and returns the majority answer’s full text', async () => {
    const { calls, handler } = scripted(['I think the answer is 5.', 'The answer is 6', 'So, answer: 5.0 — done.']);
    const ctx = context({ difficulty: 'hard' });
    const out = await createScalingStage({ config: config() })(ctx, ask, handler);
    expect(calls).toHaveLength(3);
    expect(calls.every((c) => c.max_tokens === 1024 && c.temperature === 0.7 && c.stream === false)).toBe(true);
    if (out.kind !== 'result') throw new Error('expected a result');
    expect(out.result.choices[0]?.message.content).toBe('I think the answer is 5.');
    expect(ctx.facts.passes).toBe(3);
    expect(ctx.facts.scaling).toMatchObject({ difficulty: 'hard', difficulty_source: 'request', aggregation: 'self_consistency', votes: { '5': 2, '6': 1 }, answer: '5' });
    // Usage and cost are the sum over every pass.
    expect(out.result.usage).toEqual({ prompt_tokens: 15, completion_tokens: 30, total_tokens: 45 });
    expect(ctx.facts.usage).toEqual(out.result.usage);
    expect(ctx.facts.costUsd).toBeCloseTo(0.003);
    expect(ctx.facts.attempts).toBe(3);
    expect(ctx.facts.latencyMs).toBe(3);
  });

  it('reads a difficulty in any case with spaces around it, as the routes take it', async () => {
    for (const difficulty of [' Hard ', 'auto ']) {
      const { calls, handler } = scripted(['The answer is 5.', 'The answer is 5.', 'The answer is 5.']);
      const ctx = context({ difficulty });
      await createScalingStage({ config: config() })(ctx, ask, handler);
      if (difficulty === ' Hard ') expect(calls).toHaveLength(3);
      else expect(ctx.facts.scaling?.difficulty_source).not.toBe('request');
    }
  });

  it('reports the fallback group that answered the winning pass, so the cache keeps no such answer', async () => {
    const { handler } = scripted(['The answer is 5.', 'The answer is 5.', 'The answer is 6.']);
    const ctx = context({ difficulty: 'hard' });
    const fellBack: ChatHandler = async (c, req) => {
      const out = await handler(c, req);
      c.facts.fallbackGroup = 'backup';
      return out;
    };
    await createScalingStage({ config: config() })(ctx, ask, fellBack);
    expect(ctx.facts.fallbackGroup).toBe('backup');
  });

  it('asks for n choices in one call where the upstream supports n', async () => {
    const { calls, handler } = scripted(['answer: 7', 'answer: 7', 'answer: 8', 'answer: 8', 'answer: 7']);
    const ctx = context({ difficulty: 'expert' });
    const out = await createScalingStage({ config: config(), supportsN: () => true })(ctx, ask, handler);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.n).toBe(5);
    if (out.kind !== 'result') throw new Error('expected a result');
    expect(out.result.choices).toHaveLength(1);
    expect(ctx.facts.scaling).toMatchObject({ votes: { '7': 3, '8': 2 }, answer: '7' });
    expect(ctx.facts.passes).toBe(5);
  });

  it('raises a legacy completion’s best_of to the n it asks for (the Completions API refuses best_of < n)', async () => {
    const { calls, handler } = scripted(['answer: 7']);
    const raw: ChatRequest = { ...ask, text_completion: { prompt: 'What is 2+3?', best_of: 2 } };
    await createScalingStage({ config: config(), supportsN: () => true })(context({ difficulty: 'expert' }), raw, handler);
    expect(calls.map((c) => [c.n, c.text_completion?.best_of])).toEqual([[5, 5]]);
    // A best_of already above n is kept.
    const { calls: more, handler: h2 } = scripted(['answer: 7']);
    await createScalingStage({ config: config(), supportsN: () => true })(context({ difficulty: 'expert' }), { ...raw, text_completion: { prompt: 'x', best_of: 8 } }, h2);
    expect(more[0]?.text_completion?.best_of).toBe(8);
  });

  it('keeps the client’s max_tokens and temperature', async () => {
    const { calls, handler } = scripted(['a']);
    await createScalingStage({ config: config() })(context({ difficulty: 'medium' }), { ...ask, max_tokens: 50, temperature: 0.2 }, handler);
    expect(calls.map((c) => [c.max_tokens, c.temperature])).toEqual([[50, 0.2], [50, 0.2]]);
  });

  it('sets no temperature for OpenAI reasoning models, which refuse any but the default: passes nor judge', async () => {
    for (const model of ['o3-mini', 'gpt-5', 'openai/o1']) {
      const { calls, handler } = scripted(['answer: 1', 'answer: 2', 'answer: 2', 'Candidate 1: 9\nCandidate 2: 3\nCandidate 3: 4']);
      await createScalingStage({ config: config() })(context({ difficulty: 'hard', aggregation: 'best_of_n' }), { ...ask, model }, handler);
      expect(calls, model).toHaveLength(4);
      expect(calls.map((c) => c.temperature), model).toEqual([undefined, undefined, undefined, undefined]);
    }
    // A public name that maps onto such a model: the option (setup.ts reads the deployments) decides.
    const { calls, handler } = scripted(['answer: 1', 'answer: 1', 'Candidate 1: 9\nCandidate 2: 3']);
    const fixedTemperature = (m: string) => m === 'reasoner';
    await createScalingStage({ config: config({ judge_model: 'reasoner' }), fixedTemperature })(context({ difficulty: 'medium', aggregation: 'best_of_n' }), ask, handler);
    expect(calls.map((c) => [c.model, c.temperature])).toEqual([['m', 0.7], ['m', 0.7], ['reasoner', undefined]]);
  });

  it('best_of_n: the judge’s highest score wins and the judge call is paid for', async () => {
    const { calls, handler } = scripted(['answer: 1', 'answer: 2', 'answer: 2', 'Candidate 1: 9\nCandidate 2: 3\nCandidate 3: 4']);
    const ctx = context({ difficulty: 'hard', aggregation: 'best_of_n' });
    const out = await createScalingStage({ config: config({ judge_model: 'judge' }) })(ctx, ask, handler);
    expect(calls).toHaveLength(4);
    expect(calls[3]?.model).toBe('judge');
    expect(calls[3]?.messages[1]?.content).toContain('Candidate 3:');
    if (out.kind !== 'result') throw new Error('expected a result');
    expect(out.result.choices[0]?.message.content).toBe('answer: 1');
    expect(ctx.facts.scaling).toMatchObject({ scores: [9, 3, 4] });
    expect(ctx.facts.costUsd).toBeCloseTo(0.004);
    // The answering model is the winner's, not the judge's.
    expect(ctx.facts.model).toBe('m');
  });

  it('best_of_n does not show the judge an empty pass; its score is null', async () => {
    const { calls, handler } = scripted(['', 'answer: 1', 'answer: 2', 'Candidate 1: 3\nCandidate 2: 9']);
    const ctx = context({ difficulty: 'hard', aggregation: 'best_of_n' });
    const out = await createScalingStage({ config: config() })(ctx, ask, handler);
    expect(calls[3]?.messages[1]?.content).not.toContain('Candidate 3');
    if (out.kind !== 'result') throw new Error('expected a result');
    expect(out.result.choices[0]?.message.content).toBe('answer: 2');
    expect(ctx.facts.scaling).toMatchObject({ scores: [null, 3, 9], passes: 3 });
  });

  it('best_of_n falls back to the vote when the judge says nothing parsable', async () => {
    const { handler } = scripted(['answer: 1', 'answer: 2', 'answer: 2', 'They all look fine to me.']);
    const ctx = context({ difficulty: 'hard', aggregation: 'best_of_n' });
    const out = await createScalingStage({ config: config() })(ctx, ask, handler);
    if (out.kind !== 'result') throw new Error('expected a result');
    expect(out.result.choices[0]?.message.content).toBe('answer: 2');
    expect(ctx.facts.scaling?.judge_fallback).toBeDefined();
  });

  it('adaptive stops once the leader is safe (4 unanimous votes) within a 16-pass budget', async () => {
    const { calls, handler } = scripted(['answer: 9']);
    const ctx = context({ difficulty: 'expert', aggregation: 'adaptive' });
    const levels = { expert: { passes: 16, max_tokens: 100, timeout_s: 5.0 } };
    await createScalingStage({ config: config({ difficulty_levels: levels }) })(ctx, ask, handler);
    expect(calls).toHaveLength(4);
    expect(ctx.facts.scaling).toMatchObject({ stopped_early: true, passes: 4, passes_planned: 16 });
  });

  it('adaptive never goes beyond the level’s pass count', async () => {
    const { calls, handler } = scripted(['answer: 1', 'answer: 2']);
    const ctx = context({ difficulty: 'expert', aggregation: 'adaptive' });
    await createScalingStage({ config: config() })(ctx, ask, handler);
    expect(calls).toHaveLength(5);
    expect(ctx.facts.scaling).toMatchObject({ stopped_early: false, votes: { '1': 3, '2': 2 } });
  });

  it('gives each separate pass its own seed (seed + k), adaptive passes too', async () => {
    for (const aggregation of ['self_consistency', 'adaptive']) {
      const { calls, handler } = scripted(['answer: 1', 'answer: 2']);
      await createScalingStage({ config: config() })(context({ difficulty: 'hard', aggregation }), { ...ask, seed: 7 }, handler);
      expect(calls.map((c) => c.seed).sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual([7, 8, 9]);
    }
  });

  it('first runs one pass with the level’s budget', async () => {
    const { calls, handler } = scripted(['x']);
    const ctx = context({ difficulty: 'expert', aggregation: 'first' });
    await createScalingStage({ config: config() })(ctx, ask, handler);
    expect(calls).toHaveLength(1);
    expect(calls[0]?.max_tokens).toBe(2048);
    expect(ctx.facts.passes).toBe(1);
  });

  it('plans with the aggregation in the options only (the header is read into them with the context, where the cache keys on it too)', async () => {
    const { calls, handler } = scripted(['answer: 1']);
    const ctx = context({ difficulty: 'hard', headers: { 'x-inferenceflow-aggregation': 'first' } });
    await createScalingStage({ config: config() })(ctx, ask, handler);
    expect(calls).toHaveLength(3);
    expect(ctx.facts.scaling).toMatchObject({ aggregation: 'self_consistency' });
  });

  it('the deadline covers every pass: late passes are dropped, the finished ones vote', async () => {
    const { calls, handler } = scripted(['answer: 3'], { delayMs: (i) => (i < 2 ? 0 : 10_000) });
    const ctx = context({ difficulty: 'expert' });
    const levels = { expert: { passes: 5, max_tokens: 100, timeout_s: 0.1 } };
    const out = await createScalingStage({ config: config({ difficulty_levels: levels }) })(ctx, ask, handler);
    expect(calls).toHaveLength(5);
    if (out.kind !== 'result') throw new Error('expected a result');
    expect(ctx.facts.passes).toBe(2);
    expect(ctx.facts.scaling).toMatchObject({ deadline_reached: true, passes_planned: 5 });
  });

  it('counts the prompt of a pass cut off by the deadline after it reached an upstream, not of one that never did', async () => {
    let i = 0;
    const handler: ChatHandler = async (ctx) => {
      const k = i++;
      if (k < 2) {
        ctx.facts.attempts++;
        return { kind: 'result', result: result('answer: 3') };
      }
      // Pass 2 is sent upstream and waits for its answer; pass 3 waits for a slot and never is.
      if (k === 2) ctx.facts.attempts++;
      return new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(new GatewayError('upstream_timeout'))));
    };
    const ctx = context({ difficulty: 'hard' });
    const levels = { hard: { passes: 4, max_tokens: 100, timeout_s: 0.1 } };
    await createScalingStage({ config: config({ difficulty_levels: levels }) })(ctx, ask, handler);
    expect(ctx.facts.scaling).toMatchObject({ deadline_reached: true, passes: 2 });
    expect(ctx.facts.discardedTokens).toBe(countPromptTokens(ask.messages));
    expect(ctx.facts.attempts).toBe(3);
  });

  it('answers 504 when no pass finishes before the deadline', async () => {
    const { handler } = scripted(['answer: 3'], { delayMs: () => 10_000 });
    const levels = { hard: { passes: 3, max_tokens: 100, timeout_s: 0.05 } };
    await expect(createScalingStage({ config: config({ difficulty_levels: levels }) })(context({ difficulty: 'hard' }), ask, handler)).rejects.toMatchObject({ code: 'upstream_timeout' });
  });

  it('tries a pass that failed upstream again while retries allow, and counts the failed attempt', async () => {
    let calls = 0;
    const handler: ChatHandler = async (ctx) => {
      calls++;
      ctx.facts.attempts++;
      if (calls === 1) throw new GatewayError('upstream_error');
      return { kind: 'result', result: result('answer: 4') };
    };
    const ctx = context({ difficulty: 'medium' });
    await createScalingStage({ config: config(), retries: 1 })(ctx, ask, handler);
    expect(calls).toBe(3);
    expect(ctx.facts.passes).toBe(2);
    expect(ctx.facts.attempts).toBe(3);
  });

  it('adds a failed pass’s spend like any call’s: the cost and the tokens its call recorded, its attempt and latency', async () => {
    // Each call records what it used in its facts, as routing does; the first consumed 7 tokens
    // upstream before it failed (and was charged for them), and its pass is tried again.
    let calls = 0;
    const handler: ChatHandler = async (ctx) => {
      calls++;
      ctx.facts.attempts++;
      ctx.facts.latencyMs = (ctx.facts.latencyMs ?? 0) + 2;
      if (calls === 1) {
        ctx.facts.usage = { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 };
        ctx.facts.costUsd += 0.007;
        throw new GatewayError('upstream_error');
      }
      const answer = result('answer: 4');
      ctx.facts.usage = answer.usage;
      ctx.facts.costUsd += 0.01;
      return { kind: 'result', result: answer };
    };
    const ctx = context({ difficulty: 'medium' });
    const out = await createScalingStage({ config: config(), retries: 1 })(ctx, ask, handler);
    if (out.kind !== 'result') throw new Error('expected a result');
    expect(calls).toBe(3);
    expect(ctx.facts).toMatchObject({ passes: 2, attempts: 3, latencyMs: 6 });
    expect(ctx.facts.costUsd).toBeCloseTo(0.027, 12);
    // The tokens that were charged are the tokens recorded (the ledger row) and answered (the body).
    expect(ctx.facts.usage).toEqual({ prompt_tokens: 15, completion_tokens: 27, total_tokens: 42 });
    expect(out.result.usage).toEqual(ctx.facts.usage);
  });

  it('scales every request under apply: always, with the default difficulty', async () => {
    const { calls, handler } = scripted(['x']);
    const ctx = context();
    await createScalingStage({ config: config({ apply: 'always', default_difficulty: 'hard' }) })(ctx, ask, handler);
    expect(calls).toHaveLength(3);
    expect(ctx.facts.scaling).toMatchObject({ difficulty: 'hard', difficulty_source: 'default' });
  });

  it('rejects an unknown difficulty or aggregation with the parameter named', async () => {
    const { handler } = scripted(['x']);
    const stage = createScalingStage({ config: config() });
    await expect(stage(context({ difficulty: 'impossible' }), ask, handler)).rejects.toMatchObject({ code: 'invalid_value', param: 'difficulty' });
    await expect(stage(context({ difficulty: 'hard', aggregation: 'vibes' }), ask, handler)).rejects.toMatchObject({ code: 'invalid_value', param: 'aggregation' });
  });

  it('estimates the level for difficulty auto', async () => {
    const { calls, handler } = scripted(['x']);
    const ctx = context({ difficulty: 'auto' });
    const stage = createScalingStage({ config: config(), estimator: new DifficultyEstimator([]) });
    await stage(ctx, { ...ask, messages: [{ role: 'user', content: 'Prove rigorously that the theorem holds for every distributed consensus protocol under network partitions, then derive the bound on recovery time and discuss the failure modes and trade-offs in detail.' }] }, handler);
    expect(ctx.facts.scaling).toMatchObject({ difficulty: 'expert', difficulty_source: 'estimate' });
    expect(calls).toHaveLength(5);
  });

  it('plans a prompt of token ids at the default level and votes rather than asks the judge (it has no text)', () => {
    const estimator = new DifficultyEstimator([]);
    let estimates = 0;
    const estimate = estimator.estimate.bind(estimator);
    estimator.estimate = (text) => (estimates++, estimate(text));
    const ids: ChatRequest = { model: 'm', messages: [{ role: 'user', content: '' }], text_completion: { prompt: '', prompt_ids: [1, 2, 3] } };
    const auto = planFor({ config: config(), estimator }, context({ difficulty: 'auto' }), ids);
    expect([auto?.level, auto?.source, estimates]).toEqual([DifficultyLevel.MEDIUM, 'default', 0]);
    expect(planFor({ config: config() }, context({ difficulty: 'hard', aggregation: 'best_of_n' }), ids)?.aggregation).toBe('self_consistency');
    expect(planFor({ config: config() }, context({ difficulty: 'hard', aggregation: 'best_of_n' }), ask)?.aggregation).toBe('best_of_n');
  });

  it('plans a request once: admission’s plan is the stage’s, the estimator runs once', async () => {
    const { calls, handler } = scripted(['x']);
    const estimator = new DifficultyEstimator([]);
    let estimates = 0;
    const estimate = estimator.estimate.bind(estimator);
    estimator.estimate = (text) => (estimates++, estimate(text));
    const opts = { config: config(), estimator };
    const ctx = context({ difficulty: 'auto' });
    const req = { ...ask };
    plannedUsage(opts, ctx, req, countPromptTokens(req.messages));
    await createScalingStage(opts)(ctx, req, handler);
    expect(estimates).toBe(1);
    expect(calls.length).toBeGreaterThan(0);
    // Another context is another plan.
    plannedUsage(opts, context({ difficulty: 'auto' }), req, countPromptTokens(req.messages));
    expect(estimates).toBe(2);
  });

  it("reserves a legacy completion's best_of candidates on every scaled call", () => {
    const req = { model: 'm', max_tokens: 100, messages: [{ role: 'user' as const, content: 'Once upon' }], text_completion: { prompt: 'Once upon', best_of: 20 } } as ChatRequest;
    const total = (calls: PlannedUsage[] | undefined) => (calls ?? []).reduce((n, c) => n + c.completionTokens, 0);
    expect(total(plannedUsage({ config: config() }, context({ difficulty: 'easy' }), req, 5))).toBe(2_000);
    // Separate passes each generate best_of; one call of n passes generates max(n, best_of).
    const expert = total(plannedUsage({ config: config() }, context({ difficulty: 'expert' }), req, 5));
    const expertN = total(plannedUsage({ config: config(), supportsN: () => true }, context({ difficulty: 'expert' }), req, 5));
    expect(expert).toBeGreaterThanOrEqual(5 * 2_000);
    expect(expertN).toBeGreaterThanOrEqual(2_000);
  });

  it('streams a one-pass plan straight through', async () => {
    const sim = createSimulatorProvider('sim', {});
    const handler: ChatHandler = async (ctx, req) => ({ kind: 'stream', stream: await sim.streamChat(req, { signal: ctx.signal, timeoutMs: 1000, requestId: ctx.id }) });
    const ctx = context({ difficulty: 'easy' });
    const out = await createScalingStage({ config: config() })(ctx, { ...ask, stream: true }, handler);
    expect(out.kind).toBe('stream');
    if (out.kind !== 'stream') return;
    const collected = await collectStream(out.stream);
    expect(collected.choices[0]?.message.content).toContain('What is 2+3?');
  });

  it('votes over the simulator’s noisy oracle through n', async () => {
    const sim = createSimulatorProvider('sim', { oracle: { p: 1, seed: 1 } });
    const handler: ChatHandler = async (ctx, req) => ({ kind: 'result', result: await sim.chat(req, { signal: ctx.signal, timeoutMs: 1000, requestId: ctx.id }) });
    const ctx = context({ difficulty: 'expert' });
    const out = await createScalingStage({ config: config(), supportsN: () => true })(ctx, { ...ask, messages: [{ role: 'user', content: 'What is 17+25?' }] }, handler);
    if (out.kind !== 'result') throw new Error('expected a result');
    expect(out.result.choices[0]?.message.content).toContain('The answer is 42.');
    expect(ctx.facts.scaling).toMatchObject({ votes: { '42': 5 } });
  });
});

describe('planned usage (what admission reserves for a scaled request)', () => {
  const sum = (calls: PlannedUsage[]) => calls.reduce((t, c) => ({ prompt: t.prompt + c.promptTokens, completion: t.completion + c.completionTokens }), { prompt: 0, completion: 0 });
  const prompt = countPromptTokens(ask.messages);

  it('is undefined when scaling does not apply, so the request is reserved as sent', () => {
    expect(plannedUsage({ config: config() }, context(), ask, prompt)).toBeUndefined();
    expect(plannedUsage({ config: config({ enabled: false }) }, context({ difficulty: 'expert' }), ask, prompt)).toBeUndefined();
  });

  it('counts every pass at the plan’s max_tokens: the client’s, else the level’s', () => {
    expect(plannedUsage({ config: config() }, context({ difficulty: 'expert' }), { ...ask, max_tokens: 20 }, prompt)).toEqual(Array.from({ length: 5 }, () => ({ model: 'm', promptTokens: prompt, completionTokens: 20 })));
    // One call answering five choices reads the prompt once.
    expect(plannedUsage({ config: config(), supportsN: () => true }, context({ difficulty: 'expert' }), ask, prompt)).toEqual([{ model: 'm', promptTokens: prompt, completionTokens: 5 * 2048 }]);
    // Tool calls get one pass, with the level's budget.
    const tools = [{ type: 'function' as const, function: { name: 'f', parameters: {} } }];
    expect(plannedUsage({ config: config() }, context({ difficulty: 'hard' }), { ...ask, tools }, prompt)).toEqual([{ model: 'm', promptTokens: prompt, completionTokens: 1024 }]);
  });

  it('reads the prompt once per pass in a call with n that a fallback group may fan out into n calls', () => {
    const opts = { config: config(), supportsN: () => true, promptPerChoice: () => true };
    expect(plannedUsage(opts, context({ difficulty: 'hard' }), { ...ask, max_tokens: 20 }, prompt)).toEqual([{ model: 'm', promptTokens: 3 * prompt, completionTokens: 3 * 20 }]);
  });

  it('adds the judge for best_of_n, at the judge’s model', () => {
    const calls = plannedUsage({ config: config({ judge_model: 'judge' }) }, context({ difficulty: 'hard', aggregation: 'best_of_n' }), { ...ask, max_tokens: 50 }, prompt)!;
    expect(calls).toHaveLength(4);
    expect(calls[3]).toMatchObject({ model: 'judge', completionTokens: 16 * 3 + 32 });
    expect(calls[3]!.promptTokens).toBeGreaterThan(3 * 50);
  });

  it('covers what the stage then uses, whatever the aggregation and however the passes run', async () => {
    for (const aggregation of ['self_consistency', 'best_of_n', 'adaptive', 'first']) {
      for (const n of [true, false]) {
        const opts = { config: config(), supportsN: () => n };
        const req = { ...ask, max_tokens: 40 };
        // An upstream that uses every token it may (answers of ~40 tokens), all distinct (no early stop, a full judge prompt).
        let i = 0;
        const handler: ChatHandler = async (_ctx, r) => {
          const choices = Array.from({ length: r.n ?? 1 }, (_, k) => ({ index: k, message: { role: 'assistant' as const, content: `answer ${i++} ${'word '.repeat(36)}` }, finish_reason: 'stop' as const, logprobs: null }));
          const completion = (r.max_tokens ?? 0) * choices.length;
          const promptTokens = countPromptTokens(r.messages);
          return { kind: 'result', result: { ...result(''), choices, usage: { prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion } } };
        };
        const ctx = context({ difficulty: 'expert', aggregation });
        const planned = sum(plannedUsage(opts, ctx, req, prompt)!);
        const out = await createScalingStage(opts)(ctx, req, handler);
        if (out.kind !== 'result') throw new Error('expected a result');
        // The answer's usage is the sum over every call made, the judge's included.
        expect(out.result.usage.completion_tokens, `${aggregation}, n ${n}`).toBeLessThanOrEqual(planned.completion);
        expect(out.result.usage.prompt_tokens, `${aggregation}, n ${n}`).toBeLessThanOrEqual(planned.prompt);
      }
    }
  });
});
