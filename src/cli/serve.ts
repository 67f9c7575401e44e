// `inferenceflow serve`: load config, build the gateway and the HTTP app, listen, and shut down
// gracefully on SIGTERM/SIGINT (report not-ready, after shutdown_delay_ms stop accepting, drain,
// close pools). With several workers the primary process (cluster.ts) forks copies of this server
// that share the port.
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { SpanExporter } from '@opentelemetry/sdk-trace-node';
import type { FastifyInstance } from 'fastify';
import { loadConfig, type LoadedConfig } from '../config/load.js';
import type { Gateway } from '../gateway/gateway.js';
import { assemble } from '../gateway/assemble.js';
import { buildApp } from '../server/app.js';
import { isLoopback } from '../server/auth.js';
import { createLogger, type Logger } from '../telemetry/logger.js';
import { exitAfterFlush } from './exit.js';
import type { ProviderAdapter } from '../providers/types.js';
import { needsDatabase } from '../gateway/tenancy.js';
import { separateMetricsPort } from '../telemetry/metrics-server.js';
import { WORKER_MAX_REQUESTS_PER_CONNECTION, localCapacityState, planWorkers, runPrimary } from './cluster.js';

/** Pending connections the listening socket holds (see listen below). */
const LISTEN_BACKLOG = 4096;

export interface ServeOptions {
  config?: string;
  host?: string;
  port?: number;
  /** Processes sharing the port (`--workers`); unset: `server.workers`, else the usable core count. */
  workers?: number;
}

export interface RunningServer {
  app: FastifyInstance;
  gateway: Gateway;
  loaded: LoadedConfig;
  url: string;
  close(): Promise<void>;
}

export const VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return '0.0.0';
  }
})();

/** Builds and starts a server; used by the CLI and by integration tests. */
export interface StartOptions extends ServeOptions {
  env?: Record<string, string | undefined>;
  /** An already built configuration (tests); otherwise it is loaded from file and environment. */
  loaded?: LoadedConfig;
  logger?: Logger;
  /** Provider instances to use instead of building them from config (tests). */
  providers?: Map<string, ProviderAdapter>;
  /** Set in a cluster worker: answers carry `x-inferenceflow-worker` with this value. */
  worker?: string;
  /** Span exporter replacing the configured one (tests). */
  spanExporter?: SpanExporter;
}

