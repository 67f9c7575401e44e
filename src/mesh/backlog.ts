// The mesh's backlog as Redis holds it, for the autoscaler and the dashboards: requests no router has
// placed yet (the ingress stream), requests placed on a node that its worker has not started (the
// node's stream), requests a worker has started and not finished, and what the routable nodes can
// run at once. Read in one script, so the numbers are one moment's. A router places a request at once,
// so the ingress stream's pending count stays near zero while nodes back up: the per-node streams are
// where an overloaded mesh shows.
import type { RedisClient } from '../store/redis.js';
import type { MeshHealthThresholds } from './config.js';
import { WORKER_GROUP, type MeshKeys, type NodeHealth } from './contracts.js';
import { meshSnapshot } from './snapshot.js';

export interface NodeBacklog {
  node: string;
  /** Entries on the node's stream its worker has not read: placed, not started. */
  queued: number;
  /** Entries its worker has read and not finished (or that wait to be reclaimed from a dead worker). */
  in_flight: number;
  /** Requests it runs at once (`max_concurrency`) while it is routable, else 0. */
  capacity: number;
}

export interface MeshBacklog {
  /** Entries on the ingress stream: requests no router has placed on a node yet. */
  unplaced: number;
  nodes: NodeBacklog[];
  totals: { unplaced: number; queued: number; in_flight: number; capacity: number };
}

/**
 * One read of the backlog: the node set and the registry, then one script over the ingress stream and
 * every node stream. Entries leave a stream only together with their acknowledgement (XACK + XDEL,
 * src/mesh/delivery.ts), so what a stream holds is its group's pending entries (read: started) plus
 * those nobody has read (queued): queued = XLEN − pending. A node stream without its group yet has
 * nothing read. On Redis Cluster every key carries the prefix's hash tag: one slot, one script.
 * `now` is the mesh clock (heartbeats are stamped with it), for which nodes are routable.
 */
export async function readMeshBacklog(redis: RedisClient, keys: MeshKeys, thresholds: MeshHealthThresholds, health: readonly NodeHealth[], now: number): Promise<MeshBacklog> {
  const members = await redis.smembers(keys.nodeStreams);
  const routable = new Map(meshSnapshot(health, thresholds, now).nodes.map((n) => [n.node_id, n.routable ? n.max_concurrency : 0]));
  const ids = [...new Set([...members, ...routable.keys()])].sort();
  const counts = (await redis.eval(BACKLOG_SCRIPT, 1 + ids.length, keys.requests, ...ids.map((id) => keys.nodeRequests(id)), WORKER_GROUP)) as number[];
  const nodes = ids.map((node, i): NodeBacklog => {
    const length = Number(counts[1 + 2 * i]);
    const pending = Number(counts[2 + 2 * i]);
    // An entry deleted while still pending (it was answered elsewhere) counts as started, not as less than none queued.
    return { node, queued: Math.max(0, length - pending), in_flight: pending, capacity: routable.get(node) ?? 0 };
  });
  const totals = { unplaced: Number(counts[0]), queued: 0, in_flight: 0, capacity: 0 };
  for (const n of nodes) {
    totals.queued += n.queued;
    totals.in_flight += n.in_flight;
    totals.capacity += n.capacity;
  }
  return { unplaced: totals.unplaced, nodes, totals };
}

// KEYS: the ingress stream, then the node streams. ARGV: the workers' group. Returns the ingress
// stream's length, then per node stream its length and its group's pending count (0 without a group).
const BACKLOG_SCRIPT = `
local out = { redis.call('XLEN', KEYS[1]) }
for i = 2, #KEYS do
  out[#out + 1] = redis.call('XLEN', KEYS[i])
  local pending = redis.pcall('XPENDING', KEYS[i], ARGV[1])
  if type(pending) == 'table' and pending.err == nil then out[#out + 1] = tonumber(pending[1]) else out[#out + 1] = 0 end
end
return out
`;
