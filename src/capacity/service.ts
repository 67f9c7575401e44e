// Builds the capacity services from the three config sections, for the gateway to wire in: the GPU
// allocator over the right pool (Redis when shared, in-process otherwise, or the hosted cloud), the
// traffic recorder, and the autoscaler with its Kubernetes applier (none in dry-run mode).
import { randomUUID } from 'node:crypto';
import type { RedisClient } from '../store/redis.js';
import type { Logger } from 'pino';
import { GpuAllocator } from './allocator.js';
import { GpuModelCatalog } from './catalog.js';
import type { ClustersConfig, CostOptimizationConfig, ScalingConfig } from './config.js';
import { HostedGpuPool, HttpHostedGpuCloud } from './hosted.js';
import { KubernetesScaleClient, resolveKubernetesConnection } from './kubernetes.js';
import { meshNodeGpus, type MeshNodeSource } from './mesh-devices.js';
import { InMemoryGpuPool, devicesFromConfig, devicesFromMeshNodes, type GpuPool, type MeshNodeGpus } from './pool.js';
import { RedisGpuPool } from './redis-pool.js';
import { Autoscaler } from './scaler-service.js';
import { RedisLeaderLock, RedisTrafficStore } from './shared-traffic.js';
import { TrafficRecorder } from './traffic.js';

export interface CapacityServices {
  catalog: GpuModelCatalog;
  /** Undefined when no pool is configured (no pools, no hosted cloud, no mesh GPUs). */
  allocator?: GpuAllocator;
  recorder: TrafficRecorder;
  /** Undefined when scaling.enabled is false. */
  autoscaler?: Autoscaler;
  /**
   * With clusters.from_mesh: reads the GPUs of the routable mesh nodes from `sources` now and then
   * every `clusters.mesh.heartbeat_interval_ms`, and makes them the pool's mesh devices. A failed read
   * keeps the devices of the last good one. Resolves after the first read.
   */
  followMesh(sources: readonly MeshNodeSource[]): Promise<void>;
  close(): Promise<void>;
}

export interface CapacityServiceOptions {
  clusters: ClustersConfig;
  scaling: ScalingConfig;
  cost: CostOptimizationConfig;
  /** Shared pool state when given (several replicas). */
  redis?: RedisClient;
  /** Root key prefix (config `redis.key_prefix`); the pool adds `gpu:`. */
  keyPrefix?: string;
  env?: Record<string, string | undefined>;
  logger?: Logger;
  /**
   * This process's name in leases, the scaling lock and per-replica queue depths. Default: the pod
   * name (HOSTNAME) with a per-process suffix — the workers of one `serve --workers N` share the
   * HOSTNAME and must not all hold the leader lock at once.
   */
  holder?: string;
}

/** `<HOSTNAME>/<pid>-<random>`: unique per process, and still says which pod it is. */
export function replicaName(env: Record<string, string | undefined> = process.env): string {
  return `${env.HOSTNAME ?? 'gateway'}/${process.pid}-${randomUUID().slice(0, 6)}`;
}

