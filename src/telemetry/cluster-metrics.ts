// One Prometheus scrape, the whole cluster. With `serve --workers N` each worker keeps its own
// registry and a scrape reaches whichever worker accepts the connection; alone, its counters would
// jump between the workers' values and rate() would read every drop as a reset. So a worker that is
// scraped asks the primary (over the cluster's IPC channel), the primary asks every worker for its
// registry as JSON, adds them up with prom-client's AggregatorRegistry.aggregate (each metric by its
// `aggregator`: sum for counters and histograms, per gauge what it means) and the worker answers with
// that text.
//
//   worker ──metrics-request{id}──▶ primary ──metrics-collect{id}──▶ every listening worker
//   worker ◀──metrics-answer{id,text}── primary ◀──metrics-report{id,metrics}── each worker
//
// A worker that does not report within the timeout (hung, busy, dying) does not hold the scrape up:
// the primary answers with its last report (its counters stay where they were rather than dropping,
// which rate() would read as a reset), or without it if it never reported, and says so in
// `inference_metrics_workers{state}`. A worker that exits loses its last report: its replacement
// starts from zero, as any restarted process does.
//
// Process metrics (`process_*`, `nodejs_*`) are not added up: each worker's carry a `worker` label,
// its slot 0..N-1 (a replacement takes the slot of the worker it replaces, so the label set stays
// bounded). Adding event-loop lag or heap percentages of several processes means nothing, and a
// leak shows in one worker's memory.
//
// GET /v1/stats goes the same way with `kind: 'stats'` on every message: each worker reports its
// rolling window's raw state (rolling-stats.ts StatsWindow: per-second counts, sums, histogram
// buckets, gauges), and the primary, with the same timeout and stale/missing rules, adds the windows
// up and computes the summary once (RollingStats.summaryOf: percentiles from the merged histograms),
// over the window and series length the asking worker names; the worker adds its alerts. The primary
// serves no requests, so the merging costs the workers nothing but their report; polls that arrive
// while a collection is under way share it. A message without `kind` is a Prometheus scrape's.
import { AggregatorRegistry, Gauge, type PrometheusContentType, type Registry } from 'prom-client';
import { GatewayError } from '../server/errors.js';
import { RollingStats, type PerformanceSummary, type StatsWindow } from './rolling-stats.js';

/** How long the primary waits for the workers' reports. Well under Prometheus' 10 s scrape timeout. */
export const CLUSTER_METRICS_TIMEOUT_MS = 3_000;

const REQUEST = 'inferenceflow:metrics-request';
const ANSWER = 'inferenceflow:metrics-answer';
const COLLECT = 'inferenceflow:metrics-collect';
const REPORT = 'inferenceflow:metrics-report';

/** Metrics of one process, reported per worker (label `worker`) rather than aggregated. */
export const PER_WORKER_PREFIXES = ['process_', 'nodejs_'] as const;

/** One metric as Registry.getMetricsAsJSON() gives it (numbers may be NaN or ±Infinity). */
export interface MetricJson {
  name: string;
  help: string;
  type: string;
  aggregator?: string;
  values: Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>;
}

export interface WorkerReport {
  /** The worker's slot, 0..N-1: the `worker` label of its process metrics. */
  slot: number;
  metrics: MetricJson[];
  /** `answered` within the timeout of this scrape, or `stale`: its last report. */
  state: 'answered' | 'stale';
}

const perWorker = (name: string) => PER_WORKER_PREFIXES.some((p) => name.startsWith(p));

/**
 * The cluster's registry: every worker's metrics aggregated metric by metric (AggregatorRegistry's
 * rules: each metric's `aggregator`, `sum` when unset), process metrics kept apart per worker, plus
 * `inference_metrics_workers{state}` (answered, stale, missing: how complete this scrape is).
 */
export function aggregateCluster(reports: readonly WorkerReport[], missing = 0): Registry<PrometheusContentType> {
  const labelled = reports.map(({ slot, metrics }) =>
    metrics.map((m) =>
      perWorker(m.name)
        ? // One series per worker: nothing is merged, `first` keeps each (even a metric prom-client omits when aggregating, like process_start_time_seconds).
          { ...m, aggregator: 'first', values: m.values.map((v) => ({ ...v, labels: { ...v.labels, worker: String(slot) } })) }
        : m,
    ),
  );
  const registry = AggregatorRegistry.aggregate<PrometheusContentType>(labelled);
  const workers = new Gauge({
    name: 'inference_metrics_workers',
    help: 'Workers whose metrics this scrape adds up: answered (within the timeout), stale (no answer in time: its last report), missing (no answer and no earlier report).',
    labelNames: ['state'],
    registers: [registry],
  });
  for (const [state, n] of Object.entries(workerCounts(reports, missing))) workers.set({ state }, n);
  return registry;
}

