// What the cache stage keeps of a miss's answer, and what it leaves out: answers short of what the
// request gets when it runs to the end. Memory store, exact cache only (no embedder needed).
import { afterAll, describe, expect, it } from 'vitest';
import type { AssistantMessage, ChatResult, FinishReason } from '../canonical/chat.js';
import { iterate, resultToChunks } from '../canonical/convert.js';
import { composeStages, type ChatHandler, type ChatOutcome, type ChatStage } from '../gateway/pipeline.js';
import { testTimeScalingSchema } from '../scaling/config.js';
import { createScalingStage } from '../scaling/stage.js';
import type { Embedder } from './embedders/types.js';
import { entryKey, exactKey } from './keys.js';
import { ResponseCache, type SemanticSettings } from './response-cache.js';
import { createCacheStage } from './stage.js';
import { MemoryCacheStore } from './stores/memory.js';
import { drain, simulatorTerminal, testContext, userRequest } from './test-helpers.js';
import { typescriptHnswFactory } from './vector-index.js';

function answer(model: string, content: string): ChatResult {
  return {
    id: 'chatcmpl-x',
    object: 'chat.completion',
    created: 1,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop', logprobs: null }],
    usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
  };
}

async function cacheWith(upstream: ChatHandler, inner: ChatStage[] = [], semantic?: SemanticSettings) {
  const store = new MemoryCacheStore({ maxBytes: 1e7 });
  const cache = await ResponseCache.create({ store, ttlMs: 60_000, compressMinBytes: 256, ...(semantic ? { semantic } : {}) });
  caches.push(cache);
  const handler = composeStages([createCacheStage({ cache }), ...inner], upstream);
  const entries = async () => (await store.counters()).entries;
  return { cache, store, handler, entries };
}

const caches: ResponseCache[] = [];
afterAll(async () => {
  for (const c of caches.splice(0)) await c.close();
});

function content(o: ChatOutcome): string | null | undefined {
  if (o.kind !== 'result') throw new Error('expected a result');
  return o.result.choices[0]?.message.content;
}

