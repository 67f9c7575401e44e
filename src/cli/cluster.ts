// `inferenceflow serve --workers N`: the primary process forks N workers (node:cluster) that each run
// the ordinary single-process server on the one shared port, restarts a worker that dies (unless it
// crash-loops), forwards SIGTERM/SIGINT so every worker drains, and exits once all have exited. It
// also answers the workers' metrics scrapes and /v1/stats polls with the whole cluster's metrics and
// stats window (telemetry/cluster-metrics.ts).
import cluster, { type Worker } from 'node:cluster';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { CLUSTER_METRICS_TIMEOUT_MS, ClusterMetricsCollector, type MetricsPeer } from '../telemetry/cluster-metrics.js';
import type { Logger } from '../telemetry/logger.js';
import { exitAfterFlush } from './exit.js';

/** A worker that dies this many times within RESTART_WINDOW_MS means something is wrong: stop. */
export const MAX_RESTARTS = 5;
export const RESTART_WINDOW_MS = 60_000;

/**
 * The default worker count: the cores this process may use, capped by a container CPU quota
 * (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`) so a 1-CPU pod on a 32-core node runs one worker,
 * not 32. Read once at start-up.
 */
export function defaultWorkerCount(readFile: (path: string) => string = (p) => readFileSync(p, 'utf8')): number {
  const cores = availableParallelism();
  const quota = cgroupCpuQuota(readFile);
  return quota === undefined ? cores : Math.max(1, Math.min(cores, Math.ceil(quota)));
}

function cgroupCpuQuota(readFile: (path: string) => string): number | undefined {
  try {
    const [quota, period] = readFile('/sys/fs/cgroup/cpu.max').trim().split(/\s+/);
    if (quota && quota !== 'max' && Number(period) > 0) return Number(quota) / Number(period);
    return undefined;
  } catch {
    // not cgroup v2; try v1
  }
  try {
    const quota = Number(readFile('/sys/fs/cgroup/cpu/cpu.cfs_quota_us').trim());
    const period = Number(readFile('/sys/fs/cgroup/cpu/cpu.cfs_period_us').trim());
    return quota > 0 && period > 0 ? quota / period : undefined;
  } catch {
    return undefined;
  }
}

export interface WorkerPlan {
  workers: number;
  /** Why the default was lowered, for a start-up warning. */
  note?: string;
}

/** What keeps the gateway to one process (each is per process state that must not be duplicated). */
export interface SingleProcessNeeds {
  /** The embedded PGlite database is in use. */
  embeddedDatabase: boolean;
  /** The capacity state that lives in the process without Redis, as localCapacityState() says; undefined when none. */
  localCapacity?: string;
}

/**
 * Capacity features whose state is per process without Redis: the GPU pool (`clusters.pools` devices
 * or `clusters.from_mesh`), where each worker's own pool would lease the same GPU memory, and the
 * autoscaler (`scaling.enabled`), where each worker would forecast from its share of the traffic and,
 * with `dry_run: false`, patch the Deployment on its own. Undefined with Redis or without them.
 */
export function localCapacityState(config: {
  redis: { url?: string };
  scaling: { enabled: boolean };
  clusters: { pools: ReadonlyArray<{ devices: readonly unknown[] }>; from_mesh: boolean };
}): string | undefined {
  if (config.redis.url) return undefined;
  const what: string[] = [];
  if (config.clusters.pools.some((p) => p.devices.length > 0) || config.clusters.from_mesh) what.push('the GPU pool (clusters.pools / clusters.from_mesh)');
  if (config.scaling.enabled) what.push('the autoscaler (scaling.enabled)');
  return what.length > 0 ? what.join(' and ') : undefined;
}

/**
 * How many workers to run. `explicit` is `--workers`, INFERENCEFLOW_WORKERS or `server.workers`.
 * State that only one process may hold keeps the gateway to one worker: the embedded PGlite database
 * (two processes opening the file corrupt it), and without Redis the GPU pool and the autoscaler
 * (every worker would lease the same GPUs and decide alone). With any of them the default drops to
 * one worker (with a note saying why) and an explicit count above one is refused.
 */
