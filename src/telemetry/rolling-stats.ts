// The rolling window behind GET /v1/stats (seed 002 `get_performance_summary`): one slot per second
// for the last `windowS` seconds, each holding counts and log-histograms, summed on demand. Gauges the
// capabilities publish (queue depth, breaker states, mesh nodes, GPUs) are kept as latest values.
//
// With `serve --workers N` each worker has its own window. `window()` gives its raw, mergeable state
// as JSON (per-second counts, sums and histogram buckets, the gauges), and `summaryOf(windows)` adds
// several up (slots of the same second summed; gauges as the Prometheus aggregation in metrics.ts's
// GAUGE_AGGREGATORS does) and computes the summary from the sum the same way `summary()` does from
// this process's slots: percentiles from the merged histograms, never averaged.
import { LogHistogram, type LogHistogramState, type Percentiles } from './log-histogram.js';
import type { AttemptRecord, BreakerState, CacheHitKind, HedgeOutcome, RequestRecord, Section, SpendRecord } from './records.js';

interface ProviderSlot {
  calls: number;
  errors: number;
  cancelled: number;
  latency: LogHistogram;
  ttft: LogHistogram;
  costUsd: number;
}

const newProvider = (): ProviderSlot => ({ calls: 0, errors: 0, cancelled: 0, latency: new LogHistogram(), ttft: new LogHistogram(), costUsd: 0 });

class Slot {
  requests = 0;
  errors5xx = 0;
  errors4xx = 0;
  latency = new LogHistogram();
  cacheHits: Record<CacheHitKind, number> = { exact: 0, semantic: 0 };
  cacheMisses = 0;
  savedUsd = 0;
  costUsd = 0;
  inputTokens = 0;
  outputTokens = 0;
  rateLimited = new Map<string, number>();
  retries = 0;
  fallbacks = 0;
  hedges: Record<HedgeOutcome, number> = { launched: 0, won: 0, cancelled: 0 };
  providers = new Map<string, ProviderSlot>();
  gpuAllocations = 0;
  gpuFailures = 0;
  gpuLatency = new LogHistogram();
  constructor(readonly second: number) {}

  provider(name: string): ProviderSlot {
    let p = this.providers.get(name);
    if (!p) {
      p = newProvider();
      this.providers.set(name, p);
    }
    return p;
  }

  /**
   * Adds another slot's counts: another second of the window (a Slot), or another worker's same
   * second as `state()` made it (a SlotState). Maps and [key, value] lists iterate alike.
   */
  merge(s: Slot | SlotState): void {
    this.requests += s.requests;
    this.errors5xx += s.errors5xx;
    this.errors4xx += s.errors4xx;
    this.latency.merge(s.latency);
    this.cacheHits.exact += s.cacheHits.exact;
    this.cacheHits.semantic += s.cacheHits.semantic;
    this.cacheMisses += s.cacheMisses;
    this.savedUsd += s.savedUsd;
    this.costUsd += s.costUsd;
    this.inputTokens += s.inputTokens;
    this.outputTokens += s.outputTokens;
    this.retries += s.retries;
    this.fallbacks += s.fallbacks;
    for (const k of Object.keys(this.hedges) as HedgeOutcome[]) this.hedges[k] += s.hedges[k];
    for (const [k, v] of s.rateLimited) this.rateLimited.set(k, (this.rateLimited.get(k) ?? 0) + v);
    this.gpuAllocations += s.gpuAllocations;
    this.gpuFailures += s.gpuFailures;
    this.gpuLatency.merge(s.gpuLatency);
    for (const [name, p] of s.providers) {
      const agg = this.provider(name);
      agg.calls += p.calls;
      agg.errors += p.errors;
      agg.cancelled += p.cancelled;
      agg.latency.merge(p.latency);
      agg.ttft.merge(p.ttft);
      agg.costUsd += p.costUsd;
    }
  }

  state(): SlotState {
    return {
      second: this.second,
      requests: this.requests,
      errors5xx: this.errors5xx,
      errors4xx: this.errors4xx,
      latency: this.latency.state(),
      cacheHits: { ...this.cacheHits },
      cacheMisses: this.cacheMisses,
      savedUsd: this.savedUsd,
      costUsd: this.costUsd,
      inputTokens: this.inputTokens,
      outputTokens: this.outputTokens,
      rateLimited: [...this.rateLimited],
      retries: this.retries,
      fallbacks: this.fallbacks,
      hedges: { ...this.hedges },
      providers: [...this.providers].map(([name, p]) => [name, { ...p, latency: p.latency.state(), ttft: p.ttft.state() }]),
      gpuAllocations: this.gpuAllocations,
      gpuFailures: this.gpuFailures,
      gpuLatency: this.gpuLatency.state(),
    };
  }
}

