// What the dashboard and metrics show of the mesh: every registered node with its health and whether
// (and why not) it is routable now, plus totals. Pure over a registry read so any process can call it.
import type { NodeHealth } from './contracts.js';
import type { MeshHealthThresholds } from './config.js';
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
