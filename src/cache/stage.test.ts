// The cache stage end to end in-process: real static embedder, memory store, the simulator upstream.
import { describe, expect, it } from 'vitest';
import { staticEmbedderSuite } from '../../test/helpers/static-embedder.js';
import { requestedMaxTokens, type ChatResult } from '../canonical/chat.js';
import { composeStages, type ChatHandler, type ChatOutcome } from '../gateway/pipeline.js';
import { testTimeScalingSchema } from '../scaling/config.js';
import { createScalingStage } from '../scaling/stage.js';
import { extractFeatures, FEATURES_VERSION } from './guards.js';
import { ResponseCache } from './response-cache.js';
import { createCacheStage } from './stage.js';
import { MemoryCacheStore } from './stores/memory.js';
import { drain, laggingStore, simulatorTerminal, testContext, userRequest } from './test-helpers.js';
import { typescriptHnswFactory } from './vector-index.js';

const suite = staticEmbedderSuite('the cache stage tests');
const { hasWink, caches } = suite;

async function setup(opts: { semantic?: boolean; threshold?: number; maxTemperature?: number; maxBytes?: number } = {}) {
  const store = new MemoryCacheStore({ maxBytes: opts.maxBytes ?? 1e7 });
  const cache = await ResponseCache.create({
    store,
    ttlMs: 60_000,
    compressMinBytes: 256,
    ...(opts.semantic === false
      ? {}
      : {
          semantic: {
            embedder: suite.embedder,
            threshold: opts.threshold ?? 0.85,
            maxTemperature: opts.maxTemperature ?? 1,
            annFactory: typescriptHnswFactory(),
          },
        }),
  });
  caches.push(cache);
  const terminal = simulatorTerminal();
  const handler = composeStages([createCacheStage({ cache })], terminal);
  // Stores run in the background after the answer; wait until the entry count moves.
  const settle = async (n: number) => expect.poll(async () => (await store.counters()).entries, { timeout: 2000, interval: 5 }).toBe(n);
  return { cache, store, terminal, handler, settle };
}

function result(o: ChatOutcome): ChatResult {
  if (o.kind !== 'result') throw new Error('expected a result');
  return o.result;
}

