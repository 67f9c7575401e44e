// The test-time scaling stage (seed 000): decide the request's difficulty (named by the client or
// estimated), turn it into a plan (passes, token budget, one deadline over every pass), run the passes
// through the rest of the pipeline — in one call with `n` where the upstream takes it, else as
// parallel calls, or one at a time for `adaptive` — and combine them into one answer. Usage, cost,
// latency and attempts are summed over every internal call, the judge's and failed ones included,
// into the request's facts with addSpend, the helper every request made of several calls uses.
import { Cancellation, type CancelSignal } from '../providers/cancel.js';
import { contentText, emptyUsage, requestedMaxTokens, seedFor, type ChatRequest, type ChatResult } from '../canonical/chat.js';
import { collectStream } from '../canonical/convert.js';
import { addSpend, deriveContext, newFacts, type RequestContext, type ResponseFacts } from '../gateway/context.js';
import { callAlone } from '../routing/dedup.js';
import { promptTokensOf } from '../routing/prompt-tokens.js';
import { observeStream, type ChatHandler, type ChatOutcome, type ChatStage } from '../gateway/pipeline.js';
import { GatewayError, toGatewayError } from '../server/errors.js';
import { JUDGE_FRAME_TOKENS, judgeCandidateFrameTokens, judgeMaxTokens, judgeRequest, parseJudgeScores, select, selectByScores, toCandidate, voters, type Candidate, type Selection } from './aggregate.js';
import { AGGREGATIONS, type Aggregation, type TestTimeScalingConfig } from './config.js';
import { fixedTemperatureModel } from './fixed-temperature.js';
import type { DifficultyEstimate, DifficultyEstimator } from './estimator.js';
import { DifficultyLevel, parseDifficulty, type LevelBudget } from './levels.js';
import { shouldStop, tally } from './vote.js';

export interface ScalingStageOptions {
  config: TestTimeScalingConfig;
  /** Extra tries of a failed pass while the deadline allows (`inference.retries`). */
  retries?: number;
  /** Used when a request asks for `auto` or names no level under `apply: always`. */
  estimator?: DifficultyEstimator;
  /** True when every deployment of the model answers `n` choices in one call. */
  supportsN?: (model: string) => boolean;
  /**
   * True when a call with `n` for the model may be answered by a deployment that fans it out into n
   * calls, each reading the prompt (a fallback group of another provider type): admission then
   * reserves the prompt once per choice.
   */
  promptPerChoice?: (model: string) => boolean;
  /**
   * True when a deployment that may answer the model accepts only the default temperature (OpenAI's
   * reasoning models, fixed-temperature.ts); by default the model name alone decides.
   */
  fixedTemperature?: (model: string) => boolean;
}

function fixedTemperature(opts: ScalingStageOptions, model: string): boolean {
  return opts.fixedTemperature ? opts.fixedTemperature(model) : fixedTemperatureModel(model);
}

export interface ScalingPlan {
  level: DifficultyLevel;
  source: 'request' | 'estimate' | 'default';
  estimate?: DifficultyEstimate;
  budget: LevelBudget;
  aggregation: Aggregation;
  passes: number;
  request: ChatRequest;
  judgeModel: string;
}

/**
 * Plans already made, by request: admission (plannedUsage) and the scaling stage plan the same
 * request object under the same context, and with `auto` a plan runs the estimator. Reused only for
 * the same options and context.
 */
const plans = new WeakMap<ChatRequest, { opts: ScalingStageOptions; ctx: RequestContext; plan: ScalingPlan | undefined }>();

/** The plan for a request, or undefined when scaling does not apply to it. */
export function planFor(opts: ScalingStageOptions, ctx: RequestContext, req: ChatRequest): ScalingPlan | undefined {
  // Most requests: scaling off, or nothing asks for it. Answered before the WeakMap, whose entry per
  // request every young-generation GC then has to visit.
  if (!applies(opts.config, ctx, req)) return undefined;
  const known = plans.get(req);
  if (known && known.opts === opts && known.ctx === ctx) return known.plan;
  const plan = makePlan(opts, ctx, req);
  plans.set(req, { opts, ctx, plan });
  return plan;
}

