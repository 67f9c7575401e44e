// The per-group strategies that order a request's eligible deployments (first choice first; the rest
// are its fallbacks). Each is built once per group and keeps its own small state (a round-robin
// cursor). They see only deployments the breaker, Retry-After and context window already allow.
import type { Deployment, Strategy } from './catalog.js';
import type { DeploymentStats } from './stats.js';

export interface StrategyInput {
  stats(id: string): DeploymentStats;
  /** Rough prompt size for cost estimates (characters / 4; exact counts only where a window needs them). */
  promptTokens: number;
  /** Completion tokens the request may use (max_tokens, else a typical answer). */
  completionTokens: number;
  random(): number;
}

export interface RouteChoice {
  order: Deployment[];
  /** Why the first one was chosen, for x-inferenceflow-route. */
  reason: string;
}

export interface RoutingStrategy {
  readonly name: Strategy;
  order(deployments: readonly Deployment[], input: StrategyInput): RouteChoice;
}

export interface StrategyOptions {
  /** Share of latency decisions that explore a random deployment. */
  exploration: number;
}

function byPriority(a: Deployment, b: Deployment): number {
  return a.priority - b.priority;
}

/** `fallback`: ordered priority (lower first), then config order. */
const fallbackStrategy = (): RoutingStrategy => ({
  name: 'fallback',
  order(ds) {
    const order = ds.length <= 1 ? [...ds] : [...ds].sort(byPriority);
    return { order, reason: 'priority' };
  },
});

/**
 * `weighted`: a weighted random order (Efraimidis–Spirakis keys u^(1/w)), so the first choice is
 * drawn by weight and the fallbacks follow the same odds. Weight 0 only ever serves as a fallback.
 */
const weightedStrategy = (): RoutingStrategy => ({
  name: 'weighted',
  order(ds, input) {
    const keyed = ds.map((d) => ({ d, k: d.weight > 0 ? Math.pow(input.random(), 1 / d.weight) : -1 + input.random() * 1e-9 }));
    keyed.sort((a, b) => b.k - a.k);
    const order = keyed.map((x) => x.d);
    return { order, reason: `weight ${order[0]?.weight ?? 0}` };
  },
});

/** `round_robin`: a rotating start over the deployments in config order. */
const roundRobinStrategy = (): RoutingStrategy => {
  let cursor = 0;
  return {
    name: 'round_robin',
    order(ds) {
      const n = ds.length;
      const start = n === 0 ? 0 : cursor++ % n;
      if (cursor > 1e9) cursor = 0;
      const order = new Array<Deployment>(n);
      for (let i = 0; i < n; i++) order[i] = ds[(start + i) % n] as Deployment;
      return { order, reason: `turn ${start}` };
    },
  };
};

/** `least_busy`: fewest in-flight requests; ties go to a random one so load spreads. */
const leastBusyStrategy = (): RoutingStrategy => ({
  name: 'least_busy',
  order(ds, input) {
    const keyed = ds.map((d) => ({ d, busy: input.stats(d.id).inFlight, tie: input.random() }));
    keyed.sort((a, b) => a.busy - b.busy || a.tie - b.tie);
    return { order: keyed.map((x) => x.d), reason: `in-flight ${keyed[0]?.busy ?? 0}` };
  },
});

/**
 * `latency`: lowest latency EWMA first. A deployment with no samples yet goes first so it gets
 * measured; with probability `exploration` a random one is moved to the front, so a deployment
 * that was slow (or failed) and has recovered is seen again.
 */
const latencyStrategy = (opts: StrategyOptions): RoutingStrategy => ({
  name: 'latency',
  order(ds, input) {
    const keyed = ds.map((d) => ({ d, ms: input.stats(d.id).ewmaMs ?? -1, tie: input.random() }));
    keyed.sort((a, b) => a.ms - b.ms || a.tie - b.tie);
    const order = keyed.map((x) => x.d);
    if (order.length > 1 && input.random() < opts.exploration) {
      const i = 1 + Math.floor(input.random() * (order.length - 1));
      const [picked] = order.splice(i, 1);
      order.unshift(picked as Deployment);
      return { order, reason: 'exploring' };
    }
    const ms = keyed[0]?.ms ?? -1;
    return { order, reason: ms < 0 ? 'unmeasured' : `ewma ${Math.round(ms)}ms` };
  },
});

/** `cost`: cheapest estimated cost for this request's prompt and answer size first. */
const costStrategy = (): RoutingStrategy => ({
  name: 'cost',
  order(ds, input) {
    const keyed = ds.map((d) => ({ d, usd: (input.promptTokens * d.price.input + input.completionTokens * d.price.output) / 1_000_000 }));
    keyed.sort((a, b) => a.usd - b.usd || a.d.priority - b.d.priority);
    return { order: keyed.map((x) => x.d), reason: `est $${(keyed[0]?.usd ?? 0).toPrecision(2)}` };
  },
});

/** The strategy object for a group; `semantic` orders by priority after the router picked a target. */
export function createStrategy(name: Strategy, opts: StrategyOptions): RoutingStrategy {
  switch (name) {
    case 'weighted':
      return weightedStrategy();
    case 'round_robin':
      return roundRobinStrategy();
    case 'least_busy':
      return leastBusyStrategy();
    case 'latency':
      return latencyStrategy(opts);
    case 'cost':
      return costStrategy();
    case 'semantic':
      return { ...fallbackStrategy(), name: 'semantic' };
    case 'fallback':
    default:
      return fallbackStrategy();
  }
}
