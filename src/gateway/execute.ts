// The terminal stage: pick deployments for the request's model group and call them, moving to the
// next candidate on a failure that is safe to retry. A stream counts as started only once its first
// chunk has arrived, so a stream that fails before its first byte is retried like any other call.
// Cost and latency land in ctx.facts; a stream's final cost is settled when its usage chunk passes.
// Each attempt is reported to an AttemptObserver (metrics) and gets its own trace span, whose W3C
// `traceparent` goes to the upstream.
import type { ChatChunk, ChatRequest, Usage } from '../canonical/chat.js';
import { isUpstreamError } from '../providers/errors.js';
import { costUsd } from '../providers/pricing.js';
import type { CallOptions } from '../providers/types.js';
import type { Deployment, ModelCatalog, ModelGroup } from '../routing/catalog.js';
import { GatewayError, toGatewayError } from '../server/errors.js';
import { endSpan, startSpan, traceHeaders } from '../telemetry/tracing.js';
import type { RequestContext } from './context.js';
import { observeStream, type ChatHandler, type ChatOutcome } from './pipeline.js';

/** Orders a group's deployments for one request; the executor tries them in that order. */
export interface DeploymentSelector {
  candidates(group: ModelGroup, req: ChatRequest, ctx: RequestContext): Deployment[];
}

/** Ordered by `priority` (lower first), then config order: the `fallback` strategy. */
export const priorityOrder: DeploymentSelector = {
  candidates(group) {
    return [...group.deployments].sort((a, b) => a.priority - b.priority);
  },
};

export function callOptions(ctx: RequestContext, d: Deployment, headers?: Record<string, string>): CallOptions {
  return { signal: ctx.signal, timeoutMs: d.timeoutMs, requestId: ctx.id, ...(headers ? { headers } : {}) };
}

/** How one upstream attempt ended, as the executor reports it. */
export interface AttemptEnd {
  ok: boolean;
  durationMs: number;
  /** Streams: attempt start to the first chunk. */
  ttftMs?: number;
  error?: unknown;
  usage?: Usage;
  costUsd?: number;
}

/** Told about every upstream attempt (telemetry records metrics from it). */
export interface AttemptObserver {
  attemptEnded(ctx: RequestContext, d: Deployment, end: AttemptEnd): void;
}

export const noAttemptObserver: AttemptObserver = { attemptEnded: () => undefined };

