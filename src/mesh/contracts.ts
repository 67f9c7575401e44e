// The mesh's wire contracts: stream and key names, the request envelope routers and workers pass
// along (the canonical ChatRequest as payload), the events written to a request's callback stream,
// and the health record each node publishes. Everything on Redis is one JSON field per entry so that
// a consumer in any language can read it; the zod schemas check what comes back off the wire.
import { z } from 'zod';
import { entryIdMs, hashTagged } from '../store/redis.js';
import type { ChatChunk, ChatRequest, ChatResult } from '../canonical/chat.js';

/** Consumer groups: routers share the ingress stream, a node's workers share its stream. */
export const ROUTER_GROUP = 'routers';
export const WORKER_GROUP = 'workers';

export interface MeshKeys {
  /** Ingress stream every requester writes to (seed: `orion:inference:requests`). */
  requests: string;
  /** Per-node request stream (seed: `orion:inference:requests:{nodeID}`). */
  nodeRequests(nodeId: string): string;
  /** Hash of node id -> health JSON (seed: `orion:inference:health`). */
  health: string;
  /** Set of node ids that have (or had) a request stream, so reclaimers can find orphaned work. */
  nodeStreams: string;
  /** SET NX guard: whoever sets it first delivers the one final response of a request. */
  done(requestId: string): string;
  /** A default callback stream for one requester process. */
  callbacks(requesterId: string): string;
}

/**
 * The mesh's key names under `prefix`. On Redis Cluster (`cluster`) the prefix becomes a hash tag
 * (`{orion:inference:}requests`), so the final-delivery script (done-key, callback stream, source
 * stream) and the placement script over a node stream and the node set stay in one slot. On a single server
 * the names stay the seed's (`orion:inference:requests`), which outside producers write to.
 */
export function meshKeys(rawPrefix: string, cluster = false): MeshKeys {
  const prefix = cluster ? hashTagged(rawPrefix) : rawPrefix;
  return {
    requests: `${prefix}requests`,
    nodeRequests: (nodeId) => `${prefix}requests:${nodeId}`,
    health: `${prefix}health`,
    nodeStreams: `${prefix}nodes`,
    done: (requestId) => `${prefix}done:${requestId}`,
    callbacks: (requesterId) => `${prefix}callbacks:${requesterId}`,
  };
}

/** One request on the mesh. `attempt` counts placements: 1 at first, +1 per reclaim or reroute. */
export interface MeshRequest {
  id: string;
  /** The model name the nodes know it by (also `payload.model`). */
  model: string;
  payload: ChatRequest;
  /** Stream tokens to the callback as they come, or only the final result. */
  stream: boolean;
  /** Stream the worker writes events to. */
  callback: string;
  /**
   * Epoch ms after which nobody should start the request; an error is delivered instead. On the
   * requester's clock: used only when `budget_ms` is absent (older or outside requesters).
   */
  deadline: number;
  attempt: number;
  /** Epoch ms of publication (requester's clock; informational). */
  created: number;
  /**
   * The time the requester allows, ms from publication: the deadline without anyone's clock. Routers
   * and workers count it from `enqueued_at` on the mesh (Redis) clock.
   */
  budget_ms?: number;
  /** Mesh-clock ms of the request's ingress entry (its id's time), stamped by the first router. */
  enqueued_at?: number;
  /**
   * The requester's own id for the request (the gateway's x-request-id), for logs and tracing only:
   * it comes from the client and may repeat, so nothing is matched or keyed by it (`id` is).
   */
  request_id?: string;
}

export const meshRequestSchema = z.object({
  id: z.string().min(1),
  model: z.string().min(1),
  payload: z.looseObject({ model: z.string(), messages: z.array(z.unknown()) }),
  stream: z.boolean(),
  callback: z.string().min(1),
  deadline: z.number(),
  attempt: z.number().int().min(1),
  created: z.number(),
  budget_ms: z.number().optional(),
  enqueued_at: z.number().optional(),
  request_id: z.string().optional(),
});

/**
 * A request's deadline on the mesh (Redis) clock: `budget_ms` after its ingress entry was written
 * (`enqueued_at`, else the time of `entryId`, the entry it was read from). A request without a budget
 * (an older or outside requester) has only its absolute `deadline`, which assumes the clocks agree.
 */
export function meshDeadline(req: Pick<MeshRequest, 'deadline' | 'budget_ms' | 'enqueued_at'>, entryId?: string): number {
  if (req.budget_ms === undefined) return req.deadline;
  const from = req.enqueued_at ?? (entryId === undefined ? undefined : entryIdMs(entryId));
  return from === undefined ? req.deadline : from + req.budget_ms;
}

export interface MeshErrorBody {
  /** UpstreamError kind (`server`, `timeout`, `connect`, …) or `no_available_nodes`. */
  kind: string;
  message: string;
  status?: number;
}