export function planWorkers(explicit: number | undefined, needs: SingleProcessNeeds, cores: () => number = defaultWorkerCount): WorkerPlan {
  const { embeddedDatabase, localCapacity } = needs;
  if (explicit !== undefined && explicit > 1 && embeddedDatabase) {
    throw new Error(
      `--workers ${explicit}: the embedded PGlite database (database.pglite_path) can only be opened by one process; set DATABASE_URL (Postgres) so every worker shares it, or run one worker`,
    );
  }
  if (explicit !== undefined && explicit > 1 && localCapacity) {
    throw new Error(
      `--workers ${explicit}: without Redis ${localCapacity} keep their state in each process, so every worker would lease the same GPUs and scale from its own share of the traffic; set REDIS_URL so the workers share the pool and elect one autoscaler, or run one worker`,
    );
  }
  if (explicit !== undefined) return { workers: explicit };
  const n = cores();
  if (n > 1 && (embeddedDatabase || localCapacity)) {
    const why = [
      ...(embeddedDatabase ? ['the embedded PGlite database is single-process; set DATABASE_URL (Postgres)'] : []),
      ...(localCapacity ? [`without Redis ${localCapacity} keep their state in the process; set REDIS_URL`] : []),
    ];
    return { workers: 1, note: `one worker, not ${n}: ${why.join('; ')} to use every core` };
  }
  return { workers: n };
}

/**
 * Young-generation semi-space of each worker, MiB (V8's default tops out at 16). A worker holding
 * a thousand streams keeps each request's objects alive for the whole answer, so most of them
 * outlive a 16 MiB scavenge cycle and are copied, then promoted: measured with 1,000 streaming
 * clients, scavenges took 11% of a worker's time at 16 MiB and 6% at 64 MiB (RESULTS.md).
 */
export const WORKER_SEMI_SPACE_MB = 64;

/**
 * The workers' node flags: this process's, plus `--max-semi-space-size` unless the operator set one
 * (on the command line or in NODE_OPTIONS).
 */
export function workerExecArgv(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  const set = [...execArgv, ...nodeOptions.split(/\s+/)].some((a) => /^--max[-_]semi[-_]space[-_]size\b/.test(a));
  return set ? [...execArgv] : [...execArgv, `--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`];
}

export interface PrimaryOptions {
  workers: number;
  log: Logger;
  /** Each worker's drain deadline (server.shutdown_timeout_ms); the primary waits a little longer. */
  shutdownTimeoutMs: number;
  /** The configured host, for the announced URL. */
  host: string;
  /** The worker script; default: this same program (process.argv[1]) with the same arguments. */
  exec?: string;
  /** More environment for the workers. */
  env?: Record<string, string>;
  maxRestarts?: number;
  restartWindowMs?: number;
  /** Called with the exit code once every worker has exited; default: process.exit (after a log flush). */
  exit?: (code: number) => void;
  /** Install SIGTERM/SIGINT handlers that drain the cluster (default true). */
  handleSignals?: boolean;
  /**
   * The workers' separate metrics listener (PROMETHEUS_PORT), if any: its `listening` events are not
   * the API's (a worker starts it before the API listens), so they neither count nor name the URL.
   */
  metricsPort?: number;
  /** How long a metrics scrape waits for the workers' reports (default CLUSTER_METRICS_TIMEOUT_MS). */
  metricsTimeoutMs?: number;
}

export interface Primary {
  /** Resolves when every initial worker listens: the shared URL and the worker pids. */
  listening: Promise<{ url: string; pids: number[] }>;
  /** Drains and stops every worker (what SIGTERM does); `code` other than 0 makes the exit code 1. */
  stop(code?: number): void;
  /** The exit code, once every worker has exited. */
  exited: Promise<number>;
}

