// What a mesh router exports to Prometheus (`inferenceflow router --metrics-port`): the mesh's
// backlog, read from Redis at each scrape (src/mesh/backlog.ts) — one read shared by every gauge of
// the scrape, so the numbers are one moment's. Every router reads the same Redis, so each reports the
// whole mesh: queries take `max` over routers, never `sum` (kubernetes/keda-scaledobject.yaml, the
// alert and the mesh dashboard do). A scrape whose read fails fails (500): Prometheus marks the
// series stale rather than reading a backlog of zero. Node labels are the live node set of each read:
// a node that left loses its series.
import { Counter, Gauge, Registry } from 'prom-client';
import type { MeshBacklog } from './backlog.js';
import type { RouterStats } from './router.js';

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
  /** This router's placements by the decision's `reason` (imbalance, loaded, affinity, least_loaded). */
  placements: 'inference_mesh_router_placements_total',
  /** This router's outcomes by `event`: routed, rerouted, reclaimed, expired, taken. */
  routerEvents: 'inference_mesh_router_events_total',
  /** Requests this router holds because no node could take them yet (retried until their deadline). */
  waiting: 'inference_mesh_router_waiting',
} as const;

/** Router outcomes, as `inference_mesh_router_events_total{event}`. */
export const MESH_ROUTER_EVENTS = ['routed', 'rerouted', 'reclaimed', 'expired', 'taken'] as const;

export const MESH_REQUEST_STATES = ['unplaced', 'queued', 'in_flight'] as const;

export class MeshBacklogMetrics {
  readonly registry = new Registry();
  private reading: Promise<MeshBacklog> | undefined;

  /**
   * `source` reads the whole mesh's backlog; `stats`, when given, is this router's own counters
   * (`MeshRouter.stats`), exported per router: sum them over routers.
   */
  constructor(
    private readonly source: () => Promise<MeshBacklog>,
    stats?: () => RouterStats,
  ) {
    const read = () => this.read();
    const registers = [this.registry];
    if (stats) {
      new Counter({
        name: MESH_BACKLOG_METRICS.placements,
        help: "Requests this router placed on a node, by the routing decision's reason. Per router: sum over routers.",
        labelNames: ['reason'],
        registers,
        collect() {
          this.reset();
          for (const [reason, n] of Object.entries(stats().decisions)) this.inc({ reason }, n);
        },
      });
      new Counter({
        name: MESH_BACKLOG_METRICS.routerEvents,
        help: 'Outcomes of this router: routed (a request placed for the first time), rerouted (placed again after a reclaim, or a later attempt), reclaimed (taken back from a silent node or an idle execution), expired (answered 503: no node before its deadline), taken (another router had already placed it). Per router: sum over routers.',
        labelNames: ['event'],
        registers,
        collect() {
          const s = stats();
          this.reset();
          for (const event of MESH_ROUTER_EVENTS) this.inc({ event }, s[event]);
        },
      });
      new Gauge({
        name: MESH_BACKLOG_METRICS.waiting,
        help: 'Requests this router holds because no node could take them yet; it retries them with backoff until their deadline.',
        registers,
        collect() {
          this.set(stats().waiting);
        },
      });
    }
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