/** One second of a window as plain JSON. Maps are [key, value] lists (a key may be any string). */
export interface SlotState {
  second: number;
  requests: number;
  errors5xx: number;
  errors4xx: number;
  latency: LogHistogramState;
  cacheHits: Record<CacheHitKind, number>;
  cacheMisses: number;
  savedUsd: number;
  costUsd: number;
  inputTokens: number;
  outputTokens: number;
  rateLimited: [string, number][];
  retries: number;
  fallbacks: number;
  hedges: Record<HedgeOutcome, number>;
  providers: [string, { calls: number; errors: number; cancelled: number; latency: LogHistogramState; ttft: LogHistogramState; costUsd: number }][];
  gpuAllocations: number;
  gpuFailures: number;
  gpuLatency: LogHistogramState;
}

interface BreakerEntry {
  state: BreakerState;
  /** Times it opened. */
  opened: number;
  /** When it entered `state`, ms. */
  since: number;
}

interface MeshEntry {
  health: number;
  state: string;
  /** When it was read, ms. */
  at: number;
}

/**
 * A rolling window's raw, mergeable state as plain JSON: what a `serve --workers N` worker reports
 * for the cluster's /v1/stats (RollingStats.window, added up by RollingStats.summaryOf).
 */
export interface StatsWindow {
  /** The capabilities that have reported (their sections are `enabled`). */
  sections: Section[];
  /** The live seconds, oldest first. */
  slots: SlotState[];
  queues: [string, number][];
  breakers: [string, BreakerEntry][];
  meshNodes: [string, MeshEntry][];
  gpuUtilization: [string, number][];
  gpuActive: number;
}

/** The latest values the capabilities published, as the summary reads them. */
interface Gauges {
  enabled: ReadonlySet<Section>;
  queues: ReadonlyMap<string, number>;
  breakers: ReadonlyMap<string, BreakerEntry>;
  meshNodes: ReadonlyMap<string, MeshEntry>;
  gpuUtil: ReadonlyMap<string, number>;
  gpuActive: number;
}

const BREAKER_RANK: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 };

/**
 * The gauges of several workers' windows as one, as the cluster's Prometheus scrape adds them up
 * (GAUGE_AGGREGATORS in metrics.ts): queue depths summed per queue (each worker has its own admission
 * queue); a breaker in its worst state on any worker (since the earliest worker entered it), its
 * openings summed; a mesh node at its least healthy reading; GPU utilisation and active allocations
 * at their maximum (the shared pool read by every worker: one copy, not N); a section enabled when
 * any worker's capability reported.
 */
function mergeGauges(windows: readonly StatsWindow[]): Gauges {
  const enabled = new Set<Section>();
  const queues = new Map<string, number>();
  const breakers = new Map<string, BreakerEntry>();
  const meshNodes = new Map<string, MeshEntry>();
  const gpuUtil = new Map<string, number>();
  let gpuActive = 0;
  for (const w of windows) {
    for (const s of w.sections) enabled.add(s);
    for (const [q, depth] of w.queues) queues.set(q, (queues.get(q) ?? 0) + depth);
    for (const [d, b] of w.breakers) {
      const prev = breakers.get(d);
      if (!prev) breakers.set(d, { ...b });
      else {
        const rank = BREAKER_RANK[b.state] - BREAKER_RANK[prev.state];
        const opened = prev.opened + b.opened;
        if (rank > 0) breakers.set(d, { state: b.state, opened, since: b.since });
        else breakers.set(d, { state: prev.state, opened, since: rank === 0 ? Math.min(prev.since, b.since) : prev.since });
      }
    }
    for (const [node, n] of w.meshNodes) {
      const prev = meshNodes.get(node);
      if (!prev || n.health < prev.health || (n.health === prev.health && n.at > prev.at)) meshNodes.set(node, { ...n });
    }
    for (const [device, ratio] of w.gpuUtilization) gpuUtil.set(device, Math.max(gpuUtil.get(device) ?? -Infinity, ratio));
    gpuActive = Math.max(gpuActive, w.gpuActive);
  }
  return { enabled, queues, breakers, meshNodes, gpuUtil, gpuActive };
}

