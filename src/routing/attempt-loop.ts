// The attempt loop of one model group: every eligible deployment once in the strategy's order
// (moving on at once after a retryable failure or a deployment fault: auth, 404, unsupported), then
// budgeted retries after a full-jitter backoff
// that honours Retry-After; slots from admission (queueing by priority when all are full); each
// call possibly hedged. The router supplies its breakers, statistics and budget through the deps.
import type { ChatOutcome } from '../gateway/pipeline.js';
import type { RoutingConfig } from '../config/schema.js';
import { isUpstreamError, UpstreamError } from '../providers/errors.js';
import { GatewayError } from '../server/errors.js';
import type { Admission, AdmissionQueue } from './admission.js';
import { runAttempt, runHedged, settleUsage, type AttemptHooks, type AttemptResult, type AttemptSpec } from './attempt.js';
import type { BreakerToken, CircuitBreaker } from './breaker.js';
import type { Deployment, ModelGroup } from './catalog.js';
import type { RequestState } from './eligibility.js';
import type { RoutingEvents } from './events.js';
import { backoffMs, DEFAULT_COOLDOWN_MS, delay, everyDeploymentWaiting, isDeploymentFault, isRateLimit, isRetryable, type RetryBudget } from './retry.js';
import type { SemanticRouter } from './semantic.js';
import type { DeploymentStats, LatencyRing } from './stats.js';
import type { RoutingStrategy } from './strategies.js';

export interface GroupRuntime {
  /** The group's deployments by priority (stable), sorted once: strategies see them in this order. */
  byPriority: Deployment[];
  strategy: RoutingStrategy;
  queue: AdmissionQueue;
  /**
   * Recent latencies for the hedge delay, kept apart because they measure different things: streams
   * to their first chunk, JSON answers to the whole answer.
   */
  latency: { stream: LatencyRing; json: LatencyRing };
  semantic?: SemanticRouter;
  passthrough: boolean;
  /** The routing retry settings with the group's own over them, merged once. */
  retry: RoutingConfig['retry'];
}

export interface AttemptLoopDeps {
  config: RoutingConfig;
  budget: RetryBudget;
  events: RoutingEvents;
  admission: Admission;
  hooks: AttemptHooks;
  random: () => number;
  breakerFor(id: string): CircuitBreaker;
  statsFor(id: string): DeploymentStats;
}

/** A deployment taken for one attempt, with the breaker permission it holds. */
type Pick = { d: Deployment; token: BreakerToken };

/**
 * Every eligible deployment in order once (falling back on a retryable failure or a deployment
 * fault), then up to `max_retries` more attempts after a jittered backoff, each paid from the retry
 * budget. A request that already failed somewhere and would now have to queue for its untried
 * deployments takes the retry path at once when a deployment it tried has a free slot.
 */
