// The rolling window behind GET /v1/stats (seed 002 `get_performance_summary`): one slot per second
// for the last `windowS` seconds, each holding counts and log-histograms, summed on demand. Gauges the
// capabilities publish (queue depth, breaker states, mesh nodes, GPUs) are kept as latest values.
import { LogHistogram, type Percentiles } from './log-histogram.js';
import type { AttemptRecord, BreakerState, CacheHitKind, HedgeOutcome, RequestRecord, Section, SpendRecord } from './records.js';

interface ProviderSlot {
  calls: number;
  errors: number;
  cancelled: number;
  latency: LogHistogram;
  ttft: LogHistogram;
  costUsd: number;
}

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
      p = { calls: 0, errors: 0, cancelled: 0, latency: new LogHistogram(), ttft: new LogHistogram(), costUsd: 0 };
      this.providers.set(name, p);
    }
    return p;
  }
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
  private readonly seriesS: number;
  private readonly now: () => number;
  private readonly slots: (Slot | undefined)[];
  private readonly enabled = new Set<Section>();
  private readonly queues = new Map<string, number>();
  private readonly breakers = new Map<string, { state: BreakerState; opened: number; since: number }>();
  private readonly meshNodes = new Map<string, { health: number; state: string; at: number }>();
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

  gpuActiveAllocations(n: number): void {
    this.enabled.add('gpu');
    this.gpuActive = n;
  }

  /** Sums the live slots of the window into the /v1/stats document. */
  summary(): PerformanceSummary {
    const nowMs = this.now();
    const current = Math.floor(nowMs / 1000);
    const live = this.slots.filter((s): s is Slot => s !== undefined && current - s.second < this.windowS);
    live.sort((a, b) => a.second - b.second);

    const latency = new LogHistogram();
    const gpuLatency = new LogHistogram();
    const providers = new Map<string, ProviderSlot>();
    const rateLimited: Record<string, number> = {};
    const hits: Record<CacheHitKind, number> = { exact: 0, semantic: 0 };
    const hedges: Record<HedgeOutcome, number> = { launched: 0, won: 0, cancelled: 0 };
    let requests = 0, e5 = 0, e4 = 0, misses = 0, saved = 0, cost = 0, inTok = 0, outTok = 0;
    let retries = 0, fallbacks = 0, gpuAllocs = 0, gpuFails = 0;
    for (const s of live) {
      requests += s.requests;
      e5 += s.errors5xx;
      e4 += s.errors4xx;
      latency.merge(s.latency);
      hits.exact += s.cacheHits.exact;
      hits.semantic += s.cacheHits.semantic;
      misses += s.cacheMisses;
      saved += s.savedUsd;
      cost += s.costUsd;
      inTok += s.inputTokens;
      outTok += s.outputTokens;
      retries += s.retries;
      fallbacks += s.fallbacks;
      for (const k of Object.keys(hedges) as HedgeOutcome[]) hedges[k] += s.hedges[k];
      for (const [k, v] of s.rateLimited) rateLimited[k] = (rateLimited[k] ?? 0) + v;
      gpuAllocs += s.gpuAllocations;
      gpuFails += s.gpuFailures;
      gpuLatency.merge(s.gpuLatency);
      for (const [name, p] of s.providers) {
        let agg = providers.get(name);
        if (!agg) {
          agg = { calls: 0, errors: 0, cancelled: 0, latency: new LogHistogram(), ttft: new LogHistogram(), costUsd: 0 };
          providers.set(name, agg);
        }
        agg.calls += p.calls;
        agg.errors += p.errors;
        agg.cancelled += p.cancelled;
        agg.latency.merge(p.latency);
        agg.ttft.merge(p.ttft);
        agg.costUsd += p.costUsd;
      }
    }
    // Throughput over the part of the window that has seen traffic, so a fresh process is not diluted.
    const firstSecond = live[0]?.second ?? current;
    const spanS = Math.max(1, Math.min(this.windowS, current - firstSecond + 1));
    const lookups = hits.exact + hits.semantic + misses;
    const rateLimitedTotal = Object.values(rateLimited).reduce((a, b) => a + b, 0);
    const queues = Object.fromEntries(this.queues);
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
      cost: { total_usd: cost, per_request_usd: requests ? cost / requests : 0, input_tokens: inTok, output_tokens: outTok },
      cache: { enabled: this.enabled.has('cache'), lookups, hits, hit_rate: ratio(hits.exact + hits.semantic, lookups), saved_usd: saved },
      queue: { enabled: this.enabled.has('queue'), depth: Object.values(queues).reduce((a, b) => a + b, 0), queues },
      breakers: {
        enabled: this.enabled.has('breakers'),
        open: [...this.breakers.values()].filter((b) => b.state === 'open').length,
        deployments: [...this.breakers]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([deployment, b]) => ({ deployment, state: b.state, opened_total: b.opened, since: new Date(b.since).toISOString() })),
      },
      limits: { enabled: this.enabled.has('limits'), rate_limited: rateLimitedTotal, by_limit: rateLimited },
      routing: { enabled: this.enabled.has('routing'), retries, fallbacks, hedges },
      mesh: {
        enabled: this.enabled.has('mesh'),
        healthy: [...this.meshNodes.values()].filter((n) => n.state === 'healthy').length,
        nodes: [...this.meshNodes]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([node, n]) => ({ node, health: n.health, state: n.state, updated_at: new Date(n.at).toISOString() })),
      },
      gpu: {
        enabled: this.enabled.has('gpu'),
        allocations: gpuAllocs,
        failures: gpuFails,
        allocation_latency_ms: gpuLatency.percentiles(),
        active_allocations: this.gpuActive,
        utilization: Object.fromEntries(this.gpuUtil),
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
