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

/**
 * The chosen deployment first, the others after it in their given (priority) order. Strategies pick
 * the first choice in one pass — O(n), no sort — since fallbacks are only used when it fails.
 */
function firstThen(ds: readonly Deployment[], i: number): Deployment[] {
  const order = new Array<Deployment>(ds.length);
  order[0] = ds[i] as Deployment;
  let k = 1;
  for (let j = 0; j < ds.length; j++) if (j !== i) order[k++] = ds[j] as Deployment;
  return order;
}

/** `fallback`: ordered priority (lower first), then config order (the router passes them presorted). */
const fallbackStrategy = (): RoutingStrategy => ({
  name: 'fallback',
  order(ds) {
    return { order: ds.slice(), reason: 'priority' };
  },
});

/** `weighted`: the first choice drawn by weight (weight 0 only ever serves as a fallback). */
const weightedStrategy = (): RoutingStrategy => ({
  name: 'weighted',
  order(ds, input) {
    let total = 0;
    for (const d of ds) total += d.weight;
    let pick = 0;
    if (total > 0) {
      let r = input.random() * total;
      for (let i = 0; i < ds.length; i++) {
        r -= (ds[i] as Deployment).weight;
        if (r < 0) {
          pick = i;
          break;
        }
      }
    }
    return { order: firstThen(ds, pick), reason: `weight ${ds[pick]?.weight ?? 0}/${total}` };
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

/** Index of the smallest score; ties broken uniformly at random (reservoir sampling). */
function argmin(ds: readonly Deployment[], score: (d: Deployment) => number, random: () => number): number {
  let best = 0;
  let bestScore = Infinity;
  let ties = 0;
  for (let i = 0; i < ds.length; i++) {
    const s = score(ds[i] as Deployment);
    if (s < bestScore) {
      bestScore = s;
      best = i;
      ties = 1;
    } else if (s === bestScore && random() * ++ties < 1) {
      best = i;
    }
  }
  return best;
}

/** `least_busy`: fewest in-flight requests; ties go to a random one so load spreads. */
const leastBusyStrategy = (): RoutingStrategy => ({
  name: 'least_busy',
  order(ds, input) {
    const i = argmin(ds, (d) => input.stats(d.id).inFlight, input.random);
    return { order: firstThen(ds, i), reason: `in-flight ${ds[i] ? input.stats(ds[i].id).inFlight : 0}` };
  },
});

/**
 * `latency`: lowest latency EWMA first. A deployment with no samples yet goes first so it gets
 * measured; with probability `exploration` a random one goes first instead, so a deployment that
 * was slow (or failed) and has recovered is seen again.
 */
const latencyStrategy = (opts: StrategyOptions): RoutingStrategy => ({
  name: 'latency',
  order(ds, input) {
    if (ds.length > 1 && input.random() < opts.exploration) {
      return { order: firstThen(ds, Math.floor(input.random() * ds.length)), reason: 'exploring' };
    }
    const i = argmin(ds, (d) => input.stats(d.id).ewmaMs ?? -1, input.random);
    const ms = ds[i] ? input.stats(ds[i].id).ewmaMs : undefined;
    return { order: firstThen(ds, i), reason: ms === undefined ? 'unmeasured' : `ewma ${Math.round(ms)}ms` };
  },
});

/** `cost`: cheapest estimated cost for this request's prompt and answer size first. */
const costStrategy = (): RoutingStrategy => ({
  name: 'cost',
  order(ds, input) {
    const usd = (d: Deployment) => (input.promptTokens * d.price.input + input.completionTokens * d.price.output) / 1_000_000 + (d.price.per_request ?? 0);
    const i = argmin(ds, (d) => usd(d) + d.priority * 1e-12, input.random);
    return { order: firstThen(ds, i), reason: `est $${ds[i] ? usd(ds[i]).toPrecision(2) : 0}` };
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