/** Whether scaling may apply to the request at all: on, and a difficulty asked for or applied to every request of its group. */
function applies(config: ScalingStageOptions['config'], ctx: RequestContext, req: ChatRequest): boolean {
  if (!config.enabled) return false;
  return ctx.options.difficulty !== undefined || (config.groups[req.model]?.apply ?? config.apply) === 'always';
}

/** The plan of a request scaling applies to (planFor checked that). */
function makePlan(opts: ScalingStageOptions, ctx: RequestContext, req: ChatRequest): ScalingPlan | undefined {
  const { config } = opts;
  const group = config.groups[req.model] ?? {};
  // As the routes read it (any case, spaces around it): a batch line's comes here as it was written.
  const asked = (ctx.options.difficulty ?? config.default_difficulty)?.trim().toLowerCase();
  // A client asking for several choices gets them as asked; scaling would fold them into one.
  if ((req.n ?? 1) > 1) return undefined;

  let level: DifficultyLevel | undefined;
  let source: ScalingPlan['source'] = ctx.options.difficulty === undefined ? 'default' : 'request';
  let estimate: DifficultyEstimate | undefined;
  if (asked !== undefined && asked !== 'auto') {
    level = parseDifficulty(asked);
    if (!level) throw new GatewayError('invalid_value', { param: 'difficulty', message: `Invalid value for 'difficulty': "${asked}" is not one of easy, medium, hard, expert, auto (or 1-4).` });
  } else if (opts.estimator && config.estimator.enabled && !req.text_completion?.prompt_ids) {
    // A prompt of token ids has no text to estimate from: it gets the default level below.
    estimate = opts.estimator.estimate(promptText(req));
    level = estimate.level;
    source = 'estimate';
  } else {
    level = DifficultyLevel.MEDIUM;
    source = 'default';
  }

  // The client's choice (body field or `x-inferenceflow-aggregation`, set into the options when the
  // context is made), the same value the cache keys on.
  const rawAggregation = ctx.options.aggregation ?? group.aggregation ?? config.aggregation;
  if (!(AGGREGATIONS as readonly string[]).includes(rawAggregation)) {
    throw new GatewayError('invalid_value', { param: 'aggregation', message: `Invalid value for 'aggregation': "${rawAggregation}" is not one of ${AGGREGATIONS.join(', ')}.` });
  }
  // The judge reads the question as text, which a prompt of token ids does not have: it is voted on instead.
  const aggregation = rawAggregation === 'best_of_n' && req.text_completion?.prompt_ids ? 'self_consistency' : (rawAggregation as Aggregation);
  const lv = config.difficulty_levels[level];
  const budget: LevelBudget = { passes: lv.passes, max_tokens: lv.max_tokens, timeout_ms: Math.round(lv.timeout_s * 1000) };
  // Tool calls cannot be voted on: such requests get one pass with the level's budget and deadline.
  const passes = aggregation === 'first' || (req.tools?.length ?? 0) > 0 ? 1 : budget.passes;
  const request: ChatRequest = { ...req };
  if (requestedMaxTokens(req) === undefined) request.max_tokens = budget.max_tokens;
  // Passes need a temperature to differ, but a model that refuses any but the default (1, which
  // samples anyway) would answer every pass 400.
  if (passes > 1 && req.temperature === undefined && !fixedTemperature(opts, req.model)) request.temperature = config.pass_temperature;
  return { level, source, estimate, budget, aggregation, passes, request, judgeModel: group.judge_model ?? config.judge_model ?? req.model };
}

/** What one upstream call of a plan may use at most: its model and its tokens. */
export interface PlannedUsage {
  model: string;
  promptTokens: number;
  completionTokens: number;
}

/**
 * Everything a request may use upstream under its plan, at most, for admission to reserve before it
 * runs: every pass (one call answering `passes` choices where the upstream samples `n`, else a call
 * per pass, each with the plan's max_tokens — the level's when the client set none), and for
 * best_of_n the judge call, which reads the question and every candidate. `promptTokens` is the
 * request's own prompt. undefined when scaling does not apply: the request runs once as sent.
 * A pass tried again is not counted twice: a call that failed upstream is charged nothing (no
 * upstream reports usage for it), so a pass costs at most its one call that answered — though that
 * call may be answered by a fallback group, which admission prices (and hedges) each call for.
 */