export interface BreakerView {
  deployment: string;
  state: BreakerState;
  opened_total: number;
  since: string;
}

export interface MeshNodeView {
  node: string;
  health: number;
  state: string;
  updated_at: string;
}

export interface PerformanceSummary {
  generated_at: string;
  window_s: number;
  requests: { total: number; per_second: number; errors_5xx: number; errors_4xx: number; error_rate: number };
  latency_ms: Percentiles;
  providers: {
    provider: string;
    /** Every attempt, cancelled ones included. */
    calls: number;
    errors: number;
    /** Attempts the gateway cancelled (hedge lost, client gone): neither errors nor latency samples. */
    cancelled: number;
    /** errors / (calls - cancelled). */
    error_rate: number;
    latency_ms: Percentiles;
    ttft_ms: Percentiles;
    cost_usd: number;
  }[];
  cost: { total_usd: number; per_request_usd: number; input_tokens: number; output_tokens: number };
  cache: { enabled: boolean; lookups: number; hits: Record<CacheHitKind, number>; hit_rate: number; saved_usd: number };
  queue: { enabled: boolean; depth: number; queues: Record<string, number> };
  breakers: { enabled: boolean; open: number; deployments: BreakerView[] };
  limits: { enabled: boolean; rate_limited: number; by_limit: Record<string, number> };
  routing: { enabled: boolean; retries: number; fallbacks: number; hedges: Record<HedgeOutcome, number> };
  mesh: { enabled: boolean; healthy: number; nodes: MeshNodeView[] };
  gpu: {
    enabled: boolean;
    allocations: number;
    failures: number;
    allocation_latency_ms: Percentiles;
    active_allocations: number;
    utilization: Record<string, number>;
  };
  /** Per-second series for charts, oldest first, over the last `series_s` seconds. */
  series: { t: number; requests: number; errors: number; p50_ms: number; p95_ms: number; cache_hits: number; cost_usd: number }[];
}

export interface RollingStatsOptions {
  windowS?: number;
  /** Seconds of per-second series in the summary (the dashboard's chart width). */
  seriesS?: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

export class RollingStats {
  readonly windowS: number;
  /** Seconds of per-second series in the summary. */
  readonly seriesS: number;
  private readonly now: () => number;
  private readonly slots: (Slot | undefined)[];
  private readonly enabled = new Set<Section>();
  private readonly queues = new Map<string, number>();
  private readonly breakers = new Map<string, BreakerEntry>();
  private readonly meshNodes = new Map<string, MeshEntry>();
  private readonly gpuUtil = new Map<string, number>();
  private gpuActive = 0;

  constructor(opts: RollingStatsOptions = {}) {
    this.windowS = Math.max(1, opts.windowS ?? 300);
    this.seriesS = Math.min(this.windowS, opts.seriesS ?? 120);
    this.now = opts.now ?? Date.now;
    this.slots = new Array<Slot | undefined>(this.windowS);
  }

  private slot(): Slot {
    const second = Math.floor(this.now() / 1000);
    const i = second % this.windowS;
    let s = this.slots[i];
    if (!s || s.second !== second) {
      s = new Slot(second);
      this.slots[i] = s;
    }
    return s;
  }

  declare(section: Section): void {
    this.enabled.add(section);
  }

  request(r: RequestRecord): void {
    const s = this.slot();
    s.requests++;
    if (r.status >= 500) s.errors5xx++;
    else if (r.status >= 400) s.errors4xx++;
    s.latency.record(r.durationMs);
  }

  attempt(a: AttemptRecord): void {
    const s = this.slot();
    const p = s.provider(a.provider);
    p.calls++;
    if (a.outcome === 'cancelled') p.cancelled++;
    else {
      if (a.outcome === 'error') p.errors++;
      p.latency.record(a.durationMs);
    }
    if (a.ttftMs !== undefined) p.ttft.record(a.ttftMs);
    if (a.costUsd) {
      p.costUsd += a.costUsd;
      s.costUsd += a.costUsd;
    }
    s.inputTokens += a.inputTokens ?? 0;
    s.outputTokens += a.outputTokens ?? 0;
  }

  /** Tokens and cost without an attempt of their own (metrics.recordSpend): no call is counted. */
  spend(provider: string, r: SpendRecord): void {
    const s = this.slot();
    if (r.costUsd) {
      s.provider(provider).costUsd += r.costUsd;
      s.costUsd += r.costUsd;
    }
    s.inputTokens += r.inputTokens;
    s.outputTokens += r.outputTokens;
  }