describe.skipIf(!hasWink)('cache stage', () => {
  it('misses, stores, then answers the same request exactly without calling upstream', async () => {
    const { handler, terminal, settle, cache } = await setup();
    const ctx1 = testContext();
    const first = result(await handler(ctx1, userRequest('Name three primary colours.')));
    expect(ctx1.facts.cache).toBe('miss');
    await settle(1);
    const ctx2 = testContext();
    const second = result(await handler(ctx2, userRequest('Name three primary colours.', { user: 'someone-else', stream: false })));
    expect(ctx2.facts.cache).toBe('exact');
    expect(terminal.calls).toBe(1);
    expect(second.choices).toEqual(first.choices);
    expect(second.id).not.toBe(first.id);
    const stats = await cache.stats();
    expect(stats.hits.exact).toBe(1);
    expect(stats.misses).toBe(1);
    expect(stats.hitRate).toBeCloseTo(0.5);
    expect(stats.saved.tokens).toBe(first.usage.total_tokens);
    expect(stats.saved.usd).toBeCloseTo(0.002);
  });

  it('replays a cached stream with its original chunking, and folds it for a non-streaming request', async () => {
    const { handler, terminal, settle } = await setup();
    const req = userRequest('Write a short line about rivers.', { stream: true });
    const original = await drain(await handler(testContext(), req));
    await settle(1);
    const ctx = testContext();
    const replay = await drain(await handler(ctx, req));
    expect(ctx.facts.cache).toBe('exact');
    expect(terminal.calls).toBe(1);
    expect(replay.length).toBe(original.length);
    expect(replay.map((c) => c.choices)).toEqual(original.map((c) => c.choices));
    expect(new Set(replay.map((c) => c.id)).size).toBe(1);
    const folded = result(await handler(testContext(), { ...req, stream: false }));
    const text = original.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(folded.choices[0]?.message.content).toBe(text);
    expect(terminal.calls).toBe(1);
  });

  it('does not store a stream the client abandoned', async () => {
    const { handler, store } = await setup();
    const out = await handler(testContext(), userRequest('Tell me a long story about mountains.', { stream: true }));
    if (out.kind !== 'stream') throw new Error('expected stream');
    for await (const _ of out.stream) break;
    await new Promise((r) => setTimeout(r, 50));
    expect((await store.counters()).entries).toBe(0);
  });

  it('keeps tenants apart', async () => {
    const { handler, terminal, settle } = await setup();
    await handler(testContext('acme'), userRequest('What is a cache?'));
    await settle(1);
    const other = testContext('globex');
    await handler(other, userRequest('What is a cache?'));
    expect(other.facts.cache).toBe('miss');
    expect(terminal.calls).toBe(2);
  });

  it('honours no-cache, no-store, both (bypass) and max-age', async () => {
    const { handler, terminal, settle, store } = await setup();
    const req = userRequest('Define latency.');
    const noStore = testContext('acme', { noStore: true });
    await handler(noStore, req);
    await new Promise((r) => setTimeout(r, 30));
    expect((await store.counters()).entries).toBe(0);
    await handler(testContext(), req);
    await settle(1);
    const noCache = testContext('acme', { noCache: true });
    await handler(noCache, req);
    expect(noCache.facts.cache).toBe('bypass');
    const bypass = testContext('acme', { noCache: true, noStore: true });
    await handler(bypass, req);
    expect(bypass.facts.cache).toBe('bypass');
    expect(terminal.calls).toBe(4);
    await new Promise((r) => setTimeout(r, 1100));
    const fresh = testContext('acme', { maxAgeS: 0 });
    await handler(fresh, req);
    expect(fresh.facts.cache).toBe('miss');
    const stale = testContext('acme', { maxAgeS: 3600 });
    await handler(stale, req);
    expect(stale.facts.cache).toBe('exact');
  });

  it('answers a paraphrase semantically and reports the similarity', async () => {
    const { handler, terminal, settle, cache } = await setup();
    const first = result(await handler(testContext(), userRequest('What is the tallest mountain in the world?')));
    await settle(1);
    const ctx = testContext();
    const second = result(await handler(ctx, userRequest('Which mountain is the tallest in the world?')));
    expect(ctx.facts.cache).toBe('semantic');
    expect(ctx.facts.similarity).toBeGreaterThanOrEqual(0.85);
    expect(second.choices[0]?.message.content).toBe(first.choices[0]?.message.content);
    expect(terminal.calls).toBe(1);
    const stats = await cache.stats();
    expect(stats.hits.semantic).toBe(1);
    expect(stats.semantic.meanSimilarity).toBe(ctx.facts.similarity);
  });

  it('never serves the answer to a different question, however similar the embedding', async () => {
    const { handler, terminal, settle, cache } = await setup({ threshold: 0.3 });
    await handler(testContext(), userRequest('What is 2+2?'));
    await settle(1);
    const ctx = testContext();
    await handler(ctx, userRequest('What is 3+5?'));
    expect(ctx.facts.cache).toBe('miss');
    expect(terminal.calls).toBe(2);
    expect((await cache.stats()).semantic.guardRejections.numbers).toBe(1);
  });

  it('requires the system prompt to match for a semantic hit', async () => {
    const { handler, settle } = await setup();
    await handler(testContext(), userRequest('What is the tallest mountain in the world?'));
    await settle(1);
    const ctx = testContext();
    const req = userRequest('Which mountain is the tallest in the world?');
    req.messages[0] = { role: 'system', content: 'Answer like a pirate.' };
    await handler(ctx, req);
    expect(ctx.facts.cache).toBe('miss');
  });

  it('skips semantic lookups above the temperature bound unless the tenant opts in', async () => {
    const { handler, settle } = await setup({ maxTemperature: 0.5 });
    await handler(testContext(), userRequest('What is the tallest mountain in the world?', { temperature: 0.2 }));
    await settle(1);
    const hot = testContext();
    await handler(hot, userRequest('Which mountain is the tallest in the world?', { temperature: 0.9 }));
    expect(hot.facts.cache).toBe('miss');
    // The hot answer is stored too (exact hits ignore the bound): wait for it, and ask at another
    // temperature so only a semantic lookup can answer.
    await settle(2);
    const optedIn = testContext({ id: 'acme', kind: 'token', metadata: { semantic_cache_any_temperature: true } });
    await handler(optedIn, userRequest('Which mountain is the tallest in the world?', { temperature: 0.8 }));
    expect(optedIn.facts.cache).toBe('semantic');
  });

  it('does not index entries whose guard features come from other rules (they can never be a semantic hit)', async () => {
    const store = new MemoryCacheStore({ maxBytes: 1e7 });
    const make = async (version: number, key: string) => {
      const features = { ...extractFeatures('What is the tallest mountain in the world?'), version };
      const meta = { key, namespace: 'acme', model: 'gpt-4o-mini', createdAt: Date.now(), tokens: 1, costUsd: 0, semantic: { partition: 'p', embedder: suite.embedder.id, features } };
      await store.set({ meta, payload: Buffer.from([0]), vector: suite.embedder.embedOne('What is the tallest mountain in the world?') }, 60_000);
    };
    await make(FEATURES_VERSION - 1, 'old');
    await make(FEATURES_VERSION, 'current');
    const cache = await ResponseCache.create({ store, ttlMs: 60_000, compressMinBytes: 256, semantic: { embedder: suite.embedder, threshold: 0.85, maxTemperature: 1, annFactory: typescriptHnswFactory() } });
    caches.push(cache);
    expect(cache.indexedEntries).toBe(1);
  });

  it('forgets invalidated entries, exact and semantic', async () => {
    const { handler, terminal, settle, cache } = await setup();
    await handler(testContext(), userRequest('What is the tallest mountain in the world?'));
    await settle(1);
    expect(await cache.invalidate({ namespace: 'acme', model: 'gpt-4o-mini' })).toBe(1);
    expect(cache.indexedEntries).toBe(0);
    const ctx = testContext();
    await handler(ctx, userRequest('What is the tallest mountain in the world?'));
    expect(ctx.facts.cache).toBe('miss');
    expect(terminal.calls).toBe(2);
  });

  it('reconciles its index with the store after lost change events (a replica that fell behind)', async () => {
    // The cache hears only what the test lets through, as a lagging Redis follower would.
    const { inner, store, mute, deliver } = laggingStore();
    const cache = await ResponseCache.create({ store, ttlMs: 60_000, compressMinBytes: 256, semantic: { embedder: suite.embedder, threshold: 0.85, maxTemperature: 1, annFactory: typescriptHnswFactory() } });
    caches.push(cache);
    const handler = composeStages([createCacheStage({ cache })], simulatorTerminal());
    const entries = async () => (await inner.counters()).entries;
    const keys = async () => {
      const out: string[] = [];
      for await (const { meta } of inner.scanVectors()) out.push(meta.key);
      return out;
    };
    await handler(testContext(), userRequest('How do plants make food from sunlight?'));
    await expect.poll(entries, { timeout: 2000, interval: 5 }).toBe(1);
    const [plants] = await keys();
    await handler(testContext(), userRequest('Why is the sky blue during the day?'));
    await expect.poll(entries, { timeout: 2000, interval: 5 }).toBe(2);
    expect(cache.indexedEntries).toBe(2);
    // Lost events: a delete and an add this replica never hears of.
    mute(true);
    await inner.delete([plants!]);
    await handler(testContext(), userRequest('What is the tallest mountain in the world?'));
    await expect.poll(entries, { timeout: 2000, interval: 5 }).toBe(2);
    mute(false);
    const before = testContext();
    before.options.cache = { noCache: false, noStore: true }; // look, but store nothing
    await handler(before, userRequest('Which mountain is the tallest in the world?'));
    expect(before.facts.cache).toBe('miss'); // the lost add is not in this replica's index
    deliver({ op: 'resync' });
    await expect.poll(() => cache.reconciles, { timeout: 2000, interval: 5 }).toBe(1);
    expect(cache.indexedEntries).toBe((await keys()).length);
    const fresh = testContext();
    await handler(fresh, userRequest('Which mountain is the tallest in the world?'));
    expect(fresh.facts.cache).toBe('semantic');
  });

  it('drops evicted entries from the semantic index too', async () => {
    // Room for two semantic entries (each ~3.3 KB with its vector and index overhead): the third evicts the first.
    const { handler, settle, cache } = await setup({ maxBytes: 7000 });
    await handler(testContext(), userRequest('What is the tallest mountain in the world?'));
    await settle(1);
    await handler(testContext(), userRequest('How do plants make food from sunlight?'));
    await handler(testContext(), userRequest('Why is the sky blue during the day?'));
    await expect.poll(async () => (await cache.stats()).evictions, { timeout: 2000, interval: 5 }).toBeGreaterThan(0);
    const stats = await cache.stats();
    expect(cache.indexedEntries).toBe(stats.entries);
    const ctx = testContext();
    await handler(ctx, userRequest('Which mountain is the tallest in the world?'));
    expect(ctx.facts.cache).toBe('miss');
  });

  it('keys answers by the requested difficulty: test-time scaling after the cache answers each level differently', async () => {
    const store = new MemoryCacheStore({ maxBytes: 1e7 });
    const cache = await ResponseCache.create({
      store,
      ttlMs: 60_000,
      compressMinBytes: 256,
      semantic: { embedder: suite.embedder, threshold: 0.85, maxTemperature: 1, annFactory: typescriptHnswFactory() },
    });
    caches.push(cache);
    // An upstream that spends the whole token budget the scaling stage gives it.
    const budgets: number[] = [];
    const upstream: ChatHandler = async (_ctx, req) => {
      const max = requestedMaxTokens(req) ?? 0;
      budgets.push(max);
      return {
        kind: 'result',
        result: {
          id: 'chatcmpl-x',
          object: 'chat.completion',
          created: 1,
          model: req.model,
          choices: [{ index: 0, message: { role: 'assistant', content: `an answer cut at ${max} tokens` }, finish_reason: 'length', logprobs: null }],
          usage: { prompt_tokens: 5, completion_tokens: max, total_tokens: 5 + max },
        },
      };
    };
    const scaling = createScalingStage({ config: testTimeScalingSchema.parse({ aggregation: 'first' }) });
    const handler = composeStages([createCacheStage({ cache }), scaling], upstream);
    const ask = async (text: string, difficulty?: string) => {
      const ctx = testContext();
      if (difficulty !== undefined) ctx.options.difficulty = difficulty;
      const out = result(await handler(ctx, userRequest(text)));
      return { cache: ctx.facts.cache, content: out.choices[0]?.message.content };
    };
    const settle = (n: number) => expect.poll(async () => (await store.counters()).entries, { timeout: 2000, interval: 5 }).toBe(n);

    expect(await ask('How do I reverse a list in Python?', 'easy')).toEqual({ cache: 'miss', content: 'an answer cut at 256 tokens' });
    await settle(1);
    // Not the easy level's cut-off answer, neither exactly nor as a paraphrase.
    expect(await ask('How do I reverse a list in Python?', 'expert')).toEqual({ cache: 'miss', content: 'an answer cut at 2048 tokens' });
    await settle(2);
    expect(await ask('How can I reverse a Python list?', 'hard')).toMatchObject({ cache: 'miss' });
    await settle(3);
    expect(await ask('How do I reverse a list in Python?')).toMatchObject({ cache: 'miss' });
    await settle(4);
    expect(budgets).toEqual([256, 2048, 1024, 0]);
    // The same level hits, whichever way it is spelled.
    expect(await ask('How do I reverse a list in Python?', 'EXPERT')).toEqual({ cache: 'exact', content: 'an answer cut at 2048 tokens' });
    expect(await ask('How do I reverse a list in Python?', '1')).toEqual({ cache: 'exact', content: 'an answer cut at 256 tokens' });
    expect(await ask('How can I reverse a Python list?', 'expert')).toEqual({ cache: 'semantic', content: 'an answer cut at 2048 tokens' });
    expect(budgets).toHaveLength(4);
  });

  it('keeps no answer a fallback group gave in place of the group asked for', async () => {
    const { handler, terminal, settle, cache } = await setup({ semantic: false });
    const fellBack = composeStages([createCacheStage({ cache })], async (ctx, req) => {
      const outcome = await terminal(ctx, req);
      ctx.facts.fallbackGroup = 'backup';
      return outcome;
    });
    result(await fellBack(testContext(), userRequest('Which group answers this?')));
    await drain(await fellBack(testContext(), userRequest('Which group answers this stream?', { stream: true })));
    // An answer from the group itself is kept: once it is in, only it is.
    result(await handler(testContext(), userRequest('An answer of the group itself.')));
    await settle(1);
    const again = testContext();
    result(await handler(again, userRequest('Which group answers this?')));
    expect(again.facts.cache).toBe('miss');
    expect(terminal.calls).toBe(4);
  });

  it('treats a failing cache as a miss', async () => {
    const { handler, store, terminal } = await setup();
    store.get = async () => {
      throw new Error('store down');
    };
    const ctx = testContext();
    await handler(ctx, userRequest('Anything at all?'));
    expect(ctx.facts.cache).toBe('miss');
    expect(terminal.calls).toBe(1);
  });
});