export function plannedUsage(opts: ScalingStageOptions, ctx: RequestContext, req: ChatRequest, promptTokens: number): PlannedUsage[] | undefined {
  const plan = planFor(opts, ctx, req);
  if (!plan) return undefined;
  const perPass = requestedMaxTokens(plan.request) ?? plan.budget.max_tokens;
  // A legacy completion's best_of: each call generates (and bills) that many candidates.
  const bestOf = Math.max(1, req.text_completion?.best_of ?? 1);
  if (plan.passes === 1) return [{ model: req.model, promptTokens, completionTokens: perPass * bestOf }];
  const calls: PlannedUsage[] =
    plan.aggregation !== 'adaptive' && opts.supportsN?.(req.model)
      ? [{ model: req.model, promptTokens: promptTokens * (opts.promptPerChoice?.(req.model) ? plan.passes : 1), completionTokens: perPass * Math.max(plan.passes, bestOf) }]
      : Array.from({ length: plan.passes }, () => ({ model: req.model, promptTokens, completionTokens: perPass * bestOf }));
  if (plan.aggregation === 'best_of_n') {
    // The judge's prompt: its instructions and the question (the request's prompt, whose framing
    // covers the role labels the judge puts before each turn), then each candidate under a short label
    // between fences with a random nonce.
    const candidates = plan.passes * (perPass + judgeCandidateFrameTokens(plan.passes));
    calls.push({ model: plan.judgeModel, promptTokens: promptTokens + JUDGE_FRAME_TOKENS + candidates, completionTokens: judgeMaxTokens(plan.passes) });
  }
  return calls;
}

export function createScalingStage(opts: ScalingStageOptions): ChatStage {
  // Not an async function: a request nothing scales goes to `next` as it is, with no promise of this
  // stage's own wrapped around its answer.
  return function testTimeScaling(ctx: RequestContext, req: ChatRequest, next: ChatHandler): Promise<ChatOutcome> {
    let plan: ScalingPlan | undefined;
    try {
      plan = planFor(opts, ctx, req);
    } catch (err) {
      // An invalid difficulty or aggregation: a stage fails by rejecting.
      return Promise.reject(err);
    }
    return plan ? runPlan(opts, plan, ctx, req, next) : next(ctx, req);
  };
}

/** A request under its scaling plan: one pass with the level's budget, or several combined into one answer. */
async function runPlan(opts: ScalingStageOptions, plan: ScalingPlan, ctx: RequestContext, req: ChatRequest, next: ChatHandler): Promise<ChatOutcome> {
  const deadline = new Deadline(ctx.signal, plan.budget.timeout_ms);
  const describe = (extra: Record<string, unknown>) => {
    ctx.facts.scaling = {
      difficulty: plan.level,
      difficulty_source: plan.source,
      ...(plan.estimate ? { difficulty_score: round(plan.estimate.score) } : {}),
      aggregation: plan.aggregation,
      max_tokens: requestedMaxTokens(plan.request),
      timeout_ms: plan.budget.timeout_ms,
      ...extra,
    };
  };

  if (plan.passes === 1) {
    try {
      const outcome = await next(deriveContext(ctx, { signal: deadline.signal }), plan.request);
      ctx.facts.passes = 1;
      describe({ passes: 1 });
      if (outcome.kind === 'result') {
        deadline.clear();
        return outcome;
      }
      // The deadline keeps running over the stream and is cleared when it ends.
      return { kind: 'stream', stream: observeStream(outcome.stream, () => undefined, () => deadline.clear()) };
    } catch (err) {
      deadline.clear();
      throw deadline.expired ? deadlineError(plan) : err;
    }
  }

  const runner = new PassRunner(ctx, next, deadline, { ...plan.request, stream: false }, opts.retries ?? 0);
  try {
    let candidates: Candidate[];
    let stoppedEarly = false;
    if (plan.aggregation === 'adaptive') {
      ({ candidates, stoppedEarly } = await runner.adaptive(plan.passes, opts.config.adaptive_confidence));
    } else if (opts.supportsN?.(req.model)) {
      candidates = await runner.withN(plan.passes);
    } else {
      candidates = await runner.parallel(plan.passes);
    }
    if (candidates.length === 0) throw deadline.expired ? deadlineError(plan) : toGatewayError(runner.firstError ?? new GatewayError('no_healthy_deployment'));

    let selection: Selection;
    if (plan.aggregation === 'best_of_n' && voters(candidates).length > 1) {
      selection = await runner.judge(plan.judgeModel, req, candidates, fixedTemperature(opts, plan.judgeModel));
    }
    else {
      selection = select(plan.aggregation === 'best_of_n' ? 'self_consistency' : plan.aggregation, candidates);
    }

    const winner = selection.winner;
    adoptAnswerer(ctx.facts, winner.facts);
    ctx.facts.passes = candidates.length;
    describe({
      passes: candidates.length,
      passes_planned: plan.passes,
      winner_pass: winner.pass,
      answer: winner.answer,
      ...(selection.votes ? { votes: selection.votes } : {}),
      ...(selection.scores ? { scores: selection.scores } : {}),
      ...(selection.judgeFallback ? { judge_fallback: selection.judgeFallback } : {}),
      ...(plan.aggregation === 'adaptive' ? { stopped_early: stoppedEarly } : {}),
      ...(deadline.expired ? { deadline_reached: true } : {}),
    });
    // The answer's usage is what the request's facts hold — what the ledger records and the budget
    // was charged — summed over every call by addSpend.
    const result: ChatResult = { ...winner.result, usage: ctx.facts.usage ?? emptyUsage() };
    return { kind: 'result', result };
  } finally {
    deadline.clear();
  }
}