/**
 * Requests a kept-alive connection carries in a cluster worker before `Connection: close`
 * (server.max_requests_per_connection unset): connections stay with the worker that accepted them,
 * and a worker that took more of a burst of clients than its share would keep them; reconnecting
 * every hundred requests (a TCP handshake on a LAN, well under 1% of a request's cost) lets the
 * shares even out, since the busier worker gets to `accept` less often.
 */
export const WORKER_MAX_REQUESTS_PER_CONNECTION = 100;

/**
 * How the workers get connections, from NODE_CLUSTER_SCHED_POLICY (which Node itself also reads):
 * `rr`, Node's round-robin, in which the primary hands each new connection to the next worker that
 * acknowledged its last one; unset or anything else (an empty value from a templated manifest, `none`,
 * a typo), `none`: each worker accepts from the shared socket. Round-robin is uneven where it matters:
 * while clients connect in a burst the more responsive worker collects more of them, and keeps them
 * for as long as they are kept alive: measured with 1,000 streaming clients and two workers,
 * 587 / 413 connections and a P95 of 2.44 s against 1.45 s on the lighter worker; accepting
 * themselves, 481 / 519 and 1.25 / 1.42 s (docs/decisions.md). Node's own parsing would take any
 * value but `none` for round-robin.
 */
export function schedulingPolicyFor(value: string | undefined): number {
  return value === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;
}

/**
 * Runs the primary until every worker has exited, then exits: 0 after a requested shutdown in
 * which every worker drained cleanly, 1 otherwise (start-up failure, crash loop, a worker that had
 * to be killed).
 */
