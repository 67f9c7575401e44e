// Config sections of the capacity layer (seed 000's `scaling`, `clusters`, `cost_optimization`):
// zod schemas the lead mounts in the one config schema, and the environment variables they read.
// `clusters.mesh` holds the inference mesh's settings (src/mesh/config.ts).
import { z } from 'zod';
import { meshConfigSchema } from '../mesh/config.js';
import type { EnvVar } from '../config/env.js';

/** A model the GPU pool can host: what it needs of a device (seed 004's catalog). */
export const gpuModelSchema = z
  .object({
    name: z.string().min(1),
    /** Other names that resolve to this entry (`mistral-7b-instruct`, `mistralai/Mistral-7B`…). */
    aliases: z.array(z.string().min(1)).default([]),
    memory_gb: z.number().positive(),
    tflops: z.number().positive(),
    /** Decode speed on one device, used to estimate how long a request holds its GPU. */
    tokens_per_s: z.number().positive().default(50),
  })
  .strict();

/** One GPU or one vGPU slice. A slice is held whole by one lease; a full GPU packs several models. */
export const gpuDeviceSchema = z
  .object({
    id: z.string().min(1),
    memory_gb: z.number().positive(),
    tflops: z.number().positive(),
    /** `slice`: a vGPU partition held exclusively; `gpu`: shared by best-fit packing. */
    kind: z.enum(['gpu', 'slice']).default('gpu'),
    /** How many identical devices this entry stands for (ids get `-0`, `-1`… suffixes when > 1). */
    count: z.number().int().positive().default(1),
  })
  .strict();

/** The id of the `i`-th device of a `clusters.pools` entry that stands for `count` devices. */
export function configuredDeviceId(id: string, count: number, i: number): string {
  return count > 1 ? `${id}-${i}` : id;
}

export const gpuPoolSchema = z
  .object({
    name: z.string().min(1),
    region: z.string().default('local'),
    /** Spot/preemptible capacity: cheaper, may vanish. */
    spot: z.boolean().default(false),
    /** Price of one device-hour, for cost per inference. */
    cost_per_gpu_hour: z.number().min(0).default(0),
    devices: z.array(gpuDeviceSchema).default([]),
  })
  .strict();

export const allocationSchema = z
  .object({
    /** How long a request may wait for room before it fails. */
    timeout_ms: z.number().int().positive().default(30_000),
    /** A lease not renewed within this time is free again (its holder died). */
    lease_ttl_ms: z.number().int().positive().default(15_000),
    /** Renewal period while a request executes; must be well under the TTL. */
    heartbeat_ms: z.number().int().positive().default(5_000),
    /** First wait between tries when the pool is full; doubles up to backoff_max_ms, with jitter. */
    backoff_ms: z.number().int().positive().default(50),
    backoff_max_ms: z.number().int().positive().default(2_000),
    /** Tokens assumed when a request names no max_tokens. */
    default_expected_tokens: z.number().int().positive().default(512),
  })
  .strict()
  .refine((a) => a.heartbeat_ms < a.lease_ttl_ms, { message: 'heartbeat_ms must be below lease_ttl_ms', path: ['heartbeat_ms'] });

export const hostedGpuCloudSchema = z
  .object({
    base_url: z.url(),
    /** Environment variable holding the bearer key (seed 004: HOSTED_AI_API_KEY). */
    api_key_env: z.string().default('HOSTED_AI_API_KEY'),
    timeout_ms: z.number().int().positive().default(10_000),
    /** The provider's price of one GPU-hour, for cost per inference (its allocation answers carry none). */
    cost_per_gpu_hour: z.number().min(0).default(0),
    /** Paths under base_url; `{id}` is replaced by the allocation id. */
    endpoints: z
      .object({
        allocate: z.string().default('/v1/allocations'),
        heartbeat: z.string().default('/v1/allocations/{id}/heartbeat'),
        release: z.string().default('/v1/allocations/{id}'),
        pools: z.string().default('/v1/pools'),
      })
      .strict()
      .default({
        allocate: '/v1/allocations',
        heartbeat: '/v1/allocations/{id}/heartbeat',
        release: '/v1/allocations/{id}',
        pools: '/v1/pools',
      }),
  })
  .strict();

