// Periodic gauges for state that lives outside the request path: the GPU pool's devices and the
// mesh nodes' health. Read every few seconds (not per request) and pushed into the metrics.
import type { GpuAllocator } from '../capacity/allocator.js';
import type { MeshProvider } from '../providers/mesh.js';
import type { GatewayMetrics } from './metrics.js';

export interface CollectorSources {
  allocator?: Pick<GpuAllocator, 'clusterStatus'>;
  mesh: Pick<MeshProvider, 'snapshot'>[];
}

export function startCollectors(metrics: GatewayMetrics, sources: CollectorSources, intervalMs = 5_000): { stop(): void; collect(): Promise<void> } {
  if (sources.allocator) metrics.declare('gpu');
  if (sources.mesh.length > 0) metrics.declare('mesh');
  const known = new Set<string>();
  const collect = async () => {
    if (sources.allocator) {
      const status = await sources.allocator.clusterStatus();
      for (const d of status.devices) metrics.setGpuUtilization(d.id, d.memoryGb > 0 ? d.allocatedMemoryGb / d.memoryGb : 0);
      metrics.setGpuActiveAllocations(status.totals.activeLeases);
    }
    const seen = new Set<string>();
    for (const mesh of sources.mesh) {
      const snap = await mesh.snapshot();
      for (const n of snap.nodes) {
        seen.add(n.node_id);
        metrics.setMeshNodeHealth(n.node_id, n.routable ? 1 : 0, n.routable ? 'healthy' : (n.excluded_because ?? 'excluded'));
      }
    }
    for (const node of known) if (!seen.has(node)) metrics.removeMeshNode(node);
    known.clear();
    for (const node of seen) known.add(node);
  };
  const timer = setInterval(() => void collect().catch(() => undefined), intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer), collect };
}
