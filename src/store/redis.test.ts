// The Redis connection settings: `redis+cluster://` URLs and REDIS_CLUSTER_NODES give a cluster
// client, hash-tagged namespaces keep multi-key scripts in one slot, and SCAN reaches every master.
import { randomUUID } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { Cluster, Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { buildConfig } from '../config/load.js';
import { compareEntryIds, createRedis, createSharedStateRedis, hashTagged, isClusterUrl, isCrossSlotError, masters, parseClusterUrl, scanKeys } from './redis.js';
import { redisTargets } from '../../test/helpers/redis.js';

describe('Redis Cluster URLs', () => {
  it('parses nodes, credentials and TLS', () => {
    expect(parseClusterUrl('redis+cluster://127.0.0.1:7101,127.0.0.1:7102/')).toEqual({
      nodes: [
        { host: '127.0.0.1', port: 7101 },
        { host: '127.0.0.1', port: 7102 },
      ],
      username: undefined,
      password: undefined,
      tls: false,
    });
    expect(parseClusterUrl('rediss+cluster://app:p%40ss@redis-a,[::1]:7000')).toEqual({
      nodes: [
        { host: 'redis-a', port: 6379 },
        { host: '::1', port: 7000 },
      ],
      username: 'app',
      password: 'p@ss',
      tls: true,
    });
  });

  it('refuses a URL with no nodes and tells plain URLs apart', () => {
    expect(() => parseClusterUrl('redis+cluster://')).toThrow(/at least one/);
    expect(isClusterUrl('redis://127.0.0.1:6379')).toBe(false);
    expect(isClusterUrl('REDIS+CLUSTER://a:1')).toBe(true);
  });

  it('REDIS_CLUSTER_NODES becomes the one redis.url every module reads; REDIS_URL wins', () => {
    const env = { REDIS_CLUSTER_NODES: '10.0.0.1:7000, 10.0.0.2:7000', REDIS_PASSWORD: 's/cret' };
    expect(buildConfig({}, env).config.redis.url).toBe('redis+cluster://:s%2Fcret@10.0.0.1:7000,10.0.0.2:7000');
    expect(buildConfig({}, { ...env, REDIS_URL: 'redis://r:6379' }).config.redis.url).toBe('redis://r:6379');
    expect(parseClusterUrl(buildConfig({}, env).config.redis.url as string).password).toBe('s/cret');
  });

  it('builds a cluster client for a cluster URL and a plain one otherwise, without connecting', () => {
    const c = createRedis('redis+cluster://127.0.0.1:1', 'unit', { lazyConnect: true });
    const r = createRedis('redis://127.0.0.1:1', 'unit', { lazyConnect: true });
    try {
      expect(c).toBeInstanceOf(Cluster);
      expect(r).toBeInstanceOf(Redis);
      expect(masters(r)).toEqual([r]);
    } finally {
      c.disconnect();
      r.disconnect();
    }
  });
});

describe('compareEntryIds', () => {
  it('orders stream entry ids as Redis does: by time, then sequence, numerically', () => {
    const ids = ['1700000000000-10', '1700000000000-9', '999999999999-5', '1700000000001-0', '1700000000000-9', '1700000000000'];
    expect([...ids].sort(compareEntryIds)).toEqual(['999999999999-5', '1700000000000', '1700000000000-9', '1700000000000-9', '1700000000000-10', '1700000000001-0']);
    expect(compareEntryIds('5-1', '5-1')).toBe(0);
    expect(Math.sign(compareEntryIds('10-0', '9-99'))).toBe(1);
  });
});

describe('hash-tagged namespaces', () => {
  it('wraps a namespace in one tag and keeps an existing tag', () => {
    expect(hashTagged('inferenceflow:gpu:')).toBe('{inferenceflow:gpu:}');
    expect(hashTagged('{tenant-7}:rl:')).toBe('{tenant-7}:rl:');
  });

  it('follows Redis Cluster: only the first `{` and the first `}` after it make the tag, and only if not empty', () => {
    // The first pair is empty: Redis hashes the whole key, whatever `{c}` comes later.
    expect(hashTagged('a{}b{c}:')).toBe('{a{}b{c}:}');
    expect(hashTagged('{}x{y}:')).toBe('{{}x{y}:}');
    // A `{` with no `}` after it, or a `}` before the first `{`, is no tag of its own.
    expect(hashTagged('a{b:')).toBe('{a{b:}');
    // Tags Redis does use are kept: `b{c` (from the first `{` to the first `}`), `b`, `b` then an empty pair.
    expect(hashTagged('a{b{c}:')).toBe('a{b{c}:');
    expect(hashTagged('a}{b}:')).toBe('a}{b}:');
    expect(hashTagged('a{b}c{}:')).toBe('a{b}c{}:');
  });
});

const targets = await redisTargets();
const run = randomUUID();
afterAll(async () => {
  for (const t of targets) if (t.available) await t.cleanup(`*test:${run}:*`);
});

describe.each(targets.map((t) => [t.name, t] as const))('on %s', (_name, target) => {
  const it_ = target.available ? it : it.skip;

  it_('runs one script over several keys of a hash-tagged namespace', async () => {
    const redis = target.connect();
    const ns = hashTagged(`test:${run}:${target.name}:pair:`);
    const swap = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[2]); return redis.call('MGET', KEYS[1], KEYS[2])";
    expect(await redis.eval(swap, 2, `${ns}a`, `${ns}b`, 'x', 'y')).toEqual(['x', 'y']);
    const tx = await redis.multi().incr(`${ns}a-count`).incr(`${ns}b-count`).exec();
    expect(tx?.map(([, v]) => v)).toEqual([1, 1]);
  });

  it_('runs one script over keys of a namespace whose first braces are empty (`a{}b{c}:`)', async () => {
    const redis = target.connect();
    const ns = hashTagged(`test:${run}:${target.name}:e{}b{c}:`);
    const pair = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[2]); return redis.call('MGET', KEYS[1], KEYS[2])";
    expect(await redis.eval(pair, 2, `${ns}first`, `${ns}second`, 'x', 'y')).toEqual(['x', 'y']);
  });

  it_('says when a script\'s keys span slots, whether Redis or the client refuses it', async () => {
    const redis = target.connect();
    const script = "return redis.call('SET', KEYS[1], ARGV[1])";
    const apart = [`test:${run}:{one}:a`, `test:${run}:{two}:b`];
    const outcome = await redis.eval(script, 2, ...apart, 'x').then(
      () => 'ran',
      (err: unknown) => (isCrossSlotError(err) ? 'cross-slot' : String(err)),
    );
    // One server holds every slot; a cluster refuses.
    expect(outcome).toBe(redis instanceof Cluster ? 'cross-slot' : 'ran');
    expect(isCrossSlotError(new Error("CROSSSLOT Keys in request don't hash to the same slot"))).toBe(true);
    expect(isCrossSlotError(new Error('NOSCRIPT'))).toBe(false);
  });

  it_('sends the commands of one event-loop turn in one socket write per connection, answers unchanged', async () => {
    const redis = target.connect();
    const ns = hashTagged(`test:${run}:${target.name}:coalesce:`);
    await redis.set(`${ns}warm`, '1'); // connected (for a cluster: the node that owns the tag)
    // On a cluster, the master that owns the tag's slot.
    const slot = redis instanceof Cluster ? Number(await redis.call('CLUSTER', 'KEYSLOT', `${ns}warm`)) : 0;
    const owner = redis instanceof Cluster ? (redis as unknown as { slots: string[][] }).slots[slot]?.[0] : undefined;
    const node = redis instanceof Cluster ? masters(redis).find((m) => `${m.options.host}:${m.options.port}` === owner) : redis;
    expect(node?.stream).toBeDefined();
    const socket = node!.stream as unknown as { _write: (...a: unknown[]) => void; _writev: (chunks: unknown[], cb: unknown) => void };
    const writes: number[] = [];
    const origWrite = socket._write;
    const origWritev = socket._writev;
    socket._write = function (...a: unknown[]) {
      writes.push(1);
      return origWrite.apply(this, a);
    };
    socket._writev = function (chunks: unknown[], cb: unknown) {
      writes.push(chunks.length);
      return origWritev.call(this, chunks, cb);
    };
    try {
      const buf = Buffer.from([0, 1, 2, 255]);
      // 40 commands from one turn, Buffer arguments (written as several pieces each) among them.
      const replies = await Promise.all(
        Array.from({ length: 20 }, (_, i) => [redis.set(`${ns}k${i}`, buf), redis.getBuffer(`${ns}k${i}`)]).flat(),
      );
      for (let i = 0; i < 20; i++) expect(replies[2 * i + 1]).toEqual(buf);
      expect(writes).toHaveLength(1);
      expect(writes[0]).toBeGreaterThanOrEqual(40);
      // Commands in later turns are not held back: each turn's batch leaves by itself.
      expect(await redis.get(`${ns}k0`)).toBe(buf.toString());
    } finally {
      socket._write = origWrite;
      socket._writev = origWritev;
    }
  });

  it_('finds keys on every master with SCAN', async () => {
    const redis = target.connect();
    // Untagged keys spread over the slots (and so over every master of a cluster).
    const keys = Array.from({ length: 30 }, (_, i) => `test:${run}:${target.name}:spread:${i}`);
    for (const k of keys) await redis.set(k, '1');
    if (redis instanceof Cluster) expect(masters(redis).length).toBeGreaterThan(1);
    expect((await scanKeys(redis, `test:${run}:${target.name}:spread:*`)).sort()).toEqual([...keys].sort());
  });
});