export function runPrimary(opts: PrimaryOptions): Primary {
  const { log } = opts;
  const maxRestarts = opts.maxRestarts ?? MAX_RESTARTS;
  const windowMs = opts.restartWindowMs ?? RESTART_WINDOW_MS;
  const listening = new Set<number>(); // ids of workers that have bound the port
  const mine = new Set<number>(); // ids of the workers this primary forked
  // Each worker's slot 0..N-1, the lowest free one (so a replacement takes the dead worker's): the
  // `worker` label of its process metrics, which stays bounded however often workers are replaced.
  const slots = new Map<number, number>();
  const restarts: number[] = [];
  let announced = false;
  let stopping = false;
  let exitCode = 0;
  let resolveListening!: (v: { url: string; pids: number[] }) => void;
  let rejectListening!: (err: Error) => void;
  const listeningPromise = new Promise<{ url: string; pids: number[] }>((resolve, reject) => {
    resolveListening = resolve;
    rejectListening = reject;
  });
  listeningPromise.catch(() => undefined); // a caller that never awaits it must not see an unhandled rejection
  let resolveExited!: (code: number) => void;
  const exited = new Promise<number>((resolve) => (resolveExited = resolve));

  // Set before the first setupPrimary, which fixes it (schedulingPolicyFor).
  cluster.schedulingPolicy = schedulingPolicyFor(process.env.NODE_CLUSTER_SCHED_POLICY);
  cluster.setupPrimary({ execArgv: workerExecArgv(), ...(opts.exec ? { exec: opts.exec } : {}) });
  const fork = (): Worker => {
    const taken = new Set(slots.values());
    let free = 0;
    while (taken.has(free)) free++;
    const w = cluster.fork(opts.env);
    mine.add(w.id);
    slots.set(w.id, free);
    return w;
  };
  const alive = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && mine.has(w.id));

  // Metrics scrapes and /v1/stats: a worker asks, every listening worker reports, the primary aggregates.
  const peer = (w: Worker): MetricsPeer => ({
    id: w.id,
    slot: slots.get(w.id) ?? -1,
    send: (message, callback) => {
      if (w.isConnected()) w.send(message, callback);
      else callback(new Error('the worker has disconnected'));
    },
  });
  const metrics = new ClusterMetricsCollector(() => alive().filter((w) => listening.has(w.id)).map(peer), opts.metricsTimeoutMs ?? CLUSTER_METRICS_TIMEOUT_MS);
  const onMessage = (worker: Worker, message: unknown) => {
    if (mine.has(worker.id)) metrics.handle(peer(worker), message);
  };

  const onListening = (worker: Worker, address: { port: number }) => {
    if (!mine.has(worker.id)) return;
    if (opts.metricsPort !== undefined && opts.metricsPort !== 0 && address.port === opts.metricsPort) return;
    listening.add(worker.id);
    if (announced) {
      log.info({ pid: worker.process.pid, port: address.port }, 'replacement worker listening');
      return;
    }
    if (listening.size < opts.workers) return;
    announced = true;
    const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
    const url = `http://${host}:${address.port}`;
    const pids = alive().map((w) => w.process.pid as number);
    log.info({ url, workers: pids, primary: process.pid }, 'inferenceflow cluster listening');
    resolveListening({ url, pids });
  };

  const onExit = (worker: Worker, code: number | null, signal: string | null) => {
    if (!mine.has(worker.id)) return;
    mine.delete(worker.id);
    const started = listening.delete(worker.id);
    slots.delete(worker.id);
    metrics.forget(worker.id);
    const remaining = alive().length;
    if (stopping) {
      if (code !== 0) exitCode = 1;
      log.info({ pid: worker.process.pid, code, signal, remaining }, 'worker exited');
      if (remaining === 0) finish();
      return;
    }
    if (!started) {
      // It never bound the port: bad config, port in use, a dependency down. Restarting would loop.
      log.error({ pid: worker.process.pid, code, signal }, 'worker failed to start; stopping the cluster');
      stop(1);
      return;
    }
    const now = Date.now();
    restarts.push(now);
    while (restarts.length > 0 && (restarts[0] as number) < now - windowMs) restarts.shift();
    if (restarts.length > maxRestarts) {
      log.fatal({ restarts: restarts.length, windowMs }, 'workers keep dying; stopping the cluster');
      stop(1);
      return;
    }
    log.error({ pid: worker.process.pid, code, signal }, 'worker died unexpectedly; starting a new one');
    fork();
  };

  const stop = (code = 0) => {
    if (code !== 0) exitCode = 1;
    if (stopping) return;
    stopping = true;
    if (!announced) rejectListening(new Error('the cluster stopped before every worker listened'));
    const workers = alive();
    if (workers.length === 0) return finish();
    // Each worker runs its own graceful path on SIGTERM: not-ready, stop accepting, drain, close.
    for (const w of workers) w.process.kill('SIGTERM');
    const timer = setTimeout(() => {
      log.warn('workers still running past the drain deadline; killing them');
      exitCode = 1;
      for (const w of alive()) w.process.kill('SIGKILL');
    }, opts.shutdownTimeoutMs + 5_000);
    timer.unref();
  };

  const onSignal = (signal: NodeJS.Signals) => {
    log.info({ signal, workers: alive().length }, 'shutting down: draining every worker');
    stop(0);
  };

  const finish = () => {
    cluster.off('listening', onListening);
    cluster.off('exit', onExit);
    cluster.off('message', onMessage);
    if (opts.handleSignals !== false) {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    }
    log.info({ code: exitCode }, 'cluster stopped');
    resolveExited(exitCode);
    // Let pino's asynchronous stdout flush the last lines before the process goes.
    const exit = opts.exit ?? ((code: number) => exitAfterFlush(log, code));
    exit(exitCode);
  };

  cluster.on('listening', onListening);
  cluster.on('exit', onExit);
  cluster.on('message', onMessage);
  if (opts.handleSignals !== false) {
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }
  log.info({ workers: opts.workers, primary: process.pid }, 'starting workers');
  for (let i = 0; i < opts.workers; i++) fork();
  return { listening: listeningPromise, stop, exited };
}
