// One upstream attempt on one deployment, and the hedged race of two. An attempt has its own
// cancellation (the request's deadline and client, a lost hedge race, or its own timeout end it); a
// stream counts as answered once its first chunk is in, and is then wrapped so a silent upstream
// (not a slow reader) trips the idle timeout and the deployment's slot is freed when the stream ends.
import { primeStream } from '../providers/stream-priming.js';
import type { Context as TraceContext } from '@opentelemetry/api';
import type { ChatChunk, ChatRequest, Usage } from '../canonical/chat.js';
import { UpstreamError, isUpstreamError } from '../providers/errors.js';
import { GatewayError } from '../server/errors.js';
import { costUsd } from '../providers/pricing.js';
import type { RequestContext } from '../gateway/context.js';
import type { AttemptEnd } from '../gateway/execute.js';
import type { ChatOutcome } from '../gateway/pipeline.js';
import { endSpan, startSpan, traceHeaders } from '../telemetry/tracing.js';
import { Cancellation, type CancelSignal } from '../providers/cancel.js';
import type { BreakerToken } from './breaker.js';
import type { Deployment } from './catalog.js';
import { promptTokensOf } from './prompt-tokens.js';
import { spentUsageOf } from '../providers/choice-fan-out.js';

/** What the attempt runner needs from the router, kept narrow so it is testable on its own. */
export interface AttemptHooks {
  /** The attempt finished with a verdict for the breaker and stats (not called for cancellations). */
  settled(spec: AttemptSpec, ok: boolean, latencyMs: number, err: unknown): void;
  /** The attempt was cancelled (hedge lost, client gone) — no verdict. */
  cancelled(spec: AttemptSpec, latencyMs: number): void;
  /** The deployment's concurrency slot may be given back (stream end or JSON answer). */
  release(spec: AttemptSpec): void;
  /** A stream that had started broke (or went silent): counts against the deployment. */
  streamFailed(spec: AttemptSpec, err: UpstreamError): void;
  /** Every attempt's end, for metrics (streams: when the stream ends). */
  ended(spec: AttemptSpec, end: AttemptEnd): void;
  streamIdleTimeoutMs: number;
  /**
   * The least time an attempt must have had for the request's deadline ending it to count against
   * its deployment (none: any). One started with less — after a long wait in the queue or backoff —
   * says the request ran out of time, not that the deployment is slow: counted, a burst on a
   * saturated deployment opened its breaker with attempts given 25 ms each.
   */
  fairBudgetMs?(d: Deployment): number;
}

export interface AttemptSpec {
  ctx: RequestContext;
  req: ChatRequest;
  d: Deployment;
  /** The request-wide cancellation (client gone, deadline passed, every dedup client left). */
  signal: CancelSignal;
  timeoutMs: number;
  hedge: boolean;
  /** The breaker permission this attempt holds (a half-open probe or a normal pass). */
  token: BreakerToken;
  /** The route span's context: the attempt span is its child. */
  trace?: TraceContext;
}

export interface AttemptResult {
  outcome: ChatOutcome;
  d: Deployment;
  latencyMs: number;
  /** Cancels the attempt and frees what it holds (a hedge race's loser). */
  dispose(): void;
}

/** Marks an abort we caused ourselves, so the error can be told apart from the client leaving. */
class AttemptCancelled extends Error {
  constructor(readonly why: 'timeout' | 'lost_race') {
    super(why === 'timeout' ? 'attempt timed out' : 'another attempt answered first');
  }
}

/** The request signal's reason when the request's deadline passes. */
export class DeadlineExceeded extends GatewayError {
  constructor(ms: number) {
    super('upstream_timeout', { message: `No deployment answered within the request deadline of ${ms} ms.` });
  }
}

/**
 * A stream that broke before its first chunk sent nothing to the client, so it is as safe to retry
 * as a failed connect, whatever the adapter said (adapters mark mid-stream breaks not retryable).
 */
