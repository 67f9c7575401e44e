// Breaker state shared between replicas, on a single Redis and on a Redis Cluster: an open seen by
// one replica reaches a running one by pub/sub (the channel is a script argument, not a key), and a
// replica that starts later reads it by polling (one MGET over hash-tagged keys, one slot). A
// deployment's cooldown (an upstream's Retry-After) travels the same way.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { redisTargets } from '../../test/helpers/redis.js';
import { createLogger } from '../telemetry/logger.js';
import { BreakerSync, type BreakerSyncTarget } from './breaker-sync.js';

const targets = await redisTargets();
const run = randomBytes(4).toString('hex');
const log = createLogger('silent');
const syncs: BreakerSync[] = [];
afterAll(async () => {
  for (const s of syncs) await s.close();
  for (const t of targets) await t.cleanup(`*test:${run}:*`);
});

/** A replica's breakers as BreakerSync sees them: what it was told to open and close. */
class RecordingBreakers implements BreakerSyncTarget {
  readonly opened = new Map<string, { until: number; reason: string }>();
  readonly closed: string[] = [];
  readonly cooling = new Map<string, number>();
  constructor(private readonly ids: string[]) {}
  forceOpen(deployment: string, until: number, reason: string): void {
    this.opened.set(deployment, { until, reason });
  }
  forceClose(deployment: string): void {
    this.opened.delete(deployment);
    this.closed.push(deployment);
  }
  coolUntil(deployment: string, until: number): void {
    this.cooling.set(deployment, Math.max(this.cooling.get(deployment) ?? 0, until));
  }
  deploymentIds(): string[] {
    return this.ids;
  }
}

const deployments = ['openai/gpt-4o', 'anthropic/claude', 'local/llama'];

for (const t of targets) {
  describe.skipIf(!t.available)(`BreakerSync on ${t.name}`, () => {
    const prefix = `test:${run}:${t.name}:`;
    const syncOf = new Map<RecordingBreakers, BreakerSync>();
    /** One replica: its own client, breakers and sync (poll interval long, so only start() polls). */
    async function replica(keyPrefix = prefix): Promise<RecordingBreakers> {
      const breakers = new RecordingBreakers(deployments);
      const sync = new BreakerSync(t.connect(), keyPrefix, breakers, log, 60_000);
      syncs.push(sync);
      syncOf.set(breakers, sync);
      await sync.start();
      return breakers;
    }
    const share = (b: RecordingBreakers) => syncOf.get(b) as BreakerSync;

    it('opens a breaker on every replica, live by pub/sub and later by polling, and closes it again', async () => {
      const a = await replica();
      const b = await replica();
      const until = Date.now() + 30_000;
      share(a).publish({ deployment: 'anthropic/claude', from: 'closed', to: 'open', reason: '5 consecutive failures', source: 'local', retryAt: until });

      await expect.poll(() => b.opened.get('anthropic/claude'), { timeout: 2_000, interval: 20 }).toEqual({ until, reason: 'shared: 5 consecutive failures' });
      expect(a.opened.size).toBe(0); // its own message is not echoed back

      // A replica started after the message reads the open breaker from the keys (MGET of all three).
      const c = await replica();
      expect([...c.opened.keys()]).toEqual(['anthropic/claude']);
      expect(c.opened.get('anthropic/claude')?.until).toBe(until);

      share(a).publish({ deployment: 'anthropic/claude', from: 'half_open', to: 'closed', reason: 'probe succeeded', source: 'local' });
      await expect.poll(() => b.closed.includes('anthropic/claude') && c.closed.includes('anthropic/claude'), { timeout: 2_000, interval: 20 }).toBe(true);
      const d = await replica();
      expect(d.opened.size).toBe(0);
    });

    it('does not share transitions it was told about by another replica', async () => {
      const a = await replica();
      const b = await replica();
      share(a).publish({ deployment: 'local/llama', from: 'closed', to: 'open', reason: 'remote', source: 'remote', retryAt: Date.now() + 30_000 });
      share(a).publish({ deployment: 'openai/gpt-4o', from: 'closed', to: 'open', reason: 'marker', source: 'local', retryAt: Date.now() + 30_000 });
      // Messages on one channel arrive in order: once the marker is in, the remote one would be too.
      await expect.poll(() => b.opened.has('openai/gpt-4o'), { timeout: 2_000, interval: 20 }).toBe(true);
      expect(b.opened.has('local/llama')).toBe(false);
    });

    it('shares a cooldown with running replicas and later ones, keeps the longest, and leaves breakers alone', async () => {
      // Keys of their own: the tests above leave breakers open under `prefix`.
      const own = `${prefix}cooldowns:`;
      const a = await replica(own);
      const b = await replica(own);
      const until = Date.now() + 20_000;
      share(a).shareCooldown('openai/gpt-4o', until);
      await expect.poll(() => b.cooling.get('openai/gpt-4o'), { timeout: 2_000, interval: 20 }).toBe(until);
      expect(a.cooling.size).toBe(0); // not echoed to its sender
      expect(b.opened.size).toBe(0); // a rate limit is not a broken deployment

      // A shorter cooldown seen by another replica does not cut the stored one short.
      share(b).shareCooldown('openai/gpt-4o', Date.now() + 5_000);
      const c = await replica(own);
      expect(c.cooling.get('openai/gpt-4o')).toBe(until);

      // A cooldown only slightly longer than the one just shared is not published again.
      share(a).shareCooldown('openai/gpt-4o', until + 100);
      share(a).shareCooldown('anthropic/claude', until); // a marker: messages on one channel arrive in order
      await expect.poll(() => c.cooling.has('anthropic/claude'), { timeout: 2_000, interval: 20 }).toBe(true);
      expect(c.cooling.get('openai/gpt-4o')).toBe(until);

      // An expired cooldown is not shared…
      share(a).shareCooldown('local/llama', Date.now() - 1);
      const d = await replica(own);
      expect(d.cooling.has('local/llama')).toBe(false);
      expect(d.cooling.get('anthropic/claude')).toBe(until);
      // …nor applied when one arrives (a message that spent longer in flight than the cooldown lasted).
      const publisher = t.connect();
      const message = (deployment: string, at: number) => JSON.stringify({ deployment, state: 'cooling', until: at, reason: 'rate limited', origin: 'another-replica' });
      await publisher.publish(`${own}breaker:events`, message('local/llama', Date.now() - 1_000));
      await publisher.publish(`${own}breaker:events`, message('marker', Date.now() + 20_000));
      await expect.poll(() => d.cooling.has('marker'), { timeout: 2_000, interval: 20 }).toBe(true);
      expect(d.cooling.has('local/llama')).toBe(false);
      publisher.disconnect();
    });
  });
}
