// Seed 002's `get_provider_status` as data: per deployment its breaker state, latency EWMA,
// in-flight count, recent error rate and the queue of its group; served by GET /v1/providers.
import type { CircuitBreaker, BreakerState } from './breaker.js';
import type { ModelCatalog } from './catalog.js';
import type { RoutingCounters } from './events.js';
import type { DeploymentStats } from './stats.js';

export interface DeploymentStatus {
  id: string;
  group: string;
  provider: string;
  model: string;
  strategy: string;
  breaker: { state: BreakerState; retry_at?: string };
  latency_ewma_ms: number | null;
  in_flight: number;
  max_concurrency: number | null;
  error_rate: number;
  requests_in_window: number;
  /** Requests of the deployment's group waiting for a slot. */
  queue_length: number;
  cooling_until?: string;
}

export interface ProviderStatusReport {
  object: 'list';
  data: DeploymentStatus[];
  queue_depth: number;
  counters: RoutingCounters;
}

export interface StatusSources {
  stats(id: string): DeploymentStats;
  breaker(id: string): CircuitBreaker;
  queueDepth(group: string): number;
  counters: RoutingCounters;
}

export function buildStatus(catalog: ModelCatalog, src: StatusSources): ProviderStatusReport {
  const now = Date.now();
  const data: DeploymentStatus[] = [];
  let queueDepth = 0;
  for (const name of catalog.groupNames()) {
    const group = catalog.get(name);
    if (!group) continue;
    const queued = src.queueDepth(name);
    queueDepth += queued;
    for (const d of group.deployments) {
      const s = src.stats(d.id);
      const b = src.breaker(d.id);
      const state = b.state;
      const err = b.errorRate();
      data.push({
        id: d.id,
        group: name,
        provider: d.providerName,
        model: d.model,
        strategy: group.strategy,
        breaker: { state, ...(state === 'open' && b.retryAt ? { retry_at: new Date(b.retryAt).toISOString() } : {}) },
        latency_ewma_ms: s.ewmaMs === undefined ? null : Math.round(s.ewmaMs * 100) / 100,
        in_flight: s.inFlight,
        max_concurrency: d.maxConcurrency ?? null,
        error_rate: Math.round(err.rate * 1000) / 1000,
        requests_in_window: err.requests,
        queue_length: queued,
        ...(s.cooling(now) ? { cooling_until: new Date(s.coolingUntil).toISOString() } : {}),
      });
    }
  }
  return { object: 'list', data, queue_depth: queueDepth, counters: { ...src.counters } };
}
