// The semantic index in its worker thread, seen from the cache: what users rely on (a put is found
// by the next lookup, deletes and evictions stop hits, tenants stay apart, the guards still refuse,
// lost events are reconciled) holds with the index threaded and in-thread alike, and a worker that
// dies leaves a cache that keeps answering and rebuilds its index from the store.
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { describe, expect, it, vi } from 'vitest';
import { staticEmbedderSuite } from '../../test/helpers/static-embedder.js';
import { seededVectors } from '../../test/helpers/vectors.js';
import { cacheConfigSchema } from './config.js';
import { annFromConfig, createResponseCache } from './create.js';
import { ResponseCache, type SemanticSettings } from './response-cache.js';
import { MemoryCacheStore } from './stores/memory.js';
import type { CacheStore } from './stores/types.js';
import { laggingStore, userRequest } from './test-helpers.js';
import { ThreadedVectorIndex } from './threaded-index.js';
import { loadUsearch } from './vector-index.js';

const suite = staticEmbedderSuite('the threaded semantic index tests');
const { hasWink, caches } = suite;

const answer = (text: string) => ({ kind: 'result' as const, result: { id: 'x', object: 'chat.completion' as const, created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant' as const, content: text }, finish_reason: 'stop' as const, logprobs: null }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } } });

interface Setup {
  thread: boolean;
  threshold?: number;
  store?: CacheStore;
  maxBytes?: number;
}

/** A cache over the memory store, its index chosen as create.ts chooses it from `cache.semantic.index`. */
async function setup(o: Setup) {
  const cfg = cacheConfigSchema.parse({ semantic: { enabled: true, threshold: o.threshold ?? 0.85, index: { thread: o.thread } } });
  const ann = annFromConfig(cfg.semantic.index);
  const semantic: SemanticSettings = { embedder: suite.embedder, threshold: cfg.semantic.threshold, maxTemperature: 1, annFactory: ann.factory, indexKind: ann.kind };
  if (cfg.semantic.index.thread) semantic.indexThread = { kind: ann.kind, tuning: ann.tuning };
  const errors: { err: unknown; what: string }[] = [];
  const store = o.store ?? new MemoryCacheStore({ maxBytes: o.maxBytes ?? 1e7 });
  const cache = await ResponseCache.create({ store, ttlMs: 60_000, compressMinBytes: 256, semantic, onError: (err, what) => errors.push({ err, what }) });
  caches.push(cache);
  /** Looks up `text` for `tenant`, and stores an answer on a miss unless told not to. */
  const ask = async (text: string, tenant = 'acme', store = true) => {
    const { probe, hit } = await cache.lookup(tenant, userRequest(text));
    if (!hit && store) await cache.put(probe, answer(`answer to ${text}`), { tokens: 2, costUsd: 0.001 });
    return { kind: hit?.kind ?? 'miss', similarity: hit?.similarity, content: hit?.answer.kind === 'result' ? hit.answer.result.choices[0]?.message.content : undefined };
  };
  return { cache, store, ask, errors };
}

describe.skipIf(!hasWink).each([true, false])('the semantic cache with cache.semantic.index.thread %s', (thread) => {
  it('finds a paraphrase of what was just stored, for its tenant only', async () => {
    const { cache, ask, errors } = await setup({ thread });
    expect(cache.indexWorker !== undefined).toBe(thread);
    expect(await ask('What is the tallest mountain in the world?')).toMatchObject({ kind: 'miss' });
    // No wait: the add was posted before this search, on the same port.
    const para = await ask('Which mountain is the tallest in the world?');
    expect(para).toMatchObject({ kind: 'semantic', content: 'answer to What is the tallest mountain in the world?' });
    expect(para.similarity).toBeGreaterThanOrEqual(0.85);
    expect(await ask('Which mountain is the tallest in the world?', 'globex', false)).toMatchObject({ kind: 'miss' });
    const stats = await cache.stats();
    expect(stats.semantic).toMatchObject({ enabled: true, indexedEntries: 1, index: loadUsearch() ? 'usearch' : 'typescript-hnsw' });
    expect(stats.hits.semantic).toBe(1);
    expect(errors).toEqual([]);
  });

  it('still lets the guards refuse a different question however similar', async () => {
    const { cache, ask } = await setup({ thread, threshold: 0.3 });
    await ask('What is 2+2?');
    expect(await ask('What is 3+5?', 'acme', false)).toMatchObject({ kind: 'miss' });
    expect((await cache.stats()).semantic.guardRejections.numbers).toBe(1);
  });

  it('stops answering from an entry deleted or evicted from the store', async () => {
    const { cache, ask } = await setup({ thread });
    await ask('What is the tallest mountain in the world?');
    expect(await cache.invalidate({ namespace: 'acme' })).toBe(1);
    expect(cache.indexedEntries).toBe(0);
    expect(await ask('Which mountain is the tallest in the world?', 'acme', false)).toMatchObject({ kind: 'miss' });

    // Room for two semantic entries: the third evicts the first.
    const small = await setup({ thread, maxBytes: 7000 });
    await small.ask('What is the tallest mountain in the world?');
    await small.ask('How do plants make food from sunlight?');
    await small.ask('Why is the sky blue during the day?');
    const stats = await small.cache.stats();
    expect(stats.evictions).toBeGreaterThan(0);
    expect(small.cache.indexedEntries).toBe(stats.entries);
    expect(await small.ask('Which mountain is the tallest in the world?', 'acme', false)).toMatchObject({ kind: 'miss' });
    expect(await small.ask('During the day, why is the sky blue?', 'acme', false)).toMatchObject({ kind: 'semantic' });
  });

  it('reconciles its index with the store after lost change events', async () => {
    // The cache hears only what the test lets through, as a lagging Redis follower would.
    const { inner, store, mute, deliver } = laggingStore();
    const { cache, ask } = await setup({ thread, store });
    await ask('How do plants make food from sunlight?');
    mute(true);
    await inner.invalidate({ namespace: 'acme' });
    await ask('What is the tallest mountain in the world?');
    mute(false);
    expect(cache.indexedEntries).toBe(1); // the lost delete
    expect(await ask('Which mountain is the tallest in the world?', 'acme', false)).toMatchObject({ kind: 'miss' }); // the lost add
    deliver({ op: 'resync' });
    await expect.poll(() => cache.reconciles, { timeout: 2000, interval: 5 }).toBe(1);
    expect(cache.indexedEntries).toBe(1);
    expect(await ask('Which mountain is the tallest in the world?', 'acme', false)).toMatchObject({ kind: 'semantic' });
    expect(await ask('How do plants make their food from sunlight?', 'acme', false)).toMatchObject({ kind: 'miss' });
  });
});

describe.skipIf(!hasWink)('a semantic index worker that dies', () => {
  it('leaves a cache that keeps answering, reports it once, and rebuilds the index from the store', async () => {
    const { cache, ask, errors } = await setup({ thread: true });
    await ask('What is the tallest mountain in the world?');
    await ask('How do plants make food from sunlight?');
    expect(await ask('Which mountain is the tallest in the world?', 'acme', false)).toMatchObject({ kind: 'semantic' });
    const worker = cache.indexWorker!;
    // The next search never reaches the worker, which is stopped instead: it is in flight when the
    // worker goes, and comes back a miss, not an error.
    const post = worker.postMessage.bind(worker);
    worker.postMessage = (m: unknown) => {
      if ((m as { op?: string }).op === 'search') void worker.terminate();
      else post(m);
    };
    const missesBefore = (await cache.stats()).misses;
    expect(await ask('Which mountain is the tallest in the world?', 'acme', false)).toMatchObject({ kind: 'miss' });
    expect((await cache.stats()).misses).toBe(missesBefore + 1);
    await expect.poll(() => cache.reconciles, { timeout: 2000, interval: 5 }).toBe(1);
    expect(cache.indexWorker).toBeUndefined();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ what: 'cache index worker' });
    expect(cache.indexedEntries).toBe(2);
    // The entries stored before it died answer again, from the index in this thread; new ones too.
    expect(await ask('Which mountain is the tallest in the world?', 'acme', false)).toMatchObject({ kind: 'semantic' });
    await ask('Why is the sky blue during the day?');
    expect(await ask('During the day, why is the sky blue?', 'acme', false)).toMatchObject({ kind: 'semantic' });
    expect(errors).toHaveLength(1);
  });

  it('falls back the same way when it dies idle', async () => {
    const { cache, ask, errors } = await setup({ thread: true });
    await ask('What is the tallest mountain in the world?');
    await cache.indexWorker!.terminate();
    await expect.poll(() => cache.reconciles, { timeout: 2000, interval: 5 }).toBe(1);
    expect(errors.map((e) => e.what)).toEqual(['cache index worker']);
    expect(String(errors[0]?.err)).toMatch(/semantic index worker exited/);
    expect(await ask('Which mountain is the tallest in the world?', 'acme', false)).toMatchObject({ kind: 'semantic' });
  });

  it('falls back the same way when it cannot build its index', async () => {
    const store = new MemoryCacheStore({ maxBytes: 1e7 });
    const errors: string[] = [];
    const cache = await ResponseCache.create({
      store,
      ttlMs: 60_000,
      compressMinBytes: 256,
      semantic: {
        embedder: suite.embedder,
        threshold: 0.85,
        maxTemperature: 1,
        annFactory: annFromConfig({ ...cacheConfigSchema.parse({}).semantic.index, implementation: 'typescript' }).factory,
        indexThread: { kind: 'usearch', tuning: {}, usearchPath: '/nonexistent/usearch' },
      },
      onError: (err, what) => errors.push(`${what}: ${String(err)}`),
    });
    caches.push(cache);
    const { probe } = await cache.lookup('acme', userRequest('What is the tallest mountain in the world?'));
    await cache.put(probe, answer('Everest'), { tokens: 2, costUsd: 0 });
    await expect.poll(() => cache.indexWorker, { timeout: 5000, interval: 5 }).toBeUndefined();
    await expect.poll(() => cache.reconciles, { timeout: 2000, interval: 5 }).toBe(1);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^cache index worker: .*could not load usearch from \/nonexistent\/usearch/);
    expect((await cache.lookup('acme', userRequest('Which mountain is the tallest in the world?'))).hit?.kind).toBe('semantic');
  });

  it('is stopped when the cache it was started for fails to start', async () => {
    const store = new MemoryCacheStore({ maxBytes: 1e7 });
    store.start = () => Promise.reject(new Error('store unavailable'));
    const closed = vi.spyOn(ThreadedVectorIndex.prototype, 'close');
    try {
      await expect(setup({ thread: true, store })).rejects.toThrow(/store unavailable/);
      expect(closed).toHaveBeenCalledTimes(1);
    } finally {
      closed.mockRestore();
    }
  });

  it('is stopped by close() without being reported', async () => {
    const { cache, ask, errors } = await setup({ thread: true });
    await ask('What is the tallest mountain in the world?');
    const exited = once(cache.indexWorker!, 'exit');
    await cache.close();
    await exited;
    expect(errors).toEqual([]);
  });

  it('reports an add or remove it failed to apply, and goes on serving', async () => {
    const { cache, ask, errors } = await setup({ thread: true });
    await ask('What is the tallest mountain in the world?');
    cache.indexWorker!.postMessage({ id: 0, op: 'rebalance' });
    await expect.poll(() => errors.length, { timeout: 2000, interval: 5 }).toBe(1);
    expect(errors[0]).toMatchObject({ what: 'cache index update' });
    expect(String(errors[0]?.err)).toMatch(/unknown semantic index message "rebalance"/);
    expect(await ask('Which mountain is the tallest in the world?', 'acme', false)).toMatchObject({ kind: 'semantic' });
    expect(cache.indexWorker).toBeDefined();
  });
});

