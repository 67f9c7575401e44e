// Redis connections for shared state (limits, caches, breakers, mesh). One client per purpose and
// process, created at start-up and closed at shutdown; blocking readers (streams) get their own.
import { Redis, type RedisOptions } from 'ioredis';
import type { ManagedResource } from '../gateway/gateway.js';

export function createRedis(url: string, name: string, extra: RedisOptions = {}): Redis {
  return new Redis(url, {
    connectionName: `inferenceflow:${name}`,
    // Fail fast on the hot path instead of queueing commands forever while Redis is away;
    // callers decide whether to fail open or closed.
    maxRetriesPerRequest: 2,
    enableOfflineQueue: true,
    retryStrategy: (attempt) => Math.min(100 * 2 ** attempt, 5_000),
    ...extra,
  });
}

export function redisResource(client: Redis, name = 'redis'): ManagedResource {
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
