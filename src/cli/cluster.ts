// `inferenceflow serve --workers N`: the primary process forks N workers (node:cluster) that each run
// the ordinary single-process server on the one shared port, restarts a worker that dies (unless it
// crash-loops), forwards SIGTERM/SIGINT so every worker drains, and exits once all have exited.
import cluster, { type Worker } from 'node:cluster';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Logger } from '../telemetry/logger.js';

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

export interface PrimaryOptions {
  workers: number;
  log: Logger;
  /** Each worker's drain deadline (server.shutdown_timeout_ms); the primary waits a little longer. */
  shutdownTimeoutMs: number;
  /** The configured host, for the announced URL. */
  host: string;
}

/**
 * Runs the primary until every worker has exited, then exits the process: 0 after a requested
 * shutdown in which every worker drained cleanly, 1 otherwise (start-up failure, crash loop,
 * a worker that had to be killed).
 */
export function runPrimary(opts: PrimaryOptions): void {
  const { log } = opts;
  const listening = new Set<number>(); // worker ids that have bound the port
  const restarts: number[] = [];
  let announced = false;
  let stopping = false;
  let exitCode = 0;

  const fork = (): Worker => cluster.fork();

  cluster.on('listening', (worker, address) => {
    listening.add(worker.id);
    if (announced) {
      log.info({ pid: worker.process.pid, port: address.port }, 'replacement worker listening');
      return;
    }
    if (listening.size < opts.workers) return;
    announced = true;
    const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
    const pids = Object.values(cluster.workers ?? {}).map((w) => w?.process.pid);
    log.info({ url: `http://${host}:${address.port}`, workers: pids, primary: process.pid }, 'inferenceflow cluster listening');
  });

  cluster.on('exit', (worker, code, signal) => {
    const started = listening.delete(worker.id);
    const alive = Object.keys(cluster.workers ?? {}).length;
    if (stopping) {
      if (code !== 0) exitCode = 1;
      log.info({ pid: worker.process.pid, code, signal, remaining: alive }, 'worker exited');
      if (alive === 0) finish();
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
    while (restarts.length > 0 && (restarts[0] as number) < now - RESTART_WINDOW_MS) restarts.shift();
    if (restarts.length > MAX_RESTARTS) {
      log.fatal({ restarts: restarts.length, windowMs: RESTART_WINDOW_MS }, 'workers keep dying; stopping the cluster');
      stop(1);
      return;
    }
    log.error({ pid: worker.process.pid, code, signal }, 'worker died unexpectedly; starting a new one');
    fork();
  });

  const stop = (code: number) => {
    if (code !== 0) exitCode = code;
    if (stopping) return;
    stopping = true;
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    if (workers.length === 0) return finish();
    // Each worker runs its own graceful path on SIGTERM: not-ready, stop accepting, drain, close.
    for (const w of workers) w.process.kill('SIGTERM');
    const timer = setTimeout(() => {
      log.warn('workers still running past the drain deadline; killing them');
      exitCode = 1;
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
    }, opts.shutdownTimeoutMs + 5_000);
    timer.unref();
  };

  const finish = () => {
    log.info({ code: exitCode }, 'cluster stopped');
    // Give pino's asynchronous stdout a moment to flush the last lines.
    log.flush(() => process.exit(exitCode));
  };

  const onSignal = (signal: NodeJS.Signals) => {
    log.info({ signal, workers: Object.keys(cluster.workers ?? {}).length }, 'shutting down: draining every worker');
    stop(0);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  log.info({ workers: opts.workers, primary: process.pid }, 'starting workers');
  for (let i = 0; i < opts.workers; i++) fork();
}
