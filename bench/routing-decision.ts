// Routing decision cost with 50 deployments in a group, per strategy: eligibility (breaker, Retry-
// After cooling, context window) plus the strategy's order — `Router.decide()`, no upstream call.
// Then the whole router per request (decision, breaker and slot bookkeeping, deadline, attempt) over
// an in-memory provider that answers at once. Target: decision p99 <= 50 µs. Short by design; the
// numbers depend on the machine and on what else runs on it.
//   npx tsx bench/routing-decision.ts [iterations]
import { cpus } from 'node:os';
import { pino } from 'pino';
import type { ChatRequest, ChatResult } from '../src/canonical/chat.js';
import { modelGroupSchema, routingSchema } from '../src/config/schema.js';
import { defaultRequestOptions, newFacts, ANONYMOUS, type RequestContext } from '../src/gateway/context.js';
import type { ProviderAdapter } from '../src/providers/types.js';
import { ModelCatalog } from '../src/routing/catalog.js';
import { Router } from '../src/routing/router.js';
import { wordEmbedder } from '../test/helpers/word-embedder.js';

const iterations = Number(process.argv[2] ?? 20_000);
const STRATEGIES = ['fallback', 'weighted', 'round_robin', 'least_busy', 'latency', 'cost'] as const;
const log = pino({ level: 'silent' });

const instant: ProviderAdapter = {
  name: 'instant',
  type: 'simulator',
  async chat(req): Promise<ChatResult> {
    return { id: 'x', object: 'chat.completion', created: 0, model: req.model, choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop', logprobs: null }], usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 } };
  },
  async streamChat() {
    throw new Error('not used');
  },
  async embed() {
    throw new Error('not used');
  },
  async ready() {
    return true;
  },
  async close() {},
};

function groupConfig(strategy: string) {
  return modelGroupSchema.parse({
    name: strategy,
    strategy,
    deployments: Array.from({ length: 50 }, (_, i) => ({
      provider: 'instant',
      model: `m${i}`,
      weight: 1 + (i % 5),
      priority: i % 7,
      price: { input: 0.1 + (i % 13) * 0.2, output: 0.4 + (i % 11) * 0.3 },
      context_window: 128_000,
    })),
  });
}

function percentile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

function ctx(): RequestContext {
  return { id: 'bench', startedAt: 0, endpoint: 'chat', tenant: ANONYMOUS, signal: new AbortController().signal, log, options: defaultRequestOptions(), facts: newFacts(), headers: {} };
}

const catalog = new ModelCatalog(STRATEGIES.map(groupConfig), new Map([['instant', instant]]));
const router = new Router(catalog, { config: routingSchema.parse({ dedup: 'off' }), log, embedder: wordEmbedder() });

// Warm the latency/least-busy statistics so those strategies sort real numbers.
for (const d of catalog.allDeployments()) {
  router.statsFor(d.id).observeLatency(20 + Math.random() * 200);
  router.statsFor(d.id).inFlight = Math.floor(Math.random() * 10);
}

console.log(`routing decision, 50 deployments per group, ${iterations} decisions per strategy (node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'})`);
console.log('strategy      p50 µs   p99 µs   max µs   router handler p50 µs   p99 µs');
for (const strategy of STRATEGIES) {
  const req: ChatRequest = { model: strategy, max_tokens: 256, messages: [{ role: 'user', content: 'What is the capital of France? Answer in one word.' }] };
  for (let i = 0; i < 2_000; i++) router.decide(req);
  const samples = new Float64Array(iterations);
  for (let i = 0; i < iterations; i++) {
    const t = performance.now();
    router.decide(req);
    samples[i] = (performance.now() - t) * 1000;
  }
  samples.sort();
  const handler = new Float64Array(Math.min(iterations, 5_000));
  for (let i = 0; i < handler.length; i++) {
    const t = performance.now();
    await router.handler(ctx(), req);
    handler[i] = (performance.now() - t) * 1000;
  }
  handler.sort();
  console.log(
    `${strategy.padEnd(12)} ${percentile(samples, 0.5).toFixed(1).padStart(7)} ${percentile(samples, 0.99).toFixed(1).padStart(8)} ${samples[samples.length - 1]!.toFixed(0).padStart(8)}   ${percentile(handler, 0.5).toFixed(1).padStart(21)} ${percentile(handler, 0.99).toFixed(1).padStart(8)}`,
  );
}
await router.close();
