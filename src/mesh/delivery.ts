// Delivery guarantees: at-least-once execution, exactly one final response. A final response is
// written by one Lua script that sets the request's done-key (SET NX), and only if that succeeded
// appends the event to the callback stream — then acknowledges and deletes the stream entry that
// carried the request. Whoever loses the SET NX (a reclaimed duplicate, a late worker) only acks.
// Held entries are kept fresh with XCLAIM so that only truly abandoned ones go idle and get reclaimed.
import { isCrossSlotError, type RedisClient as Redis } from '../store/redis.js';
import { FIELD, type MeshEvent, type MeshKeys, type MeshRequest } from './contracts.js';
import type { StreamEntries } from './connection.js';

/** Done-keys outlive the request's deadline by this much, so late duplicates are still recognised. */
const DONE_GRACE_MS = 60 * 60 * 1000;
/**
 * Callback streams expire this long after their last write (abandoned requesters). They have no
 * length cap: a cap evicts the oldest entries whether or not they were read, and a requester whose
 * reader fell behind (a reconnect, a stalled loop with a thousand streams in flight) would lose
 * tokens or a final answer. The requester trims what it has read (MeshClient: XTRIM MINID), and
 * everything written is bounded by its requests' deadlines.
 */
const CALLBACK_TTL_MS = 60 * 60 * 1000;

// KEYS: done-key, callback stream, source stream. ARGV: done value, done ttl ms, event JSON, group,
// entry id ('' for none), callback ttl ms, '1' if the caller must still hold the entry.
// Returns 1 if this call delivered, 0 if another execution already had, -1 if the caller required the
// entry and no longer held it (someone else acknowledged it: the request is theirs now).
const FINAL_SCRIPT = `
if ARGV[5] ~= '' then
  if redis.call('XACK', KEYS[3], ARGV[4], ARGV[5]) == 0 and ARGV[7] == '1' then return -1 end
end
local delivered = 0
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('XADD', KEYS[2], '*', '${FIELD}', ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
  delivered = 1
end
if ARGV[5] ~= '' then redis.call('XDEL', KEYS[3], ARGV[5]) end
return delivered
`;

// KEYS: the source stream. ARGV: group, entry id. Acknowledges and deletes one entry.
const RETIRE_SCRIPT = `
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
`;

// KEYS: the node's request stream, the set of node streams, the source stream. ARGV: the encoded
// request, the node id, the source's group, the source entry id. Hands a request to a node and
// retires the entry it came from, atomically (as a MULTI would, without ioredis building one).
// The source entry is acknowledged first: if that acknowledges nothing, another router already
// placed (or answered) the request — it reclaimed the entry while this one stalled — and nothing is
// added. Returns the new entry's id, or 0 when the entry was no longer pending.
const PLACE_SCRIPT = `
if redis.call('XACK', KEYS[3], ARGV[3], ARGV[4]) == 0 then return 0 end
local id = redis.call('XADD', KEYS[1], '*', '${FIELD}', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[4])
return id
`;

interface WithMeshScripts {
  meshDeliverFinal(
    done: string,
    callback: string,
    source: string,
    value: string,
    ttl: string,
    event: string,
    group: string,
    entryId: string,
    cbTtl: string,
    requireHeld: string,
  ): Promise<number>;
  meshRetire(source: string, group: string, id: string): Promise<number>;
  meshPlace(target: string, nodeStreams: string, source: string, body: string, node: string, group: string, id: string): Promise<string | number>;
}

// The mesh's scripts, defined on a client the first time it needs them (EVALSHA thereafter). Scripts
// rather than MULTI: an ioredis Pipeline (what multi() builds) is a heavy object whose per-instance
// accessor kept it alive past the young generation, once per request (bench/RESULTS.md).
function meshScripts(redis: Redis): WithMeshScripts {
  const r = redis as unknown as Partial<WithMeshScripts>;
  if (!r.meshDeliverFinal) redis.defineCommand('meshDeliverFinal', { numberOfKeys: 3, lua: FINAL_SCRIPT });
  if (!r.meshRetire) redis.defineCommand('meshRetire', { numberOfKeys: 1, lua: RETIRE_SCRIPT });
  if (!r.meshPlace) redis.defineCommand('meshPlace', { numberOfKeys: 3, lua: PLACE_SCRIPT });
  return redis as unknown as WithMeshScripts;
}

/** Acknowledges and deletes a stream entry (a request that needs no answer from this process). */
export async function retireEntry(redis: Redis, source: SourceEntry): Promise<void> {
  await meshScripts(redis).meshRetire(source.stream, source.group, source.id);
}

/**
 * Appends a request to a node's stream, records the stream, and retires its source entry. Returns the
 * node stream entry's id, or undefined when the source entry was no longer pending — another router
 * took it over and placed or answered it — in which case nothing was written: drop it.
 */
export async function placeOnNode(redis: Redis, target: string, nodeStreams: string, node: string, body: string, source: SourceEntry): Promise<string | undefined> {
  const id = await meshScripts(redis).meshPlace(target, nodeStreams, source.stream, body, node, source.group, source.id);
  return typeof id === 'string' ? id : undefined;
}

