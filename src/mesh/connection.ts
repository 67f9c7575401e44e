// Redis connections for mesh processes. Unlike the gateway's hot-path client, mesh loops would rather
// wait for Redis than fail: commands queue while the connection is down (no per-request retry cap)
// and reconnects back off up to 2 s, so workers and routers resume by themselves when Redis returns.
// A `redis+cluster://` URL gives a Redis Cluster client (createRedis); every blocking reader is its
// own client, so a blocked XREADGROUP never holds up the commands of its process.
// A requester's commands are the exception (`failFast`): a gateway request has a deadline and a client
// that may leave, so they fail after a couple of reconnect attempts, as the gateway's other Redis
// commands do, instead of queueing for as long as Redis is away.
import { createRedis, type RedisClient } from '../store/redis.js';

export function createMeshRedis(url: string, name: string, opts: { failFast?: boolean; blockMs?: number } = {}): RedisClient {
  return createRedis(url, `mesh:${name}`, {
    maxRetriesPerRequest: opts.failFast ? 2 : null,
    enableOfflineQueue: true,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2_000),
    lazyConnect: true,
    // A Redis host gone silent (a node or a network path lost without a FIN or RST) leaves a socket
    // that nothing notices: a blocking reader with nothing to send waits on it for the kernel's
    // keepalive (about two hours) while the node's heartbeats, on a connection that recovers, keep
    // it routable. A socket that receives nothing for this long after a command is destroyed and
    // reconnected.
    socketTimeout: meshSocketTimeoutMs(opts.blockMs),
  });
}

/** How long a mesh connection waits for any byte after a command: a blocking read's block plus 2 s (at least double it), else 10 s. */
export function meshSocketTimeoutMs(blockMs?: number): number {
  return blockMs === undefined ? 10_000 : blockMs + Math.max(2_000, blockMs);
}

/** Connects, failing within `timeoutMs` (seed 003: a worker that cannot reach Redis fails to start). */
export async function connectOrFail(client: RedisClient, timeoutMs = 5_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      // A single-server client waits (lazyConnect); a cluster client may already be connecting.
      (async () => {
        if (client.status === 'wait') await client.connect();
        await client.ping();
      })(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Redis unreachable after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    client.disconnect();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Creates a consumer group (and its stream); an existing group is fine. */
export async function ensureGroup(client: RedisClient, stream: string, group: string): Promise<void> {
  try {
    await client.xgroup('CREATE', stream, group, '0', 'MKSTREAM');
  } catch (err) {
    if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
  }
}

export function isNoGroupError(err: unknown): boolean {
  return String((err as Error)?.message ?? '').includes('NOGROUP');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Exponential backoff for loops whose Redis calls fail: 100 ms doubling to 2 s. */
export function backoffMs(failures: number): number {
  return Math.min(100 * 2 ** Math.max(0, failures - 1), 2_000);
}

export type StreamEntries = [id: string, fields: string[]][];
/** XREADGROUP/XREAD reply: [stream, entries][] or null. */
export type StreamReply = [stream: string, entries: StreamEntries][] | null;
