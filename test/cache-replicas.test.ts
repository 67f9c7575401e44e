// Two gateway replicas in two processes sharing the real Redis: an answer cached by one is an exact
// and a semantic hit on the other (within a second when the machine is idle; the test allows a loaded
// one more), and a restarted replica keeps the entries and
// rebuilds its vector index from Redis.
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCI, winkAvailable } from './helpers/services.js';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `iftest:${randomBytes(6).toString('hex')}:`;
const script = fileURLToPath(new URL('./fixtures/cache-replica.ts', import.meta.url));
let available = false;
const children: ChildProcess[] = [];

interface Reply {
  id?: number;
  ready?: boolean;
  indexed?: number;
  cache?: string;
  similarity?: number;
  content?: string;
  upstreamCalls?: number;
}

class Replica {
  private next = 1;
  private readonly waiting = new Map<number, (r: Reply) => void>();
  ready: Promise<Reply>;
  constructor(readonly child: ChildProcess) {
    this.ready = new Promise((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`replica exited with ${code}`)));
      child.on('message', (m: Reply) => {
        if (m.ready) resolve(m);
        else if (m.id !== undefined) this.waiting.get(m.id)?.(m);
      });
    });
  }
  ask(text: string, opts: { stream?: boolean; tenant?: string } = {}): Promise<Reply> {
    const id = this.next++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.child.send({ id, op: 'ask', text, ...opts });
    });
  }
  stats(): Promise<Reply> {
    const id = this.next++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.child.send({ id, op: 'stats' });
    });
  }
  async stop(): Promise<void> {
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.send({ op: 'exit' });
    await exited;
  }
}

function start(): Replica {
  const child = fork(script, [REDIS_URL, prefix], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(child);
  return new Replica(child);
}

beforeAll(async () => {
  const probe = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await probe.connect();
    available = true;
  } catch (err) {
    if (isCI) throw new Error(`Redis is required in CI: ${(err as Error).message}`);
    console.warn(`skipping replica cache tests: ${REDIS_URL} unreachable`);
  } finally {
    probe.disconnect();
  }
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill();
  if (!available) return;
  const r = new Redis(REDIS_URL);
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await r.del(...keys);
  } while (cursor !== '0');
  await r.quit();
});

describe.skipIf(!winkAvailable('the replica cache tests'))('two gateway replicas sharing Redis', () => {
  it('share exact and semantic entries, and a restart keeps them', async (t) => {
    if (!available) return t.skip();
    const a = start();
    const b = start();
    await Promise.all([a.ready, b.ready]);

    const first = await a.ask('What is the tallest mountain in the world?');
    expect(first.cache).toBe('miss');
    // The write reaches B's index through the Redis stream (well within a second on an idle machine;
    // the test allows a loaded one 15 s: timing goals live in bench/).
    await expect.poll(async () => (await b.stats()).indexed ?? 0, { timeout: 15_000, interval: 20 }).toBeGreaterThanOrEqual(1);
    const semantic = await b.ask('Which mountain is the tallest in the world?');
    expect(semantic.cache).toBe('semantic');
    expect(semantic.content).toBe(first.content);
    const exact = await b.ask('What is the tallest mountain in the world?', { stream: true });
    expect(exact.cache).toBe('exact');
    expect(exact.content).toBe(first.content);
    expect(exact.upstreamCalls).toBe(0);

    // A stream cached on B replays on A.
    const streamed = await b.ask('List three rivers in Europe.', { stream: true });
    expect(streamed.cache).toBe('miss');
    await expect.poll(async () => (await a.ask('List three rivers in Europe.', { stream: true })).cache, { timeout: 15_000, interval: 50 }).toBe('exact');

    // Restart A: a fresh process rebuilds its index from Redis.
    await a.stop();
    const a2 = start();
    const ready = await a2.ready;
    expect(ready.indexed).toBeGreaterThanOrEqual(2);
    const again = await a2.ask("Which mountain is the tallest in the world?");
    expect(again.cache).toBe('semantic');
    expect(again.upstreamCalls).toBe(0);
    await Promise.all([a2.stop(), b.stop()]);
  }, 60_000);
});