/** How many reports answered and stood in stale, and how many workers are missing. */
function workerCounts(reports: readonly { state: 'answered' | 'stale' }[], missing: number): WorkerCounts {
  return { answered: reports.filter((r) => r.state === 'answered').length, stale: reports.filter((r) => r.state === 'stale').length, missing };
}

// IPC messages are JSON: NaN and ±Infinity (a gauge before its first reading) travel as strings.
function encode(metrics: MetricJson[]): MetricJson[] {
  return metrics.map((m) => ({ ...m, values: m.values.map((v) => (Number.isFinite(v.value) ? v : { ...v, value: String(v.value) as unknown as number })) }));
}

function decode(metrics: MetricJson[]): MetricJson[] {
  return metrics.map((m) => ({ ...m, values: m.values.map((v) => (typeof v.value === 'string' ? { ...v, value: Number(v.value) } : v)) }));
}

/** What is collected: the Prometheus registries (`metrics`, the default) or the /v1/stats windows. */
export type CollectKind = 'metrics' | 'stats';

/** How complete a cluster-wide answer is (as `inference_metrics_workers{state}` says for a scrape). */
export interface WorkerCounts {
  /** Workers that reported within the timeout. */
  answered: number;
  /** Workers that did not: their last report was used. */
  stale: number;
  /** Workers that did not and had never reported: left out. */
  missing: number;
}

/** The cluster's /v1/stats summary, as the primary computed it from every worker's window, and how many it covers. */
export interface ClusterStats {
  summary: PerformanceSummary;
  workers: WorkerCounts;
}

/** The window and chart width the summary covers (the asking worker's `monitoring.stats`). */
export interface StatsSpan {
  windowS: number;
  seriesS: number;
}

/** The schema's bounds of `monitoring.stats.window_s`: a span from a message is kept within them. */
const MAX_WINDOW_S = 3_600;
const spanOf = (m: Message): StatsSpan => {
  const clamp = (v: unknown, fallback: number) => (typeof v === 'number' && Number.isFinite(v) ? Math.min(MAX_WINDOW_S, Math.max(1, Math.floor(v))) : fallback);
  return { windowS: clamp(m.windowS, 300), seriesS: clamp(m.seriesS, 120) };
};

interface Message {
  type: string;
  id: number;
  kind?: CollectKind;
  text?: string;
  error?: string;
  metrics?: MetricJson[];
  window?: StatsWindow;
  windowS?: number;
  seriesS?: number;
  summary?: PerformanceSummary;
  workers?: WorkerCounts;
}

const kindOf = (m: Message): CollectKind => (m.kind === 'stats' ? 'stats' : 'metrics');

function isMessage(m: unknown): m is Message {
  return typeof m === 'object' && m !== null && typeof (m as Message).type === 'string' && (m as Message).type.startsWith('inferenceflow:metrics-') && typeof (m as Message).id === 'number';
}

// ---------------------------------------------------------------------------------------------------
// The primary

/** A worker as the primary's collector sees it. */
export interface MetricsPeer {
  /** Unique per process (cluster worker id). */
  readonly id: number;
  /** 0..N-1, taken over by a replacement. */
  readonly slot: number;
  /** Sends without throwing; a closed channel's error goes to the callback. */
  send(message: object, callback: (err: Error | null) => void): void;
}

interface Collection {
  kind: CollectKind;
  waiting: Set<number>;
  /** Each answering worker's report: MetricJson[] for `metrics`, a StatsWindow for `stats`. */
  reports: Map<number, unknown>;
  done(): void;
}

/** One worker's part of a collection: its fresh report, or its last one (stale). */
interface Gathered<T> {
  reports: Array<{ slot: number; report: T; state: 'answered' | 'stale' }>;
  missing: number;
}

export class ClusterMetricsCollector {
  private seq = 0;
  private readonly collections = new Map<number, Collection>();
  /** Each worker's last report of each kind, for a collection it does not answer in time. */
  private readonly last: Record<CollectKind, Map<number, { slot: number; report: unknown }>> = { metrics: new Map(), stats: new Map() };
  /** Stats collections under way, by span: later polls join them. */
  private readonly statsUnderWay = new Map<string, Promise<ClusterStats>>();

  /** `peers`: the workers to ask (those listening); `timeoutMs`: how long to wait for them. */
  constructor(
    private readonly peers: () => readonly MetricsPeer[],
    private readonly timeoutMs = CLUSTER_METRICS_TIMEOUT_MS,
  ) {}