function beforeFirstChunk(err: unknown): unknown {
  if (!isUpstreamError(err) || err.retryable || (err.kind !== 'stream_interrupted' && err.kind !== 'timeout')) return err;
  return new UpstreamError({ provider: err.provider, kind: err.kind, status: err.status, message: `${err.message} (before the first chunk)`, retryable: true, cause: err });
}

export function settleUsage(ctx: RequestContext, d: Deployment, usage: Usage): void {
  ctx.facts.usage = usage;
  ctx.facts.costUsd += costUsd(usage, d.price);
}

/**
 * Runs one attempt. Resolves with the answer (a primed stream for streaming requests) or rejects
 * with an UpstreamError (timeouts become kind `timeout`, retryable) or the request signal's reason.
 */
export async function runAttempt(spec: AttemptSpec, hooks: AttemptHooks, register?: (cancel: () => void) => void): Promise<AttemptResult> {
  const { ctx, req, d } = spec;
  // The one signal of this attempt (a Cancellation, which undici takes as it is): request
  // cancellation, its timeout, a lost hedge race and (streams) the idle timeout all end it.
  const controller = new Cancellation();
  const onRequestAbort = () => controller.abort(spec.signal.reason);
  spec.signal.addEventListener('abort', onRequestAbort);
  if (spec.signal.aborted) controller.abort(spec.signal.reason);
  register?.(() => controller.abort(new AttemptCancelled('lost_race')));
  const timer = setTimeout(() => controller.abort(new AttemptCancelled('timeout')), Math.max(1, spec.timeoutMs));
  const started = performance.now();
  ctx.facts.attempts++;
  const attempt = startSpan(`provider ${d.providerName}`, spec.trace, {
    'inferenceflow.provider': d.providerName,
    'inferenceflow.deployment': d.id,
    'gen_ai.request.model': d.model,
    'inferenceflow.attempt': ctx.facts.attempts,
    ...(spec.hedge ? { 'inferenceflow.hedge': true } : {}),
  });
  const upstreamReq: ChatRequest = { ...req, model: d.model };
  const timeoutMs = Math.max(1, spec.timeoutMs);
  // The transport's body timer is only a backstop: the first chunk may take the attempt's whole
  // timeout, later silences the routing idle timeout, both enforced here (timer, IdleWatchdog).
  const opts = { signal: controller, timeoutMs, streamIdleTimeoutMs: Math.max(timeoutMs, hooks.streamIdleTimeoutMs), requestId: ctx.id, headers: traceHeaders(attempt.context) };
  const finish = (end: AttemptEnd) => {
    // What metrics and logs make of an attempt never decides the request, or the breaker.
    try {
      hooks.ended(spec, end);
    } catch (err) {
      ctx.log.error({ err: (err as Error).message }, 'recording an attempt failed');
    }
    if (end.error instanceof AttemptCancelled || (isUpstreamError(end.error) && end.error.kind === 'aborted')) {
      attempt.span.setAttribute('inferenceflow.cancelled', true);
      attempt.span.end();
    } else endSpan(attempt.span, end.error, end.usage ? { 'gen_ai.usage.input_tokens': end.usage.prompt_tokens, 'gen_ai.usage.output_tokens': end.usage.completion_tokens } : undefined);
  };
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    spec.signal.removeEventListener('abort', onRequestAbort);
    hooks.release(spec);
  };
  try {
    if (req.stream) {
      // Adapters that read ahead (Gemini, Cohere, Ollama look at the first event) fail inside
      // streamChat itself: either way nothing reached the client, so the failure is retryable.
      const stream = await d.provider.streamChat(upstreamReq, opts).catch((err: unknown) => {
        throw beforeFirstChunk(err);
      });
      const primed = await primeStream(stream).catch((err: unknown) => {
        throw beforeFirstChunk(err);
      });
      clearTimeout(timer);
      const latencyMs = performance.now() - started;
      hooks.settled(spec, true, latencyMs, undefined);
      const wrapped = guardStream(primed, controller, hooks.streamIdleTimeoutMs, d, ctx, release, (err) => hooks.streamFailed(spec, err), (error, usage, completed) => {
        const end = { durationMs: performance.now() - started, ttftMs: latencyMs, usage, costUsd: usage ? costUsd(usage, d.price) : undefined };
        // Ended by us (hedge lost, client gone) before its last chunk: a cancellation, however
        // the source reported it (an abort error, or nothing when the reader just stopped).
        if (cancelledByUs(error, completed, controller)) finish({ ...end, ok: false, error: cancelledError(d, controller.reason ?? error) });
        else finish({ ...end, ok: error === undefined, error });
      });
      return {
        outcome: { kind: 'stream', stream: wrapped.stream },
        d,
        latencyMs,
        dispose: () => {
          controller.abort(new AttemptCancelled('lost_race'));
          wrapped.close();
        },
      };
    }
    const result = await d.provider.chat(upstreamReq, opts);
    clearTimeout(timer);
    const latencyMs = performance.now() - started;
    hooks.settled(spec, true, latencyMs, undefined);
    release();
    finish({ ok: true, durationMs: latencyMs, usage: result.usage, costUsd: costUsd(result.usage, d.price) });
    return { outcome: { kind: 'result', result }, d, latencyMs, dispose: () => undefined };
  } catch (raw) {
    clearTimeout(timer);
    const latencyMs = performance.now() - started;
    release();
    // `n` fanned out as single calls, one of which failed: the others' answers were billed upstream.
    const spent = spentUsageOf(raw);
    if (spent) chargeDiscarded(ctx, spent, d);
    const reason: unknown = controller.aborted ? controller.reason : undefined;
    // Its own timeout, or the request's deadline (the tighter limit whenever timeout_ms is not):
    // either way the deployment did not answer in time, a verdict for its breaker and latency —
    // else a hung deployment would never open its breaker. The deadline fails the request (504).
    const deadline = spec.signal.reason instanceof DeadlineExceeded;
    if (deadline && spec.timeoutMs < (hooks.fairBudgetMs?.(d) ?? 0)) {
      hooks.cancelled(spec, latencyMs);
      finish({ ok: false, durationMs: latencyMs, error: cancelledError(d, spec.signal.reason) });
      throw spec.signal.reason;
    }
    if (deadline || (reason instanceof AttemptCancelled && reason.why === 'timeout' && !spec.signal.aborted)) {
      const within = deadline ? 'the request deadline' : `${spec.timeoutMs} ms`;
      const err = new UpstreamError({ provider: d.providerName, kind: 'timeout', message: `${d.providerName} did not answer within ${within}`, cause: raw });
      hooks.settled(spec, false, latencyMs, err);
      finish({ ok: false, durationMs: latencyMs, error: err });
      throw deadline ? spec.signal.reason : err;
    }
    if (spec.signal.aborted || reason instanceof AttemptCancelled || (isUpstreamError(raw) && raw.kind === 'aborted')) {
      hooks.cancelled(spec, latencyMs);
      finish({ ok: false, durationMs: latencyMs, error: cancelledError(d, reason ?? raw) });
      throw spec.signal.aborted ? (spec.signal.reason as unknown) : raw;
    }
    hooks.settled(spec, false, latencyMs, raw);
    finish({ ok: false, durationMs: latencyMs, error: raw });
    throw raw;
  }
}

