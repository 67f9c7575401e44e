// What the dashboard and metrics show of the mesh: every registered node with its health and whether
// (and why not) it is routable now, plus totals. `meshSnapshot` is pure over a registry read so any
// process can call it; `RegistrySnapshots` reads the registry and judges it on the mesh clock.
import { Cluster } from 'ioredis';
import type { RedisClient } from '../store/redis.js';
import { MeshClock } from './clock.js';
import { meshKeys, type NodeHealth } from './contracts.js';
import type { MeshHealthThresholds } from './config.js';
import { HealthRegistry } from './registry.js';
import { exclusionReason } from './sticky.js';

export interface MeshNodeView extends NodeHealth {
  routable: boolean;
  /** Why the router skips it (stale, hot, RAM, draining, backend down), when it does. */
  excluded_because?: string;
  heartbeat_age_ms: number;
}

export interface MeshSnapshot {
  nodes: MeshNodeView[];
  counts: { nodes: number; routable: number; in_flight: number; models: number };
  at: number;
}

export function meshSnapshot(health: readonly NodeHealth[], thresholds: MeshHealthThresholds, now = Date.now()): MeshSnapshot {
  const models = new Set<string>();
  let routable = 0;
  let inFlight = 0;
  const nodes = [...health]
    .sort((a, b) => a.node_id.localeCompare(b.node_id))
    .map((h): MeshNodeView => {
      const reason = exclusionReason(h, thresholds, now) ?? (h.backend_ok ? undefined : 'backend unreachable');
      if (!reason) {
        routable++;
        for (const m of h.models_installed) models.add(m);
      }
      inFlight += h.in_flight;
      return { ...h, routable: !reason, ...(reason ? { excluded_because: reason } : {}), heartbeat_age_ms: now - h.ts };
    });
  return { nodes, counts: { nodes: nodes.length, routable, in_flight: inFlight, models: models.size }, at: now };
}

/** How often a snapshot reader re-measures its offset from the mesh clock, ms. */
export const CLOCK_RESYNC_MS = 30_000;

/**
 * Snapshots of the node registry under `prefix`, heartbeat ages judged on the mesh (Redis) clock: one
 * HGETALL per snapshot; Redis TIME is read by the first and then every CLOCK_RESYNC_MS (beside the
 * HGETALL, keeping the last offset if it fails), not per snapshot.
 */
export class RegistrySnapshots {
  private readonly registry: HealthRegistry;
  private readonly clock: MeshClock;
  private syncedAt?: number;
  private syncing?: Promise<void>;

  /** @param local this machine's clock (injectable in tests) */
  constructor(
    redis: RedisClient,
    prefix: string,
    private readonly thresholds: MeshHealthThresholds,
    private readonly local: () => number = Date.now,
  ) {
    this.registry = new HealthRegistry(redis, prefix);
    this.clock = new MeshClock(redis, meshKeys(prefix, redis instanceof Cluster).health, local);
  }

  async take(): Promise<MeshSnapshot> {
    const [nodes] = await Promise.all([this.registry.readAll(), this.syncClock()]);
    return meshSnapshot(nodes, this.thresholds, this.clock.now());
  }

  private syncClock(): Promise<void> {
    const first = this.syncedAt === undefined;
    if (!first && this.local() - (this.syncedAt as number) < CLOCK_RESYNC_MS) return Promise.resolve();
    this.syncing ??= this.clock
      .sync()
      .then(() => {
        this.syncedAt = this.local();
      })
      .finally(() => {
        this.syncing = undefined;
      });
    // Without a first offset there is no clock to judge by: that snapshot fails.
    return first ? this.syncing : this.syncing.catch(() => undefined);
  }
}
