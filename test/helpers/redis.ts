// The Redis deployments shared-state tests run against: the single server (REDIS_URL, default
// 127.0.0.1:6379) and a Redis Cluster (REDIS_CLUSTER_NODES, started by `scripts/redis-cluster.sh
// start`). Each is probed once; an unreachable one is skipped with a message, except under CI=true,
// where it fails the run. Clients are built by the gateway's own createRedis().
//   describe.each(await redisTargets())('%s', (_name, target) => { … target.connect() … })
import { createRedis, scanKeys, type RedisClient } from '../../src/store/redis.js';
import { isCI as CI } from './services.js';

export interface RedisTarget {
  name: 'redis' | 'redis-cluster';
  /** The URL the gateway would be configured with (`redis://…` or `redis+cluster://…`). */
  url: string;
  available: boolean;
  /** A new client (one per simulated replica); closed by cleanup(). */
  connect(): RedisClient;
  /** Deletes every key matching the pattern on every master and closes the clients made here. */
  cleanup(pattern: string): Promise<void>;
}

const STANDALONE_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const CLUSTER_NODES = process.env.REDIS_CLUSTER_NODES;

async function probe(url: string): Promise<boolean> {
  const client = createRedis(url, 'test-probe', { maxRetriesPerRequest: 0, lazyConnect: true, retryStrategy: () => null });
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), 3_000)));
    await Promise.race([client.ping(), timeout]);
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

function target(name: RedisTarget['name'], url: string, available: boolean): RedisTarget {
  const clients: RedisClient[] = [];
  return {
    name,
    url,
    available,
    connect() {
      const c = createRedis(url, `test-${name}`);
      clients.push(c);
      return c;
    },
    async cleanup(pattern) {
      if (available) {
        const c = clients[0] ?? this.connect();
        // One DEL per key: on a cluster a multi-key DEL across slots is refused.
        for (const key of await scanKeys(c, pattern)) await c.del(key);
      }
      for (const c of clients.splice(0)) c.disconnect();
    },
  };
}

let cached: Promise<RedisTarget[]> | undefined;

/** Both targets, each marked available or not (probed once per test file). */
export function redisTargets(): Promise<RedisTarget[]> {
  return (cached ??= (async () => {
    const standalone = await probe(STANDALONE_URL);
    if (!standalone && CI) throw new Error(`Redis at ${STANDALONE_URL} is unreachable and CI is set`);
    if (!standalone) console.warn(`skipping Redis tests: Redis at ${STANDALONE_URL} is unreachable`);

    let clusterUrl = 'redis+cluster://(unset)';
    let cluster = false;
    if (!CLUSTER_NODES) {
      if (CI) throw new Error('REDIS_CLUSTER_NODES is unset and CI is set: run `scripts/redis-cluster.sh start` and export the nodes it prints');
      console.warn('skipping Redis Cluster tests: REDIS_CLUSTER_NODES is unset (start one with scripts/redis-cluster.sh start)');
    } else {
      clusterUrl = `redis+cluster://${CLUSTER_NODES}`;
      cluster = await probe(clusterUrl);
      if (!cluster && CI) throw new Error(`Redis Cluster at ${CLUSTER_NODES} is unreachable and CI is set`);
      if (!cluster) console.warn(`skipping Redis Cluster tests: ${CLUSTER_NODES} is unreachable`);
    }
    return [target('redis', STANDALONE_URL, standalone), target('redis-cluster', clusterUrl, cluster)];
  })());
}