/** Where the request came from, so delivering its answer also retires the stream entry. */
export interface SourceEntry {
  stream: string;
  group: string;
  id: string;
}

export interface DeliverOptions {
  /**
   * Deliver only while the source entry is "held": still pending in its group (acknowledging it
   * acknowledges something) — under any consumer, not necessarily the caller's: XACK does not check
   * the consumer. For answers that are not results — a router's "no node until the deadline" — which
   * must not pre-empt a run another router started after taking the entry over: once that router
   * placed it (acknowledged it) the answer is dropped. If it took the entry over but has not placed it
   * yet, this answer is delivered and that router's placement then finds the entry gone and writes
   * nothing (placeOnNode returns undefined).
   */
  requireHeld?: boolean;
}

/**
 * Writes the request's one final event; false when another execution already did (a duplicate), or,
 * with `requireHeld`, when the source entry had been taken over by someone else.
 */
export async function deliverFinal(
  redis: Redis,
  keys: MeshKeys,
  req: Pick<MeshRequest, 'id' | 'callback'>,
  event: MeshEvent,
  source: SourceEntry | undefined,
  /** Time left until the request's deadline, ms: the done-key outlives it by an hour. */
  remainingMs = 0,
  opts: DeliverOptions = {},
): Promise<boolean> {
  const ttl = Math.max(0, remainingMs) + DONE_GRACE_MS;
  const doneKey = keys.done(req.id);
  const value = `${event.type}:${event.exec}`;
  const body = JSON.stringify(event);
  try {
    const delivered = await meshScripts(redis).meshDeliverFinal(doneKey, req.callback, source?.stream ?? req.callback, value, String(ttl), body, source?.group ?? '', source?.id ?? '', String(CALLBACK_TTL_MS), opts.requireHeld ? '1' : '0');
    return delivered === 1;
  } catch (err) {
    if (!isCrossSlotError(err)) throw err;
  }
  // Redis Cluster and a callback stream outside the mesh's hash tag (named by an outside requester):
  // the same steps one by one. The SET NX still elects exactly one deliverer; a crash between it
  // and the XADD would lose that answer, which the one script rules out.
  if (source && opts.requireHeld && (await redis.xack(source.stream, source.group, source.id)) === 0) return false;
  const won = (await redis.set(doneKey, value, 'PX', ttl, 'NX')) === 'OK';
  if (won) {
    await redis.xadd(req.callback, '*', FIELD, body);
    await redis.pexpire(req.callback, CALLBACK_TTL_MS);
  }
  if (source) await retireEntry(redis, source);
  return won;
}

/**
 * Appends a streamed chunk (not final: the done-key is not touched). A worker streaming hundreds of
 * answers appends thousands of chunks a second; the appends of one event-loop turn leave in one socket
 * write because every mesh client coalesces its writes (store/redis.ts `coalesceWrites`). The stream's
 * expiry is set by the run's last write — the final delivery, or `expireCallback` for a cancelled run —
 * not per chunk. One key: fine on a cluster wherever the callback stream lives.
 */
export async function appendChunk(redis: Redis, callback: string, event: MeshEvent): Promise<void> {
  await redis.xadd(callback, '*', FIELD, JSON.stringify(event));
}

/**
 * Gives a callback stream its expiry after a run that ends without a final delivery (cancelled by its
 * requester): its chunks may have recreated a stream the requester had already deleted.
 */
export async function expireCallback(redis: Redis, callback: string): Promise<void> {
  await redis.pexpire(callback, CALLBACK_TTL_MS);
}

/** Whether a request already has its final response (or was cancelled by its requester). */
export async function isDone(redis: Redis, keys: MeshKeys, requestId: string): Promise<boolean> {
  return (await redis.exists(keys.done(requestId))) === 1;
}

/** Marks a request finished without a response (requester gone or timed out): nobody starts it later. */
export async function markAbandoned(redis: Redis, keys: MeshKeys, requestId: string, why: string, ttlMs = DONE_GRACE_MS): Promise<void> {
  await redis.set(keys.done(requestId), why, 'PX', ttlMs, 'NX');
}

/** Resets the idle time of entries this consumer holds, so reclaimers leave live work alone. */
export async function touchPending(redis: Redis, stream: string, group: string, consumer: string, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await redis.xclaim(stream, group, consumer, 0, ...ids, 'JUSTID');
}

/** Takes over entries idle longer than `minIdleMs` in a group (their holder died). */
export async function claimIdle(redis: Redis, stream: string, group: string, consumer: string, minIdleMs: number, count = 100): Promise<StreamEntries> {
  const out: StreamEntries = [];
  let cursor = '0-0';
  // A bounded number of rounds: each claims up to `count`; the rest wait for the next tick.
  for (let round = 0; round < 10; round++) {
    const reply = (await redis.xautoclaim(stream, group, consumer, minIdleMs, cursor, 'COUNT', count)) as [string, StreamEntries, string[]?];
    const entries = reply[1] ?? [];
    // Entries deleted while pending come back as null: nothing left to run.
    for (const e of entries) if (e && Array.isArray(e[1])) out.push(e);
    cursor = reply[0];
    if (cursor === '0-0') break;
  }
  return out;
}
