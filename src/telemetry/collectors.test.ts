// The periodic collector: mesh nodes as the snapshots report them, and the GPU pool's devices, live
// ones only, under their ids.
import { describe, expect, it } from 'vitest';
import type { GpuAllocator } from '../capacity/allocator.js';
import type { MeshSnapshot } from '../mesh/snapshot.js';
import { startCollectors } from './collectors.js';
import { GatewayMetrics } from './metrics.js';

function snapshot(nodes: { id: string; routable: boolean; why?: string }[]): MeshSnapshot {
  return {
    nodes: nodes.map((n) => ({ node_id: n.id, routable: n.routable, ...(n.why ? { excluded_because: n.why } : {}) })) as unknown as MeshSnapshot['nodes'],
    counts: { nodes: nodes.length, routable: nodes.filter((n) => n.routable).length, in_flight: 0, models: 0 },
    at: 0,
  };
}

const health = (text: string) => text.split('\n').filter((l) => l.startsWith('inference_mesh_node_health{'));

describe('mesh node collector', () => {
  it('after many pods have come and gone, shows the live nodes under their own ids and nothing else', async () => {
    const metrics = new GatewayMetrics({ processMetrics: false, maxLabelValues: 10 });
    let current = snapshot([]);
    const collectors = startCollectors(metrics, { mesh: [{ snapshot: async () => current }] }, 3_600_000);
    try {
      // Rolling restarts: 30 generations of 3 pods each.
      for (let gen = 0; gen < 30; gen++) {
        current = snapshot([0, 1, 2].map((i) => ({ id: `worker-${gen}-${i}`, routable: true })));
        await collectors.collect();
      }
      current = snapshot([
        { id: 'worker-live-0', routable: true },
        { id: 'worker-live-1', routable: false, why: 'heartbeat stale' },
      ]);
      await collectors.collect();
      expect(health(await metrics.render())).toEqual(['inference_mesh_node_health{node="worker-live-0"} 1', 'inference_mesh_node_health{node="worker-live-1"} 0']);
      expect(metrics.summary().mesh.nodes.map((n) => [n.node, n.health, n.state])).toEqual([
        ['worker-live-0', 1, 'healthy'],
        ['worker-live-1', 0, 'heartbeat stale'],
      ]);
    } finally {
      collectors.stop();
    }
  });

  it('leaves the last known nodes in place when a snapshot fails', async () => {
    const metrics = new GatewayMetrics({ processMetrics: false });
    let fail = false;
    const collectors = startCollectors(metrics, { mesh: [{ snapshot: async () => (fail ? Promise.reject(new Error('redis down')) : snapshot([{ id: 'a', routable: true }])) }] }, 3_600_000);
    try {
      await collectors.collect();
      fail = true;
      await expect(collectors.collect()).rejects.toThrow('redis down');
      expect(health(await metrics.render())).toEqual(['inference_mesh_node_health{node="a"} 1']);
    } finally {
      collectors.stop();
    }
  });
});

describe('GPU device collector', () => {
  const utilization = (text: string) => text.split('\n').filter((l) => l.startsWith('inference_gpu_utilization_ratio{'));

  it('after many pods have come and gone, shows the live devices under their own ids and nothing else', async () => {
    const metrics = new GatewayMetrics({ processMetrics: false, maxLabelValues: 10 });
    let devices: { id: string; memoryGb: number; allocatedMemoryGb: number }[] = [];
    const allocator = { clusterStatus: async () => ({ devices, totals: { activeLeases: 0 } }) } as unknown as Pick<GpuAllocator, 'clusterStatus'>;
    const collectors = startCollectors(metrics, { allocator, mesh: [] }, 3_600_000);
    try {
      // Rolling restarts: 30 generations of pods with 2 GPUs each.
      for (let gen = 0; gen < 30; gen++) {
        devices = [0, 1].map((i) => ({ id: `pod-${gen}/gpu${i}`, memoryGb: 80, allocatedMemoryGb: 40 }));
        await collectors.collect();
      }
      devices = [
        { id: 'pod-live/gpu0', memoryGb: 80, allocatedMemoryGb: 20 },
        { id: 'pod-live/gpu1', memoryGb: 80, allocatedMemoryGb: 80 },
      ];
      await collectors.collect();
      expect(utilization(await metrics.render())).toEqual(['inference_gpu_utilization_ratio{device="pod-live/gpu0"} 0.25', 'inference_gpu_utilization_ratio{device="pod-live/gpu1"} 1']);
      expect(metrics.summary().gpu.utilization).toEqual({ 'pod-live/gpu0': 0.25, 'pod-live/gpu1': 1 });
    } finally {
      collectors.stop();
    }
  });
});
