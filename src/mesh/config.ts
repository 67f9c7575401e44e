// Settings of the inference mesh (seed 003), the `clusters.mesh` section of the config file: health
// thresholds a node must meet to be routable, heartbeat and reclaim timing, the Redis key prefix and
// the load-imbalance rule that overrides stickiness. The lead composes `clusters:` from this schema
// and the capacity module's; MESH_ENV_VARS rows are appended to the one env table.
import { z } from 'zod';
import type { EnvVar } from '../config/env.js';

export const meshConfigSchema = z
  .object({
    /** Prefix of every mesh key and stream (seed 003 names them `orion:inference:…`). */
    key_prefix: z.string().min(1).default('orion:inference:'),
    health: z
      .object({
        /** Nodes hotter than this are not routed to (seed 003: 75 °C). */
        max_temp_c: z.number().positive().default(75),
        /** Nodes using more RAM than this share are not routed to (seed 003: 90 %). */
        max_ram_pct: z.number().min(0).max(100).default(90),
        /** Nodes whose last heartbeat is older than this are not routed to (seed 003: 15 s). */
        stale_after_s: z.number().positive().default(15),
      })
      .strict()
      .default({ max_temp_c: 75, max_ram_pct: 90, stale_after_s: 15 }),
    /**
     * A node record whose last heartbeat is older than this is deleted by the routers (a worker that
     * crashed never removes its own): it leaves the dashboard, `/v1/cluster` and the routing view.
     */
    forget_after_s: z.number().positive().default(600),
    /** How often a worker publishes its health, ms. */
    heartbeat_interval_ms: z.number().int().positive().default(3_000),
    /** A request held (un-acknowledged) this long by a worker or router is reclaimed and run elsewhere. */
    idle_reclaim_ms: z.number().int().positive().default(30_000),
    /** How often routers look for requests to reclaim, ms. */
    reclaim_interval_ms: z.number().int().positive().default(5_000),
    /** Router backoff while no node can take a request: first wait and cap, ms (until the request's deadline). */
    retry_initial_ms: z.number().int().positive().default(200),
    retry_max_ms: z.number().int().positive().default(5_000),
    /**
     * The gateway's `mesh` provider: the deadline a streamed request gets on the mesh, ms. A stream's
     * `timeout_ms` is only the wait for its first token (the gateway's idle timeout bounds silences
     * after it), so the run itself may last this long; a cancelled or abandoned stream stops sooner.
     */
    stream_deadline_ms: z.number().int().positive().default(600_000),
    scoring: z
      .object({
        /** Score for a node that already has the model in memory (avoids a cold load). */
        loaded_weight: z.number().min(0).default(100),
        /** Score for the node the prompt prefix hashes to (rendezvous hashing; warm KV/prefix caches). */
        affinity_weight: z.number().min(0).default(20),
        /** Score removed per unit of load (in-flight requests per slot). */
        load_weight: z.number().min(0).default(40),
        /** Characters of the prompt that form the affinity key. */
        prefix_chars: z.number().int().positive().default(256),
        /**
         * SGLang's imbalance rule: when the busiest and idlest candidates differ by more than
         * `imbalance_abs` in-flight requests AND the busiest has more than `imbalance_rel` times the
         * idlest's, the least-loaded node wins regardless of stickiness.
         */
        imbalance_abs: z.number().min(0).default(4),
        imbalance_rel: z.number().min(1).default(1.5),
      })
      .strict()
      .default({ loaded_weight: 100, affinity_weight: 20, load_weight: 40, prefix_chars: 256, imbalance_abs: 4, imbalance_rel: 1.5 }),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const problem = meshTimingProblem(cfg);
    if (problem) ctx.addIssue({ code: 'custom', path: ['idle_reclaim_ms'], message: problem });
  });

/** How many holder ticks `idle_reclaim_ms` must span at least (a tick may come late: GC, a slow Redis). */
export const IDLE_RECLAIM_TICKS = 3;

/**
 * Why these timings would reclaim live work, or undefined when they are sound. Holders refresh the
 * entries they hold on their ticks — workers every heartbeat, routers (requests no node can take yet)
 * every reclaim pass — and an entry idle longer than `idle_reclaim_ms` is taken over and run again:
 * with too few ticks in it, requests still running are reclaimed and rerun on every pass.
 */
export function meshTimingProblem(cfg: Pick<MeshConfig, 'heartbeat_interval_ms' | 'reclaim_interval_ms' | 'idle_reclaim_ms'>): string | undefined {
  const tick = Math.max(cfg.heartbeat_interval_ms, cfg.reclaim_interval_ms);
  if (cfg.idle_reclaim_ms >= IDLE_RECLAIM_TICKS * tick) return undefined;
  return (
    `idle_reclaim_ms (${cfg.idle_reclaim_ms}) must be at least ${IDLE_RECLAIM_TICKS} × the larger of heartbeat_interval_ms (${cfg.heartbeat_interval_ms}) ` +
    `and reclaim_interval_ms (${cfg.reclaim_interval_ms}), i.e. ${IDLE_RECLAIM_TICKS * tick}: running requests are refreshed on those ticks, ` +
    'and shorter would reclaim and rerun them'
  );
}

/**
 * Refuses to start a router or worker on timings that reclaim live work: the command-line flags
 * (`--idle-reclaim-ms`, `--heartbeat-ms`, `--reclaim-interval-ms`) are laid over settings the schema
 * had already checked.
 */
export function assertMeshTiming(cfg: MeshConfig): void {
  const problem = meshTimingProblem(cfg);
  if (problem) throw new Error(`mesh settings: ${problem} (clusters.mesh, MESH_* or the --idle-reclaim-ms, --heartbeat-ms and --reclaim-interval-ms flags)`);
}

export type MeshConfig = z.infer<typeof meshConfigSchema>;
export type MeshHealthThresholds = MeshConfig['health'];
export type MeshScoring = MeshConfig['scoring'];

export function defaultMeshConfig(): MeshConfig {
  return meshConfigSchema.parse({});
}

/** Rows for src/config/env.ts (the lead appends them). */
export const MESH_ENV_VARS: readonly EnvVar[] = [
  { name: 'MESH_KEY_PREFIX', path: 'clusters.mesh.key_prefix', kind: 'string', default: 'orion:inference:', description: 'Prefix of the mesh streams and keys (`worker`, `router`, and the gateway\'s `mesh` providers unless their `options.key_prefix` is set).' },
  { name: 'MESH_MAX_TEMP_C', path: 'clusters.mesh.health.max_temp_c', kind: 'number', default: '75', description: 'Mesh nodes hotter than this are not routed to.' },
  { name: 'MESH_MAX_RAM_PCT', path: 'clusters.mesh.health.max_ram_pct', kind: 'number', default: '90', description: 'Mesh nodes using more RAM than this percentage are not routed to.' },
  { name: 'MESH_STALE_AFTER_S', path: 'clusters.mesh.health.stale_after_s', kind: 'number', default: '15', description: 'Mesh nodes silent for longer than this are not routed to.' },
  { name: 'MESH_HEARTBEAT_INTERVAL_MS', path: 'clusters.mesh.heartbeat_interval_ms', kind: 'int', default: '3000', description: 'How often a mesh worker publishes its health.' },
  { name: 'MESH_IDLE_RECLAIM_MS', path: 'clusters.mesh.idle_reclaim_ms', kind: 'int', default: '30000', description: 'A mesh request held this long without progress is reclaimed and run elsewhere; at least 3 × the heartbeat and reclaim intervals (a shorter one is refused at start).' },
];
