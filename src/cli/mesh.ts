// `inferenceflow worker` and `inferenceflow router`: the mesh's two long-running processes. Settings
// come from the configuration the gateway loads (the config file, then environment variables such as
// MESH_* and REDIS_URL / REDIS_HOST / REDIS_CLUSTER_NODES), then from flags; both stop cleanly on
// SIGTERM/SIGINT (a worker drains and leaves the registry; a router leaves its pending work in Redis).
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { Command } from 'commander';
import type { LevelWithSilent } from 'pino';
import { loadConfig, ollamaHostUrl } from '../config/load.js';
import type { ProviderConfig } from '../config/schema.js';
import { meshBackendFor } from '../mesh/backend.js';
import type { MeshConfig } from '../mesh/config.js';
import { ProcHealthSource, type HealthSource, type HostHealth } from '../mesh/health.js';
import { MeshBacklogMetrics } from '../mesh/metrics.js';
import { MeshRouter } from '../mesh/router.js';
import { WorkerAgent } from '../mesh/worker.js';
import { createProvider } from '../providers/registry.js';
import { createLogger } from '../telemetry/logger.js';
import { exitAfterFlush } from './exit.js';
import { startMetricsServer } from '../telemetry/metrics-server.js';
import { VERSION } from './serve.js';
import { portNumber, positiveInt, positiveNumber } from './args.js';

export interface SharedFlags {
  config?: string;
  redisUrl?: string;
  keyPrefix?: string;
  heartbeatMs?: number;
  idleReclaimMs?: number;
  reclaimIntervalMs?: number;
  staleAfterS?: number;
  logLevel?: string;
}

function sharedOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'YAML config file whose clusters.mesh and redis sections apply (or INFERENCEFLOW_CONFIG / TRUTHGPT_CONFIG)')
    .option('--redis-url <url>', 'Redis URL (else the config\'s redis.url: REDIS_URL, REDIS_HOST…, REDIS_CLUSTER_NODES)')
    .option('--key-prefix <prefix>', 'prefix of mesh streams and keys (default orion:inference:)')
    .option('--heartbeat-ms <ms>', 'health publishing interval', positiveInt)
    .option('--idle-reclaim-ms <ms>', 'reclaim requests held this long', positiveInt)
    .option('--reclaim-interval-ms <ms>', 'how often routers look for requests to reclaim', positiveInt)
    .option('--stale-after-s <s>', 'nodes silent this long are not routed to', positiveNumber)
    .option('--log-level <level>', 'pino log level (default: LOG_LEVEL or the config\'s logging.level, else info)');
}

/**
 * The mesh settings of a worker or router: `clusters.mesh` and `redis.url` of the configuration the
 * gateway loads (file named by --config, INFERENCEFLOW_CONFIG or TRUTHGPT_CONFIG, then environment
 * overrides: MESH_*, REDIS_URL, REDIS_HOST…, REDIS_CLUSTER_NODES), then the flags.
 */
export async function meshSettings(
  flags: SharedFlags,
  env: Record<string, string | undefined> = process.env,
): Promise<{ mesh: MeshConfig; redisUrl: string; logLevel: LevelWithSilent; metricsToken?: string }> {
  // The gateway's file, read for clusters.mesh and redis: its providers are not called here, so their keys need not be set.
  const { config } = await loadConfig({ file: flags.config, env, providerKeys: 'warn' });
  const mesh = config.clusters.mesh;
  if (flags.keyPrefix) mesh.key_prefix = flags.keyPrefix;
  if (flags.heartbeatMs) mesh.heartbeat_interval_ms = flags.heartbeatMs;
  if (flags.idleReclaimMs) mesh.idle_reclaim_ms = flags.idleReclaimMs;
  if (flags.reclaimIntervalMs) mesh.reclaim_interval_ms = flags.reclaimIntervalMs;
  if (flags.staleAfterS) mesh.health.stale_after_s = flags.staleAfterS;
  const redisUrl = flags.redisUrl ?? config.redis.url;
  if (!redisUrl) throw new Error('a Redis URL is needed: --redis-url, REDIS_URL (or REDIS_HOST, REDIS_CLUSTER_NODES) or redis.url in the config file');
  // The flag, else LOG_LEVEL or logging.level as the gateway reads them.
  const logLevel = (flags.logLevel?.toLowerCase() ?? config.logging.level) as LevelWithSilent;
  // A router's metrics listener wants the gateway's METRICS_TOKEN (monitoring.metrics.token) when set.
  const metricsToken = config.monitoring.metrics.token;
  return { mesh, redisUrl, logLevel, ...(metricsToken ? { metricsToken } : {}) };
}

/** Reads the host, then lays a JSON file's fields over the reading (operators' and tests' override). */
class OverriddenHealthSource implements HealthSource {
  constructor(
    private readonly inner: HealthSource,
    private readonly file: string,
  ) {}
  async collect(): Promise<HostHealth> {
    const base = await this.inner.collect();
    try {
      return { ...base, ...(JSON.parse(await readFile(this.file, 'utf8')) as Partial<HostHealth>) };
    } catch {
      return base;
    }
  }
}

function onSignals(stop: () => Promise<void>, log: { info(o: object, m: string): void; error(o: object, m: string): void; flush(cb?: (err?: Error) => void): void }): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    stop().then(
      () => exitAfterFlush(log, 0),
      (err: unknown) => {
        log.error({ err }, 'stop failed');
        exitAfterFlush(log, 1);
      },
    );
  };
  process.once('SIGTERM', () => handler('SIGTERM'));
  process.once('SIGINT', () => handler('SIGINT'));
}

