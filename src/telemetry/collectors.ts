// Periodic gauges for state that lives outside the request path: the GPU pool's devices and the
// mesh nodes' health. Read every few seconds (not per request) and pushed into the metrics.
import type { GpuAllocator } from '../capacity/allocator.js';
import type { MeshProvider } from '../providers/mesh.js';
import type { GatewayMetrics, MeshNodeState } from './metrics.js';

export interface CollectorSources {
  allocator?: Pick<GpuAllocator, 'clusterStatus'>;
  mesh: Pick<MeshProvider, 'snapshot'>[];
}

export function startCollectors(metrics: GatewayMetrics, sources: CollectorSources, intervalMs = 5_000): { stop(): void; collect(): Promise<void> } {
  if (sources.allocator) metrics.declare('gpu');
  if (sources.mesh.length > 0) metrics.declare('mesh');
  const collect = async () => {
    if (sources.allocator) {
      const status = await sources.allocator.clusterStatus();
      // The live device set replaces the last one: a departed device's series goes.
      metrics.setGpuDevices(status.devices.map((d) => ({ device: d.id, utilization: d.memoryGb > 0 ? d.allocatedMemoryGb / d.memoryGb : 0 })));
      metrics.setGpuActiveAllocations(status.totals.activeLeases);
    }
    if (sources.mesh.length === 0) return;
    // Every snapshot first, then the live set replaces the last one in one synchronous step (no
    // scrape sees it half done): a departed node's series goes, and ids are labels as they are.
    const nodes: MeshNodeState[] = [];
    for (const mesh of sources.mesh) {
      const snap = await mesh.snapshot();
      for (const n of snap.nodes) nodes.push({ node: n.node_id, health: n.routable ? 1 : 0, state: n.routable ? 'healthy' : (n.excluded_because ?? 'excluded') });
    }
    metrics.setMeshNodes(nodes);
  };
  const timer = setInterval(() => void collect().catch(() => undefined), intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer), collect };
}
