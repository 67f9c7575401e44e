// Every Prometheus metric the gateway exports, defined once, with small typed recording functions the
// capabilities call (`metrics.cacheHit('exact')`, `metrics.breakerOpened(id)`, …). Each call also feeds
// the rolling window behind /v1/stats. Label values are bounded: model and deployment labels are the
// configured catalog's names (anything else — a passthrough model a client named — reads
// `passthrough`), mesh node labels are the live nodes only, and the other free-form ones (provider,
// route, device) keep their first `maxLabelValues` distinct values, later ones read `other`.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ClusterMetricsLink, type IpcChannel, type WorkerCounts } from './cluster-metrics.js';
import type { AttemptRecord, BreakerState, CacheHitKind, HedgeOutcome, RequestRecord, Section, SpendRecord } from './records.js';
import { RollingStats, type PerformanceSummary } from './rolling-stats.js';
import { FastCounter, FastHistogram } from './series.js';

const LATENCY_BUCKETS_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 120_000];
const ALLOCATION_BUCKETS_MS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 15_000, 60_000];
const BREAKER_STATE_VALUE: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 };
/** Passthrough breakers not closed that the shared `passthrough` series remembers. */
const MAX_PASSTHROUGH_BREAKERS = 1_000;

export interface MetricsOptions {
  /** Distinct values kept per free-form label before the rest read `other`. */
  maxLabelValues?: number;
  /** Node.js process metrics (CPU, memory, event loop lag) as well. */
  processMetrics?: boolean;
  /** Rolling window of /v1/stats, seconds. */
  statsWindowS?: number;
  /** Clock for the rolling window (tests). */
  now?: () => number;
  /**
   * A `serve --workers N` worker's IPC channel to the primary: scrapes then render the whole
   * cluster's metrics and clusterSummary() the whole cluster's /v1/stats (cluster-metrics.ts); this
   * registry and stats window report to the primary when asked.
   */
  cluster?: IpcChannel;
}

/** Keeps a label's cardinality bounded: the first N distinct values pass, the rest become `other`. */
export class BoundedLabel {
  private readonly seen = new Set<string>();
  constructor(private readonly max: number) {}

  value(raw: string | undefined, empty = 'none'): string {
    if (raw === undefined || raw === '') return empty;
    if (this.seen.has(raw)) return raw;
    if (this.seen.size >= this.max) return 'other';
    this.seen.add(raw);
    return raw;
  }
}

/**
 * A model or deployment label: once the gateway has declared its catalog, only the catalog's names
 * are values (a passthrough model is named by the client: any string) and everything else reads
 * `passthrough`; before that, a BoundedLabel.
 */
class CatalogLabel {
  private known: ReadonlySet<string> | undefined;
  constructor(private readonly fallback: BoundedLabel) {}

  declare(names: Iterable<string>): void {
    this.known = new Set(names);
  }

  value(raw: string | undefined, empty = 'none'): string {
    if (raw === undefined || raw === '') return empty;
    if (this.known) return this.known.has(raw) ? raw : 'passthrough';
    return this.fallback.value(raw, empty);
  }
}

/** What GatewayMetrics reads of the model catalog (ModelCatalog satisfies it). */
export interface LabelCatalog {
  groupNames(): string[];
  allDeployments(): readonly { id: string; model: string }[];
}

export interface MeshNodeState {
  node: string;
  /** 0 (down) .. 1 (healthy). */
  health: number;
  /** `healthy`, `degraded`, `draining`, `down`, or why routing excludes it. */
  state: string;
}

/**
 * How the gauges add up over the workers of `serve --workers N` (counters and histograms are summed;
 * prom-client's default for a gauge is a sum too). Per-process quantities add up; state that every
 * worker reads from the same shared place (the GPU pool and the mesh registry need Redis with more
 * than one worker) would be counted N times by a sum.
 */
export const GAUGE_AGGREGATORS = {
  /** Requests each worker is serving, waiting in each worker's admission queue: sum. */
  inference_requests_in_flight: 'sum',
  inference_queue_depth: 'sum',
  /** Each worker's breaker (shared over Redis, else per worker): the worst state any worker has. */
  circuit_breaker_state: 'max',
  /** The same shared mesh registry read by every worker every 5 s: the least healthy reading. */
  inference_mesh_node_health: 'min',
  /** The shared GPU pool as every worker reads it: one copy, not N. */
  inference_gpu_utilization_ratio: 'max',
  inference_gpu_allocations_active: 'max',
  /** Ledger rows queued in each worker's own writer: sum. */
  inference_ledger_pending_rows: 'sum',
} as const;