/** How a cancelled attempt is reported to the observer: kind `aborted`, which metrics count apart from errors. */
function cancelledError(d: Deployment, cause: unknown): UpstreamError {
  return new UpstreamError({ provider: d.providerName, kind: 'aborted', message: 'attempt cancelled', cause });
}

/**
 * Whether a stream attempt ended because the gateway ended it: an abort error, or — short of its last
 * chunk — its signal aborted for any reason but the idle timeout (the only UpstreamError reason, and
 * a real failure of the upstream).
 */
function cancelledByUs(error: unknown, completed: boolean, controller: Cancellation): boolean {
  if (error instanceof AttemptCancelled || (isUpstreamError(error) && error.kind === 'aborted')) return true;
  return !completed && controller.aborted && !(controller.reason instanceof UpstreamError);
}

/**
 * Wraps a primed stream: usage settles cost into ctx.facts, waiting longer than idleMs on the
 * upstream for a chunk (time the reader takes between chunks does not count) aborts the attempt with a (non-retryable: bytes already went out) timeout, and the slot is freed
 * exactly once when the stream ends, fails or is abandoned.
 */
function guardStream(
  primed: AsyncIterable<ChatChunk>,
  controller: Cancellation,
  idleMs: number,
  d: Deployment,
  ctx: RequestContext,
  release: () => void,
  onFailure: (err: UpstreamError) => void,
  onEnd: (error: unknown, usage: Usage | undefined, completed: boolean) => void,
): { stream: AsyncIterable<ChatChunk>; close(): void } {
  const it = primed[Symbol.asyncIterator]();
  let iterated = false;
  let ended = false;
  let completed = false;
  let usage: Usage | undefined;
  let failure: unknown;
  const close = () => {
    release();
    if (!ended) {
      ended = true;
      onEnd(failure, usage, completed);
    }
    void Promise.resolve(it.return?.()).catch(() => undefined);
  };
  async function* read(): AsyncGenerator<ChatChunk> {
    if (iterated) throw new Error('a routed stream can be read once');
    iterated = true;
    const idle = new IdleWatchdog(idleMs, () => {
      const err = new UpstreamError({ provider: d.providerName, kind: 'timeout', message: `${d.providerName} stream was silent for ${idleMs} ms`, retryable: false });
      controller.abort(err);
      return err;
    });
    try {
      while (true) {
        const next = await idle.race(it.next());
        // From here until the reader asks for the next chunk (a slow client draining the last
        // one keeps the generator paused at yield) the upstream is not being waited on.
        idle.pause();
        if (next.done) {
          completed = true;
          return;
        }
        if (next.value.usage) {
          usage = next.value.usage;
          settleUsage(ctx, d, usage);
        }
        yield next.value;
      }
    } catch (err) {
      failure = err;
      if (isUpstreamError(err) && err.kind !== 'aborted' && !(controller.reason instanceof AttemptCancelled)) onFailure(err);
      throw err;
    } finally {
      idle.stop();
      close();
    }
  }
  // An async generator closed before its first read never runs its body, so its `finally` would not
  // free the deployment's slot or report the attempt: closing an unread stream does that here.
  const stream: AsyncIterable<ChatChunk> = {
    [Symbol.asyncIterator](): AsyncIterator<ChatChunk> {
      const gen = read();
      let started = false;
      return {
        next: () => {
          started = true;
          return gen.next();
        },
        return: async (value?: unknown) => {
          const r = await gen.return(value as never);
          if (!started) close();
          return r;
        },
        throw: (err?: unknown) => gen.throw(err),
      };
    },
  };
  return { stream, close };
}

