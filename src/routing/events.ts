// What routing tells the outside world: breaker state changes, retries, fallbacks, hedges, dedup
// joins, queue rejections and every upstream attempt, as typed events plus running counters. The
// metrics exporter subscribes here; routing itself never imports a metrics library.
import { EventEmitter } from 'node:events';
import type { BreakerTransition } from './breaker.js';

export interface AttemptEvent {
  deployment: string;
  group: string;
  provider: string;
  outcome: 'success' | 'failure' | 'cancelled';
  /** The upstream error kind on failure. */
  kind?: string;
  latencyMs: number;
  hedge: boolean;
}

export interface RoutingEventMap {
  breaker: [BreakerTransition];
  attempt: [AttemptEvent];
  retry: [{ group: string; deployment: string; delayMs: number }];
  /** `deployment`: another deployment of the group; `group`: a fallback group; `context_window` / `content_policy`: those fallbacks. */
  fallback: [{ from: string; to: string; kind: 'deployment' | 'group' | 'context_window' | 'content_policy' }];
  hedge: [{ group: string; primary: string; hedge: string; winner?: string }];
  dedup: [{ group: string; stream: boolean }];
  /** A queued request given up on: the queue was full, its wait passed, or the gateway is shutting down. */
  queue_rejected: [{ group: string; reason: 'full' | 'timeout' | 'shutdown' }];
  /** A group's admission queue grew or shrank. */
  queue_depth: [{ group: string; depth: number }];
  retry_budget_exhausted: [{ group: string }];
}

export interface RoutingCounters {
  retries: number;
  fallbacks: number;
  hedges: number;
  hedgeWins: number;
  dedupJoins: number;
  queueRejections: number;
  retryBudgetExhausted: number;
  breakerOpens: number;
}

export class RoutingEvents extends EventEmitter<RoutingEventMap> {
  readonly counters: RoutingCounters = {
    retries: 0,
    fallbacks: 0,
    hedges: 0,
    hedgeWins: 0,
    dedupJoins: 0,
    queueRejections: 0,
    retryBudgetExhausted: 0,
    breakerOpens: 0,
  };
}
