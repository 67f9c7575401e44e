import { describe, expect, it } from 'vitest';
import { UpstreamError } from '../providers/errors.js';
import { createSimulatorProvider } from '../providers/simulator.js';
import type { ProviderAdapter } from '../providers/types.js';
import { EmbeddingBatchingProvider } from './embedding-batcher.js';

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
      ...sim,
      name: 'picky',
      type: 'openai',
      embed: async (req, o) => {
        const inputs = Array.isArray(req.input) ? req.input : [req.input];
        if (inputs.some((i) => String(i).includes('BAD'))) throw new UpstreamError({ provider: 'picky', kind: 'bad_request', status: 400, message: 'input 1 is invalid' });
        return sim.embed(req, o);
      },
      chat: (req, o) => sim.chat(req, o),
      streamChat: (req, o) => sim.streamChat(req, o),
      ready: async () => true,
      close: async () => undefined,
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
});