  /** A message from a worker. True when it belonged to this protocol (handled here). */
  handle(from: MetricsPeer, message: unknown): boolean {
    if (!isMessage(message)) return false;
    if (message.type === REQUEST) {
      const { id } = message;
      const fail = (err: unknown) => safeSend(from, { type: ANSWER, id, kind: kindOf(message), error: (err as Error).message });
      if (kindOf(message) === 'stats') this.collectStats(spanOf(message)).then(({ summary, workers }) => safeSend(from, { type: ANSWER, id, kind: 'stats', summary, workers }), fail);
      else this.collect().then((text) => safeSend(from, { type: ANSWER, id, text }), fail);
    } else if (message.type === REPORT) {
      const c = this.collections.get(message.id);
      if (!c || !c.waiting.delete(from.id)) return true; // late (after the timeout) or not asked
      if (c.kind === 'stats') {
        if (isWindow(message.window)) c.reports.set(from.id, message.window);
      } else if (message.metrics) c.reports.set(from.id, decode(message.metrics));
      if (c.waiting.size === 0) c.done();
    }
    return true;
  }

  /** Asks every worker, waits for them (at most the timeout) and renders the aggregate. */
  async collect(): Promise<string> {
    const { reports, missing } = await this.gather<MetricJson[]>('metrics');
    return aggregateCluster(
      reports.map(({ slot, report, state }) => ({ slot, metrics: report, state })),
      missing,
    ).metrics();
  }

  /**
   * Asks every worker for its /v1/stats window, waits for them (at most the timeout) and computes the
   * summary of them all. A poll that arrives while one for the same span is under way shares it.
   */
  collectStats(span: StatsSpan): Promise<ClusterStats> {
    const key = `${span.windowS}/${span.seriesS}`;
    let pending = this.statsUnderWay.get(key);
    if (!pending) {
      pending = this.gather<StatsWindow>('stats')
        .then(({ reports, missing }) => ({
          summary: new RollingStats(span).summaryOf(reports.map((r) => r.report)),
          workers: workerCounts(reports, missing),
        }))
        .finally(() => this.statsUnderWay.delete(key));
      this.statsUnderWay.set(key, pending);
    }
    return pending;
  }

  /**
   * Sends `collect` of this kind to every worker and waits until each has reported or the timeout:
   * a worker that has not is answered for with its last report of the kind (stale), or is missing.
   */
  private async gather<T>(kind: CollectKind): Promise<Gathered<T>> {
    const peers = [...this.peers()];
    const id = ++this.seq;
    const reports = new Map<number, unknown>();
    await new Promise<void>((resolve) => {
      const waiting = new Set(peers.map((p) => p.id));
      const done = () => {
        clearTimeout(timer);
        this.collections.delete(id);
        resolve();
      };
      const timer = setTimeout(done, this.timeoutMs);
      this.collections.set(id, { kind, waiting, reports, done });
      // A worker whose channel has closed (it is exiting) is not waited for.
      const gone = (peer: MetricsPeer) => {
        if (waiting.delete(peer.id) && waiting.size === 0) done();
      };
      // A Prometheus scrape's `collect` carries no kind, as before (a worker reads none as `metrics`).
      const collect = kind === 'metrics' ? { type: COLLECT, id } : { type: COLLECT, id, kind };
      for (const p of peers) safeSend(p, collect, (err) => err && gone(p));
      if (waiting.size === 0) done();
    });
    const last = this.last[kind];
    const out: Gathered<T> = { reports: [], missing: 0 };
    for (const p of peers) {
      const fresh = reports.get(p.id);
      if (fresh !== undefined) {
        last.set(p.id, { slot: p.slot, report: fresh });
        out.reports.push({ slot: p.slot, report: fresh as T, state: 'answered' });
        continue;
      }
      const before = last.get(p.id);
      if (before) out.reports.push({ slot: before.slot, report: before.report as T, state: 'stale' });
      else out.missing++;
    }
    return out;
  }

  /** A worker exited: stop waiting for it and drop its last reports (its replacement starts at zero). */
  forget(id: number): void {
    this.last.metrics.delete(id);
    this.last.stats.delete(id);
    for (const c of this.collections.values()) if (c.waiting.delete(id) && c.waiting.size === 0) c.done();
  }
}

/** The shape of a window report (from this gateway's own workers: a light check, not a validation of every field). */
function isWindow(w: unknown): w is StatsWindow {
  if (typeof w !== 'object' || w === null) return false;
  const x = w as Partial<Record<keyof StatsWindow, unknown>>;
  return Array.isArray(x.sections) && Array.isArray(x.slots) && Array.isArray(x.queues) && Array.isArray(x.breakers) && Array.isArray(x.meshNodes) && Array.isArray(x.gpuUtilization) && typeof x.gpuActive === 'number';
}