/**
 * One idle timer per stream, re-armed (Timeout.refresh, no allocation) for every chunk: a timer and a
 * promise per chunk were a large share of a stream's garbage. `race` fails with the expiry's error
 * when no chunk came within `idleMs`, even from a source that ignores the abort. Only the time a
 * `race` is pending counts: between `pause` and the next `race` (the reader is busy) an expiry is
 * ignored, and the next `race` starts a full `idleMs` again. Not Promise.race
 * against one pending "expired" promise: each race would add a reaction to it that lives as long as
 * the stream, keeping every chunk it resolved with reachable until the stream ends.
 */
class IdleWatchdog {
  private readonly timer: NodeJS.Timeout;
  private fail: ((err: Error) => void) | undefined;
  private expiredWith: Error | undefined;

  constructor(idleMs: number, onExpiry: () => Error) {
    this.timer = setTimeout(() => {
      if (!this.fail) return; // nothing is waiting on the upstream
      this.expiredWith = onExpiry();
      this.fail(this.expiredWith);
    }, idleMs);
  }

  race<T>(next: Promise<T>): Promise<T> {
    if (this.expiredWith) return Promise.reject(this.expiredWith);
    this.timer.refresh();
    return new Promise<T>((resolve, reject) => {
      this.fail = reject;
      next.then(resolve, reject);
    });
  }