describe('createRedis while Redis is away', () => {
  it('fails a command after commandTimeout, however long the reconnect backoff has grown', async () => {
    // A port nothing listens on: the client keeps reconnecting with a backoff that grows to 5 s.
    const closed = await new Promise<number>((resolve) => {
      const srv = createServer();
      srv.listen(0, '127.0.0.1', () => {
        const port = (srv.address() as AddressInfo).port;
        srv.close(() => resolve(port));
      });
    });
    const client = createRedis(`redis://127.0.0.1:${closed}`, 'test-away', { commandTimeout: 300 });
    client.on('error', () => undefined);
    try {
      // Long enough for the backoff to reach 1.6 s: a queued command would otherwise wait out two
      // reconnect attempts (seconds, up to ~15 s once the backoff reaches its 5 s cap).
      await new Promise((r) => setTimeout(r, 1_600));
      await expect(client.get('k')).rejects.toThrow(/Command timed out/);
    } finally {
      client.disconnect();
    }
  });

  it('gives the shared-state client the configured command timeout, 2 s by default', () => {
    for (const [config, want] of [[{}, 2_000], [{ command_timeout_ms: 500 }, 500]] as const) {
      const redis = buildConfig({ redis: { url: 'redis://127.0.0.1:1', ...config } }, {}).config.redis;
      const client = createSharedStateRedis({ ...redis, url: redis.url as string }) as Redis;
      client.on('error', () => undefined);
      try {
        expect(client.options.commandTimeout).toBe(want);
        // Its duplicates (the cache's follower, the breaker subscriber) keep it.
        const copy = client.duplicate();
        expect(copy.options.commandTimeout).toBe(want);
        copy.disconnect();
      } finally {
        client.disconnect();
      }
    }
  });
});
