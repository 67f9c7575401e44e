// Seed 002's `get_provider_status` as data: per deployment its breaker state, latency EWMA,
// in-flight count, recent error rate and the queue of its group; served by GET /v1/providers.
// Configured groups first, then the model names the passthrough provider has served (`passthrough:
// true`), which no configuration lists.
import type { CircuitBreaker, BreakerState } from './breaker.js';
import type { Deployment, ModelCatalog } from './catalog.js';
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
  /** A model name no group claims, sent to the passthrough provider as it is. */
  passthrough?: true;
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
  /**
   * Passthrough groups the router holds state for, each its one deployment; a row is shown for one
   * that has answered or failed, is in flight, or is open or cooling (a mistyped name that got 404
   * has none of these and stays out).
   */
  passthrough?: Iterable<{ name: string; deployments: readonly Deployment[] }>;
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
    for (const d of group.deployments) data.push(row(src, d, name, group.strategy, queued, now));
  }
  for (const g of src.passthrough ?? []) {
    if (catalog.get(g.name)) continue;
    const queued = src.queueDepth(g.name);
    for (const d of g.deployments) {
      const s = src.stats(d.id);
      const used = s.successes + s.failures + s.inFlight > 0 || src.breaker(d.id).state !== 'closed' || s.cooling(now);
      if (!used) continue;
      queueDepth += queued;
      data.push({ ...row(src, d, g.name, 'fallback', queued, now), passthrough: true });
    }
  }
  return { object: 'list', data, queue_depth: queueDepth, counters: { ...src.counters } };
}

function row(src: StatusSources, d: Deployment, group: string, strategy: string, queued: number, now: number): DeploymentStatus {
  const s = src.stats(d.id);
  const b = src.breaker(d.id);
  const state = b.state;
  const err = b.errorRate();
  return {
    id: d.id,
    group,
    provider: d.providerName,
    model: d.model,
    strategy,
    breaker: { state, ...(state === 'open' && b.retryAt ? { retry_at: new Date(b.retryAt).toISOString() } : {}) },
    latency_ewma_ms: s.ewmaMs === undefined ? null : Math.round(s.ewmaMs * 100) / 100,
    in_flight: s.inFlight,
    max_concurrency: d.maxConcurrency ?? null,
    error_rate: Math.round(err.rate * 1000) / 1000,
    requests_in_window: err.requests,
    queue_length: queued,
    ...(s.cooling(now) ? { cooling_until: new Date(s.coolingUntil).toISOString() } : {}),
  };
}