/**
 * What lands on a callback stream. `chunk` entries stream tokens of one execution (`exec`, unique per
 * attempt); exactly one of `result`, `done` (end of a streamed answer) or `error` ends a request.
 */
export type MeshEvent =
  | { type: 'chunk'; id: string; exec: string; node: string; chunk: ChatChunk }
  | { type: 'result'; id: string; exec: string; node: string; result: ChatResult }
  | { type: 'done'; id: string; exec: string; node: string }
  | { type: 'error'; id: string; exec: string; node: string; error: MeshErrorBody };

export const meshEventSchema = z.object({
  type: z.enum(['chunk', 'result', 'done', 'error']),
  id: z.string(),
  exec: z.string(),
  node: z.string(),
  chunk: z.unknown().optional(),
  result: z.unknown().optional(),
  error: z.object({ kind: z.string(), message: z.string(), status: z.number().optional() }).optional(),
});

export function isFinalEvent(e: MeshEvent): boolean {
  return e.type !== 'chunk';
}

/** A node's published health: what the router filters and scores on. */
export interface NodeHealth {
  node_id: string;
  /** Backend kind (`ollama`, `openai`, `local`, …). */
  backend: string;
  /** Whether the backend answered its last model listing. */
  backend_ok: boolean;
  models_installed: string[];
  models_loaded: string[];
  /** null where the host exposes no thermal sensor. */
  cpu_temp_c: number | null;
  ram_used_pct: number;
  ram_total_bytes: number;
  load1: number;
  gpus: GpuHealth[];
  in_flight: number;
  /** Requests the node runs at once; load is in_flight / max_concurrency. */
  max_concurrency: number;
  /** Set while a node finishes its work before leaving: routable no more. */
  draining: boolean;
  version: string;
  /** Epoch ms of this record, on the mesh (Redis) clock; older workers stamp their own clock. */
  ts: number;
  /**
   * Id of the newest entry the node has read from its request stream when it counted `in_flight`:
   * entries placed after it are load the record does not show yet. Absent from older workers.
   */
  read_id?: string;
}

export interface GpuHealth {
  name: string;
  memory_used_mb: number;
  memory_total_mb: number;
  utilization_pct: number | null;
  temp_c: number | null;
}

export const nodeHealthSchema = z.object({
  node_id: z.string().min(1),
  backend: z.string(),
  backend_ok: z.boolean(),
  models_installed: z.array(z.string()),
  models_loaded: z.array(z.string()),
  cpu_temp_c: z.number().nullable(),
  ram_used_pct: z.number(),
  ram_total_bytes: z.number(),
  load1: z.number(),
  gpus: z.array(
    z.object({
      name: z.string(),
      memory_used_mb: z.number(),
      memory_total_mb: z.number(),
      utilization_pct: z.number().nullable(),
      temp_c: z.number().nullable(),
    }),
  ),
  in_flight: z.number().int().min(0),
  max_concurrency: z.number().int().min(1),
  draining: z.boolean(),
  version: z.string(),
  ts: z.number(),
  read_id: z.string().optional(),
});

/** Returned (never thrown across the wire) when no node passes the health filter. */
export class ErrNoAvailableNodes extends Error {
  constructor(
    readonly model: string,
    readonly reasons: Record<string, string>,
  ) {
    super(`no available mesh node for model "${model}"${describeReasons(reasons)}`);
    this.name = 'ErrNoAvailableNodes';
  }
}

function describeReasons(reasons: Record<string, string>): string {
  const entries = Object.entries(reasons);
  if (entries.length === 0) return ' (no nodes registered)';
  return ` (${entries.map(([node, why]) => `${node}: ${why}`).join('; ')})`;
}

export function encodeRequest(req: MeshRequest): string {
  return JSON.stringify(req);
}

export function decodeRequest(raw: string): MeshRequest | undefined {
  try {
    const parsed = meshRequestSchema.safeParse(JSON.parse(raw));
    return parsed.success ? (parsed.data as unknown as MeshRequest) : undefined;
  } catch {
    return undefined;
  }
}

export function decodeEvent(raw: string): MeshEvent | undefined {
  try {
    const parsed = meshEventSchema.safeParse(JSON.parse(raw));
    return parsed.success ? (parsed.data as MeshEvent) : undefined;
  } catch {
    return undefined;
  }
}

export function decodeHealth(raw: string): NodeHealth | undefined {
  try {
    const parsed = nodeHealthSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** Field names of stream entries: one JSON document per entry. */
export const FIELD = 'data';

/** Flat [field, value, …] arrays from XREAD/XREADGROUP into the one JSON field. */
export function entryData(fields: string[]): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === FIELD) return fields[i + 1];
  return undefined;
}
