import { describe, expect, it } from 'vitest';
import type { Embedder } from '../cache/embedders/types.js';
import { wordEmbedder } from '../../test/helpers/word-embedder.js';
import type { Deployment } from './catalog.js';
import { SemanticRouter } from './semantic.js';
import { DeploymentStats } from './stats.js';
import { createStrategy, type StrategyInput } from './strategies.js';

function dep(id: string, extra: Partial<Deployment> = {}): Deployment {
  return { id, group: 'g', providerName: 'p', provider: undefined as never, model: id, weight: 1, priority: 0, price: { input: 1, output: 1 }, timeoutMs: 1_000, ...extra };
}

function input(stats: Map<string, DeploymentStats>, random: () => number = Math.random): StrategyInput {
  return {
    stats: (id) => stats.get(id) ?? stats.set(id, new DeploymentStats(id, 0.5)).get(id)!,
    promptTokens: 1_000,
    completionTokens: 100,
    random,
  };
}

describe('strategies', () => {
  it('fallback keeps the priority order the router hands it', () => {
    const s = createStrategy('fallback', { exploration: 0 });
    const ds = [dep('b', { priority: 1 }), dep('c', { priority: 1 }), dep('a', { priority: 2 })];
    expect(s.order(ds, input(new Map())).order.map((d) => d.id)).toEqual(['b', 'c', 'a']);
  });

  it('weighted picks first by weight and never first a weight-0 deployment', () => {
    const s = createStrategy('weighted', { exploration: 0 });
    const ds = [dep('heavy', { weight: 3 }), dep('light', { weight: 1 }), dep('zero', { weight: 0 })];
    const firsts = new Map<string, number>();
    for (let i = 0; i < 4_000; i++) {
      const first = s.order(ds, input(new Map())).order[0]!.id;
      firsts.set(first, (firsts.get(first) ?? 0) + 1);
    }
    expect(firsts.get('zero')).toBeUndefined();
    const share = (firsts.get('heavy') ?? 0) / 4_000;
    expect(share).toBeGreaterThan(0.7);
    expect(share).toBeLessThan(0.8);
  });

  it('round_robin rotates the first choice and keeps the rest as fallbacks', () => {
    const s = createStrategy('round_robin', { exploration: 0 });
    const ds = [dep('a'), dep('b'), dep('c')];
    const orders = [0, 1, 2, 3].map(() => s.order(ds, input(new Map())).order.map((d) => d.id).join(''));
    expect(orders).toEqual(['abc', 'bca', 'cab', 'abc']);
  });

  it('least_busy puts the deployment with the fewest in-flight requests first', () => {
    const stats = new Map<string, DeploymentStats>();
    const inp = input(stats);
    inp.stats('a').inFlight = 5;
    inp.stats('b').inFlight = 1;
    inp.stats('c').inFlight = 3;
    const s = createStrategy('least_busy', { exploration: 0 });
    // The first choice is the least busy; the rest keep their priority order as fallbacks.
    expect(s.order([dep('a'), dep('b'), dep('c')], inp).order.map((d) => d.id)).toEqual(['b', 'a', 'c']);
    const firsts = new Set<string>();
    inp.stats('c').inFlight = 1;
    for (let i = 0; i < 200; i++) firsts.add(s.order([dep('a'), dep('b'), dep('c')], inp).order[0]!.id);
    expect(firsts).toEqual(new Set(['b', 'c'])); // ties spread at random
  });

  it('latency prefers the lowest EWMA, measures unknown deployments first, and explores', () => {
    const stats = new Map<string, DeploymentStats>();
    const inp = input(stats, () => 0.5);
    inp.stats('slow').observeLatency(500);
    inp.stats('fast').observeLatency(20);
    const s = createStrategy('latency', { exploration: 0.1 });
    expect(s.order([dep('slow'), dep('fast')], inp).order.map((d) => d.id)).toEqual(['fast', 'slow']);
    expect(s.order([dep('slow'), dep('fast'), dep('new')], inp).order[0]!.id).toBe('new');
    // Exploration (random below the share) moves another deployment to the front.
    const exploring = input(stats, () => 0.01);
    const choice = s.order([dep('slow'), dep('fast')], exploring);
    expect(choice.order[0]!.id).toBe('slow');
    expect(choice.reason).toBe('exploring');
  });

  it('latency: a failure raises the estimate so a fast-failing deployment is not preferred', () => {
    const st = new DeploymentStats('x', 0.5);
    st.observeLatency(10);
    st.observeFailure(1);
    expect(st.ewmaMs!).toBeGreaterThan(10);
  });

  it('cost orders by the estimated cost of this request', () => {
    const s = createStrategy('cost', { exploration: 0 });
    const ds = [dep('pricey', { price: { input: 10, output: 30 } }), dep('cheap', { price: { input: 0.1, output: 0.4 } }), dep('mid', { price: { input: 1, output: 2 } })];
    const choice = s.order(ds, input(new Map()));
    expect(choice.order[0]!.id).toBe('cheap');
    expect(choice.reason).toMatch(/^est \$/);
    const bigAnswer = s.order([dep('cheap-in', { price: { input: 0.1, output: 50 } }), dep('cheap-out', { price: { input: 5, output: 1 } })], { ...input(new Map()), promptTokens: 10, completionTokens: 4_000 });
    expect(bigAnswer.order[0]!.id).toBe('cheap-out');
    // A request fee counts too: cheaper tokens do not make up for $0.01 on every call here.
    const fee = s.order([dep('fee', { price: { input: 0.1, output: 0.4, per_request: 0.01 } }), dep('no-fee', { price: { input: 1, output: 2 } })], { ...input(new Map()), promptTokens: 100, completionTokens: 100 });
    expect(fee.order[0]!.id).toBe('no-fee');
  });
});

describe('SemanticRouter', () => {
  const cfg = {
    threshold: 0.5,
    default: 'general',
    routes: [
      { name: 'code', target: 'coder', examples: ['write a python function', 'fix this javascript bug'] },
      { name: 'math', target: 'mathematician', examples: ['solve this equation', 'integrate x squared'] },
    ],
  };

  it('routes to the label whose examples are most similar', async () => {
    const router = new SemanticRouter(cfg, wordEmbedder());
    const code = await router.classify('please write a python function that sorts');
    expect(code).toMatchObject({ route: 'code', target: 'coder', matched: true });
    const math = await router.classify('solve the equation for x');
    expect(math).toMatchObject({ route: 'math', target: 'mathematician', matched: true });
  });

  it('falls back to the default below the threshold', async () => {
    const router = new SemanticRouter(cfg, wordEmbedder());
    const other = await router.classify('tell me about your weekend');
    expect(other).toMatchObject({ route: 'default', target: 'general', matched: false });
    expect(other.similarity).toBeLessThan(0.5);
  });

  it('embeds the examples once', async () => {
    const inner = wordEmbedder();
    let calls = 0;
    const counting: Embedder = { ...inner, embed: (t) => (calls++, inner.embed(t)) };
    const router = new SemanticRouter(cfg, counting);
    await router.classify('a');
    await router.classify('b');
    expect(calls).toBe(3); // examples once + one per prompt
  });
});