export async function createCapacityServices(opts: CapacityServiceOptions): Promise<CapacityServices> {
  const { clusters, scaling, cost } = opts;
  const env = opts.env ?? process.env;
  const catalog = new GpuModelCatalog(clusters.models);
  const prefix = opts.keyPrefix ?? 'inferenceflow:';
  const replica = opts.holder ?? replicaName(env);
  const closers: Array<() => Promise<void>> = [];

  const configured = devicesFromConfig(clusters.pools);
  let pool: GpuPool | undefined;
  if (configured.length > 0 || clusters.from_mesh) {
    pool = opts.redis ? new RedisGpuPool({ redis: opts.redis, keyPrefix: `${prefix}gpu:` }) : new InMemoryGpuPool();
    await pool.setDevices(configured);
  } else if (clusters.hosted) {
    const cloud = new HttpHostedGpuCloud(clusters.hosted, env);
    closers.push(() => cloud.close());
    pool = new HostedGpuPool(cloud, Date.now, clusters.hosted.cost_per_gpu_hour);
  }
  const allocator = pool
    ? new GpuAllocator({
        pool,
        catalog,
        allocation: clusters.allocation,
        keepWarmMs: cost.warm_models.keep_warm_s * 1000,
        preferWarm: cost.warm_models.prefer_warm,
        holder: replica,
      })
    : undefined;

  const f = scaling.forecast;
  const recorder = new TrafficRecorder({ bucketMs: f.bucket_s * 1000, historyBuckets: f.history_buckets, trackPending: Boolean(opts.redis) });
  // With Redis every replica pushes its counts to shared buckets, so the forecast sees all traffic.
  let store: RedisTrafficStore | undefined;
  if (opts.redis) {
    const shared = new RedisTrafficStore({ redis: opts.redis, keyPrefix: `${prefix}scaling:`, recorder, historyBuckets: f.history_buckets, replica });
    store = shared;
    const flusher = setInterval(() => void shared.flush().catch((err: unknown) => opts.logger?.warn({ err }, 'pushing traffic counts to Redis failed')), 5_000);
    flusher.unref();
    closers.push(async () => {
      clearInterval(flusher);
      await shared.flush().catch(() => undefined);
    });
  }
  let autoscaler: Autoscaler | undefined;
  if (scaling.enabled) {
    let applier: KubernetesScaleClient | undefined;
    if (!scaling.dry_run) {
      const k = scaling.kubernetes;
      const conn = await resolveKubernetesConnection({ kubeconfig: k.kubeconfig, context: k.context, env });
      applier = new KubernetesScaleClient(conn, k.namespace ?? conn.namespace ?? 'default');
      const client = applier;
      closers.push(() => client.close());
    }
    const leader = opts.redis ? new RedisLeaderLock(opts.redis, `${prefix}scaling:leader`, replica, scaling.interval_s * 3_000) : undefined;
    autoscaler = new Autoscaler({ scaling, cost, recorder, source: store, leader, applier, logger: opts.logger });
    autoscaler.start();
    closers.push(async () => autoscaler?.stop());
  }

  // Replaces the mesh-reported devices (configured ones stay). The list this replica last wrote: a
  // read that finds the same GPUs (most do) writes nothing, rather than have every replica rewrite
  // every mesh device every heartbeat interval.
  let meshWritten: string | undefined;
  const updateMeshDevices = async (nodes: readonly MeshNodeGpus[]) => {
    if (!pool || !clusters.from_mesh) return;
    const devices = devicesFromMeshNodes(nodes);
    const json = JSON.stringify(devices);
    if (json === meshWritten) return;
    await pool.setDevices(devices, 'mesh');
    meshWritten = json;
  };
  let meshTimer: NodeJS.Timeout | undefined;
  closers.push(async () => clearInterval(meshTimer));

  return {
    catalog,
    allocator,
    recorder,
    autoscaler,
    async followMesh(sources) {
      if (!pool || !clusters.from_mesh || meshTimer) return;
      let failing: string | undefined;
      if (sources.length === 0) {
        opts.logger?.warn('clusters.from_mesh: no mesh to read GPUs from (no mesh provider and no redis.url); the pool has only the configured devices');
        return;
      }
      const refresh = async () => {
        try {
          await updateMeshDevices(await meshNodeGpus(sources));
          failing = undefined;
        } catch (err) {
          const message = (err as Error).message;
          if (message !== failing) opts.logger?.warn({ err }, 'reading the mesh nodes for the GPU pool failed; keeping the last mesh devices');
          failing = message;
        }
      };
      await refresh();
      meshTimer = setInterval(() => void refresh(), clusters.mesh.heartbeat_interval_ms);
      meshTimer.unref();
    },
    async close() {
      for (const c of closers.reverse()) await c().catch(() => undefined);
    },
  };
}