/**
 * Runs passes through the rest of the pipeline, each with its own facts, which are added into the
 * request's as each call ends (addSpend): a failed call's too — its attempts, upstream latency, and
 * whatever cost and tokens it was charged (routing charges a call that failed upstream nothing: no
 * upstream reports usage for it; tokens a call did consume before failing are charged like any).
 */
class PassRunner {
  firstError: unknown;
  private finished = 0;

  constructor(
    private readonly ctx: RequestContext,
    private readonly next: ChatHandler,
    private readonly deadline: Deadline,
    private readonly req: ChatRequest,
    private readonly retries: number,
  ) {}

  /** One call that returns `n` choices. */
  async withN(n: number): Promise<Candidate[]> {
    // A legacy completion's `best_of` must stay at least `n` (the Completions API refuses less).
    const t = this.req.text_completion;
    const done = await this.call(t?.best_of !== undefined && t.best_of < n ? { ...this.req, n, text_completion: { ...t, best_of: n } } : { ...this.req, n });
    if (!done) return [];
    return done.result.choices.map((_, i) => toCandidate(done.result, i, this.finished++, done.facts));
  }

  /** `n` separate calls at once; whatever finished by the deadline counts. */
  async parallel(n: number): Promise<Candidate[]> {
    const out: Candidate[] = [];
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const done = await this.call(passRequest(this.req, i));
        if (done) out.push(toCandidate(done.result, 0, this.finished++, done.facts));
      }),
    );
    return out.sort((a, b) => a.pass - b.pass);
  }

  /** One pass at a time until the leader is safe (Adaptive-Consistency) or the budget is spent. */
  async adaptive(max: number, confidence: number): Promise<{ candidates: Candidate[]; stoppedEarly: boolean }> {
    const out: Candidate[] = [];
    for (let i = 0; i < max && !this.deadline.signal.aborted; i++) {
      const done = await this.call(passRequest(this.req, i));
      if (!done) {
        if (this.deadline.signal.aborted) break;
        continue;
      }
      out.push(toCandidate(done.result, 0, this.finished++, done.facts));
      const t = tally(voters(out).map((c) => c.answer));
      if (out.length < max && shouldStop(t.v1, t.v2, confidence)) return { candidates: out, stoppedEarly: true };
    }
    return { candidates: out, stoppedEarly: false };
  }

  /**
   * Asks the judge model to score the candidates that may vote (empty and truncated passes are left
   * out; their score is null); a failed or unparsable judgement falls back to a vote.
   */
  async judge(model: string, original: ChatRequest, candidates: Candidate[], fixedTemperature: boolean): Promise<Selection> {
    const judged = voters(candidates);
    const done = await this.call(judgeRequest(model, original.messages, judged, { fixedTemperature }));
    if (!done) return { ...select('self_consistency', candidates), judgeFallback: 'the judge call failed' };
    const text = done.result.choices[0]?.message.content ?? '';
    const scores = parseJudgeScores(text, judged.length);
    return selectByScores(
      candidates,
      candidates.map((c) => {
        const k = judged.indexOf(c);
        return k < 0 ? null : (scores[k] ?? null);
      }),
    );
  }

  /** One pass, tried again on a server-side failure while retries and the deadline allow. */
  private async call(req: ChatRequest): Promise<{ result: ChatResult; facts: ResponseFacts } | undefined> {
    for (let attempt = 0; ; attempt++) {
      const { done, error } = await this.callOnce(req);
      if (done) return done;
      if (attempt >= this.retries || this.deadline.signal.aborted || toGatewayError(error).status < 500) return undefined;
    }
  }

  private async callOnce(req: ChatRequest): Promise<{ done?: { result: ChatResult; facts: ResponseFacts }; error?: unknown }> {
    const facts = newFacts();
    try {
      // deriveContext, not a spread: a spread would drop the context's `log` getter, which routing uses
      // when an attempt fails over to the next deployment. Each pass makes its own upstream call: passes
      // are identical requests, which dedup would otherwise join into one call (temperature 0, a seed,
      // or `dedup: all`) — one sample voting several times and billed once per pass.
      const outcome = await this.next(callAlone(deriveContext(this.ctx, { signal: this.deadline.signal, facts })), req);
      const result = outcome.kind === 'result' ? outcome.result : await collectStream(outcome.stream);
      // Routing put the answer's usage in the facts with its cost; a handler that did not is taken
      // at its answer's word.
      facts.usage ??= result.usage;
      return { done: { result, facts } };
    } catch (err) {
      this.firstError ??= err;
      if (!this.deadline.signal.aborted) this.ctx.log.warn({ err: (err as Error).message }, 'a scaling pass failed');
      // Cancelled by the deadline or the client after its call reached an upstream (an attempt
      // started) and before it answered: the upstream read the prompt, and bills it, as it does a
      // hedge race's cancelled loser. Token limits count it at settle (discardedTokens); its cost
      // needs the deployment's price, which only routing knows, so none is added here.
      if (this.deadline.signal.aborted && facts.attempts > 0 && !facts.usage) {
        facts.discardedTokens = (facts.discardedTokens ?? 0) + promptTokensOf(req);
      }
      return { error: err };
    } finally {
      addSpend(this.ctx.facts, facts);
    }
  }
}

