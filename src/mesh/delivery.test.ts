// Chunk appends on the real Redis and Redis Cluster: a turn's chunks for a callback stream land in
// order (they leave in one socket write: store/redis.test.ts checks the coalescing), and a refused
// append rejects.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { redisTargets } from '../../test/helpers/redis.js';
import { appendChunk } from './delivery.js';
import { decodeEvent, entryData, type MeshEvent } from './contracts.js';

const targets = await redisTargets();
const run = randomBytes(4).toString('hex');

afterAll(async () => {
  for (const t of targets) await t.cleanup(`{append-test:${run}}*`);
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

  it_('rejects an append Redis refuses', async () => {
    const redis = target.connect();
    const key = `{append-test:${run}}:${target.name}:not-a-stream`;
    await redis.set(key, 'a string');
    await expect(appendChunk(redis, key, chunk(0))).rejects.toThrow(/WRONGTYPE/);
  });
});