export async function runAttempts(deps: AttemptLoopDeps, state: RequestState, group: ModelGroup, rt: GroupRuntime, order: Deployment[]): Promise<ChatOutcome> {
  const retry = rt.retry;
  const untried = [...order];
  let lastError: unknown;
  /** Whether some attempt failed in a way worth retrying (after backoff). */
  let retryable = false;
  /** Deployments that failed with a deployment fault: not retried for this request. */
  const faulted = new Set<string>();
  let retries = 0;
  let previous: Deployment | undefined;
  /** The last rate limit (429) this request met: the answer when nothing else answers. */
  let rateLimited: UpstreamError | undefined;
  /**
   * Deployments that rate-limited this request: not retried for it even when their cooldown is
   * over (a `Retry-After: 0`, or a wait shorter than the backoff) — the client's SDK retries.
   */
  const limited = new Set<string>();
  while (true) {
    if (state.signal.aborted) throw state.signal.reason as Error;
    let pick: Pick | undefined;
    const maxRetries = retry.max_retries ?? 0;
    // A deployment that started cooling since the request began (another request's 429) is not
    // called: it asked for a pause.
    dropCooling(deps, untried);
    if (untried.length > 0 && !(retryable && retries < maxRetries && retryRatherThanQueue(deps, order, untried, (id) => faulted.has(id) || limited.has(id)))) {
      pick = await take(deps, state, rt, untried);
      if (!pick) break;
      if (previous) {
        deps.events.counters.fallbacks++;
        deps.events.emit('fallback', { from: previous.id, to: pick.d.id, kind: 'deployment' });
      }
    } else {
      if (retries >= maxRetries || !retryable) break;
      // A deployment cooling down (its Retry-After) is not waited for: the client is told when the
      // first one frees up (429 Retry-After below) and its SDK waits, not a request held open here.
      const now = Date.now();
      const candidates = order.filter((d) => !faulted.has(d.id) && !limited.has(d.id) && deps.breakerFor(d.id).canPass() && !deps.statsFor(d.id).cooling(now));
      if (candidates.length === 0) break;
      const wait = backoffMs(retries, retry.base_delay_ms ?? 100, retry.max_delay_ms ?? 2_000, deps.random);
      if (now + wait >= state.deadlineAt) break;
      // Paid for only now that the retry will happen: a retry given up for want of a candidate or
      // of time must not drain the process-wide budget other groups retry from.
      if (!deps.budget.tryWithdraw()) {
        deps.events.counters.retryBudgetExhausted++;
        deps.events.emit('retry_budget_exhausted', { group: group.name });
        state.ctx.log.warn({ group: group.name }, 'retry budget exhausted; not retrying');
        break;
      }
      deps.events.counters.retries++;
      deps.events.emit('retry', { group: group.name, deployment: candidates[0]?.id ?? '', delayMs: wait });
      retries++;
      await delay(wait, state.signal);
      // One may have started cooling during the backoff (another request's 429).
      const ready = candidates.filter((d) => !deps.statsFor(d.id).cooling(Date.now()));
      pick = await take(deps, state, rt, ready);
      if (!pick) break;
    }
    previous = pick.d;
    try {
      const result = await call(deps, state, group, rt, pick, untried);
      if (result.outcome.kind === 'result') settleUsage(state.ctx, result.d, result.outcome.result.usage);
      state.ctx.facts.provider = result.d.providerName;
      state.ctx.facts.model = result.d.model;
      state.ctx.facts.deployment = result.d.id;
      return result.outcome;
    } catch (err) {
      if (state.signal.aborted) throw state.signal.reason as Error;
      lastError = err;
      if (isRateLimit(err)) {
        rateLimited = err;
        limited.add(pick.d.id);
      }
      if (isRetryable(err)) retryable = true;
      else if (isDeploymentFault(err)) faulted.add(pick.d.id);
      else throw err; // the request itself was refused (400): any deployment would refuse it
      state.ctx.log.warn({ deployment: pick.d.id, kind: isUpstreamError(err) ? err.kind : undefined, status: isUpstreamError(err) ? err.status : undefined }, 'upstream attempt failed');
    }
  }
  // Rate-limited somewhere (or every deployment began cooling before it was called): 429 saying
  // when the first deployment frees up.
  const freeIn = rateLimited || lastError === undefined ? untilFree(deps, order, faulted) : undefined;
  if (freeIn !== undefined) {
    throw rateLimited
      ? new UpstreamError({ provider: rateLimited.provider, kind: 'rate_limited', status: rateLimited.status, message: rateLimited.message, retryAfterMs: freeIn, body: rateLimited.body, cause: rateLimited })
      : everyDeploymentWaiting(group.name, freeIn);
  }
  throw lastError ?? new GatewayError('no_healthy_deployment', { message: `No deployment of "${group.name}" could take the request.`, retryAfterMs: DEFAULT_COOLDOWN_MS });
}

