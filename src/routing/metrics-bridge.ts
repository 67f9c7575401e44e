// Feeds routing's events into the gateway metrics (inference_queue_depth, circuit_breaker_*,
// retries, fallbacks, hedges). The sink is structural, so routing never imports the metrics code.
import type { BreakerState } from './breaker.js';
import type { Router } from './router.js';

export interface RoutingMetricsSink {
  setQueueDepth(depth: number, queue?: string): void;
  /** `counted` false for an opening another replica made (shared breakers): counted there, once. */
  breakerOpened(deployment: string, counted?: boolean): void;
  setBreakerState(deployment: string, state: BreakerState): void;
  retry(provider: string): void;
  fallback(from: string, to: string): void;
  hedge(provider: string, outcome: 'launched' | 'won' | 'cancelled'): void;
}

export function reportRoutingMetrics(router: Router, sink: RoutingMetricsSink): void {
  const events = router.events;
  const providerOf = (deployment: string) => router.catalog.allDeployments().find((d) => d.id === deployment)?.providerName ?? deployment.split('/')[0] ?? deployment;
  events.on('breaker', (t) => (t.to === 'open' ? sink.breakerOpened(t.deployment, t.source === 'local') : sink.setBreakerState(t.deployment, t.to)));
  events.on('retry', (e) => sink.retry(providerOf(e.deployment)));
  events.on('fallback', (e) => sink.fallback(e.from, e.to));
  // A hedge is launched; then it either wins (the first attempt is cancelled) or is cancelled.
  events.on('hedge', (e) => sink.hedge(providerOf(e.hedge), e.winner === undefined ? 'launched' : e.winner === e.hedge ? 'won' : 'cancelled'));
  events.on('queue_depth', (e) => sink.setQueueDepth(e.depth, e.group));
  sink.setQueueDepth(0);
}
