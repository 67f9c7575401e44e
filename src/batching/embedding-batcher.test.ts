import { describe, expect, it, vi } from 'vitest';
import { UpstreamError } from '../providers/errors.js';
import { createSimulatorProvider, type SimulatorProvider } from '../providers/simulator.js';
import type { ProviderAdapter } from '../providers/types.js';
import { createOpenAIProvider } from '../providers/openai.js';
import type { ModelCatalog } from '../routing/catalog.js';
import { inferenceSchema } from '../scaling/config.js';
import { scalingOptions } from '../scaling/setup.js';
import { EmbeddingBatchingProvider } from './embedding-batcher.js';

/** The simulator's chat, stream and lifecycle, for a test adapter that replaces only `embed`. */
const delegate = (sim: SimulatorProvider): Omit<ProviderAdapter, 'embed'> => ({
  name: sim.name,
  type: sim.type,
  chat: (req, o) => sim.chat(req, o),
  streamChat: (req, o) => sim.streamChat(req, o),
  ready: async () => true,
  close: async () => undefined,
});

const opts = (signal = new AbortController().signal) => ({ signal, timeoutMs: 5_000, requestId: 'r' });

describe('embedding micro-batching', () => {
  it('serves concurrent requests from one upstream call with the same vectors and usage as unbatched calls', async () => {
    const sim = createSimulatorProvider('sim', { latency_ms: 5 });
    const batching = new EmbeddingBatchingProvider(sim, { maxSize: 32, flushTimeoutMs: 10 });
    const inputs = Array.from({ length: 12 }, (_, i) => (i % 3 === 0 ? [`text number ${i}`, `another ${i}`] : `single input ${i} with some words`));
    const batched = await Promise.all(inputs.map((input) => batching.embed({ model: 'emb', input }, opts())));
    const direct = await Promise.all(inputs.map((input) => sim.embed({ model: 'emb', input }, opts())));
    expect(batching.upstreamCalls).toBe(1);
    for (let i = 0; i < inputs.length; i++) {
      expect(batched[i]?.data.map((d) => d.embedding)).toEqual(direct[i]?.data.map((d) => d.embedding));
      expect(batched[i]?.usage).toEqual(direct[i]?.usage);
    }
  });

  it("charges a batch's requests together exactly the usage the upstream reported", async () => {
    const sim = createSimulatorProvider('sim', {});
    let reported = 0;
    const counting: ProviderAdapter = {
      ...delegate(sim),
      embed: async (req, o) => ({ ...(await sim.embed(req, o)), usage: { prompt_tokens: reported, total_tokens: reported } }),
    };
    const batching = new EmbeddingBatchingProvider(counting, { maxSize: 32, flushTimeoutMs: 5 });
    const charged = async (inputs: string[], upstream: number) => {
      reported = upstream;
      const results = await Promise.all(inputs.map((input) => batching.embed({ model: 'e', input }, opts())));
      return results.map((r) => r.usage.prompt_tokens);
    };
    // Two one-token inputs the upstream counts as 3 (it adds a token per call, say): 2 + 1, not 2 + 2.
    const two = await charged(['a', 'b'], 3);
    expect(two.reduce((a, b) => a + b, 0)).toBe(3);
    const three = await charged(['x', 'y', 'z'], 5);
    expect(three.reduce((a, b) => a + b, 0)).toBe(5);
    expect(three.every((t) => t === 1 || t === 2)).toBe(true);
    const four = await charged(['p', 'q', 'r', 's'], 2);
    expect(four.reduce((a, b) => a + b, 0)).toBe(2);
  });

  it('splits work into batches of at most maxSize inputs', async () => {
    const sim = createSimulatorProvider('sim', {});
    const batching = new EmbeddingBatchingProvider(sim, { maxSize: 4, flushTimeoutMs: 5 });
    await Promise.all(Array.from({ length: 10 }, (_, i) => batching.embed({ model: 'emb', input: `t${i}` }, opts())));
    expect(batching.upstreamCalls).toBe(3);
  });

  it('keeps models and dimensions in separate batches', async () => {
    const sim = createSimulatorProvider('sim', {});
    const batching = new EmbeddingBatchingProvider(sim, { maxSize: 32, flushTimeoutMs: 5 });
    const [a, b] = await Promise.all([batching.embed({ model: 'a', input: 'x', dimensions: 8 }, opts()), batching.embed({ model: 'b', input: 'x' }, opts())]);
    expect((a.data[0]?.embedding as number[]).length).toBe(8);
    expect((b.data[0]?.embedding as number[]).length).toBe(256);
    expect(batching.upstreamCalls).toBe(2);
  });

  it("sends each end user's inputs under their own `user`, never in a call with another user's", async () => {
    const sim = createSimulatorProvider('sim', {});
    const calls: { user: string | undefined; input: unknown }[] = [];
    const recording: ProviderAdapter = {
      ...delegate(sim),
      embed: (req, o) => {
        calls.push({ user: req.user, input: req.input });
        return sim.embed(req, o);
      },
    };
    const batching = new EmbeddingBatchingProvider(recording, { maxSize: 32, flushTimeoutMs: 5 });
    const users = ['alice', 'bob', 'alice', undefined, 'bob', undefined, ''];
    const results = await Promise.all(users.map((user, i) => batching.embed({ model: 'e', input: `text ${i}`, ...(user !== undefined ? { user } : {}) }, opts())));
    expect(results.every((r) => r.data.length === 1)).toBe(true);
    const byUser = new Map(calls.map((c) => [c.user, c.input]));
    expect(calls).toHaveLength(4);
    expect(byUser.get('alice')).toEqual(['text 0', 'text 2']);
    expect(byUser.get('bob')).toEqual(['text 1', 'text 4']);
    expect(byUser.get(undefined)).toEqual(['text 3', 'text 5']);
    expect(byUser.get('')).toEqual(['text 6']);
    expect(batching.batchersAlive).toBe(0);
  });

  it('a caller that goes away is released without failing the others in its batch', async () => {
    const sim = createSimulatorProvider('sim', { latency_ms: 30 });
    const batching = new EmbeddingBatchingProvider(sim, { maxSize: 32, flushTimeoutMs: 5 });
    const gone = new AbortController();
    const first = batching.embed({ model: 'emb', input: 'a' }, opts(gone.signal));
    const second = batching.embed({ model: 'emb', input: 'b' }, opts());
    setTimeout(() => gone.abort(), 10);
    await expect(first).rejects.toMatchObject({ kind: 'aborted' });
    expect((await second).data).toHaveLength(1);
  });

  it('cancels a batch already sent upstream once every caller in it has gone, and not while one still waits', async () => {
    const sim = createSimulatorProvider('sim', { latency_ms: 200 });
    const seen: Array<{ aborted: () => boolean }> = [];
    const watching: ProviderAdapter = {
      name: sim.name,
      type: sim.type,
      chat: (req, o) => sim.chat(req, o),
      streamChat: (req, o) => sim.streamChat(req, o),
      ready: () => sim.ready(),
      close: () => sim.close(),
      embed: (req, o) => {
        seen.push({ aborted: () => o.signal.aborted });
        return sim.embed(req, o);
      },
    };
    const batching = new EmbeddingBatchingProvider(watching, { maxSize: 32, flushTimeoutMs: 5 });
    // Both callers leave while their batch is upstream: the call is cancelled.
    const a = new AbortController();
    const b = new AbortController();
    const both = [batching.embed({ model: 'emb', input: 'a' }, opts(a.signal)), batching.embed({ model: 'emb', input: 'b' }, opts(b.signal))];
    await vi.waitFor(() => expect(seen).toHaveLength(1));
    a.abort();
    expect(seen[0]?.aborted()).toBe(false); // b still waits
    b.abort();
    expect(seen[0]?.aborted()).toBe(true);
    await Promise.allSettled(both);
    // One caller of two leaves: the other's answer still comes.
    const c = new AbortController();
    const left = batching.embed({ model: 'emb', input: 'c' }, opts(c.signal));
    const stays = batching.embed({ model: 'emb', input: 'd' }, opts());
    await vi.waitFor(() => expect(seen).toHaveLength(2));
    c.abort();
    await expect(left).rejects.toMatchObject({ kind: 'aborted' });
    expect((await stays).data).toHaveLength(1);
    expect(seen[1]?.aborted()).toBe(false);
  });

  it('fails every request of a batch whose upstream call fails', async () => {
    const sim = createSimulatorProvider('sim', { error_rate: 1, seed: 1 });
    const batching = new EmbeddingBatchingProvider(sim, { maxSize: 32, flushTimeoutMs: 5 });
    const results = await Promise.allSettled([batching.embed({ model: 'e', input: 'a' }, opts()), batching.embed({ model: 'e', input: 'b' }, opts())]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
  });

  it('a batch the upstream refuses for one bad input is sent again a request at a time: only that request fails', async () => {
    const sim = createSimulatorProvider('sim', {});
    // Refuses any batch holding an input it cannot take, as an upstream answering 400 would.
    const picky: ProviderAdapter = {
      ...delegate(sim),
      name: 'picky',
      type: 'openai',
      embed: async (req, o) => {
        const inputs = Array.isArray(req.input) ? req.input : [req.input];
        if (inputs.some((i) => String(i).includes('BAD'))) throw new UpstreamError({ provider: 'picky', kind: 'bad_request', status: 400, message: 'input 1 is invalid' });
        return sim.embed(req, o);
      },
    };
    const batching = new EmbeddingBatchingProvider(picky, { maxSize: 32, flushTimeoutMs: 5 });
    const results = await Promise.allSettled([
      batching.embed({ model: 'e', input: 'fine' }, opts()),
      batching.embed({ model: 'e', input: ['also fine', 'BAD input'] }, opts()),
      batching.embed({ model: 'e', input: ['one', 'two'] }, opts()),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ kind: 'bad_request', status: 400 });
    const direct = await sim.embed({ model: 'e', input: ['one', 'two'] }, opts());
    expect((results[2] as PromiseFulfilledResult<Awaited<ReturnType<typeof sim.embed>>>).value.data.map((d) => d.embedding)).toEqual(direct.data.map((d) => d.embedding));
    // The batch, then one call per request.
    expect(batching.upstreamCalls).toBe(4);
  });

  it('a batch that fails upstream (5xx) is not retried request by request', async () => {
    const sim = createSimulatorProvider('sim', { error_rate: 1, seed: 1 });
    const batching = new EmbeddingBatchingProvider(sim, { maxSize: 32, flushTimeoutMs: 5 });
    await Promise.allSettled([batching.embed({ model: 'e', input: 'a' }, opts()), batching.embed({ model: 'e', input: 'b' }, opts())]);
    expect(batching.upstreamCalls).toBe(1);
  });

  /** A simulator whose embedding calls are recorded and wait until the test releases them. */
  function gated() {
    const sim = createSimulatorProvider('sim', {});
    const sent: string[][] = [];
    const waiting: (() => void)[] = [];
    const inner: ProviderAdapter = {
      ...delegate(sim),
      embed: async (req, o) => {
        sent.push((Array.isArray(req.input) ? req.input : [req.input]).map(String));
        await new Promise<void>((r) => waiting.push(r));
        return sim.embed(req, o);
      },
    };
    return { inner, sent, releaseAll: () => waiting.splice(0).forEach((r) => r()) };
  }

  it("holds each request to its own timeoutMs (a timeout as an unbatched call gives), and gives the batch's call the longest of them", async () => {
    const sim = createSimulatorProvider('sim', {});
    const timeouts: number[] = [];
    const waiting: (() => void)[] = [];
    const slow: ProviderAdapter = {
      ...delegate(sim),
      embed: async (req, o) => {
        timeouts.push(o.timeoutMs);
        await new Promise<void>((r) => waiting.push(r));
        return sim.embed(req, o);
      },
    };
    const batching = new EmbeddingBatchingProvider(slow, { maxSize: 32, flushTimeoutMs: 5 });
    // A deployment with timeout_ms 100 and one allowing 60 s share a batch the upstream is slow to answer.
    const hasty = batching.embed({ model: 'e', input: 'hasty' }, { ...opts(), timeoutMs: 100 });
    const patient = batching.embed({ model: 'e', input: 'patient' }, { ...opts(), timeoutMs: 60_000 });
    await expect(hasty).rejects.toMatchObject({ kind: 'timeout', retryable: true });
    waiting.splice(0).forEach((r) => r());
    expect((await patient).data).toHaveLength(1);
    // Not a fixed 30 s: the patient request's deadline.
    expect(timeouts).toEqual([60_000]);
  });

  it('does not send upstream the inputs of a request cancelled while they waited for a batch', async () => {
    const { inner, sent, releaseAll } = gated();
    const batching = new EmbeddingBatchingProvider(inner, { maxSize: 32, flushTimeoutMs: 20 });
    const gone = new AbortController();
    const cancelled = batching.embed({ model: 'e', input: ['never', 'sent'] }, opts(gone.signal));
    const kept = batching.embed({ model: 'e', input: 'kept' }, opts());
    gone.abort();
    await expect(cancelled).rejects.toMatchObject({ kind: 'aborted' });
    await vi.waitFor(() => expect(sent).toHaveLength(1));
    releaseAll();
    expect((await kept).data).toHaveLength(1);
    expect(sent).toEqual([['kept']]);
  });

  it('refuses work past its queue with a retryable 503 overloaded', async () => {
    const { inner, sent, releaseAll } = gated();
    const batching = new EmbeddingBatchingProvider(inner, { maxSize: 2, flushTimeoutMs: 1, maxConcurrency: 1, maxQueued: 1 });
    const first = batching.embed({ model: 'e', input: 'in flight' }, opts());
    await vi.waitFor(() => expect(sent).toHaveLength(1));
    const second = batching.embed({ model: 'e', input: 'queued' }, opts());
    await expect(batching.embed({ model: 'e', input: 'one too many' }, opts())).rejects.toMatchObject({ kind: 'overloaded', status: 503, retryable: true });
    releaseAll();
    await first;
    await vi.waitFor(() => expect(sent).toHaveLength(2));
    releaseAll();
    await second;
  });

  it('sends a request of a batch size or more upstream whole, in a call of its own, outside the queue cap', async () => {
    const sim = createSimulatorProvider('sim', { embedding_dimensions: 4 });
    const sent: number[] = [];
    const recording: ProviderAdapter = { ...delegate(sim), embed: (req, o) => (sent.push(Array.isArray(req.input) ? req.input.length : 1), sim.embed(req, o)) };
    // The gateway's defaults: batches of 32, eight in flight, a queue of 16 rounds (4,096 inputs).
    const batching = new EmbeddingBatchingProvider(recording, { maxSize: 32, flushTimeoutMs: 20, maxConcurrency: 8 });
    const bulk = { model: 'e', input: Array.from({ length: 2048 }, (_, i) => `document ${i}`) };
    // It holds a deployment slot as any call of its own does.
    expect(batching.sharesEmbedCall(bulk)).toBe(false);
    expect(batching.sharesEmbedCall({ model: 'e', input: ['a', 'b'] })).toBe(true);
    const results = await Promise.allSettled(Array.from({ length: 4 }, () => batching.embed(bulk, opts())));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
    expect(sent).toEqual([2048, 2048, 2048, 2048]);
    const first = (results[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof sim.embed>>>).value;
    expect(first.data).toHaveLength(2048);
    expect(first.data[2047]?.embedding).toEqual((await sim.embed({ model: 'e', input: 'document 2047' }, opts())).data[0]?.embedding);
  });

  it('keeps what the wrapped adapter says of its chat: an openai provider that fans n out still counts a call per choice', async () => {
    const fanning = createOpenAIProvider('ollama-v1', { type: 'openai', base_url: 'http://127.0.0.1:1/v1', options: { choices: 'fan_out' } });
    const wrapped = new EmbeddingBatchingProvider(fanning, { maxSize: 32, flushTimeoutMs: 20 });
    const group = { deployments: [{ model: 'm', provider: wrapped }] };
    const catalog = { resolve: () => group, reachable: () => [group] } as unknown as ModelCatalog;
    const scaling = await scalingOptions(inferenceSchema.parse({ test_time_scaling: { estimator: { enabled: false } } }), () => catalog);
    // Passes go as separate calls, and admission reserves the prompt once per choice.
    expect([scaling.supportsN?.('m'), scaling.promptPerChoice?.('m')]).toEqual([false, true]);
    expect([wrapped.logprobs, wrapped.files, typeof wrapped.forward, typeof wrapped.listModels]).toEqual([fanning.logprobs, fanning.files, 'function', 'function']);
    await wrapped.close();
  });

  it('lets a (model, dimensions) batcher go once its work is done', async () => {
    const sim = createSimulatorProvider('sim', {});
    const batching = new EmbeddingBatchingProvider(sim, { maxSize: 32, flushTimeoutMs: 1 });
    await Promise.all(Array.from({ length: 50 }, (_, i) => batching.embed({ model: 'e', input: 'x', dimensions: i + 1 }, opts())));
    await Promise.all(Array.from({ length: 50 }, (_, i) => batching.embed({ model: `passthrough-${i}`, input: 'x' }, opts())));
    expect(batching.batchersAlive).toBe(0);
    // A key used again gets a fresh batcher that works as before.
    expect((await batching.embed({ model: 'e', input: 'x', dimensions: 8 }, opts())).data[0]?.embedding).toHaveLength(8);
  });
});