function dropCooling(deps: AttemptLoopDeps, from: Deployment[]): void {
  if (from.length === 0) return;
  const now = Date.now();
  for (let i = from.length - 1; i >= 0; i--) if (deps.statsFor((from[i] as Deployment).id).cooling(now)) from.splice(i, 1);
}

/**
 * For a request no deployment answered: ms until the first deployment still able to take it (not
 * faulted for this request, breaker closed) stops cooling — the client's Retry-After, not the last
 * upstream's own wait, which may be longer. Undefined when none is cooling.
 */
function untilFree(deps: AttemptLoopDeps, order: readonly Deployment[], faulted: ReadonlySet<string>): number | undefined {
  const now = Date.now();
  let earliest = Infinity;
  for (const d of order) {
    if (faulted.has(d.id) || !deps.breakerFor(d.id).canPass()) continue;
    const until = deps.statsFor(d.id).coolingUntil;
    if (until > now) earliest = Math.min(earliest, until);
  }
  return Number.isFinite(earliest) ? earliest - now : undefined;
}

/**
 * Whether a request that failed somewhere should retry (after backoff) rather than queue: every
 * untried deployment it could use is full (or left to waiters), while one it already tried has a
 * free slot, and the retry budget has room. Queueing for the one deployment left while another
 * sits idle would end in a 503 once the queue wait passes.
 */
function retryRatherThanQueue(deps: AttemptLoopDeps, order: readonly Deployment[], untried: readonly Deployment[], notRetried: (id: string) => boolean): boolean {
  const { admission } = deps;
  for (const d of untried) {
    if (!deps.breakerFor(d.id).canPass()) continue;
    if (d.maxConcurrency === undefined || (admission.hasFreeSlot(d) && !admission.waitedFor(d))) return false;
  }
  const now = Date.now();
  const idle = order.some(
    (d) => !untried.includes(d) && !notRetried(d.id) && deps.breakerFor(d.id).canPass() && !deps.statsFor(d.id).cooling(now) && admission.hasFreeSlot(d) && !admission.waitedFor(d),
  );
  return idle && deps.budget.canWithdraw();
}

/**
 * The first deployment of `from` whose breaker allows a call and which has a free slot no waiter (of
 * any group) is in line for — with `coolingAt`, also not cooling down then — taken out of `from`
 * with its slot and breaker permission; none when no such one is free now.
 */
function takeFree(deps: AttemptLoopDeps, from: Deployment[], coolingAt?: number): Pick | undefined {
  for (let i = 0; i < from.length; i++) {
    const d = from[i] as Deployment;
    const b = deps.breakerFor(d.id);
    if (!b.canPass()) continue;
    if (coolingAt !== undefined && deps.statsFor(d.id).cooling(coolingAt)) continue;
    // Waiters go first, but only on deployments they can use.
    if (d.maxConcurrency !== undefined && deps.admission.waitedFor(d)) continue;
    if (!deps.admission.tryAcquire(d)) continue;
    from.splice(i, 1);
    return { d, token: b.acquire() as BreakerToken };
  }
  return undefined;
}

/**
 * Takes the first deployment of `from` whose breaker allows a call and which has a free slot that
 * no waiter (of any group) is in line for, removing it from `from`; when every one it could use has
 * a limit and none is free, waits in the group's priority queue for a slot on one of them.
 */