describe('the cache stage keeps no answer from a scaling run cut short', () => {
  // medium: 2 passes. The first pass answers at once; the second waits for the scaling deadline
  // (0.3 s) unless `hang` is off, so the vote has one of its two passes.
  function scaled(opts: { aggregation?: string; hang?: () => boolean; judgeFails?: boolean; passes?: number }) {
    let calls = 0;
    const upstream: ChatHandler = async (ctx, req) => {
      calls++;
      const isJudge = req.messages.some((m) => typeof m.content === 'string' && m.content.includes('Candidate 1'));
      if (isJudge && opts.judgeFails) throw Object.assign(new Error('judge down'), { status: 400 });
      if (calls > 1 && opts.hang?.()) {
        await new Promise<void>((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
      }
      return { kind: 'result', result: answer(req.model, 'The answer is 42.') };
    };
    const config = testTimeScalingSchema.parse({
      aggregation: opts.aggregation ?? 'self_consistency',
      difficulty_levels: { medium: { passes: opts.passes ?? 2, max_tokens: 64, timeout_s: 0.3 } },
    });
    return { upstream, scaling: createScalingStage({ config }) };
  }

  async function ask(handler: ChatHandler, text: string, ctx = testContext()) {
    ctx.options.difficulty = 'medium';
    const out = await handler(ctx, userRequest(text));
    return { ctx, content: content(out) };
  }

  it('does not store a vote its deadline cut to fewer passes than planned; a complete one is stored', async () => {
    let hang = true;
    const { upstream, scaling } = scaled({ hang: () => hang });
    const { handler, entries } = await cacheWith(upstream, [scaling]);
    const cut = await ask(handler, 'What is 6 times 7?');
    expect(cut.content).toBe('The answer is 42.');
    expect(cut.ctx.facts.scaling).toMatchObject({ passes: 1, passes_planned: 2, deadline_reached: true });
    hang = false;
    const full = await ask(handler, 'What is 40 plus 2?');
    expect(full.ctx.facts.scaling).toMatchObject({ passes: 2, passes_planned: 2 });
    // Stores run in the background in request order: once the complete answer is in, the cut one would be too.
    await expect.poll(entries, { timeout: 2000, interval: 5 }).toBe(1);
    const again = await ask(handler, 'What is 6 times 7?');
    expect(again.ctx.facts.cache).toBe('miss');
    expect((await ask(handler, 'What is 40 plus 2?')).ctx.facts.cache).toBe('exact');
  });

  it('does not store a best_of_n answer picked by a vote because the judge failed', async () => {
    const { upstream, scaling } = scaled({ aggregation: 'best_of_n', judgeFails: true });
    const { handler, entries } = await cacheWith(upstream, [scaling]);
    const first = await ask(handler, 'Which is the best answer?');
    expect(first.ctx.facts.scaling).toMatchObject({ passes: 2, passes_planned: 2, judge_fallback: 'the judge call failed' });
    const again = await ask(handler, 'Which is the best answer?');
    expect(again.ctx.facts.cache).toBe('miss');
    expect(await entries()).toBe(0);
  });

  it('stores an adaptive run that stopped early by its own rule', async () => {
    const { upstream, scaling } = scaled({ aggregation: 'adaptive', passes: 16 });
    const { handler, entries } = await cacheWith(upstream, [scaling]);
    const first = await ask(handler, 'What is 6 times 7?');
    expect(first.ctx.facts.scaling).toMatchObject({ stopped_early: true });
    expect((first.ctx.facts.scaling?.passes as number) < 16).toBe(true);
    await expect.poll(entries, { timeout: 2000, interval: 5 }).toBe(1);
    expect((await ask(handler, 'What is 6 times 7?')).ctx.facts.cache).toBe('exact');
  });

  it('does not store what a client that went away was answered, scaled or not', async () => {
    let hang = true;
    const { upstream, scaling } = scaled({ hang: () => hang });
    let leave: AbortController | undefined;
    // The client leaves once the first pass has answered: scaling votes with what it has.
    const leaving: ChatHandler = async (ctx, req) => {
      const out = await upstream(ctx, req);
      leave?.abort();
      return out;
    };
    const { handler, entries } = await cacheWith(leaving, [scaling]);
    leave = new AbortController();
    const left = await ask(handler, 'What is 6 times 7?', { ...testContext(), signal: leave.signal });
    expect(left.content).toBe('The answer is 42.');
    expect(left.ctx.facts.scaling).not.toHaveProperty('deadline_reached');
    // Unscaled: the answer came, but to no one.
    hang = false;
    leave = new AbortController();
    await handler({ ...testContext(), signal: leave.signal }, userRequest('Anything at all?'));
    leave = undefined;
    await ask(handler, 'What is 40 plus 2?');
    await expect.poll(entries, { timeout: 2000, interval: 5 }).toBe(1);
    expect((await ask(handler, 'What is 6 times 7?')).ctx.facts.cache).toBe('miss');
    const plain = testContext();
    await handler(plain, userRequest('Anything at all?'));
    expect(plain.facts.cache).toBe('miss');
  });
});

describe('the cache stage stores a miss whatever its lookup met', () => {
  /** An embedder that is down (every call fails) or hangs (never answers). */
  function brokenEmbedder(how: 'down' | 'hangs'): Embedder {
    return {
      id: `broken-${how}`,
      dimensions: 4,
      embed: () => (how === 'down' ? Promise.reject(new Error('embedder unreachable')) : new Promise<Float32Array[]>(() => undefined)),
    };
  }
  const semantic = (embedder: Embedder, embedWaitMs?: number): SemanticSettings => ({
    embedder,
    threshold: 0.85,
    maxTemperature: 1,
    annFactory: typescriptHnswFactory(),
    ...(embedWaitMs !== undefined ? { embedWaitMs } : {}),
  });

  it('keeps the exact cache working while the embedder is down', async () => {
    const terminal = simulatorTerminal();
    const { handler, entries } = await cacheWith(terminal, [], semantic(brokenEmbedder('down')));
    const first = testContext();
    await handler(first, userRequest('Name three primary colours.'));
    expect(first.facts.cache).toBe('miss');
    await expect.poll(entries, { timeout: 2000, interval: 5 }).toBe(1);
    const second = testContext();
    await handler(second, userRequest('Name three primary colours.'));
    expect(second.facts.cache).toBe('exact');
    expect(terminal.calls).toBe(1);
  });

  it('waits for a hanging embedder only embedWaitMs, then goes on and stores the answer for exact lookups', { timeout: 5000 }, async () => {
    const terminal = simulatorTerminal();
    const errors: string[] = [];
    const store = new MemoryCacheStore({ maxBytes: 1e7 });
    const cache = await ResponseCache.create({ store, ttlMs: 60_000, compressMinBytes: 256, semantic: semantic(brokenEmbedder('hangs'), 50), onError: (_e, what) => errors.push(what) });
    caches.push(cache);
    const handler = composeStages([createCacheStage({ cache })], terminal);
    const first = testContext();
    await handler(first, userRequest('Name three primary colours.'));
    expect(first.facts.cache).toBe('miss');
    expect(errors).toContain('cache semantic lookup');
    await expect.poll(async () => (await store.counters()).entries, { timeout: 2000, interval: 5 }).toBe(1);
    const second = testContext();
    await handler(second, userRequest('Name three primary colours.'));
    expect(second.facts.cache).toBe('exact');
    expect(terminal.calls).toBe(1);
  });

  it('answers a request whose entry cannot be read as a miss, and its answer replaces the entry', async () => {
    const terminal = simulatorTerminal();
    const { handler, store } = await cacheWith(terminal);
    const req = userRequest('Name three primary colours.');
    const bad = { key: entryKey('acme', req.model, exactKey(req)), namespace: 'acme', model: req.model, createdAt: Date.now(), tokens: 1, costUsd: 0 };
    await store.set({ meta: bad, payload: Buffer.concat([Buffer.from([0]), Buffer.from('{"kind":"result","res')]) }, 60_000);
    const first = testContext();
    const fresh = content(await handler(first, req));
    expect(first.facts.cache).toBe('miss');
    // The unreadable entry went during the lookup: the one that comes is the fresh answer.
    await expect.poll(async () => (await store.counters()).entries, { timeout: 2000, interval: 5 }).toBe(1);
    const second = testContext();
    expect(content(await handler(second, req))).toBe(fresh);
    expect(second.facts.cache).toBe('exact');
    expect(terminal.calls).toBe(1);
  });
});

describe('an entry of another shape', () => {
  it('is a miss for a streaming request too (not a hit whose stream fails), and the fresh answer replaces it', async () => {
    const terminal = simulatorTerminal();
    const { handler, store } = await cacheWith(terminal);
    const req = userRequest('Name three primary colours.', { stream: true });
    const key = entryKey('acme', req.model, exactKey(req));
    // Parses, but its chunks have no choices.
    const payload = Buffer.concat([Buffer.from([0]), Buffer.from(JSON.stringify({ kind: 'stream', chunks: [{ id: 'x' }] }))]);
    await store.set({ meta: { key, namespace: 'acme', model: req.model, createdAt: Date.now(), tokens: 1, costUsd: 0 }, payload }, 60_000);
    const first = testContext();
    const fresh = await drain(await handler(first, req));
    expect(first.facts.cache).toBe('miss');
    await expect.poll(async () => (await store.counters()).entries, { timeout: 2000, interval: 5 }).toBe(1);
    const second = testContext();
    const replayed = await drain(await handler(second, req));
    expect(second.facts.cache).toBe('exact');
    expect(replayed.map((c) => c.choices)).toEqual(fresh.map((c) => c.choices));
    expect(terminal.calls).toBe(1);
  });
});

describe('the cache stage keeps no filtered, refused or empty answer', () => {
  const answers: Record<string, { message: Omit<AssistantMessage, 'role'>; finish: FinishReason }> = {
    // Gemini's SAFETY / RECITATION: the text cut where the filter stopped it.
    'filtered': { message: { content: 'The first step is to' }, finish: 'content_filter' },
    'refused': { message: { content: null, refusal: "I can't help with that." }, finish: 'stop' },
    'empty': { message: { content: '' }, finish: 'length' },
    'tool call': { message: { content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }] }, finish: 'tool_calls' },
    'spoken': { message: { content: null, audio: { id: 'audio_1', data: 'AAAA', expires_at: 1, transcript: 'Hi.' } }, finish: 'stop' },
    'plain': { message: { content: 'Hello.' }, finish: 'stop' },
  };
  const upstream: ChatHandler = async (_ctx, req) => {
    const text = req.messages[req.messages.length - 1]?.content as string;
    const a = answers[text.replace(/ \(streamed\)$/, '')] as (typeof answers)[string];
    const result: ChatResult = { ...answer(req.model, ''), choices: [{ index: 0, message: { role: 'assistant', ...a.message }, finish_reason: a.finish, logprobs: null }] };
    return req.stream ? { kind: 'stream', stream: iterate(resultToChunks(result)) } : { kind: 'result', result };
  };

  it('stores answers that say something, and none filtered, refused or empty, JSON or streamed', async () => {
    const { handler, entries } = await cacheWith(upstream);
    const kept = ['tool call', 'spoken', 'plain'];
    for (const prompt of Object.keys(answers)) {
      await handler(testContext(), userRequest(prompt));
      await drain(await handler(testContext(), userRequest(`${prompt} (streamed)`, { stream: true })));
    }
    await expect.poll(entries, { timeout: 2000, interval: 5 }).toBe(2 * kept.length);
    for (const prompt of Object.keys(answers)) {
      for (const [text, stream] of [[prompt, false], [`${prompt} (streamed)`, true]] as const) {
        const ctx = testContext();
        const out = await handler(ctx, userRequest(text, { stream }));
        if (stream) await drain(out);
        expect([text, ctx.facts.cache]).toEqual([text, kept.includes(prompt) ? 'exact' : 'miss']);
      }
    }
  });
});
