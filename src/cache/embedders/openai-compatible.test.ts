import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSimulatorProvider } from '../../providers/simulator.js';
import { OpenAICompatibleEmbedder } from './openai-compatible.js';
import { BatchedEmbedder } from './batched.js';
import { dot } from './types.js';

let app: FastifyInstance;
let base: string;
const calls: { auth?: string; input: string[] }[] = [];

beforeAll(async () => {
  app = Fastify();
  app.post('/v1/embeddings', async (req, reply) => {
    const body = req.body as { input: string[]; model: string };
    calls.push({ auth: req.headers.authorization, input: body.input });
    if (body.model === 'broken') return reply.code(500).send({ error: { message: 'boom' } });
    if (body.model === 'unpaid') return reply.code(402).send({ error: { message: 'Your credit balance is too low' } });
    // Refuses the whole request for one input over its context, as OpenAI answers 400.
    if (body.input.some((t) => t.startsWith('TOO LONG'))) return reply.code(400).send({ error: { message: "This model's maximum context length is 8192 tokens", code: 'context_length_exceeded' } });
    // Unnormalised vectors, returned in reverse order: the client must use `index`.
    const data = body.input.map((t, index) => ({ object: 'embedding', index, embedding: [t.length, 3, 4] })).reverse();
    return { object: 'list', data, model: body.model, usage: { prompt_tokens: 1, total_tokens: 1 } };
  });
  base = `${await app.listen({ port: 0, host: '127.0.0.1' })}/v1`;
});
afterAll(async () => {
  await app.close();
});

describe('OpenAICompatibleEmbedder', () => {
  it('learns the dimensions, sends the key, keeps input order and normalises', async () => {
    const e = await OpenAICompatibleEmbedder.create({ baseUrl: base, model: 'm', apiKey: 'sk-test' });
    expect(e.dimensions).toBe(3);
    const [a, b] = await e.embed(['', 'abcd']);
    expect(Array.from(a!)).toEqual([0, 0.6000000238418579, 0.800000011920929]);
    expect(dot(b!, b!)).toBeCloseTo(1, 6);
    expect(b![0]).toBeGreaterThan(0.6);
    expect(calls.at(-1)?.auth).toBe('Bearer sk-test');
    await e.close();
  });

  it('reports an upstream error with its status', async () => {
    await expect(OpenAICompatibleEmbedder.create({ baseUrl: base, model: 'broken' })).rejects.toThrow(/500/);
  });

  it('batches concurrent single embeds into one request', async () => {
    const inner = await OpenAICompatibleEmbedder.create({ baseUrl: base, model: 'm', dimensions: 3 });
    const batched = new BatchedEmbedder(inner, { maxSize: 8, flushTimeoutMs: 10 });
    const before = calls.length;
    const out = await Promise.all(['a', 'bb', 'ccc'].map((t) => batched.embed([t])));
    expect(out).toHaveLength(3);
    expect(calls.length - before).toBe(1);
    expect(calls.at(-1)?.input).toEqual(['a', 'bb', 'ccc']);
    await inner.close();
  });

  it('fails only the lookup whose prompt the upstream refuses, not the others batched with it', async () => {
    const inner = await OpenAICompatibleEmbedder.create({ baseUrl: base, model: 'm', dimensions: 3 });
    const batched = new BatchedEmbedder(inner, { maxSize: 8, flushTimeoutMs: 10 });
    const results = await Promise.allSettled([batched.embed(['a']), batched.embed(['TOO LONG prompt']), batched.embed(['bb', 'a'])]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ status: 400, kind: 'context_length' });
    expect((results[2] as PromiseFulfilledResult<Float32Array[]>).value).toHaveLength(2);
    await inner.close();
  });

  it('does not retry apart a batch the upstream refuses for the account (402), which no lookup caused', async () => {
    const inner = await OpenAICompatibleEmbedder.create({ baseUrl: base, model: 'unpaid', dimensions: 3 });
    const batched = new BatchedEmbedder(inner, { maxSize: 8, flushTimeoutMs: 10 });
    const before = calls.length;
    const results = await Promise.allSettled([batched.embed(['a']), batched.embed(['bb']), batched.embed(['ccc'])]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ status: 402, kind: 'quota' });
    expect(calls.length - before).toBe(1);
    await inner.close();
  });

  it('uses one of the gateway providers', async () => {
    const sim = createSimulatorProvider('sim', { embedding_dimensions: 16 });
    const e = await OpenAICompatibleEmbedder.create({ provider: sim, model: 'sim-embed' });
    expect(e.dimensions).toBe(16);
    const [a, b] = await e.embed(['same text', 'same text']);
    expect(dot(a!, b!)).toBeCloseTo(1, 5);
    expect(e.id).toContain('provider:sim');
  });
});
