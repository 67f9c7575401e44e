// Shares breaker state between gateway replicas through Redis. A replica whose breaker opens writes
// `<prefix>breaker:<deployment>` (expiring when probing may start) and publishes the change in one
// Lua call; every replica subscribes and opens its own breaker at once, and also re-reads the keys
// every `syncMs` in case a message was missed while reconnecting. A deployment's cooldown (an
// upstream's 429 or 503 with Retry-After: the provider key is rate-limited for every replica alike)
// is shared the same way under `<prefix>cooldown:<deployment>`. The request path reads only the
// local breakers and cooldowns, never Redis.
import { randomUUID } from 'node:crypto';
import { hashTagged, type RedisClient as Redis } from '../store/redis.js';
import type { Logger } from 'pino';
import type { BreakerTransition } from './breaker.js';

export interface SharedBreakerMessage {
  deployment: string;
  /** `cooling`: not broken, rate-limited until `until` (its breaker is untouched). */
  state: 'open' | 'closed' | 'cooling';
  /** For `open`: epoch ms when probes may start; for `cooling`: when the cooldown ends. */
  until?: number;
  reason: string;
  origin: string;
}

export interface BreakerSyncTarget {
  forceOpen(deployment: string, until: number, reason: string): void;
  forceClose(deployment: string, reason: string): void;
  /** Skip the deployment until `until` (epoch ms) unless it already cools longer. */
  coolUntil(deployment: string, until: number): void;
  deploymentIds(): string[];
}

// SET the key with its expiry and PUBLISH in one step, so no replica can read one without the other.
// The channel is an argument, not a key: on Redis Cluster a script's KEYS must share one slot, and a
// published message reaches subscribers on every node anyway.
const OPEN_SCRIPT = `
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`;
// A cooldown key keeps the longest cooldown any replica saw (its expiry is the cooldown's end); the
// message goes out either way, and a receiver keeps its own longer one.
const COOL_SCRIPT = `
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`;
/**
 * A cooldown is shared again only when it ends this much later than the one last shared: a burst of
 * 429s in flight when the first came back would otherwise publish one message each.
 */
const COOL_SHARE_STEP_MS = 250;
const CLOSE_SCRIPT = `
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`;

export class BreakerSync {
  readonly origin = randomUUID();
  private subscriber?: Redis;
  private timer?: NodeJS.Timeout;
  private readonly channel: string;
  /** The hash-tagged prefixes of breaker and cooldown keys, made once. */
  private readonly breakerTag: string;
  private readonly cooldownTag: string;
  /** Per deployment, the end of the last cooldown this replica shared. */
  private readonly sharedCooldowns = new Map<string, number>();

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly target: BreakerSyncTarget,
    private readonly log: Logger,
    private readonly syncMs: number,
  ) {
    this.channel = `${prefix}breaker:events`;
    this.breakerTag = hashTagged(`${prefix}breaker:`);
    this.cooldownTag = hashTagged(`${prefix}cooldown:`);
  }

  /**
   * Breaker keys share one hash tag, so the periodic MGET of them stays in one slot on Redis Cluster;
   * cooldown keys share another (a deployment id may be any string: under one tag a breaker key could
   * read as another deployment's cooldown key), read by a second MGET in the same poll.
   */
  private key(deployment: string): string {
    return this.breakerTag + deployment;
  }

  private coolKey(deployment: string): string {
    return this.cooldownTag + deployment;
  }

  async start(): Promise<void> {
    // A subscriber needs its own connection (works for a single Redis and a Cluster alike).
    const sub = this.redis.duplicate();
    this.subscriber = sub;
    sub.on('error', (err: Error) => this.log.warn({ err: err.message }, 'breaker subscriber error'));
    sub.on('message', (_channel: string, raw: string) => this.apply(raw));
    await sub.subscribe(this.channel);
    await this.poll();
    this.timer = setInterval(() => void this.poll(), this.syncMs);
    this.timer.unref();
  }

  /** Shares a local transition; remote ones are not echoed. */
  publish(t: BreakerTransition): void {
    if (t.source !== 'local' || t.to === 'half_open') return;
    const msg: SharedBreakerMessage = { deployment: t.deployment, state: t.to, until: t.retryAt, reason: t.reason, origin: this.origin };
    const body = JSON.stringify(msg);
    const op =
      t.to === 'open'
        ? this.redis.eval(OPEN_SCRIPT, 1, this.key(t.deployment), this.channel, body, String(Math.max(1, (t.retryAt ?? Date.now()) - Date.now())))
        : this.redis.eval(CLOSE_SCRIPT, 1, this.key(t.deployment), this.channel, body);
    op.catch((err: Error) => this.log.warn({ err: err.message, deployment: t.deployment }, 'could not share breaker state'));
  }

  /**
   * Shares a cooldown this replica started or lengthened (an upstream's Retry-After), so the other
   * replicas stop calling the rate-limited deployment too instead of each earning its own 429.
   */
  shareCooldown(deployment: string, until: number): void {
    const now = Date.now();
    if (until <= now || until < (this.sharedCooldowns.get(deployment) ?? 0) + COOL_SHARE_STEP_MS) return;
    this.sharedCooldowns.set(deployment, until);
    const msg: SharedBreakerMessage = { deployment, state: 'cooling', until, reason: 'rate limited', origin: this.origin };
    this.redis
      .eval(COOL_SCRIPT, 1, this.coolKey(deployment), this.channel, JSON.stringify(msg), String(until - now))
      .catch((err: Error) => this.log.warn({ err: err.message, deployment }, 'could not share a cooldown'));
  }

  private apply(raw: string): void {
    let msg: SharedBreakerMessage;
    try {
      msg = JSON.parse(raw) as SharedBreakerMessage;
    } catch {
      return;
    }
    if (msg.origin === this.origin) return;
    if (msg.state === 'open' && typeof msg.until === 'number' && msg.until > Date.now()) {
      this.target.forceOpen(msg.deployment, msg.until, `shared: ${msg.reason}`);
    } else if (msg.state === 'closed') {
      this.target.forceClose(msg.deployment, `shared: ${msg.reason}`);
    } else if (msg.state === 'cooling' && typeof msg.until === 'number' && msg.until > Date.now()) {
      this.target.coolUntil(msg.deployment, msg.until);
    }
  }

  private async poll(): Promise<void> {
    const ids = this.target.deploymentIds();
    if (ids.length === 0) return;
    try {
      const [open, cooling] = await Promise.all([this.redis.mget(ids.map((id) => this.key(id))), this.redis.mget(ids.map((id) => this.coolKey(id)))]);
      for (const v of [...open, ...cooling]) if (v) this.apply(v);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'breaker state poll failed');
    }
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    const sub = this.subscriber;
    this.subscriber = undefined;
    if (sub) await sub.quit().catch(() => sub.disconnect());
  }
}