export const clustersSchema = z
  .object({
    /** Added to (and overriding by name) the built-in catalog of Gemma-2B, Mistral-7B, Qwen-32B. */
    models: z.array(gpuModelSchema).default([]),
    pools: z.array(gpuPoolSchema).default([]),
    /** Also count the GPUs that mesh nodes report in their heartbeats. */
    from_mesh: z.boolean().default(false),
    allocation: allocationSchema.default(allocationSchema.parse({})),
    hosted: hostedGpuCloudSchema.optional(),
    /** The inference mesh: node-health thresholds, intervals, delivery and routing (docs/mesh.md). */
    mesh: meshConfigSchema.default(meshConfigSchema.parse({})),
  })
  .strict()
  .superRefine((c, issues) => {
    // A device id is the pool's key (leases, the shared pool's hashes): two devices with one id
    // would share leases in memory and overwrite each other in Redis.
    const seen = new Map<string, string>();
    const duplicates = new Set<string>();
    for (const p of c.pools) {
      for (const d of p.devices) {
        for (let i = 0; i < d.count; i++) {
          const id = configuredDeviceId(d.id, d.count, i);
          const first = seen.get(id);
          if (first === undefined) seen.set(id, p.name);
          else duplicates.add(`'${id}' (${first === p.name ? `twice in pool ${first}` : `pools ${first} and ${p.name}`})`);
        }
      }
    }
    if (duplicates.size > 0) {
      issues.addIssue({
        code: 'custom',
        path: ['pools'],
        message: `device ids must be unique across clusters.pools (a device with count N > 1 is <id>-0 … <id>-<N-1>); duplicated: ${[...duplicates].join(', ')}`,
      });
    }
  });

const perReplicaSchema = z
  .object({
    requests_per_s: z.number().positive().default(50),
    tokens_per_s: z.number().positive().optional(),
    queue_depth: z.number().positive().optional(),
  })
  .strict();

export const scalingSchema = z
  .object({
    enabled: z.boolean().default(false),
    /** Log decisions instead of applying them. */
    dry_run: z.boolean().default(true),
    interval_s: z.number().int().positive().default(60),
    // Never 0: the scaled Deployment (by default the gateway's own) runs the autoscaler and the
    // traffic recorder, so once its last pod went nothing would ever scale it back up.
    min_replicas: z
      .number()
      .int()
      .min(1, { message: 'min_replicas must be at least 1: the Deployment the autoscaler scales runs the autoscaler itself, and at 0 replicas nothing scales it back up' })
      .default(3),
    max_replicas: z.number().int().positive().default(20),
    /** What one replica sustains; the busiest dimension decides. */
    per_replica: perReplicaSchema.default(perReplicaSchema.parse({})),
    /** Spare capacity on top of the predicted load (0.2 = 20 %). */
    headroom: z.number().min(0).max(5).default(0.2),
    /** The forecast window whose peak is provisioned for now (time a new replica needs to be useful). */
    lead_time_s: z.number().int().min(0).default(600),
    cooldown: z
      .object({
        scale_up_s: z.number().int().min(0).default(120),
        scale_down_s: z.number().int().min(0).default(600),
      })
      .strict()
      .default({ scale_up_s: 120, scale_down_s: 600 }),
    /** Most replicas added or removed by one decision. */
    max_step: z.number().int().positive().default(4),
    forecast: z
      .object({
        bucket_s: z.number().int().positive().default(300),
        season_s: z.number().int().positive().default(86_400),
        horizon_s: z.number().int().positive().default(3_600),
        /** Buckets of history kept (default 8 days of 5-minute buckets). */
        history_buckets: z.number().int().positive().default(2_304),
      })
      .strict()
      .default({ bucket_s: 300, season_s: 86_400, horizon_s: 3_600, history_buckets: 2_304 })
      .refine((f) => f.season_s % f.bucket_s === 0, { message: 'season_s must be a multiple of bucket_s', path: ['season_s'] }),
    kubernetes: z
      .object({
        /**
         * Unset: the namespace that comes with the credentials (the service account's in a pod, the
         * kubeconfig context's), else `default`. No schema default, which would hide those.
         */
        namespace: z.string().min(1).optional(),
        deployment: z.string().min(1).default('inferenceflow'),
        /** Path of a kubeconfig; unset: in-cluster service account, then $KUBECONFIG, then ~/.kube/config. */
        kubeconfig: z.string().optional(),
        context: z.string().optional(),
      })
      .strict()
      .default({ deployment: 'inferenceflow' }),
  })
  .strict()
  .refine((s) => s.min_replicas <= s.max_replicas, { message: 'min_replicas must not exceed max_replicas', path: ['min_replicas'] });

