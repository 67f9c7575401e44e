// Redis connections for shared state (limits, caches, breakers, mesh). One client per purpose and
// process, created at start-up and closed at shutdown; blocking readers (streams) get their own.
// A `redis+cluster://h1:p1,h2:p2` URL gives a Redis Cluster client with the same command API; the
// key rules that keep multi-key scripts valid on a cluster are in docs/scaling.md.
import type { Socket } from 'node:net';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { ManagedResource } from '../gateway/gateway.js';
import { turnCork } from '../gateway/turn-cork.js';

/** What shared-state modules accept: a single server or a cluster (same commands, same scripts). */
export type RedisClient = Redis | Cluster;

const CLUSTER_SCHEME = /^(rediss?)\+cluster:\/\//i;

export function isClusterUrl(url: string): boolean {
  return CLUSTER_SCHEME.test(url);
}

export interface ClusterTarget {
  nodes: { host: string; port: number }[];
  username?: string;
  password?: string;
  tls: boolean;
}

/** Parses `redis+cluster://[user:pass@]host:port,host:port[/]` (or `rediss+cluster://` for TLS). */
export function parseClusterUrl(url: string): ClusterTarget {
  const m = CLUSTER_SCHEME.exec(url);
  if (!m) throw new Error(`not a Redis Cluster URL: ${url}`);
  let rest = url.slice(m[0].length).replace(/\/+$/, '');
  let username: string | undefined;
  let password: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    const auth = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = auth.indexOf(':');
    username = colon >= 0 ? auth.slice(0, colon) : auth;
    password = colon >= 0 ? decodeURIComponent(auth.slice(colon + 1)) : undefined;
    username = username ? decodeURIComponent(username) : undefined;
  }
  const nodes = rest
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean)
    .map((node) => {
      const hm = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(node);
      if (!hm) throw new Error(`bad Redis Cluster node "${node}" in ${url.replace(/\/\/[^@]*@/, '//***@')}`);
      return { host: (hm[1] as string).replace(/^\[|\]$/g, ''), port: hm[2] ? Number(hm[2]) : 6379 };
    });
  if (nodes.length === 0) throw new Error('a Redis Cluster URL needs at least one host:port');
  return { nodes, username, password, tls: m[1]?.toLowerCase() === 'rediss' };
}

export function createRedis(url: string, name: string, extra: RedisOptions = {}): RedisClient {
  const common: RedisOptions = {
    connectionName: `inferenceflow:${name}`,
    // Fail fast on the hot path instead of queueing commands forever while Redis is away;
    // callers decide whether to fail open or closed.
    maxRetriesPerRequest: 2,
    enableOfflineQueue: true,
  };
  const retry = (attempt: number) => Math.min(100 * 2 ** attempt, 5_000);
  if (isClusterUrl(url)) {
    const target = parseClusterUrl(url);
    const options: ClusterOptions = {
      clusterRetryStrategy: retry,
      enableOfflineQueue: true,
      // Reads go to masters: shared state must be read-your-writes (limits, leases, breakers).
      scaleReads: 'master',
      redisOptions: {
        ...common,
        ...(target.username ? { username: target.username } : {}),
        ...(target.password ? { password: target.password } : {}),
        ...(target.tls ? { tls: {} } : {}),
        ...extra,
      },
    };
    return coalesceWrites(new Cluster(target.nodes, options));
  }
  return coalesceWrites(new Redis(url, { ...common, retryStrategy: retry, ...extra }));
}

/**
 * The shared-state client (limits, API keys, budgets, cache, breakers): its commands fail after
 * `redis.command_timeout_ms`, queued ones included, so during an outage the failure policies (fail
 * open or closed) apply at once, not after reconnect attempts. Its duplicates (the cache's change
 * follower, BLOCK 1 s; the breaker subscriber) inherit the timeout. The mesh's clients do not use it.
 */
export function createSharedStateRedis(redis: { url: string; command_timeout_ms: number }): RedisClient {
  return createRedis(redis.url, 'main', { commandTimeout: redis.command_timeout_ms });
}

const COALESCED = Symbol('inferenceflow.coalescedWrites');

/**
 * Commands a client sends during one event-loop turn leave in one socket write. ioredis writes each
 * command (and each Buffer argument) with its own `socket.write`, which is one system call apiece;
 * a request touches Redis several times (limits, cache lookup and store, statistics), and requests
 * handled in the same turn touch it again. The socket is corked at the turn's first write and
 * uncorked at setImmediate, after the turn's I/O callbacks: order is kept, replies are parsed as
 * before, and a command waits at most for the rest of the turn that issued it. Each new connection
 * (reconnects, cluster nodes) is patched when it connects.
 */
