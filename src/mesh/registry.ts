// The health registry: one Redis hash, node id -> the node's latest health JSON. Workers write their
// own field every heartbeat and delete it when they leave; routers and the dashboard read it all.
import { Cluster } from 'ioredis';
import type { RedisClient } from '../store/redis.js';
import { decodeHealth, meshKeys, type NodeHealth } from './contracts.js';

export class HealthRegistry {
  private readonly key: string;

  constructor(
    private readonly redis: RedisClient,
    prefix: string,
  ) {
    this.key = meshKeys(prefix, redis instanceof Cluster).health;
  }

  async publish(health: NodeHealth): Promise<void> {
    await this.redis.hset(this.key, health.node_id, JSON.stringify(health));
  }

  async remove(nodeId: string): Promise<void> {
    await this.redis.hdel(this.key, nodeId);
  }

  /** Every node's record; malformed fields are skipped rather than failing the read. */
  async readAll(): Promise<NodeHealth[]> {
    const raw = await this.redis.hgetall(this.key);
    const out: NodeHealth[] = [];
    for (const value of Object.values(raw)) {
      const h = decodeHealth(value);
      if (h) out.push(h);
    }
    return out;
  }
}