function safeSend(peer: MetricsPeer, message: object, onError: (err: Error | null) => void = () => undefined): void {
  try {
    peer.send(message, onError);
  } catch (err) {
    onError(err as Error); // its channel closed: it is exiting
  }
}

// ---------------------------------------------------------------------------------------------------
// A worker

/** The part of `process` (a cluster worker) the link uses. */
export interface IpcChannel {
  send?(message: object, callback: (err: Error | null) => void): boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
  readonly connected?: boolean;
}

/**
 * A worker's side: reports its registry (and its /v1/stats window) when the primary collects, and
 * renders a scrape (or the cluster's stats window) by asking the primary for the aggregate.
 */
export class ClusterMetricsLink {
  private seq = 0;
  private readonly waiting = new Map<number, { kind: CollectKind; resolve(answer: Message): void; reject(err: Error): void; timer: NodeJS.Timeout }>();

  constructor(
    private readonly registry: Registry,
    private readonly channel: IpcChannel = process,
    /** How long a scrape waits for the primary: its collection timeout and some margin. */
    private readonly timeoutMs = CLUSTER_METRICS_TIMEOUT_MS + 2_000,
    /** This worker's /v1/stats window (RollingStats.window), reported when the primary collects stats. */
    private readonly statsWindow?: () => StatsWindow,
  ) {
    channel.on('message', this.onMessage);
  }

  private readonly onMessage = (message: unknown): void => {
    if (!isMessage(message)) return;
    if (message.type === COLLECT) {
      const { id } = message;
      if (kindOf(message) === 'stats') {
        let window: StatsWindow | undefined;
        let error = 'this worker keeps no stats window';
        try {
          window = this.statsWindow?.();
        } catch (err) {
          error = (err as Error).message;
        }
        this.send(window ? { type: REPORT, id, kind: 'stats', window } : { type: REPORT, id, kind: 'stats', error });
        return;
      }
      this.registry.getMetricsAsJSON().then(
        (metrics) => this.send({ type: REPORT, id, metrics: encode(metrics as unknown as MetricJson[]) }),
        (err: unknown) => this.send({ type: REPORT, id, error: (err as Error).message }),
      );
    } else if (message.type === ANSWER) {
      const w = this.waiting.get(message.id);
      if (!w) return;
      this.waiting.delete(message.id);
      clearTimeout(w.timer);
      w.resolve(message);
    }
  };

  private send(message: object): void {
    if (this.channel.connected === false || !this.channel.send) return;
    try {
      this.channel.send(message, () => undefined); // a callback, so a closed channel is no 'error' event
    } catch {
      // the primary is gone; this worker exits with it
    }
  }

  /** Asks the primary for the cluster's aggregate of this kind: its answer message. */
  private ask(kind: CollectKind, extra: object = {}): Promise<Message> {
    if (this.channel.connected === false || !this.channel.send) return Promise.reject(unavailable(kind, 'the cluster primary is gone'));
    const id = ++this.seq;
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(unavailable(kind, `the cluster primary did not answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.waiting.set(id, { kind, resolve, reject, timer });
      this.send(kind === 'metrics' ? { type: REQUEST, id } : { type: REQUEST, id, kind, ...extra });
    });
  }

  /** The whole cluster's metrics, as the primary aggregates them. */
  async render(): Promise<string> {
    const answer = await this.ask('metrics');
    if (answer.text !== undefined) return answer.text;
    throw unavailable('metrics', `the cluster primary could not aggregate the workers' metrics: ${answer.error ?? 'no answer'}`);
  }

  /** The whole cluster's /v1/stats summary over this span, as the primary computed it from every worker's window. */
  async stats(span: StatsSpan): Promise<ClusterStats> {
    const answer = await this.ask('stats', { windowS: span.windowS, seriesS: span.seriesS });
    if (answer.summary && answer.workers) return { summary: answer.summary, workers: answer.workers };
    throw unavailable('stats', `the cluster primary could not merge the workers' stats: ${answer.error ?? 'no answer'}`);
  }

  close(): void {
    this.channel.off('message', this.onMessage);
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.reject(unavailable(w.kind, 'the worker is shutting down'));
    }
    this.waiting.clear();
  }
}

/** A scrape or stats that cannot be answered for the whole cluster: 503, never one worker's numbers alone. */
function unavailable(kind: CollectKind, why: string): GatewayError {
  return new GatewayError('not_ready', { message: `${kind === 'stats' ? 'Stats' : 'Metrics'} unavailable: ${why}.` });
}