export function createExecutor(catalog: ModelCatalog, selector: DeploymentSelector = priorityOrder, observer: AttemptObserver = noAttemptObserver): ChatHandler {
  return async function execute(ctx: RequestContext, req: ChatRequest): Promise<ChatOutcome> {
    const group = catalog.resolve(req.model);
    const route = startSpan('route', ctx.traceContext, { 'inferenceflow.model_group': group.name });
    const candidates = selector.candidates(group, req, ctx);
    route.span.setAttribute('inferenceflow.candidates', candidates.map((d) => d.id).join(','));
    if (candidates.length === 0) {
      const err = new GatewayError('no_healthy_deployment', { message: `No deployment of "${group.name}" can take the request now.` });
      endSpan(route.span, err);
      throw err;
    }
    let lastError: unknown;
    for (const d of candidates) {
      if (ctx.signal.aborted) break;
      ctx.facts.attempts++;
      const upstreamReq: ChatRequest = { ...req, model: d.model };
      const attempt = startSpan(`provider ${d.providerName}`, route.context, {
        'inferenceflow.provider': d.providerName,
        'inferenceflow.deployment': d.id,
        'gen_ai.request.model': d.model,
        'inferenceflow.attempt': ctx.facts.attempts,
      });
      const opts = callOptions(ctx, d, traceHeaders(attempt.context));
      const started = performance.now();
      try {
        if (req.stream) {
          const stream = await d.provider.streamChat(upstreamReq, opts);
          const primed = await primeStream(stream);
          const ttftMs = performance.now() - started;
          recordAnswerer(ctx, d, started);
          route.span.end();
          const settled = settleOnUsage(ctx, d, primed);
          const observed = observeStream(settled, () => undefined, ({ error }) => {
            const end: AttemptEnd = { ok: error === undefined, durationMs: performance.now() - started, ttftMs, error, usage: ctx.facts.usage, costUsd: ctx.facts.usage ? costUsd(ctx.facts.usage, d.price) : undefined };
            observer.attemptEnded(ctx, d, end);
            endSpan(attempt.span, error, usageAttributes(ctx.facts.usage));
          });
          return { kind: 'stream', stream: observed };
        }
        const result = await d.provider.chat(upstreamReq, opts);
        recordAnswerer(ctx, d, started);
        settle(ctx, d, result.usage);
        observer.attemptEnded(ctx, d, { ok: true, durationMs: performance.now() - started, usage: result.usage, costUsd: costUsd(result.usage, d.price) });
        endSpan(attempt.span, undefined, usageAttributes(result.usage));
        route.span.end();
        return { kind: 'result', result };
      } catch (err) {
        ctx.facts.latencyMs = (ctx.facts.latencyMs ?? 0) + (performance.now() - started);
        observer.attemptEnded(ctx, d, { ok: false, durationMs: performance.now() - started, error: err });
        endSpan(attempt.span, err, isUpstreamError(err) ? { 'inferenceflow.error_kind': err.kind } : undefined);
        lastError = err;
        if (!isUpstreamError(err) || !err.retryable || ctx.signal.aborted) break;
        ctx.log.warn({ provider: d.providerName, deployment: d.id, kind: err.kind, status: err.status }, 'upstream attempt failed; trying next deployment');
      }
    }
    const failure = toGatewayError(lastError ?? new GatewayError('no_healthy_deployment'));
    endSpan(route.span, failure);
    throw failure;
  };
}

function usageAttributes(usage: Usage | undefined): Record<string, number> | undefined {
  return usage ? { 'gen_ai.usage.input_tokens': usage.prompt_tokens, 'gen_ai.usage.output_tokens': usage.completion_tokens } : undefined;
}

function recordAnswerer(ctx: RequestContext, d: Deployment, started: number): void {
  ctx.facts.provider = d.providerName;
  ctx.facts.model = d.model;
  ctx.facts.deployment = d.id;
  ctx.facts.latencyMs = (ctx.facts.latencyMs ?? 0) + (performance.now() - started);
}

function settle(ctx: RequestContext, d: Deployment, usage: Usage): void {
  ctx.facts.usage = usage;
  ctx.facts.costUsd += costUsd(usage, d.price);
}

function settleOnUsage(ctx: RequestContext, d: Deployment, stream: AsyncIterable<ChatChunk>): AsyncIterable<ChatChunk> {
  return {
    async *[Symbol.asyncIterator]() {
      for await (const chunk of stream) {
        if (chunk.usage) settle(ctx, d, chunk.usage);
        yield chunk;
      }
    },
  };
}

/**
 * Waits for a stream's first chunk, then returns a stream that yields it followed by the rest.
 * An error before the first chunk rejects here (and can be retried elsewhere).
 */
export async function primeStream(stream: AsyncIterable<ChatChunk>): Promise<AsyncIterable<ChatChunk>> {
  const iterator = stream[Symbol.asyncIterator]();
  const first = await iterator.next();
  return {
    [Symbol.asyncIterator]() {
      let pending: IteratorResult<ChatChunk> | undefined = first;
      return {
        next() {
          if (pending) {
            const p = pending;
            pending = undefined;
            return Promise.resolve(p);
          }
          return iterator.next();
        },
        return(value?: unknown) {
          pending = undefined;
          return iterator.return ? iterator.return(value) : Promise.resolve({ done: true, value: undefined });
        },
      };
    },
  };
}
