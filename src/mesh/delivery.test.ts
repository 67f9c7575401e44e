// StreamAppender on the real Redis and Redis Cluster: appends made in one event-loop turn reach
// Redis as one pipeline per stream, in order, each resolving once stored; a failure rejects each one.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { redisTargets } from '../../test/helpers/redis.js';
import { StreamAppender } from './delivery.js';
import { entryData } from './contracts.js';

const targets = await redisTargets();
const run = randomBytes(4).toString('hex');

afterAll(async () => {
  for (const t of targets) await t.cleanup(`appender-test:${run}:*`);
});

describe.each(targets.map((t) => [t.name, t] as const))('StreamAppender on %s', (_name, target) => {
  const it_ = target.available ? it : it.skip;

  it_('sends one turn\'s appends as one pipeline per stream, in order, trimmed to its limit', async () => {
    const redis = target.connect();
    const pipelines: number[] = [];
    const pipeline = redis.pipeline.bind(redis);
    // Count the pipelines the appender opens (each is one write to Redis).
    redis.pipeline = ((...args: Parameters<typeof pipeline>) => (pipelines.push(1), pipeline(...args))) as typeof redis.pipeline;
    const appender = new StreamAppender(redis, 50);
    const a = `appender-test:${run}:${target.name}:a`;
    const b = `appender-test:${run}:${target.name}:b`;
    await Promise.all([...Array.from({ length: 400 }, (_, i) => appender.append(a, `a${i}`)), appender.append(b, 'b0')]);
    expect(pipelines).toHaveLength(2);
    const entries = (await redis.xrange(a, '-', '+')) as [string, string[]][];
    const bodies = entries.map(([, fields]) => entryData(fields));
    // Approximate trim (whole stream nodes of 100) keeps at least the limit and the newest, in order.
    expect(bodies.length).toBeGreaterThanOrEqual(50);
    expect(bodies.length).toBeLessThan(400);
    expect(bodies.at(-1)).toBe('a399');
    expect(bodies).toEqual(bodies.map((_, i) => `a${400 - bodies.length + i}`));
    expect(((await redis.xrange(b, '-', '+')) as [string, string[]][]).map(([, f]) => entryData(f))).toEqual(['b0']);

    // A later turn is a new pipeline.
    await appender.append(b, 'b1');
    expect(pipelines).toHaveLength(3);
  });

  it_('rejects every append of a batch Redis refuses', async () => {
    const redis = target.connect();
    const appender = new StreamAppender(redis);
    const key = `appender-test:${run}:${target.name}:not-a-stream`;
    await redis.set(key, 'a string');
    const results = await Promise.allSettled([appender.append(key, 'x'), appender.append(key, 'y')]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/WRONGTYPE/);
  });
});

describe('StreamAppender replies', () => {
  /** Just enough of a client: a pipeline whose exec answers as told, and a plain XADD that records. */
  function fakeRedis(pipelineReplies: () => Promise<[Error | null, unknown][] | null>, xadd: (body: string) => Promise<string>) {
    return {
      pipeline: () => {
        const pipe = { call: () => pipe, exec: pipelineReplies };
        return pipe;
      },
      call: (...args: unknown[]) => xadd(String(args.at(-1))),
    } as unknown as ConstructorParameters<typeof StreamAppender>[0];
  }

  it('sends again, one by one and in order, what a pipeline half refused (a slot moved mid-batch)', async () => {
    const resent: string[] = [];
    const moved = new Error('MOVED 1234 127.0.0.1:7102');
    const redis = fakeRedis(
      async () => [[null, '1-0'], [moved, null], [moved, null]],
      async (body) => (resent.push(body), '2-0'),
    );
    const appender = new StreamAppender(redis);
    await expect(Promise.all(['a', 'b', 'c'].map((b) => appender.append('s', b)))).resolves.toEqual([undefined, undefined, undefined]);
    expect(resent).toEqual(['b', 'c']);
  });

  it('rejects what cannot be stored without sending it again, and a pipeline that cannot even be built', async () => {
    const resent: string[] = [];
    const appender = new StreamAppender(fakeRedis(async () => [[new Error('WRONGTYPE Operation against a key holding the wrong kind of value'), null], [null, '1-0']], async (body) => (resent.push(body), '2-0')));
    const [first, second] = await Promise.allSettled([appender.append('s', 'x'), appender.append('s', 'y')]);
    expect(first).toMatchObject({ status: 'rejected', reason: expect.objectContaining({ message: expect.stringMatching(/^WRONGTYPE/) }) });
    expect(second).toMatchObject({ status: 'fulfilled' });
    expect(resent).toEqual([]);

    const broken = { pipeline: () => { throw new Error('connection closed'); } } as unknown as ConstructorParameters<typeof StreamAppender>[0];
    await expect(new StreamAppender(broken).append('s', 'z')).rejects.toThrow('connection closed');
  });
});
