// The terminal stage: routing (src/routing/router.ts) picks deployments for the request's model
// group and calls them with breakers, retries, fallbacks, hedging and admission. A stream counts as
// started only once its first chunk has arrived, so a stream that fails before its first byte is
// retried like any other call. Cost and latency land in ctx.facts; a stream's final cost is settled
// when its usage chunk passes. Each attempt is reported to an AttemptObserver (metrics) and gets its
// own trace span, whose W3C `traceparent` goes to the upstream.
import type { Logger } from 'pino';
import type { Usage } from '../canonical/chat.js';
import { routingSchema, type RoutingConfig } from '../config/schema.js';
import type { CallOptions } from '../providers/types.js';
import type { Deployment, ModelCatalog } from '../routing/catalog.js';
import { Router, type RouterOptions } from '../routing/router.js';
import type { RequestContext } from './context.js';
import type { ChatHandler } from './pipeline.js';

export { primeStream } from '../providers/stream-priming.js';

export function callOptions(ctx: RequestContext, d: Deployment, headers?: Record<string, string>): CallOptions {
  return { signal: ctx.signal, timeoutMs: d.timeoutMs, requestId: ctx.id, ...(headers ? { headers } : {}) };
}

/** How one upstream attempt ended, as the router reports it. */
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
  /**
   * Tokens and cost an answer reported after its attempt ended (a forwarded answer's usage, read
   * from its body once it has passed through): what the attempt's own report left out.
   */
  spent?(ctx: RequestContext, d: Deployment, usage: Usage, costUsd: number): void;
}

export const noAttemptObserver: AttemptObserver = { attemptEnded: () => undefined };

/** A router with the given (or default) routing settings; its `handler` is the terminal ChatHandler. */
export function createRouter(catalog: ModelCatalog, log: Logger, config?: RoutingConfig, extra: Omit<RouterOptions, 'config' | 'log'> = {}): Router {
  return new Router(catalog, { config: config ?? routingSchema.parse({}), log, ...extra });
}

export function createExecutor(catalog: ModelCatalog, log: Logger, config?: RoutingConfig): ChatHandler {
  return createRouter(catalog, log, config).handler;
}