  /** The pending race settled: silence from now on is the reader's, not the upstream's. */
  pause(): void {
    this.fail = undefined;
  }

  stop(): void {
    clearTimeout(this.timer);
    this.fail = undefined;
  }
}

export interface HedgePlan {
  /** When to start the hedge, ms after the primary. */
  delayMs: number;
  /** Takes another deployment for the hedge (slot and breaker permission held), or undefined. */
  pick(): { d: Deployment; token: BreakerToken } | undefined;
  timeoutFor(d: Deployment): number;
  onHedge(primary: Deployment, hedge: Deployment): void;
  /** `hedged`: a hedge was launched; `cutShort`: an attempt was still running when `winner` answered (and is cancelled). */
  onWinner(winner: Deployment, hedged: boolean, cutShort: boolean): void;
}

/**
 * The primary attempt, plus a hedge to another deployment if the primary has not answered within
 * `delayMs`. The first answer wins and the other attempt is cancelled; a cancelled loser is costed
 * at its prompt tokens (the upstream has usually billed them already), a finished one in full.
 * Rejects with the last error when every started attempt failed.
 */
export function runHedged(spec: AttemptSpec, hooks: AttemptHooks, plan: HedgePlan): Promise<AttemptResult> {
  return new Promise<AttemptResult>((resolve, reject) => {
    const running: { d: Deployment; cancel?: () => void; done: boolean; charged: boolean }[] = [];
    let winner: AttemptResult | undefined;
    let pending = 0;
    let hedgeTimer: NodeJS.Timeout | undefined;

    const start = (d: Deployment, token: BreakerToken, hedge: boolean) => {
      const entry: (typeof running)[number] = { d, done: false, charged: false };
      running.push(entry);
      pending++;
      runAttempt({ ...spec, d, token, hedge, timeoutMs: plan.timeoutFor(d) }, hooks, (cancel) => (entry.cancel = cancel)).then(
        (result) => {
          pending--;
          entry.done = true;
          if (winner) {
            // Both answered: keep the first, cost and drop the second (unless charged on cancel).
            if (!entry.charged) {
              if (result.outcome.kind === 'result') {
                chargeDiscarded(spec.ctx, result.outcome.result.usage, d);
              } else chargePrompt(spec, d);
            }
            result.dispose();
            return;
          }
          winner = result;
          clearTimeout(hedgeTimer);
          const cutShort = running.some((r) => r !== entry && !r.done);
          for (const r of running) {
            if (r === entry || r.done) continue;
            r.cancel?.();
            r.charged = true;
            chargePrompt(spec, r.d);
          }
          plan.onWinner(d, running.length > 1, cutShort);
          resolve(result);
        },
        (err: unknown) => {
          pending--;
          entry.done = true;
          if (winner) return;
          // Every started attempt failed (or the request ended): no race left, the caller falls back.
          if (pending === 0 || spec.signal.aborted) {
            clearTimeout(hedgeTimer);
            hedgeTimer = undefined;
            reject(err);
          }
        },
      );
    };

    start(spec.d, spec.token, false);
    hedgeTimer = setTimeout(() => {
      hedgeTimer = undefined;
      if (winner || pending === 0 || spec.signal.aborted) return;
      const other = plan.pick();
      if (!other) return;
      plan.onHedge(spec.d, other.d);
      start(other.d, other.token, true);
    }, plan.delayMs);
  });
}

/** A dropped attempt's prompt (and its request fee): the upstream read (and bills) it whether or not it answered. */
function chargePrompt(spec: AttemptSpec, d: Deployment): void {
  const prompt = promptTokensOf(spec.req);
  chargeDiscarded(spec.ctx, { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt }, d);
}

/** Usage the upstream billed for an answer the client does not get: costed, and counted by token limits. */
function chargeDiscarded(ctx: RequestContext, u: Usage, d: Deployment): void {
  ctx.facts.discardedTokens = (ctx.facts.discardedTokens ?? 0) + u.prompt_tokens + u.completion_tokens;
  ctx.facts.costUsd += costUsd(u, d.price);
}