/**
 * Pass `k`'s request when passes are separate calls: a client's `seed` becomes `seedFor(seed, k)`, so passes
 * stay reproducible yet are different samples (one seed would give every pass the same answer).
 */
function passRequest(req: ChatRequest, k: number): ChatRequest {
  return req.seed === undefined || k === 0 ? req : { ...req, seed: seedFor(req.seed, k) };
}

/** One deadline over all passes: aborts when it passes or when the client goes away. */
class Deadline {
  readonly signal = new Cancellation();
  expired = false;
  private readonly timer: NodeJS.Timeout;
  private readonly unlink: () => void;

  constructor(parent: CancelSignal, ms: number) {
    this.unlink = this.signal.follow(parent);
    this.timer = setTimeout(() => {
      this.expired = true;
      this.signal.abort(new Error('scaling deadline reached'));
    }, ms);
  }

  clear(): void {
    clearTimeout(this.timer);
    this.unlink();
  }
}

function deadlineError(plan: ScalingPlan): GatewayError {
  return new GatewayError('upstream_timeout', { message: `No pass finished within the ${plan.level} level's deadline of ${plan.budget.timeout_ms} ms.` });
}

/** Who answered is whoever produced the winning pass. */
function adoptAnswerer(total: ResponseFacts, winner: ResponseFacts | undefined): void {
  if (!winner) return;
  for (const key of ['provider', 'model', 'deployment', 'route', 'fallbackGroup', 'cache', 'similarity'] as const) {
    if (winner[key] !== undefined) (total as unknown as Record<string, unknown>)[key] = winner[key];
  }
}

function promptText(req: ChatRequest): string {
  for (let i = req.messages.length - 1; i >= 0; i--) {
    const m = req.messages[i];
    if (m?.role === 'user') return contentText(m.content);
  }
  return contentText(req.messages[req.messages.length - 1]?.content ?? '');
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