/** An unlabelled gauge that reads its value when scraped, aggregated over workers as GAUGE_AGGREGATORS says. */
function sampledGauge(name: keyof typeof GAUGE_AGGREGATORS, help: string, registers: Registry[], read: () => number): Gauge {
  return new Gauge({
    name,
    help,
    registers,
    aggregator: GAUGE_AGGREGATORS[name],
    collect() {
      this.set(read());
    },
  });
}

/** What the ledger metrics read of the ledger writer when scraped (LedgerWriter satisfies it). */
export interface LedgerCounts {
  /** Rows queued in memory. */
  readonly pending: number;
  /**
   * Rows inserted, set aside as refused, moved to a spool file, dropped over the bound, and found in
   * the database already when written (a lost answer's retry, a spool replayed again): since start.
   */
  readonly written: number;
  readonly rejected: number;
  readonly spooled: number;
  readonly dropped: number;
  readonly duplicate: number;
}

export const LEDGER_OUTCOMES = ['written', 'rejected', 'spooled', 'dropped', 'duplicate'] as const;

export class GatewayMetrics {
  /** Passthrough deployments whose breaker is not closed, and its state (breakerShown). */
  private readonly passthroughBreakers = new Map<string, BreakerState>();
  readonly registry = new Registry();
  private readonly cluster: ClusterMetricsLink | undefined;
  readonly stats: RollingStats;
  private readonly model: CatalogLabel;
  private readonly provider: BoundedLabel;
  private readonly deployment: CatalogLabel;
  private readonly gpuModel: BoundedLabel;
  private readonly route: BoundedLabel;
  private readonly limit: BoundedLabel;

  // Seed 001 names.
  readonly requestsTotal: FastCounter<'model' | 'provider' | 'route' | 'status'>;
  readonly requestDuration: FastHistogram<'model' | 'provider' | 'route'>;
  readonly errors5xx: Counter<'provider' | 'route' | 'status'>;
  readonly cacheHits: FastCounter<'kind'>;
  readonly queueDepth: Gauge<'queue'>;
  readonly breakerOpen: Counter<'deployment'>;
  // Upstream calls (seed 002, 004).
  readonly inFlight: Gauge;
  private inFlightCount = 0;
  readonly providerLatency: FastHistogram<'provider' | 'model' | 'outcome'>;
  readonly providerErrors: Counter<'provider' | 'kind'>;
  readonly providerCancelled: Counter<'provider'>;
  readonly timeToFirstToken: FastHistogram<'provider' | 'model'>;
  readonly tokens: FastCounter<'provider' | 'model' | 'type'>;
  readonly cost: FastCounter<'provider' | 'model'>;
  readonly cacheMisses: FastCounter;
  readonly cacheSaved: Counter<'kind'>;
  readonly breakerState: Gauge<'deployment'>;
  readonly rateLimitedTotal: Counter<'limit'>;
  readonly retries: Counter<'provider'>;
  readonly fallbacks: Counter<'from' | 'to'>;
  readonly hedges: Counter<'provider' | 'outcome'>;
  readonly meshNodeHealth: Gauge<'node'>;
  readonly gpuAllocationLatency: Histogram<'model' | 'outcome'>;
  readonly gpuUtilization: Gauge<'device'>;
  readonly gpuActiveAllocations: Gauge;
  // The spend ledger: read from its writer when scraped (watchLedger), nothing per request.
  readonly ledgerPending: Gauge;
  readonly ledgerRows: Counter<'outcome'>;
  private ledger: LedgerCounts | undefined;