describe('createResponseCache and cache.semantic.index.thread', () => {
  const fake = { id: 'fake', dimensions: 2, embed: async (ts: string[]) => ts.map(() => Float32Array.from([1, 0])) };

  it('runs the index in a worker thread by default, and in this thread when told', async () => {
    const threaded = await createResponseCache(cacheConfigSchema.parse({ semantic: { enabled: true, index: { implementation: 'typescript' } } }), { embedder: fake });
    expect(threaded.indexWorker).toBeDefined();
    await threaded.close();
    const inThread = await createResponseCache(cacheConfigSchema.parse({ semantic: { enabled: true, index: { thread: false } } }), { embedder: fake });
    expect(inThread.indexWorker).toBeUndefined();
    await inThread.close();
  });
});

describe('ThreadedVectorIndex', () => {
  const { vec } = seededVectors(5);
  const failures: Error[] = [];
  const start = () => new ThreadedVectorIndex({ dimensions: 8, kind: 'typescript-hnsw', tuning: {} }, { onFailure: (e) => failures.push(e), onError: (e) => failures.push(e) });

  it('keeps label → partition here, as the worker keeps it there', async () => {
    const idx = start();
    try {
      const v = vec(8);
      // Nothing posted to a partition yet: answered here, without a round trip.
      expect(idx.search('a', v, 4)).toEqual([]);
      idx.add('a', 'k1', v);
      idx.add('a', 'k1', v);
      idx.add('b', 'k2', v);
      idx.add('a', 'k3', new Float32Array(4)); // the wrong size, ignored as in-thread
      expect([idx.size, idx.partitions, idx.has('k1'), idx.has('k3')]).toEqual([2, 2, true, false]);
      // A label moved to another partition leaves the first (which, emptied, is dropped).
      idx.add('b', 'k1', v);
      expect([idx.size, idx.partitions]).toEqual([2, 1]);
      expect((await idx.search('b', v, 4)).map((n) => n.label).sort()).toEqual(['k1', 'k2']);
      expect(idx.search('a', v, 4)).toEqual([]);
      expect(idx.remove('k2')).toBe(true);
      expect(idx.remove('k2')).toBe(false);
      expect((await idx.search('b', v, 4)).map((n) => n.label)).toEqual(['k1']);
      // A view into a larger buffer is sent as its own elements.
      const big = new Float32Array(24);
      big.set(v, 8);
      idx.add('c', 'k4', big.subarray(8, 16));
      expect((await idx.search('c', big.subarray(8, 16), 1))[0]?.label).toBe('k4');
      idx.clear();
      expect([idx.size, idx.partitions]).toEqual([0, 0]);
      expect(idx.search('b', v, 4)).toEqual([]);
    } finally {
      await idx.close();
    }
    expect(failures).toEqual([]);
  });

  it.skipIf(!loadUsearch())('rejects a search the worker refuses with its error while the worker lives', async () => {
    const idx = new ThreadedVectorIndex({ dimensions: 8, kind: 'usearch', tuning: {} }, { onFailure: (e) => failures.push(e), onError: (e) => failures.push(e) });
    try {
      idx.add('a', 'k1', vec(8));
      // usearch refuses a query of the wrong size (the cache never sends one).
      await expect(idx.search('a', new Float32Array(3), 1)).rejects.toThrow(/dimension/);
      expect((await idx.search('a', vec(8), 1))[0]?.label).toBe('k1');
    } finally {
      await idx.close();
    }
    expect(failures).toEqual([]);
  });

  it('ends searches a stuck worker leaves unanswered as misses, and reports it gone once', async () => {
    // A worker that starts, then takes every message and answers none (as one spinning in native code would).
    const silent = (settings: object) =>
      new Worker("const { parentPort, workerData } = require('node:worker_threads'); Atomics.add(workerData.progress, 0, 1); parentPort.on('message', () => {})", {
        eval: true,
        workerData: settings,
      });
    const gone: Error[] = [];
    const idx = new ThreadedVectorIndex({ dimensions: 8, kind: 'typescript-hnsw', tuning: {} }, { onFailure: (e) => gone.push(e), onError: (e) => gone.push(e) }, { stuckAfterMs: 200, start: silent });
    try {
      const v = vec(8);
      idx.add('a', 'k1', v);
      const started = performance.now();
      expect(await Promise.all([idx.search('a', v, 4), idx.search('a', v, 1)])).toEqual([[], []]);
      expect(performance.now() - started).toBeGreaterThanOrEqual(150);
      expect(gone).toHaveLength(1);
      expect(gone[0]?.message).toMatch(/left a search unanswered for 200 ms/);
      // Later searches are misses at once (the worker is stopped), and nothing more is reported.
      expect(await idx.search('a', v, 1)).toEqual([]);
      expect(gone).toHaveLength(1);
    } finally {
      await idx.close();
    }
  });

  it('waits as long as it takes for a worker that is working through a backlog', async () => {
    // A worker busy for 600 ms before it answers, advancing its progress counter meanwhile (as one
    // indexing the store's entries at start does): not stuck, though stuckAfterMs is 200.
    const busy = (settings: object) =>
      new Worker(
        `const { parentPort, workerData } = require('node:worker_threads');
        Atomics.add(workerData.progress, 0, 1);
        parentPort.on('message', (m) => {
          if (!m.id) return;
          const tick = setInterval(() => Atomics.add(workerData.progress, 0, 1), 50);
          setTimeout(() => { clearInterval(tick); parentPort.postMessage({ id: m.id, ok: true, result: [{ label: 'k1', similarity: 0.99 }] }); }, 600);
        });`,
        { eval: true, workerData: settings },
      );
    const gone: Error[] = [];
    const idx = new ThreadedVectorIndex({ dimensions: 8, kind: 'typescript-hnsw', tuning: {} }, { onFailure: (e) => gone.push(e), onError: (e) => gone.push(e) }, { stuckAfterMs: 200, start: busy });
    try {
      const v = vec(8);
      idx.add('a', 'k1', v);
      expect(await idx.search('a', v, 1)).toEqual([{ label: 'k1', similarity: 0.99 }]);
      expect(gone).toEqual([]);
    } finally {
      await idx.close();
    }
  });
});