export const costOptimizationSchema = z
  .object({
    spot_instances: z
      .object({
        enabled: z.boolean().default(false),
        /** Largest share of replicas run on spot capacity. */
        max_fraction: z.number().min(0).max(1).default(0.7),
        /** Replicas always kept on on-demand capacity, whatever the fraction says. */
        min_on_demand: z.number().int().min(0).default(2),
        /** Deployment scheduled on spot nodes; unset means the split is reported only. */
        deployment: z.string().min(1).optional(),
      })
      .strict()
      .default({ enabled: false, max_fraction: 0.7, min_on_demand: 2 }),
    on_demand_cost_per_replica_hour: z.number().min(0).default(0),
    spot_cost_per_replica_hour: z.number().min(0).default(0),
    /** Prefer GPUs where the model is still loaded, and keep it warm this long after release. */
    warm_models: z
      .object({
        prefer_warm: z.boolean().default(true),
        keep_warm_s: z.number().int().min(0).default(300),
      })
      .strict()
      .default({ prefer_warm: true, keep_warm_s: 300 }),
  })
  .strict();

export type GpuModelConfig = z.infer<typeof gpuModelSchema>;
export type GpuDeviceConfig = z.infer<typeof gpuDeviceSchema>;
export type GpuPoolConfig = z.infer<typeof gpuPoolSchema>;
export type AllocationConfig = z.infer<typeof allocationSchema>;
export type HostedGpuCloudConfig = z.infer<typeof hostedGpuCloudSchema>;
export type ClustersConfig = z.infer<typeof clustersSchema>;
export type ScalingConfig = z.infer<typeof scalingSchema>;
export type CostOptimizationConfig = z.infer<typeof costOptimizationSchema>;

/** The three sections as the lead mounts them on the root schema. */
export const capacitySections = {
  scaling: scalingSchema.default(scalingSchema.parse({})),
  clusters: clustersSchema.default(clustersSchema.parse({})),
  cost_optimization: costOptimizationSchema.default(costOptimizationSchema.parse({})),
};

export const CAPACITY_ENV_VARS: readonly EnvVar[] = [
  { name: 'HOSTED_AI_API_KEY', kind: 'special', description: 'Bearer key for the hosted GPU cloud (`clusters.hosted`, seed 004); the variable name is `clusters.hosted.api_key_env`.' },
  { name: 'HOSTED_AI_BASE_URL', path: 'clusters.hosted.base_url', kind: 'string', description: 'Base URL of the hosted GPU-cloud API; setting it enables `clusters.hosted`, which is ignored while `clusters.pools` lists devices or `clusters.from_mesh` is true (those pools win).' },
  { name: 'INFERENCEFLOW_AUTOSCALER', path: 'scaling.enabled', kind: 'bool', default: 'false', description: 'Run the forecasting autoscaler.' },
  { name: 'INFERENCEFLOW_AUTOSCALER_DRY_RUN', path: 'scaling.dry_run', kind: 'bool', default: 'true', description: 'Log scaling decisions instead of patching the Deployment.' },
  { name: 'KUBERNETES_NAMESPACE', path: 'scaling.kubernetes.namespace', kind: 'string', description: "Namespace of the Deployment the autoscaler scales; unset: the credentials' own (the service account's, the kubeconfig context's), else `default`." },
  { name: 'KUBERNETES_DEPLOYMENT', path: 'scaling.kubernetes.deployment', kind: 'string', default: 'inferenceflow', description: 'Name of the Deployment the autoscaler scales.' },
  { name: 'KUBECONFIG', kind: 'special', description: 'Kubeconfig the autoscaler uses when `scaling.kubernetes.kubeconfig` is unset and `KUBERNETES_SERVICE_HOST` is not set (default `~/.kube/config`). Of a colon-separated list only the first file is read; files are not merged.' },
  { name: 'KUBERNETES_SERVICE_HOST', kind: 'special', description: 'Set by Kubernetes in a pod. Unless `scaling.kubernetes.kubeconfig` is set, its presence alone selects in-cluster access (the service account under `/var/run/secrets/kubernetes.io/serviceaccount` must then be mounted) and `KUBECONFIG` is ignored.' },
  { name: 'KUBERNETES_SERVICE_PORT', kind: 'special', default: '443', description: 'Set by Kubernetes in a pod: the API server port for in-cluster access.' },
  { name: 'HOSTNAME', kind: 'special', default: 'gateway', description: 'Names this replica (`<HOSTNAME>/<pid>-<random>`; in Kubernetes the pod name) in GPU leases, the autoscaler\'s leader lock and its shared traffic counts.' },
];