  constructor(opts: MetricsOptions = {}) {
    const max = opts.maxLabelValues ?? 100;
    this.model = new CatalogLabel(new BoundedLabel(max));
    this.provider = new BoundedLabel(max);
    this.deployment = new CatalogLabel(new BoundedLabel(max));
    this.gpuModel = new BoundedLabel(max);
    this.route = new BoundedLabel(max);
    this.limit = new BoundedLabel(32);
    this.stats = new RollingStats({ windowS: opts.statsWindowS, now: opts.now });
    const registers = [this.registry];
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });

    this.requestsTotal = new FastCounter({
      name: 'inference_requests_total',
      help: 'HTTP requests answered, by route pattern, model, provider that answered and HTTP status.',
      labelNames: ['model', 'provider', 'route', 'status'],
      registers,
    });
    this.requestDuration = new FastHistogram({
      name: 'inference_request_duration_ms',
      help: 'Time from request arrival to the last byte of the response (streams: to their end), ms.',
      labelNames: ['model', 'provider', 'route'],
      buckets: LATENCY_BUCKETS_MS,
      registers,
    });
    this.errors5xx = new Counter({
      name: 'inference_errors_5xx_total',
      help: 'Requests answered with a 5xx status.',
      labelNames: ['provider', 'route', 'status'],
      registers,
    });
    this.cacheHits = new FastCounter({
      name: 'inference_cache_hits_total',
      help: 'Requests answered from a cache, by kind (exact or semantic).',
      labelNames: ['kind'],
      registers,
    });
    // Zero series for the fixed label values, so rate() and the dashboards read 0 rather than nothing.
    for (const kind of ['exact', 'semantic'] as const) this.cacheHits.inc({ kind }, 0);
    this.cacheMisses = new FastCounter({ name: 'inference_cache_misses_total', help: 'Cache lookups that found nothing.', registers });
    this.cacheSaved = new Counter({
      name: 'inference_cache_saved_usd_total',
      help: 'Upstream cost avoided by cache hits, USD (the price of the answer that was reused).',
      labelNames: ['kind'],
      registers,
    });
    this.queueDepth = new Gauge({
      name: 'inference_queue_depth',
      help: 'Requests waiting in the admission queue.',
      labelNames: ['queue'],
      registers,
      aggregator: GAUGE_AGGREGATORS.inference_queue_depth,
    });
    this.breakerOpen = new Counter({
      name: 'circuit_breaker_open_total',
      help: 'Times a deployment circuit breaker opened.',
      labelNames: ['deployment'],
      registers,
    });
    this.breakerState = new Gauge({
      name: 'circuit_breaker_state',
      help: 'Circuit breaker state per deployment: 0 closed, 1 half-open, 2 open.',
      labelNames: ['deployment'],
      registers,
      aggregator: GAUGE_AGGREGATORS.circuit_breaker_state,
    });
    // Counted in a field; the gauge reads it when scraped.
    this.inFlight = sampledGauge('inference_requests_in_flight', 'Requests being served right now.', registers, () => this.inFlightCount);
    this.providerLatency = new FastHistogram({
      name: 'inference_provider_latency_ms',
      help: 'Duration of one upstream attempt (streams: to the last chunk), ms, by outcome ok or error (cancelled attempts are not observed).',
      labelNames: ['provider', 'model', 'outcome'],
      buckets: LATENCY_BUCKETS_MS,
      registers,
    });
    this.providerErrors = new Counter({
      name: 'inference_provider_errors_total',
      help: 'Failed upstream attempts, by provider and error kind (timeout, server, rate_limited, …).',
      labelNames: ['provider', 'kind'],
      registers,
    });
    this.providerCancelled = new Counter({
      name: 'inference_provider_cancelled_total',
      help: 'Upstream attempts the gateway cancelled (a lost hedge race, the client gone): not errors. An attempt the request deadline ended is a timeout error.',
      labelNames: ['provider'],
      registers,
    });
    this.timeToFirstToken = new FastHistogram({
      name: 'inference_time_to_first_token_ms',
      help: 'Streamed attempts: time from the upstream call to its first chunk, ms.',
      labelNames: ['provider', 'model'],
      buckets: LATENCY_BUCKETS_MS,
      registers,
    });
    this.tokens = new FastCounter({
      name: 'inference_tokens_total',
      help: 'Tokens billed by upstreams, by type input or output.',
      labelNames: ['provider', 'model', 'type'],
      registers,
    });
    this.cost = new FastCounter({ name: 'inference_cost_usd_total', help: 'Upstream cost, USD, from the pricing table.', labelNames: ['provider', 'model'], registers });
    this.rateLimitedTotal = new Counter({
      name: 'inference_rate_limited_total',
      help: 'Requests refused by a limit (429), by which limit (requests, tokens, budget, concurrency, …).',
      labelNames: ['limit'],
      registers,
    });
    this.retries = new Counter({ name: 'inference_retries_total', help: 'Upstream attempts that were retries of a failed one.', labelNames: ['provider'], registers });
    this.fallbacks = new Counter({
      name: 'inference_fallbacks_total',
      help: 'Requests moved from one deployment or model group to a fallback.',
      labelNames: ['from', 'to'],
      registers,
    });
    this.hedges = new Counter({
      name: 'inference_hedges_total',
      help: 'Hedged (duplicate) upstream calls, by outcome launched, won or cancelled.',
      labelNames: ['provider', 'outcome'],
      registers,
    });
    this.meshNodeHealth = new Gauge({
      name: 'inference_mesh_node_health',
      help: 'Health score of each mesh inference node, 0 (down) to 1 (healthy).',
      labelNames: ['node'],
      registers,
      aggregator: GAUGE_AGGREGATORS.inference_mesh_node_health,
    });
    this.gpuAllocationLatency = new Histogram({
      name: 'inference_gpu_allocation_latency_ms',
      help: 'Time to acquire a GPU allocation from the pool, ms, by outcome ok or failed.',
      labelNames: ['model', 'outcome'],
      buckets: ALLOCATION_BUCKETS_MS,
      registers,
    });
    this.gpuUtilization = new Gauge({
      name: 'inference_gpu_utilization_ratio',
      help: 'GPU utilisation, 0 to 1, by device.',
      labelNames: ['device'],
      registers,
      aggregator: GAUGE_AGGREGATORS.inference_gpu_utilization_ratio,
    });
    this.gpuActiveAllocations = new Gauge({
      name: 'inference_gpu_allocations_active',
      help: 'GPU allocations currently held.',
      registers,
      aggregator: GAUGE_AGGREGATORS.inference_gpu_allocations_active,
    });
    const ledger = () => this.ledger;
    this.ledgerPending = sampledGauge(
      'inference_ledger_pending_rows',
      'Ledger rows queued in memory, not yet written (at most ledger.max_pending_rows; the rest spooled to disk).',
      registers,
      () => ledger()?.pending ?? 0,
    );
    // The writer counts in plain fields; a scrape adds what they grew by since the last one.
    const seen: Record<(typeof LEDGER_OUTCOMES)[number], number> = { written: 0, rejected: 0, spooled: 0, dropped: 0, duplicate: 0 };
    this.ledgerRows = new Counter({
      name: 'inference_ledger_rows_total',
      help: 'Ledger rows by outcome: written (inserted into the database), duplicate (in the database already when written: a retry after a lost answer, a spool file replayed again), rejected (refused for their data, set aside), spooled (moved to a spool file), dropped (over the bound without a spool path).',
      labelNames: ['outcome'],
      registers,
      collect() {
        const source = ledger();
        if (!source) return;
        for (const outcome of LEDGER_OUTCOMES) {
          const delta = source[outcome] - seen[outcome];
          if (delta > 0) this.inc({ outcome }, delta);
          seen[outcome] = source[outcome];
        }
      },
    });
    for (const outcome of LEDGER_OUTCOMES) this.ledgerRows.inc({ outcome }, 0);
    this.cluster = opts.cluster ? new ClusterMetricsLink(this.registry, opts.cluster, undefined, () => this.stats.window()) : undefined;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * The Prometheus text exposition of every metric: this process's, or in a `serve --workers N`
   * worker the whole cluster's (rejects with a 503 GatewayError when the primary cannot answer).
   */
  render(): Promise<string> {
    return this.cluster ? this.cluster.render() : this.registry.metrics();
  }

  /** Stops answering the cluster primary (shutdown). */
  close(): void {
    this.cluster?.close();
  }

  /** This process's /v1/stats document. */
  summary(): PerformanceSummary {
    return this.stats.summary();
  }

  /**
   * The /v1/stats document: in a `serve --workers N` worker the whole cluster's, which the primary
   * computes from every worker's window, with `workers` (how many it covers); rejects with a 503
   * GatewayError when the primary cannot answer. Otherwise this process's summary(), no IPC.
   */
  async clusterSummary(): Promise<PerformanceSummary & { workers?: WorkerCounts }> {
    if (!this.cluster) return this.summary();
    const { summary, workers } = await this.cluster.stats({ windowS: this.stats.windowS, seriesS: this.stats.seriesS });
    const { generated_at, window_s, ...rest } = summary;
    return { generated_at, window_s, workers, ...rest };
  }

  /**
   * The configured catalog, declared once the gateway has built it: its deployments' models and its
   * group names are the only `model` label values, its deployment ids and group names the only
   * `deployment`/`from`/`to` values; a passthrough model or deployment reads `passthrough`.
   */
  useCatalog(catalog: LabelCatalog): void {
    const groups = catalog.groupNames();
    const deployments = catalog.allDeployments();
    this.model.declare([...groups, ...deployments.map((d) => d.model)]);
    this.deployment.declare([...groups, ...deployments.map((d) => d.id)]);
  }

  /** The ledger writer whose queue and row counts the ledger metrics read at each scrape. */
  watchLedger(ledger: LedgerCounts): void {
    this.ledger = ledger;
  }

  /** A capability announces itself so its dashboard section shows before its first event. */
  declare(section: Section): void {
    this.stats.declare(section);
  }

  requestStarted(): void {
    this.inFlightCount++;
  }

  /** One finished HTTP request (called once per request, from the server's onResponse hook). */
  recordRequest(r: RequestRecord): void {
    this.inFlightCount--;
    const route = this.route.value(r.route, 'unmatched');
    const model = this.model.value(r.model);
    const provider = this.provider.value(r.provider);
    const status = String(r.status);
    this.requestsTotal.inc({ model, provider, route, status });
    this.requestDuration.observe({ model, provider, route }, r.durationMs);
    if (r.status >= 500) this.errors5xx.inc({ provider, route, status });
    this.stats.request(r);
  }

  /**
   * One upstream attempt, successful or not (called by the executor through its observer). A
   * cancelled one is counted apart: not an error, and its cut-short duration is no provider latency.
   */
  recordAttempt(raw: AttemptRecord): void {
    // An upstream's counts are as it sent them: a negative or non-finite one (a misbehaving server)
    // counts as none rather than throwing in a counter, which failed the request it came with.
    const provider = this.provider.value(raw.provider);
    const model = this.model.value(raw.model);
    // One copy, as the rolling stats always took: the label and the counts as counted.
    const a = { ...raw, provider, inputTokens: count(raw.inputTokens), outputTokens: count(raw.outputTokens), costUsd: count(raw.costUsd) };
    if (a.outcome === 'cancelled') this.providerCancelled.inc({ provider });
    else {
      this.providerLatency.observe({ provider, model, outcome: a.outcome }, a.durationMs);
      if (a.outcome === 'error') this.providerErrors.inc({ provider, kind: a.errorKind ?? 'unknown' });
    }
    if (a.ttftMs !== undefined) this.timeToFirstToken.observe({ provider, model }, a.ttftMs);
    if (a.inputTokens) this.tokens.inc({ provider, model, type: 'input' }, a.inputTokens);
    if (a.outputTokens) this.tokens.inc({ provider, model, type: 'output' }, a.outputTokens);
    if (a.costUsd) this.cost.inc({ provider, model }, a.costUsd);
    this.stats.attempt(a);
  }

  /**
   * Tokens and cost no attempt recorded: a stream that ended without a usage chunk, as admission
   * estimated and charged it. Counted with the provider and model that served it, like an attempt's.
   */
  recordSpend(raw: SpendRecord): void {
    const s = { ...raw, inputTokens: count(raw.inputTokens), outputTokens: count(raw.outputTokens), costUsd: count(raw.costUsd) };
    const provider = this.provider.value(s.provider);
    const model = this.model.value(s.model);
    if (s.inputTokens) this.tokens.inc({ provider, model, type: 'input' }, s.inputTokens);
    if (s.outputTokens) this.tokens.inc({ provider, model, type: 'output' }, s.outputTokens);
    if (s.costUsd) this.cost.inc({ provider, model }, s.costUsd);
    this.stats.spend(provider, s);
  }

  cacheHit(kind: CacheHitKind, savedUsd = 0): void {
    this.cacheHits.inc({ kind });
    if (savedUsd > 0) this.cacheSaved.inc({ kind }, savedUsd);
    this.stats.cacheHit(kind, savedUsd);
  }

  cacheMiss(): void {
    this.cacheMisses.inc({});
    this.stats.cacheMiss();
  }

  setQueueDepth(depth: number, queue = 'admission'): void {
    this.queueDepth.set({ queue }, depth);
    this.stats.queueDepth(queue, depth);
  }

  /**
   * A breaker opened. `counted` false when another replica opened it and this one follows (shared
   * breakers): the state is set, but the opening is counted once, by the process that saw the
   * failures, so `circuit_breaker_open_total` summed over workers and pods is the number of openings.
   */
  breakerOpened(deployment: string, counted = true): void {
    const d = this.deployment.value(deployment);
    if (counted) this.breakerOpen.inc({ deployment: d });
    const shown = this.breakerShown(deployment, d, 'open');
    this.breakerState.set({ deployment: d }, BREAKER_STATE_VALUE[shown]);
    this.stats.breakerState(d, shown, counted);
  }

  /** Half-open and closed transitions (opening goes through breakerOpened, which counts it). */
  setBreakerState(deployment: string, state: BreakerState): void {
    if (state === 'open') return this.breakerOpened(deployment);
    const d = this.deployment.value(deployment);
    const shown = this.breakerShown(deployment, d, state);
    this.breakerState.set({ deployment: d }, BREAKER_STATE_VALUE[shown]);
    this.stats.breakerState(d, shown, false);
  }

  /**
   * The state a breaker's series shows. Every passthrough deployment shares the `passthrough` series,
   * which shows the worst of their breakers: one closing must not hide another still open (the
   * CircuitBreakerOpen alert would never fire). Only breakers not closed are remembered, at most
   * MAX_PASSTHROUGH_BREAKERS.
   */
  private breakerShown(raw: string, label: string, state: BreakerState): BreakerState {
    if (label !== 'passthrough') return state;
    const open = this.passthroughBreakers;
    open.delete(raw);
    if (state !== 'closed') {
      open.set(raw, state);
      if (open.size > MAX_PASSTHROUGH_BREAKERS) open.delete(open.keys().next().value as string);
    }
    let worst: BreakerState = 'closed';
    for (const s of open.values()) {
      if (s === 'open') return 'open';
      worst = 'half_open';
    }
    return worst;
  }

  rateLimited(limit: string): void {
    this.rateLimitedTotal.inc({ limit: this.limit.value(limit) });
    this.stats.rateLimited(limit);
  }

  retry(provider: string): void {
    this.retries.inc({ provider: this.provider.value(provider) });
    this.stats.retry();
  }

  fallback(from: string, to: string): void {
    this.fallbacks.inc({ from: this.deployment.value(from), to: this.deployment.value(to) });
    this.stats.fallback();
  }

  hedge(provider: string, outcome: HedgeOutcome): void {
    this.hedges.inc({ provider: this.provider.value(provider), outcome });
    this.stats.hedge(outcome);
  }

  /**
   * A mesh node's health (0..1) and state (`healthy`, `degraded`, `draining`, `down`). Labelled with
   * its id as it is: the collector sets the whole live set at once (setMeshNodes), which drops the
   * nodes that left, so the label holds the live nodes only.
   */
  setMeshNodeHealth(node: string, health: number, state = health > 0 ? 'healthy' : 'down'): void {
    this.meshNodeHealth.set({ node }, health);
    this.stats.meshNode(node, health, state);
  }

  /** The live mesh nodes, all of them: nodes not in `nodes` (departed pods) lose their series. */
  setMeshNodes(nodes: readonly MeshNodeState[]): void {
    this.meshNodeHealth.reset();
    this.stats.clearMeshNodes();
    for (const n of nodes) this.setMeshNodeHealth(n.node, n.health, n.state);
  }

  gpuAllocation(a: { model: string; ok: boolean; latencyMs: number }): void {
    this.gpuAllocationLatency.observe({ model: this.gpuModel.value(a.model), outcome: a.ok ? 'ok' : 'failed' }, a.latencyMs);
    this.stats.gpuAllocation(a.ok, a.latencyMs);
  }

  /**
   * One GPU device's utilisation (0..1). Labelled with its id as it is: the collector sets the whole
   * live set at once (setGpuDevices), which drops the devices that left, so the label holds the live
   * devices only (a first-come bound would keep departed devices and put new ones under `other`).
   */
  setGpuUtilization(device: string, ratio: number): void {
    this.gpuUtilization.set({ device }, ratio);
    this.stats.gpuUtilization(device, ratio);
  }

  /** The pool's live GPU devices, all of them: devices not in `devices` (departed pods) lose their series. */
  setGpuDevices(devices: readonly { device: string; utilization: number }[]): void {
    this.gpuUtilization.reset();
    this.stats.clearGpuUtilization();
    for (const d of devices) this.setGpuUtilization(d.device, d.utilization);
  }

  setGpuActiveAllocations(n: number): void {
    this.gpuActiveAllocations.set(n);
    this.stats.gpuActiveAllocations(n);
  }
}

/** A count a counter can take: a finite, non-negative number, else 0. */
function count(v: number | undefined): number {
  return v !== undefined && Number.isFinite(v) && v > 0 ? v : 0;
}
