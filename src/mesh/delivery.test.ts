// The delivery scripts on the real Redis and Redis Cluster. Chunk appends: a turn's chunks for a
// callback stream land in order (they leave in one socket write: store/redis.test.ts checks the
// coalescing), and a refused append rejects. Placement and final delivery go by whether the source
// entry is still pending in the router group — whichever router's consumer it is under (XACK does
// not check the consumer): an entry is placed once, a "no node" answer is not delivered once the
// entry was placed, and when a stalled router's entry was taken over but not yet placed, the first
// of the two to act wins and the other writes nothing.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { redisTargets } from '../../test/helpers/redis.js';
import { appendChunk, deliverFinal, expireCallback, placeOnNode } from './delivery.js';
import { decodeEvent, entryData, FIELD, meshKeys, ROUTER_GROUP, type MeshEvent } from './contracts.js';

const targets = await redisTargets();
const run = randomBytes(4).toString('hex');

afterAll(async () => {
  for (const t of targets) {
    await t.cleanup(`{append-test:${run}}*`);
    await t.cleanup(`*place-test:${run}:*`);
  }
});

const chunk = (i: number): MeshEvent => ({ type: 'chunk', id: 'r1', exec: 'n1:1:abc', node: 'n1', chunk: { id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: `w${i}` }, finish_reason: null }] } });

describe.each(targets.map((t) => [t.name, t] as const))('appendChunk on %s', (_name, target) => {
  const it_ = target.available ? it : it.skip;

  it_('lands one turn\'s chunks in order', async () => {
    const redis = target.connect();
    const stream = `{append-test:${run}}:${target.name}:cb`;
    await redis.set(`{append-test:${run}}:${target.name}:warm`, '1'); // the node that owns the tag is connected
    await Promise.all(Array.from({ length: 200 }, (_, i) => appendChunk(redis, stream, chunk(i))));
    const entries = (await redis.xrange(stream, '-', '+')) as [string, string[]][];
    const texts = entries.map(([, f]) => {
      const e = decodeEvent(entryData(f) as string);
      return e?.type === 'chunk' ? e.chunk.choices[0]?.delta.content : undefined;
    });
    expect(texts).toEqual(Array.from({ length: 200 }, (_, i) => `w${i}`));
  });

  it_('keeps every event its requester has not read, however far behind the reader is', async () => {
    const redis = target.connect();
    const stream = `{append-test:${run}}:${target.name}:backlog`;
    // More than the 100,000 entries the stream was once capped at: a reader that fell that far behind
    // (a thousand streams in flight and a reconnect) lost the oldest, unread, and the answer with them.
    const backlog = 100_500;
    for (let from = 0; from < backlog; from += 10_000) {
      await Promise.all(Array.from({ length: Math.min(10_000, backlog - from) }, (_, i) => appendChunk(redis, stream, chunk(from + i))));
    }
    const keys = meshKeys(`{append-test:${run}}:${target.name}:`, false);
    expect(await deliverFinal(redis, keys, { id: 'r1', callback: stream }, { type: 'done', id: 'r1', exec: 'n1:1:abc', node: 'n1' }, undefined)).toBe(true);
    expect(await redis.xlen(stream)).toBe(backlog + 1);
    const [oldest] = (await redis.xrange(stream, '-', '+', 'COUNT', 1)) as [string, string[]][];
    expect(decodeEvent(entryData(oldest?.[1] ?? []) as string)).toMatchObject({ type: 'chunk', chunk: { choices: [{ delta: { content: 'w0' } }] } });
    await redis.del(stream);
  }, 60_000);

  it_('gives a callback stream recreated by a cancelled run an expiry', async () => {
    const redis = target.connect();
    const stream = `{append-test:${run}}:${target.name}:deleted-cb`;
    await appendChunk(redis, stream, chunk(0));
    await redis.del(stream); // the requester closed (MeshClient.close deletes its stream)
    await appendChunk(redis, stream, chunk(1)); // the run, still streaming, recreates it
    expect(await redis.pttl(stream)).toBe(-1);
    await expireCallback(redis, stream); // the worker, once the run is cancelled
    const ttl = await redis.pttl(stream);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60 * 60 * 1000);
  });

  it_('rejects an append Redis refuses', async () => {
    const redis = target.connect();
    const key = `{append-test:${run}}:${target.name}:not-a-stream`;
    await redis.set(key, 'a string');
    await expect(appendChunk(redis, key, chunk(0))).rejects.toThrow(/WRONGTYPE/);
  });
});

