// The health registry: one Redis hash, node id -> the node's latest health JSON. Workers write their
// own field every heartbeat and delete it when they leave; routers and the dashboard read it all.
import { Cluster } from 'ioredis';
import type { RedisClient } from '../store/redis.js';
import { decodeHealth, meshKeys, type NodeHealth } from './contracts.js';

export class HealthRegistry {
  private readonly key: string;
  /**
   * The last read's records, decoded, by node: a record whose text has not changed since (a node
   * heartbeats every few seconds, a router reads every 250 ms) is not parsed and validated again.
   * The decoded objects are frozen, since reads share them.
   */
  private decoded = new Map<string, { raw: string; health: NodeHealth | undefined }>();

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

  /**
   * Deletes a node's record only if it is still the one read (`raw`): a node that heartbeats in
   * between keeps its fresh record.
   */
  async forgetIfUnchanged(nodeId: string, raw: string): Promise<boolean> {
    return (await this.redis.eval(FORGET_UNCHANGED, 1, this.key, nodeId, raw)) === 1;
  }

  /** Every node's record as stored (JSON text), by node id. */
  async readRaw(): Promise<Record<string, string>> {
    return this.redis.hgetall(this.key);
  }

  /** Every node's record; malformed fields are skipped rather than failing the read. */
  async readAll(): Promise<NodeHealth[]> {
    const out: NodeHealth[] = [];
    const decoded = new Map<string, { raw: string; health: NodeHealth | undefined }>();
    for (const [node, raw] of Object.entries(await this.readRaw())) {
      const last = this.decoded.get(node);
      const health = last?.raw === raw ? last.health : freeze(decodeHealth(raw));
      decoded.set(node, { raw, health });
      if (health) out.push(health);
    }
    this.decoded = decoded;
    return out;
  }
}

const FORGET_UNCHANGED = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
`;

function freeze(h: NodeHealth | undefined): NodeHealth | undefined {
  if (h) Object.freeze(h);
  return h;
}
