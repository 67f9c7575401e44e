// The mesh's one clock: the Redis server's. Nodes are often machines without a real-time clock
// (Raspberry Pis) whose time may be minutes or years off until NTP answers, so nothing on the mesh
// compares one machine's clock with another's. Heartbeats are stamped, heartbeat ages judged and
// request deadlines counted in Redis time (the TIME of the server holding the mesh's keys, the same
// clock that stamps stream entry ids); each process keeps its offset from that clock, refreshed on
// its heartbeat or reclaim tick, and measures durations with its own clock.
import type { RedisClient } from '../store/redis.js';

// Run as a script over a mesh key so that on Redis Cluster it is the clock of the node holding the
// mesh's hash tag (every mesh key, and every stream entry id), not of whichever node answers first.
const TIME_SCRIPT = `
local t = redis.call('TIME')
return {t[1], t[2]}
`;

/** Redis server time, ms, read on the node that holds `key`. */
export async function redisTimeMs(redis: RedisClient, key: string): Promise<number> {
  const [s, us] = (await redis.eval(TIME_SCRIPT, 1, key)) as [string | number, string | number];
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

export class MeshClock {
  private offset = 0;

  /**
   * @param redis the connection to read Redis TIME on
   * @param key any mesh key (its slot picks the clock on a cluster)
   * @param local this machine's clock (injectable in tests)
   */
  constructor(
    private readonly redis: RedisClient,
    private readonly key: string,
    private readonly local: () => number = Date.now,
  ) {}

  /** Measures this machine's offset from the mesh clock (half the round trip is the error bound). */
  async sync(): Promise<void> {
    const before = this.local();
    const redisMs = await redisTimeMs(this.redis, this.key);
    const after = this.local();
    this.offset = redisMs - Math.round((before + after) / 2);
  }

  /** Now on the mesh clock, ms since the epoch. */
  now(): number {
    return this.local() + this.offset;
  }
}