export async function startServer(opts: StartOptions = {}): Promise<RunningServer> {
  const loaded = opts.loaded ?? (await loadConfig({ file: opts.config, env: opts.env }));
  const { config } = loaded;
  if (opts.host) config.server.host = opts.host;
  if (opts.port !== undefined) config.server.port = opts.port;
  const log = opts.logger ?? createLogger(config.logging.level);

  const { gateway, authenticator, plugins, telemetry } = await assemble(loaded, log, { providers: opts.providers, version: VERSION, spanExporter: opts.spanExporter });
  if (!authenticator.required && !isLoopback(config.server.host) && !config.server.allow_unauthenticated) {
    await gateway.close();
    throw new Error(
      `refusing to listen on ${config.server.host} without authentication: set auth.tokens (or TRUTHGPT_API_TOKEN), or bind 127.0.0.1`,
    );
  }
  let app: FastifyInstance | undefined;
  // Every open client connection, for the drain in close().
  const openSockets = new Set<Socket>();
  try {
    app = await buildApp({
      gateway,
      authenticator,
      log,
      version: VERSION,
      bodyLimit: config.server.body_limit_bytes,
      requestTimeoutMs: config.server.request_timeout_ms,
      ...(config.server.trust_proxy === undefined ? {} : { trustProxy: config.server.trust_proxy }),
      plugins,
      telemetry,
      worker: opts.worker,
      // Under several workers a client's connection stays with the worker that accepted it: after this
      // many requests it reconnects and lands on whichever worker accepts first (docs/scaling.md).
      maxRequestsPerConnection: config.server.max_requests_per_connection ?? (opts.worker ? WORKER_MAX_REQUESTS_PER_CONNECTION : 0),
    });
    // Connections not yet accepted wait in the listen backlog; Node's 511 overflowed when a thousand
    // clients connected at once to a busy process (dropped SYNs retry after 1, 3, 7 s). The kernel
    // caps it at net.core.somaxconn.
    app.server.on('connection', (socket: Socket) => {
      openSockets.add(socket);
      socket.once('close', () => openSockets.delete(socket));
    });
    await app.listen({ host: config.server.host, port: config.server.port, backlog: LISTEN_BACKLOG });
  } catch (err) {
    // The port taken, say: what was assembled (the metrics listener, pools, timers) goes too, or it
    // would hold its port and keep the process alive.
    await app?.close().catch(() => undefined);
    await gateway.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.server.port;
  const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
  const url = `http://${host}:${port}`;

  for (const warning of loaded.warnings ?? []) log.warn(warning);
  if (!authenticator.required) log.warn({ url }, 'no auth token configured: listening on loopback only, every caller is anonymous');
  if (loaded.simulatorDefault) {
    log.warn('no provider configured: serving every model from the built-in simulator (deterministic fake answers); set OPENAI_API_KEY, OPENAI_BASE_URL or a config file to use real models');
  }
  // The passthrough provider serves every model name no group claims: say which one it is.
  log.info({ url, providers: [...gateway.providers.keys()], models: gateway.catalog.groupNames(), passthrough: loaded.passthroughProvider ?? null, version: VERSION }, 'inferenceflow listening');

  // Graceful drain: report not-ready at once but keep serving for `server.shutdown_delay_ms` (a load
  // balancer or the Kubernetes endpoints still send new connections here until they see it), then
  // stop accepting (new requests on kept-alive connections get 503 shutting_down), let in-flight
  // requests and streams finish within the drain deadline, then close pools.
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      gateway.markClosing();
      const delayMs = config.server.shutdown_delay_ms;
      if (delayMs > 0) {
        log.info({ delayMs }, 'not ready; still serving until the listener closes');
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
      const deadline = config.server.shutdown_timeout_ms;
      const started = Date.now();
      const timer = setTimeout(() => {
        log.warn({ deadline, inFlight: gateway.router.inFlight }, 'drain deadline passed; closing remaining connections');
        app.server.closeAllConnections();
      }, deadline);
      timer.unref();
      // Keep-alive connections go idle as their last response ends; close them as they do, or
      // server.close() would wait for clients to hang up.
      // Node counts neither kind of connection below idle: one a client opened and never sent a
      // request on (pools and load balancers open them ahead of use) is closed once it has stayed
      // silent for a whole sweep, or every shutdown waited out the drain deadline.
      const silent = new Set<Socket>();
      const sweeper = setInterval(() => {
        app.server.closeIdleConnections();
        for (const socket of openSockets) {
          if (socket.bytesRead > 0) continue;
          if (silent.has(socket)) socket.destroy();
          else silent.add(socket);
        }
      }, 100);
      sweeper.unref();
      await app.close();
      clearInterval(sweeper);
      clearTimeout(timer);
      await gateway.close(Math.max(0, deadline - (Date.now() - started)));
    })());
  return { app, gateway, loaded, url, close };
}

export async function serve(opts: ServeOptions): Promise<void> {
  if (cluster.isPrimary) {
    // Loading the config here validates it once, before any worker starts.
    const { config } = await loadConfig({ file: opts.config });
    const plan = planWorkers(opts.workers ?? (config.server.workers || undefined), {
      embeddedDatabase: !config.database.url && (needsDatabase(config) || config.batch_jobs.enabled),
      localCapacity: localCapacityState(config),
    });
    const log = createLogger(config.logging.level);
    if (plan.note) log.warn(plan.note);
    if (plan.workers > 1) {
      if (!config.redis.url) log.warn({ workers: plan.workers }, 'no Redis: each worker keeps its own stored Responses API answers, so previous_response_id and GET /v1/responses/{id} find only those of the worker that answered (docs/scaling.md)');
      runPrimary({
        workers: plan.workers,
        log,
        shutdownTimeoutMs: config.server.shutdown_delay_ms + config.server.shutdown_timeout_ms,
        host: opts.host ?? config.server.host,
        metricsPort: separateMetricsPort(config.monitoring.metrics, opts.port ?? config.server.port),
      });
      return;
    }
  }
  const server = await startServer({ ...opts, worker: cluster.isWorker ? String(process.pid) : undefined });
  const log = server.gateway.log;
  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down: draining in-flight requests');
    server.close().then(
      () => {
        log.info('shutdown complete');
        exitAfterFlush(log, 0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        exitAfterFlush(log, 1);
      },
    );
  };
  // `on`, not `once`: a worker can get the signal twice (from the terminal's process group and from
  // the primary); close() is idempotent, and a second signal must not kill a drain in progress.
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}
