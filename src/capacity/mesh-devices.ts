// The GPU pool's mesh devices (`clusters.from_mesh`): the GPUs mesh nodes report in their health
// records, read from the node registry the gateway already follows (its `mesh` providers' snapshots,
// or the registry on the gateway's own Redis when it has no mesh provider). Only routable nodes count:
// a stale, draining, overheated or backend-less node's GPUs are not offered to the allocator.
import type { MeshConfig } from '../mesh/config.js';
import { RegistrySnapshots, type MeshSnapshot } from '../mesh/snapshot.js';
import type { RedisClient } from '../store/redis.js';
import type { MeshNodeGpus } from './pool.js';

/** Anything that gives a view of the mesh's nodes (a MeshProvider, or registrySource()). */
export interface MeshNodeSource {
  snapshot(): Promise<MeshSnapshot>;
}

/** The mesh's node registry on `redis` under the mesh config's prefix, judged on the Redis clock. */
export function registrySource(redis: RedisClient, mesh: Pick<MeshConfig, 'key_prefix' | 'health'>): MeshNodeSource {
  const snapshots = new RegistrySnapshots(redis, mesh.key_prefix, mesh.health);
  return { snapshot: () => snapshots.take() };
}

/** The GPUs of the routable nodes of every source, one entry per node id (the first source wins). */
export async function meshNodeGpus(sources: readonly MeshNodeSource[]): Promise<MeshNodeGpus[]> {
  const snapshots = await Promise.all(sources.map((s) => s.snapshot()));
  const byNode = new Map<string, MeshNodeGpus>();
  for (const snap of snapshots) {
    for (const node of snap.nodes) {
      if (!node.routable || byNode.has(node.node_id)) continue;
      // Each GPU keeps its index in the node's report: one left out here (memory 0 for a moment)
      // must not shift the ids, and so the leases, of the GPUs after it.
      const gpus = node.gpus.flatMap((g, index) => (g.memory_total_mb > 0 ? [{ memoryGb: Math.round((g.memory_total_mb / 1024) * 100) / 100, name: g.name, index }] : []));
      if (gpus.length > 0) byNode.set(node.node_id, { nodeId: node.node_id, gpus });
    }
  }
  return [...byNode.values()];
}