export function coalesceWrites<C extends RedisClient>(client: C): C {
  if (client instanceof Cluster) {
    client.on('+node', (node: Redis) => coalesceWrites(node));
    return client;
  }
  const patch = () => {
    const socket = (client as Redis).stream as (Socket & { [COALESCED]?: true }) | undefined;
    if (!socket || socket[COALESCED]) return;
    socket[COALESCED] = true;
    const turn = turnCork(socket);
    const write = socket.write;
    socket.write = function (this: Socket, ...args: Parameters<Socket['write']>): boolean {
      turn.hold();
      return write.apply(this, args as never);
    } as Socket['write'];
  };
  client.on('connect', patch);
  patch();
  return client;
}

/** The masters of a cluster, or the one server: where KEYS/SCAN-style commands must each run. */
export function masters(client: RedisClient): Redis[] {
  return client instanceof Cluster ? client.nodes('master') : [client];
}

/** A multi-key command or script whose keys hash to different slots of a cluster (Redis's CROSSSLOT). */
export function isCrossSlotError(err: unknown): boolean {
  return String((err as Error | undefined)?.message ?? '').includes('CROSSSLOT');
}

/** Every key matching `pattern` on every master (SCAN, never KEYS), for invalidation and cleanup. */
export async function scanKeys(client: RedisClient, pattern: string, count = 500): Promise<string[]> {
  // A cluster client knows its masters only once connected; a PING waits for that.
  if (client instanceof Cluster) await client.ping();
  const found: string[] = [];
  for (const node of masters(client)) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', count);
      cursor = next;
      found.push(...keys);
    } while (cursor !== '0');
  }
  return found;
}

/**
 * The part of a key Redis Cluster hashes instead of the whole key: what lies between the FIRST `{`
 * and the first `}` after it, only if that is not empty (`a{}b{c}` has none: the whole key is
 * hashed). Undefined when the key has no such tag.
 */
export function hashTagOf(key: string): string | undefined {
  const open = key.indexOf('{');
  if (open < 0) return undefined;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : undefined;
}

/**
 * The key namespace for keys that one script, MULTI or pipeline touches together: wrapped in a
 * hash tag, so on a cluster they all live in one slot (`{inferenceflow:gpu:}leases`). On a single
 * server the braces are just characters. A namespace that already holds a tag (by Redis Cluster's
 * rule, `hashTagOf`) is kept as it is; any other is wrapped, even if a later pair of braces in it
 * looks like a tag.
 */
export function hashTagged(namespace: string): string {
  return hashTagOf(namespace) !== undefined ? namespace : `{${namespace}}`;
}

/** The number written in `id` from `from` to `to` (digits only, as Redis stamps them), without a substring. */
function digitsOf(id: string, from: number, to: number): number {
  // Nothing there reads as 0, as Number('') does (an id ending in a dash has sequence 0).
  if (from >= to) return 0;
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = id.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return Number(id.slice(from, to));
    n = n * 10 + d;
  }
  return n;
}

/** The time part of a stream entry id (`<ms>-<seq>`, stamped by Redis), or undefined if it has none. */
export function entryIdMs(id: string): number | undefined {
  const dash = id.indexOf('-');
  const ms = digitsOf(id, 0, dash < 0 ? id.length : dash);
  return Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

/**
 * Orders two stream entry ids (`<ms>-<seq>`; without a dash, sequence 0) as Redis does: negative,
 * zero or positive. Allocates nothing: the mesh router compares ids on every routing decision.
 */
export function compareEntryIds(a: string, b: string): number {
  if (a === b) return 0;
  const da = a.indexOf('-');
  const db = b.indexOf('-');
  const am = digitsOf(a, 0, da < 0 ? a.length : da);
  const bm = digitsOf(b, 0, db < 0 ? b.length : db);
  if (am !== bm) return am - bm;
  return (da < 0 ? 0 : digitsOf(a, da + 1, a.length)) - (db < 0 ? 0 : digitsOf(b, db + 1, b.length));
}

export function redisResource(client: RedisClient, name = 'redis'): ManagedResource {
  return {
    name,
    async check() {
      return (await client.ping()) === 'PONG';
    },
    async close() {
      await client.quit().catch(() => client.disconnect());
    },
  };
}