describe.each(targets.map((t) => [t.name, t] as const))('placement and final delivery on %s', (_name, target) => {
  const it_ = target.available ? it : it.skip;
  const keys = meshKeys(`place-test:${run}:${target.name}:`, target.name === 'redis-cluster');

  /** An ingress entry read by router A: pending in the router group under A's consumer. */
  async function readByA(redis: ReturnType<typeof target.connect>, name: string) {
    const stream = `${keys.requests}:${name}`;
    await redis.xgroup('CREATE', stream, ROUTER_GROUP, '0', 'MKSTREAM');
    const id = (await redis.xadd(stream, '*', FIELD, '{}'))!;
    await redis.xreadgroup('GROUP', ROUTER_GROUP, 'A', 'COUNT', 1, 'STREAMS', stream, '>');
    return { stream, group: ROUTER_GROUP, id };
  }

  const noNode = (id: string): MeshEvent => ({ type: 'error', id, exec: 'router:A', node: '', error: { kind: 'no_available_nodes', message: 'none', status: 503 } });

  it_('places an entry once: the second placement finds it no longer pending and writes nothing', async () => {
    const redis = target.connect();
    const source = await readByA(redis, 'place');
    const [n1, n2] = [keys.nodeRequests('n1'), keys.nodeRequests('n2')];
    expect(await placeOnNode(redis, n2, keys.nodeStreams, 'n2', '{"by":"first"}', source)).toMatch(/^\d+-\d+$/);
    expect(await placeOnNode(redis, n1, keys.nodeStreams, 'n1', '{"by":"second"}', source)).toBeUndefined();
    expect(await redis.xlen(n1)).toBe(0);
    expect(await redis.xlen(n2)).toBe(1);
    expect(await redis.smembers(keys.nodeStreams)).toEqual(['n2']);
    expect(await redis.xlen(source.stream)).toBe(0);
  });

  // A callback stream outside the mesh's hash tag (an outside requester's) takes the step-by-step path on a cluster.
  it_.each([['its own callback stream', keys.callbacks('requester')], ['an outside callback stream', `place-test:${run}:${target.name}:outside-cb`]])('a "no node" answer that requires the entry is not delivered once the entry was placed; an answer is (%s)', async (_what, callback) => {
    const redis = target.connect();
    const source = await readByA(redis, `final-${callback.length}`);
    await placeOnNode(redis, keys.nodeRequests('n3'), keys.nodeStreams, 'n3', '{}', source);
    const req = { id: `req-final-${callback.length}`, callback };
    expect(await deliverFinal(redis, keys, req, noNode(req.id), source, 0, { requireHeld: true })).toBe(false);
    expect(await redis.exists(keys.done(req.id))).toBe(0);
    expect(await redis.exists(req.callback)).toBe(0);
    // A node's answer does not need the entry (its run is as good as any): it is delivered once.
    const result: MeshEvent = { type: 'done', id: req.id, exec: 'n1:1:abc', node: 'n1' };
    expect(await deliverFinal(redis, keys, req, result, source)).toBe(true);
    expect(await deliverFinal(redis, keys, req, { ...result, exec: 'n3:2:def' }, source)).toBe(false);
    expect(await redis.xlen(req.callback)).toBe(1);
  });

  it_('a "no node" answer from the router still holding the entry is delivered', async () => {
    const redis = target.connect();
    const source = await readByA(redis, 'held');
    const req = { id: 'req-held', callback: keys.callbacks('requester-2') };
    expect(await deliverFinal(redis, keys, req, noNode(req.id), source, 0, { requireHeld: true })).toBe(true);
    expect(await redis.xlen(req.callback)).toBe(1);
    expect(await redis.xlen(source.stream)).toBe(0);
  });

  it_.each([['its own callback stream', keys.callbacks('requester-3')], ['an outside callback stream', `place-test:${run}:${target.name}:outside-cb-3`]])(
    'a stalled router whose entry was taken over but not yet placed still delivers its "no node" answer; the taker\'s placement then writes nothing (%s)',
    async (_what, callback) => {
      const redis = target.connect();
      const source = await readByA(redis, `taken-${callback.length}`);
      // Router B reclaims the entry (A stalled past idle_reclaim_ms): it is pending under B now.
      await redis.xautoclaim(source.stream, ROUTER_GROUP, 'B', 0, '0-0');
      const pending = (await redis.xpending(source.stream, ROUTER_GROUP, '-', '+', 10)) as [string, string, number, number][];
      expect(pending.map(([id, consumer]) => [id, consumer])).toEqual([[source.id, 'B']]);
      // A, waking, answers "no node": still pending in the group is "held", whoever's consumer it is under.
      const req = { id: `req-taken-${callback.length}`, callback };
      expect(await deliverFinal(redis, keys, req, noNode(req.id), source, 0, { requireHeld: true })).toBe(true);
      expect(await redis.xlen(req.callback)).toBe(1);
      // B places it afterwards: the entry is no longer pending, so nothing reaches a node.
      const n4 = keys.nodeRequests(`n4-${callback.length}`);
      expect(await placeOnNode(redis, n4, keys.nodeStreams, 'n4', '{"by":"B"}', source)).toBeUndefined();
      expect(await redis.xlen(n4)).toBe(0);
      expect(await redis.xlen(source.stream)).toBe(0);
    },
  );
});
