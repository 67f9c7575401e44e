// The GPU pool's mesh devices: routable mesh nodes' reported GPUs (from snapshots of the node
// registry), and the capacity services following them on the real Redis (unique key prefix) - also
// across replicas, where a replica starting must not wipe the mesh GPUs another one wrote.
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it as vitestIt, vi } from 'vitest';
import { clustersSchema, costOptimizationSchema, scalingSchema } from './config.js';
import { meshNodeGpus, registrySource, type MeshNodeSource } from './mesh-devices.js';
import { devicesFromMeshNodes } from './pool.js';
import { RedisGpuPool } from './redis-pool.js';
import { createCapacityServices } from './service.js';
import { defaultMeshConfig } from '../mesh/config.js';
import { HealthRegistry } from '../mesh/registry.js';
import { redisTimeMs } from '../mesh/clock.js';
import { meshKeys, type NodeHealth } from '../mesh/contracts.js';
import { meshSnapshot } from '../mesh/snapshot.js';
import { nodeHealth } from '../../test/helpers/mesh.js';
import { redisTargets } from '../../test/helpers/redis.js';

function node(id: string, gpusMb: number[], extra: Partial<NodeHealth> = {}): NodeHealth {
  const gpus = gpusMb.map((mb, i) => ({ name: `gpu${i}`, memory_used_mb: 0, memory_total_mb: mb, utilization_pct: null, temp_c: null }));
  return nodeHealth(id, { gpus, ts: 1_000_000, ...extra });
}

const thresholds = defaultMeshConfig().health;
const fixed = (nodes: NodeHealth[], now = 1_000_500): MeshNodeSource => ({ snapshot: async () => meshSnapshot(nodes, thresholds, now) });

describe('meshNodeGpus', () => {
  vitestIt("takes the routable nodes' GPUs in GB, once per node", async () => {
    const gpus = await meshNodeGpus([
      fixed([node('a', [81_920, 24_576]), node('hot', [16_384], { cpu_temp_c: 90 }), node('draining', [16_384], { draining: true }), node('cpu-only', [])]),
      fixed([node('a', [1_024]), node('b', [12_288])]),
    ]);
    expect(gpus).toEqual([
      { nodeId: 'a', gpus: [{ memoryGb: 80, name: 'gpu0', index: 0 }, { memoryGb: 24, name: 'gpu1', index: 1 }] },
      { nodeId: 'b', gpus: [{ memoryGb: 12, name: 'gpu0', index: 0 }] },
    ]);
    // A GPU reporting no memory for a moment is left out without renumbering the ones after it.
    const flaky = await meshNodeGpus([fixed([node('n', [16_384, 0, 24_576])])]);
    expect(devicesFromMeshNodes(flaky).map((d) => [d.id, d.memoryGb])).toEqual([
      ['n/gpu0', 16],
      ['n/gpu2', 24],
    ]);
    // A node whose heartbeat is stale is not offered.
    expect(await meshNodeGpus([fixed([node('a', [8_192])], 1_000_000 + 60_000)])).toEqual([]);
  });
});

const targets = await redisTargets();
const run = randomUUID();
afterAll(async () => {
  for (const t of targets) if (t.available) await t.cleanup(`*test:${run}:*`);
});

describe.each(targets.map((t) => [t.name, t] as const))('the pool follows the mesh on %s', (_name, target) => {
  const it = target.available ? vitestIt : vitestIt.skip;

  it("shows the registry's routable GPUs beside the configured ones, and a replica starting keeps them", async () => {
    const redis = target.connect();
    const keyPrefix = `test:${run}:${target.name}:`;
    const mesh = { ...defaultMeshConfig(), key_prefix: `test:${run}:${target.name}:mesh:` };
    const clusters = clustersSchema.parse({
      from_mesh: true,
      mesh,
      pools: [{ name: 'local', devices: [{ id: 'cfg-a10', memory_gb: 24, tflops: 31 }] }],
    });
    const make = () => createCapacityServices({ clusters, scaling: scalingSchema.parse({}), cost: costOptimizationSchema.parse({}), redis, keyPrefix });
    const registry = new HealthRegistry(redis, mesh.key_prefix);
    const now = await redisTimeMs(redis, meshKeys(mesh.key_prefix).health);
    await registry.publish(node('gpu-box', [49_152], { ts: now }));
    await registry.publish(node('gone', [16_384], { ts: now - 60_000 }));

    const first = await make();
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const writes = vi.spyOn(RedisGpuPool.prototype, 'setDevices');
    const meshWrites = () => writes.mock.calls.filter(([, source]) => source === 'mesh').length;
    try {
      await first.followMesh([registrySource(redis, mesh)]);
      const ids = async () => ((await first.allocator?.clusterStatus())?.devices ?? []).map((d) => [d.id, d.memoryGb]);
      expect(await ids()).toEqual([
        ['cfg-a10', 24],
        ['gpu-box/gpu0', 48],
      ]);
      // A read that finds the same GPUs writes nothing.
      expect(meshWrites()).toBe(1);
      await vi.advanceTimersByTimeAsync(mesh.heartbeat_interval_ms);
      expect(meshWrites()).toBe(1);
      // A second replica starts and writes the configured devices: the mesh GPU stays.
      const second = await make();
      expect(await ids()).toEqual([
        ['cfg-a10', 24],
        ['gpu-box/gpu0', 48],
      ]);
      // The node leaves the registry; the next read (every heartbeat interval) drops its GPU.
      await registry.remove('gpu-box');
      await vi.advanceTimersByTimeAsync(mesh.heartbeat_interval_ms);
      await vi.waitFor(async () => expect(await ids()).toEqual([['cfg-a10', 24]]));
      expect(meshWrites()).toBe(2);
      await second.close();
    } finally {
      writes.mockRestore();
      vi.useRealTimers();
      await first.close();
    }
  });
});