  cacheHit(kind: CacheHitKind, savedUsd = 0): void {
    this.enabled.add('cache');
    const s = this.slot();
    s.cacheHits[kind]++;
    s.savedUsd += savedUsd;
  }

  cacheMiss(): void {
    this.enabled.add('cache');
    this.slot().cacheMisses++;
  }

  queueDepth(queue: string, depth: number): void {
    this.enabled.add('queue');
    this.queues.set(queue, depth);
  }

  breakerState(deployment: string, state: BreakerState, opened: boolean): void {
    this.enabled.add('breakers');
    const prev = this.breakers.get(deployment);
    const changed = !prev || prev.state !== state;
    this.breakers.set(deployment, {
      state,
      opened: (prev?.opened ?? 0) + (opened ? 1 : 0),
      since: changed ? this.now() : (prev?.since ?? this.now()),
    });
  }

  rateLimited(limit: string): void {
    this.enabled.add('limits');
    const s = this.slot();
    s.rateLimited.set(limit, (s.rateLimited.get(limit) ?? 0) + 1);
  }

  retry(): void {
    this.enabled.add('routing');
    this.slot().retries++;
  }

  fallback(): void {
    this.enabled.add('routing');
    this.slot().fallbacks++;
  }

  hedge(outcome: HedgeOutcome): void {
    this.enabled.add('routing');
    this.slot().hedges[outcome]++;
  }

  meshNode(node: string, health: number, state: string): void {
    this.enabled.add('mesh');
    this.meshNodes.set(node, { health, state, at: this.now() });
  }

  clearMeshNodes(): void {
    this.enabled.add('mesh');
    this.meshNodes.clear();
  }

  gpuAllocation(ok: boolean, latencyMs: number): void {
    this.enabled.add('gpu');
    const s = this.slot();
    s.gpuAllocations++;
    if (!ok) s.gpuFailures++;
    s.gpuLatency.record(latencyMs);
  }

  gpuUtilization(device: string, ratio: number): void {
    this.enabled.add('gpu');
    this.gpuUtil.set(device, ratio);
  }

  clearGpuUtilization(): void {
    this.enabled.add('gpu');
    this.gpuUtil.clear();
  }

  gpuActiveAllocations(n: number): void {
    this.enabled.add('gpu');
    this.gpuActive = n;
  }

  /** The live slots of the window, oldest first. */
  private live(current: number, slots: Iterable<Slot | undefined>): Slot[] {
    const live: Slot[] = [];
    for (const s of slots) if (s !== undefined && current - s.second < this.windowS) live.push(s);
    return live.sort((a, b) => a.second - b.second);
  }

  private gauges(): Gauges {
    return { enabled: this.enabled, queues: this.queues, breakers: this.breakers, meshNodes: this.meshNodes, gpuUtil: this.gpuUtil, gpuActive: this.gpuActive };
  }

  /** Sums the live slots of the window into the /v1/stats document. */
  summary(): PerformanceSummary {
    const nowMs = this.now();
    return this.summarize(nowMs, this.live(Math.floor(nowMs / 1000), this.slots), this.gauges());
  }

  /**
   * This window's raw state as plain JSON (live seconds and gauges), for a cluster's /v1/stats:
   * `summaryOf` adds several up and makes the summary.
   */
  window(): StatsWindow {
    const g = this.gauges();
    return {
      sections: [...g.enabled],
      slots: this.live(Math.floor(this.now() / 1000), this.slots).map((s) => s.state()),
      queues: [...g.queues],
      breakers: [...g.breakers].map(([d, b]) => [d, { ...b }]),
      meshNodes: [...g.meshNodes].map(([n, m]) => [n, { ...m }]),
      gpuUtilization: [...g.gpuUtil],
      gpuActive: g.gpuActive,
    };
  }

  /**
   * The /v1/stats document of several windows (a cluster's workers' `window()`s) added up, over this
   * window's length and clock: slots of the same second summed, then summarised as summary() does
   * this process's own slots. Seconds that have left the window by now (a stale report's) are left out.
   */
  summaryOf(windows: readonly StatsWindow[]): PerformanceSummary {
    const nowMs = this.now();
    const current = Math.floor(nowMs / 1000);
    const slots = new Map<number, Slot>();
    for (const w of windows) {
      for (const st of w.slots) {
        if (current - st.second >= this.windowS) continue;
        let slot = slots.get(st.second);
        if (!slot) {
          slot = new Slot(st.second);
          slots.set(st.second, slot);
        }
        slot.merge(st);
      }
    }
    return this.summarize(nowMs, this.live(current, slots.values()), mergeGauges(windows));
  }