interface WorkerFlags extends SharedFlags {
  nodeId: string;
  backend: string;
  baseUrl?: string;
  apiKey?: string;
  modelsDir?: string;
  threads?: number;
  contextSize?: number;
  maxSequences?: number;
  maxConcurrency?: number;
  healthOverride?: string;
}

/**
 * The worker's backend provider: `--base-url`, else for `--backend ollama` OLLAMA_HOST read as the
 * gateway reads it (docker-compose and the Kubernetes manifests set it), else the adapter's default.
 */
export function workerProviderConfig(flags: { backend: string; baseUrl?: string; apiKey?: string }, env: Record<string, string | undefined> = process.env): ProviderConfig {
  const baseUrl = flags.baseUrl ?? (flags.backend === 'ollama' && env.OLLAMA_HOST?.trim() ? ollamaHostUrl(env.OLLAMA_HOST) : undefined);
  return { type: flags.backend as ProviderConfig['type'], ...(baseUrl ? { base_url: baseUrl } : {}), ...(flags.apiKey ? { api_key: flags.apiKey } : {}) };
}

export function registerMeshCommands(program: Command): void {
  sharedOptions(
    program
      .command('worker')
      .description('run a mesh node agent: publish health, run requests from this node\'s stream on a backend')
      .requiredOption('--node-id <id>', 'this node\'s id (its stream is <prefix>requests:<id>)')
      .option('--backend <type>', 'ollama | openai | local | simulator', 'ollama')
      .option('--base-url <url>', 'backend URL (ollama: OLLAMA_HOST, else http://127.0.0.1:11434; openai: an OpenAI-compatible /v1)')
      .option('--api-key <key>', 'backend API key (openai)')
      .option('--models-dir <dir>', 'local: folder of GGUF files')
      .option('--threads <n>', 'local: CPU threads', positiveInt, 1)
      .option('--context-size <n>', 'local: tokens per sequence', positiveInt)
      .option('--max-sequences <n>', 'local: concurrent sequences per model', positiveInt)
      .option('--max-concurrency <n>', 'requests run at once (default: local max-sequences, else 4)', positiveInt)
      .option('--health-override <file>', 'JSON fields laid over each host health reading (testing, maintenance)'),
  ).action(async (flags: WorkerFlags) => {
    const { mesh, redisUrl, logLevel } = await meshSettings(flags);
    const log = createLogger(logLevel);
    const providerCfg = workerProviderConfig(flags);
    if (flags.backend === 'local') {
      if (!flags.modelsDir) throw new Error('--backend local needs --models-dir');
      providerCfg.options = {
        models_dir: flags.modelsDir,
        threads: flags.threads ?? 1,
        ...(flags.contextSize ? { context_size: flags.contextSize } : {}),
        ...(flags.maxSequences ? { max_sequences: flags.maxSequences } : {}),
      };
    } else if (!['ollama', 'openai', 'simulator'].includes(flags.backend)) {
      throw new Error(`--backend must be ollama, openai, local or simulator, not "${flags.backend}"`);
    }
    const maxConcurrency = flags.maxConcurrency ?? (flags.backend === 'local' ? (flags.maxSequences ?? 4) : 4);
    // An HTTP backend's connection pool (256 by default) must not queue what the node runs at once.
    if (flags.backend === 'openai' || flags.backend === 'ollama') providerCfg.max_connections = Math.max(256, maxConcurrency);
    const adapter = await createProvider(`mesh-${flags.backend}`, providerCfg);
    const host = new ProcHealthSource();
    const worker = new WorkerAgent({
      nodeId: flags.nodeId,
      redisUrl,
      backend: meshBackendFor(adapter),
      config: mesh,
      health: flags.healthOverride ? new OverriddenHealthSource(host, flags.healthOverride) : host,
      log,
      maxConcurrency,
      version: VERSION,
    });
    try {
      await worker.start();
    } catch (err) {
      await adapter.close();
      throw err;
    }
    onSignals(async () => {
      await worker.stop();
      await adapter.close();
    }, log);
  });

  sharedOptions(
    program
      .command('router')
      .description('run a mesh router: place requests from the ingress stream on nodes (several may run)')
      .option('--router-id <id>', 'consumer name in the routers group (default: host name and pid)')
      .option('--metrics-port <port>', "serve the mesh's backlog as Prometheus metrics on GET /metrics at this port (default: none)", portNumber)
      .option('--metrics-host <host>', 'address of the metrics listener', '0.0.0.0'),
  ).action(async (flags: SharedFlags & { routerId?: string; metricsPort?: number; metricsHost: string }) => {
    const { mesh, redisUrl, logLevel, metricsToken } = await meshSettings(flags);
    const log = createLogger(logLevel);
    const router = new MeshRouter({ routerId: flags.routerId ?? `${os.hostname()}-${process.pid}`, redisUrl, config: mesh, log });
    await router.start();
    const metrics =
      flags.metricsPort === undefined
        ? undefined
        : await startMetricsServer(new MeshBacklogMetrics(() => router.backlog(), () => router.stats), { host: flags.metricsHost, port: flags.metricsPort, token: metricsToken });
    if (metrics) log.info({ port: metrics.port, host: flags.metricsHost }, 'mesh router: serving backlog metrics on /metrics');
    onSignals(async () => {
      await metrics?.close();
      await router.stop();
    }, log);
  });
}
