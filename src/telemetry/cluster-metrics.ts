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
import { AggregatorRegistry, Gauge, type PrometheusContentType, type Registry } from 'prom-client';
import { GatewayError } from '../server/errors.js';

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
  workers.set({ state: 'answered' }, reports.filter((r) => r.state === 'answered').length);
  workers.set({ state: 'stale' }, reports.filter((r) => r.state === 'stale').length);
  workers.set({ state: 'missing' }, missing);
  return registry;
}

// IPC messages are JSON: NaN and ±Infinity (a gauge before its first reading) travel as strings.
function encode(metrics: MetricJson[]): MetricJson[] {
  return metrics.map((m) => ({ ...m, values: m.values.map((v) => (Number.isFinite(v.value) ? v : { ...v, value: String(v.value) as unknown as number })) }));
}

function decode(metrics: MetricJson[]): MetricJson[] {
  return metrics.map((m) => ({ ...m, values: m.values.map((v) => (typeof v.value === 'string' ? { ...v, value: Number(v.value) } : v)) }));
}

interface Message {
  type: string;
  id: number;
  text?: string;
  error?: string;
  metrics?: MetricJson[];
}

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
  waiting: Set<number>;
  reports: Map<number, MetricJson[]>;
  done(): void;
}

export class ClusterMetricsCollector {
  private seq = 0;
  private readonly collections = new Map<number, Collection>();
  /** Each worker's last report, for a scrape it does not answer in time. */
  private readonly last = new Map<number, { slot: number; metrics: MetricJson[] }>();

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
      this.collect().then(
        (text) => safeSend(from, { type: ANSWER, id, text }),
        (err: unknown) => safeSend(from, { type: ANSWER, id, error: (err as Error).message }),
      );
    } else if (message.type === REPORT) {
      const c = this.collections.get(message.id);
      if (!c || !c.waiting.delete(from.id)) return true; // late (after the timeout) or not asked
      if (message.metrics) c.reports.set(from.id, decode(message.metrics));
      if (c.waiting.size === 0) c.done();
    }
    return true;
  }

  /** Asks every worker, waits for them (at most the timeout) and renders the aggregate. */
  async collect(): Promise<string> {
    const peers = [...this.peers()];
    const id = ++this.seq;
    const reports = new Map<number, MetricJson[]>();
    await new Promise<void>((resolve) => {
      const waiting = new Set(peers.map((p) => p.id));
      const done = () => {
        clearTimeout(timer);
        this.collections.delete(id);
        resolve();
      };
      const timer = setTimeout(done, this.timeoutMs);
      this.collections.set(id, { waiting, reports, done });
      // A worker whose channel has closed (it is exiting) is not waited for.
      const gone = (peer: MetricsPeer) => {
        if (waiting.delete(peer.id) && waiting.size === 0) done();
      };
      for (const p of peers) safeSend(p, { type: COLLECT, id }, (err) => err && gone(p));
      if (waiting.size === 0) done();
    });
    const out: WorkerReport[] = [];
    let missing = 0;
    for (const p of peers) {
      const fresh = reports.get(p.id);
      if (fresh) {
        this.last.set(p.id, { slot: p.slot, metrics: fresh });
        out.push({ slot: p.slot, metrics: fresh, state: 'answered' });
        continue;
      }
      const last = this.last.get(p.id);
      if (last) out.push({ slot: last.slot, metrics: last.metrics, state: 'stale' });
      else missing++;
    }
    return aggregateCluster(out, missing).metrics();
  }

  /** A worker exited: stop waiting for it and drop its last report (its replacement starts at zero). */
  forget(id: number): void {
    this.last.delete(id);
    for (const c of this.collections.values()) if (c.waiting.delete(id) && c.waiting.size === 0) c.done();
  }
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
 * A worker's side: reports its registry when the primary collects, and renders a scrape by asking
 * the primary for the cluster's aggregate.
 */
export class ClusterMetricsLink {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve(text: string): void; reject(err: Error): void; timer: NodeJS.Timeout }>();

  constructor(
    private readonly registry: Registry,
    private readonly channel: IpcChannel = process,
    /** How long a scrape waits for the primary: its collection timeout and some margin. */
    private readonly timeoutMs = CLUSTER_METRICS_TIMEOUT_MS + 2_000,
  ) {
    channel.on('message', this.onMessage);
  }

  private readonly onMessage = (message: unknown): void => {
    if (!isMessage(message)) return;
    if (message.type === COLLECT) {
      const { id } = message;
      this.registry.getMetricsAsJSON().then(
        (metrics) => this.send({ type: REPORT, id, metrics: encode(metrics as unknown as MetricJson[]) }),
        (err: unknown) => this.send({ type: REPORT, id, error: (err as Error).message }),
      );
    } else if (message.type === ANSWER) {
      const w = this.waiting.get(message.id);
      if (!w) return;
      this.waiting.delete(message.id);
      clearTimeout(w.timer);
      if (message.text !== undefined) w.resolve(message.text);
      else w.reject(unavailable(`the cluster primary could not aggregate the workers' metrics: ${message.error ?? 'no answer'}`));
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

  /** The whole cluster's metrics, as the primary aggregates them. */
  render(): Promise<string> {
    if (this.channel.connected === false || !this.channel.send) return Promise.reject(unavailable('the cluster primary is gone'));
    const id = ++this.seq;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(unavailable(`the cluster primary did not answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
      this.send({ type: REQUEST, id });
    });
  }

  close(): void {
    this.channel.off('message', this.onMessage);
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.reject(unavailable('the worker is shutting down'));
    }
    this.waiting.clear();
  }
}

/** A scrape that cannot be answered for the whole cluster: 503, never one worker's numbers alone. */
function unavailable(why: string): GatewayError {
  return new GatewayError('not_ready', { message: `Metrics unavailable: ${why}.` });
}
