// The terminal stage: pick deployments for the request's model group and call them, moving to the
// next candidate on a failure that is safe to retry. A stream counts as started only once its first
// chunk has arrived, so a stream that fails before its first byte is retried like any other call.
// Cost and latency land in ctx.facts; a stream's final cost is settled when its usage chunk passes.
import type { ChatChunk, ChatRequest, Usage } from '../canonical/chat.js';
import { isUpstreamError } from '../providers/errors.js';
import { costUsd } from '../providers/pricing.js';
import type { CallOptions } from '../providers/types.js';
import type { Deployment, ModelCatalog, ModelGroup } from '../routing/catalog.js';
import { GatewayError, toGatewayError } from '../server/errors.js';
import type { RequestContext } from './context.js';
import type { ChatHandler, ChatOutcome } from './pipeline.js';

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

export function callOptions(ctx: RequestContext, d: Deployment): CallOptions {
  return { signal: ctx.signal, timeoutMs: d.timeoutMs, requestId: ctx.id };
}

export function createExecutor(catalog: ModelCatalog, selector: DeploymentSelector = priorityOrder): ChatHandler {
  return async function execute(ctx: RequestContext, req: ChatRequest): Promise<ChatOutcome> {
    const group = catalog.resolve(req.model);
    const candidates = selector.candidates(group, req, ctx);
    if (candidates.length === 0) throw new GatewayError('no_healthy_deployment', { message: `No deployment of "${group.name}" can take the request now.` });
    let lastError: unknown;
    for (const d of candidates) {
      if (ctx.signal.aborted) break;
      ctx.facts.attempts++;
      const upstreamReq: ChatRequest = { ...req, model: d.model };
      const started = performance.now();
      try {
        if (req.stream) {
          const stream = await d.provider.streamChat(upstreamReq, callOptions(ctx, d));
          const primed = await primeStream(stream);
          recordAnswerer(ctx, d, started);
          return { kind: 'stream', stream: settleOnUsage(ctx, d, primed) };
        }
        const result = await d.provider.chat(upstreamReq, callOptions(ctx, d));
        recordAnswerer(ctx, d, started);
        settle(ctx, d, result.usage);
        return { kind: 'result', result };
      } catch (err) {
        ctx.facts.latencyMs = (ctx.facts.latencyMs ?? 0) + (performance.now() - started);
        lastError = err;
        if (!isUpstreamError(err) || !err.retryable || ctx.signal.aborted) break;
        ctx.log.warn({ provider: d.providerName, deployment: d.id, kind: err.kind, status: err.status }, 'upstream attempt failed; trying next deployment');
      }
    }
    throw toGatewayError(lastError ?? new GatewayError('no_healthy_deployment'));
  };
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