export async function take(deps: AttemptLoopDeps, state: RequestState, rt: GroupRuntime, from: Deployment[]): Promise<Pick | undefined> {
  while (from.length > 0) {
    const free = takeFree(deps, from);
    if (free) return free;
    const allowed = from.filter((d) => deps.breakerFor(d.id).canPass());
    if (allowed.length === 0) return undefined;
    if (allowed.some((d) => d.maxConcurrency === undefined)) return undefined;
    let given: Deployment;
    try {
      given = await deps.admission.wait(rt.queue, state.ctx.options.priority, allowed, state.signal);
    } catch (err) {
      const reason = queueRejection(err, state);
      if (reason) {
        deps.events.counters.queueRejections++;
        deps.events.emit('queue_rejected', { group: rt.queue.group, reason });
      }
      throw err;
    }
    // The slot may come from another group's release of the same deployment id: use our own
    // deployment object (its group, limits and timeout), matched by id.
    const i = from.findIndex((x) => x.id === given.id);
    const d = from[i] ?? given;
    // It started cooling while this request waited (a 429's Retry-After, here or on another replica):
    // its slot goes on to the next waiter, and this request does not call it — with none left it
    // answers the 429 itself, as a request that found it cooling would.
    if (deps.statsFor(d.id).cooling(Date.now())) {
      deps.admission.release(d);
      if (i >= 0) from.splice(i, 1);
      continue;
    }
    const token = deps.breakerFor(d.id).acquire();
    if (!token) {
      deps.admission.release(d);
      continue;
    }
    if (i >= 0) from.splice(i, 1);
    return { d, token };
  }
  return undefined;
}

/**
 * Why the queue gave up on a waiter, for the queue_rejected count: full, its wait passed, or the
 * gateway is shutting down. The request's own end (deadline, client gone) is not a queue rejection.
 */
function queueRejection(err: unknown, state: RequestState): 'full' | 'timeout' | 'shutdown' | undefined {
  if (!(err instanceof GatewayError) || (state.signal.aborted && err === state.signal.reason)) return undefined;
  if (err.code === 'queue_full') return 'full';
  if (err.code === 'no_healthy_deployment') return 'timeout';
  if (err.code === 'shutting_down') return 'shutdown';
  return undefined;
}

/** The attempt on `pick`, hedged when the group hedges. Not async: it returns the attempt's own promise. */
function call(deps: AttemptLoopDeps, state: RequestState, group: ModelGroup, rt: GroupRuntime, pick: Pick, untried: Deployment[]): Promise<AttemptResult> {
  const spec: AttemptSpec = { ctx: state.ctx, req: state.req, d: pick.d, token: pick.token, signal: state.signal, timeoutMs: timeoutFor(state, pick.d), hedge: false, trace: state.trace };
  const hedging = group.hedging;
  const latency = state.req.stream ? rt.latency.stream : rt.latency.json;
  const delayMs = hedging?.enabled ? (hedging.delay_ms ?? (latency.size >= hedging.min_samples ? latency.quantile(hedging.percentile) : undefined)) : undefined;
  if (delayMs === undefined || untried.length === 0) return runAttempt(spec, deps.hooks);
  let hedgeTo: Deployment | undefined;
  return runHedged(spec, deps.hooks, {
    delayMs,
    timeoutFor: (d) => timeoutFor(state, d),
    // As take() chooses, and not one cooling down: a 429 may have come since the request began.
    pick: () => takeFree(deps, untried, Date.now()),
    onHedge: (primary, hedge) => {
      hedgeTo = hedge;
      deps.events.counters.hedges++;
      deps.events.emit('hedge', { group: group.name, primary: primary.id, hedge: hedge.id });
      state.ctx.log.info({ primary: primary.id, hedge: hedge.id, delayMs }, 'hedging a slow request');
    },
    onWinner: (winner, hedged, cutShort) => {
      if (!hedged || !hedgeTo) return;
      if (winner !== pick.d) deps.events.counters.hedgeWins++;
      // The first attempt answered after the hedge had failed: the hedge was not cancelled (its
      // failure is counted as one), so no outcome of the race is reported for it.
      else if (!cutShort) return;
      deps.events.emit('hedge', { group: group.name, primary: pick.d.id, hedge: hedgeTo.id, winner: winner.id });
    },
  });
}

function timeoutFor(state: RequestState, d: Deployment): number {
  // Capped by the deadline, with a little slack so the deadline (not the attempt) reports it.
  return Math.max(1, Math.min(d.timeoutMs, state.deadlineAt - Date.now() + 50));
}
