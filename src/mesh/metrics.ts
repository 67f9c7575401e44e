// What a mesh router exports to Prometheus (`inferenceflow router --metrics-port`): the mesh's
// backlog, read from Redis at each scrape (src/mesh/backlog.ts) — one read shared by every gauge of
// the scrape, so the numbers are one moment's. Every router reads the same Redis, so each reports the
// whole mesh: queries take `max` over routers, never `sum` (kubernetes/keda-scaledobject.yaml, the
// alert and the mesh dashboard do). A scrape whose read fails fails (500): Prometheus marks the
// series stale rather than reading a backlog of zero. Node labels are the live node set of each read:
// a node that left loses its series.
import { Gauge, Registry } from 'prom-client';
import type { MeshBacklog } from './backlog.js';

/** The metric names, for the manifests' and dashboards' tests. */
export const MESH_BACKLOG_METRICS = {
  /** Totals by `state`: `unplaced` (ingress, no node yet), `queued` (on a node, not started), `in_flight`. */
  requests: 'inference_mesh_requests',
  /** Requests the routable nodes run at once (the sum of their `max_concurrency`). */
  capacity: 'inference_mesh_capacity',
  /** Per `node` and `state` (`queued`, `in_flight`). */
  nodeRequests: 'inference_mesh_node_requests',
  /** Per `node`: its `max_concurrency` while routable, else 0. */
  nodeCapacity: 'inference_mesh_node_capacity',
} as const;

export const MESH_REQUEST_STATES = ['unplaced', 'queued', 'in_flight'] as const;

export class MeshBacklogMetrics {
  readonly registry = new Registry();
  private reading: Promise<MeshBacklog> | undefined;

  constructor(private readonly source: () => Promise<MeshBacklog>) {
    const read = () => this.read();
    const registers = [this.registry];
    new Gauge({
      name: MESH_BACKLOG_METRICS.requests,
      help: 'Mesh requests by state: unplaced (on the ingress stream, no node yet), queued (placed on a node, not started), in_flight (started, not finished). The backlog is unplaced + queued. Each router reports the whole mesh: take max over routers.',
      labelNames: ['state'],
      registers,
      async collect() {
        const b = await read();
        for (const state of MESH_REQUEST_STATES) this.set({ state }, b.totals[state]);
      },
    });
    new Gauge({
      name: MESH_BACKLOG_METRICS.capacity,
      help: 'Requests the routable mesh nodes run at once (the sum of their max_concurrency).',
      registers,
      async collect() {
        this.set((await read()).totals.capacity);
      },
    });
    new Gauge({
      name: MESH_BACKLOG_METRICS.nodeRequests,
      help: 'Requests on a mesh node: queued (placed on its stream, not started) or in_flight (started, not finished).',
      labelNames: ['node', 'state'],
      registers,
      async collect() {
        const b = await read();
        this.reset();
        for (const n of b.nodes) {
          this.set({ node: n.node, state: 'queued' }, n.queued);
          this.set({ node: n.node, state: 'in_flight' }, n.in_flight);
        }
      },
    });
    new Gauge({
      name: MESH_BACKLOG_METRICS.nodeCapacity,
      help: 'Requests a mesh node runs at once (its max_concurrency) while it is routable, else 0.',
      labelNames: ['node'],
      registers,
      async collect() {
        const b = await read();
        this.reset();
        for (const n of b.nodes) this.set({ node: n.node }, n.capacity);
      },
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition; rejects when Redis cannot be read. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** One read for every gauge of a scrape (they collect together); the next scrape reads again. */
  private read(): Promise<MeshBacklog> {
    this.reading ??= this.source().finally(() => {
      this.reading = undefined;
    });
    return this.reading;
  }
}