  private summarize(nowMs: number, live: readonly Slot[], g: Gauges): PerformanceSummary {
    const current = Math.floor(nowMs / 1000);
    const all = new Slot(current);
    for (const s of live) all.merge(s);
    const { requests, errors5xx: e5, errors4xx: e4, latency, providers, cacheHits: hits, cacheMisses: misses, costUsd: cost, retries, fallbacks, hedges } = all;
    // Throughput over the part of the window that has seen traffic, so a fresh process is not diluted.
    const firstSecond = live[0]?.second ?? current;
    const spanS = Math.max(1, Math.min(this.windowS, current - firstSecond + 1));
    const lookups = hits.exact + hits.semantic + misses;
    const rateLimited = Object.fromEntries(all.rateLimited) as Record<string, number>;
    const rateLimitedTotal = Object.values(rateLimited).reduce((a, b) => a + b, 0);
    const queues = Object.fromEntries(g.queues) as Record<string, number>;
    const bySecond = new Map(live.map((s) => [s.second, s]));
    const series: PerformanceSummary['series'] = [];
    for (let t = current - this.seriesS + 1; t <= current; t++) {
      const s = bySecond.get(t);
      series.push({
        t: t * 1000,
        requests: s?.requests ?? 0,
        errors: s?.errors5xx ?? 0,
        p50_ms: s ? round(s.latency.quantile(0.5)) : 0,
        p95_ms: s ? round(s.latency.quantile(0.95)) : 0,
        cache_hits: s ? s.cacheHits.exact + s.cacheHits.semantic : 0,
        cost_usd: s?.costUsd ?? 0,
      });
    }
    return {
      generated_at: new Date(nowMs).toISOString(),
      window_s: this.windowS,
      requests: { total: requests, per_second: round(requests / spanS), errors_5xx: e5, errors_4xx: e4, error_rate: ratio(e5, requests) },
      latency_ms: latency.percentiles(),
      providers: [...providers]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([provider, p]) => ({
          provider,
          calls: p.calls,
          errors: p.errors,
          cancelled: p.cancelled,
          error_rate: ratio(p.errors, p.calls - p.cancelled),
          latency_ms: p.latency.percentiles(),
          ttft_ms: p.ttft.percentiles(),
          cost_usd: p.costUsd,
        })),
      cost: { total_usd: cost, per_request_usd: requests ? cost / requests : 0, input_tokens: all.inputTokens, output_tokens: all.outputTokens },
      cache: { enabled: g.enabled.has('cache'), lookups, hits, hit_rate: ratio(hits.exact + hits.semantic, lookups), saved_usd: all.savedUsd },
      queue: { enabled: g.enabled.has('queue'), depth: Object.values(queues).reduce((a, b) => a + b, 0), queues },
      breakers: {
        enabled: g.enabled.has('breakers'),
        open: [...g.breakers.values()].filter((b) => b.state === 'open').length,
        deployments: [...g.breakers]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([deployment, b]) => ({ deployment, state: b.state, opened_total: b.opened, since: new Date(b.since).toISOString() })),
      },
      limits: { enabled: g.enabled.has('limits'), rate_limited: rateLimitedTotal, by_limit: rateLimited },
      routing: { enabled: g.enabled.has('routing'), retries, fallbacks, hedges },
      mesh: {
        enabled: g.enabled.has('mesh'),
        healthy: [...g.meshNodes.values()].filter((n) => n.state === 'healthy').length,
        nodes: [...g.meshNodes]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([node, n]) => ({ node, health: n.health, state: n.state, updated_at: new Date(n.at).toISOString() })),
      },
      gpu: {
        enabled: g.enabled.has('gpu'),
        allocations: all.gpuAllocations,
        failures: all.gpuFailures,
        allocation_latency_ms: all.gpuLatency.percentiles(),
        active_allocations: g.gpuActive,
        utilization: Object.fromEntries(g.gpuUtil),
      },
      series,
    };
  }
}

function ratio(part: number, whole: number): number {
  return whole === 0 ? 0 : Math.round((part / whole) * 10_000) / 10_000;
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}
