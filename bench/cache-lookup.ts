// Response cache lookup latency with N entries in one partition (the worst case: one tenant, one
// system prompt), embedding excluded: vectors are computed beforehand and served from a table.
// Measures ResponseCache.lookup end to end (exact probe, index search, guards, entry fetch, decode).
// Usage: tsx bench/cache-lookup.ts [N=100000] [queries=2000] [--usearch[=<path>]]
import type { ChatRequest } from '../src/canonical/chat.js';
import { StaticEmbedder } from '../src/cache/embedders/static.js';
import type { Embedder } from '../src/cache/embedders/types.js';
import { ResponseCache } from '../src/cache/response-cache.js';
import { MemoryCacheStore } from '../src/cache/stores/memory.js';
import { loadUsearch, typescriptHnswFactory, usearchFactory } from '../src/cache/vector-index.js';

const N = Number(process.argv[2] ?? 100_000);
const Q = Number(process.argv[3] ?? 2000);
const usearchArg = process.argv.find((a) => a.startsWith('--usearch'));
const usearch = usearchArg ? loadUsearch(usearchArg.includes('=') ? usearchArg.slice('--usearch='.length) : undefined) : undefined;
if (usearchArg && !usearch) throw new Error('usearch not found');

const words = 'river mountain password invoice router bread garden planet engine guitar coffee winter python server ticket market doctor island camera battery'.split(' ');
const verbs = 'fix clean explain compare choose repair describe protect improve measure'.split(' ');
function prompt(i: number): string {
  const w = (k: number) => words[Math.floor(i / k) % words.length] as string;
  return `How do I ${verbs[i % verbs.length]} the ${w(10)} near the ${w(200)} for order ${i}?`;
}

const stat = await StaticEmbedder.create();
const texts = Array.from({ length: N }, (_, i) => prompt(i));
const queryTexts = Array.from({ length: Q }, (_, i) => (i % 2 ? prompt((i * 7919) % N) : `Tell me about ${words[i % words.length]} number ${N + i}`));
const table = new Map<string, Float32Array>();
for (const t of [...texts, ...queryTexts]) table.set(t, stat.embedOne(t));
const precomputed: Embedder = { id: stat.id, dimensions: stat.dimensions, embed: async (ts) => ts.map((t) => table.get(t) ?? stat.embedOne(t)) };

const cache = await ResponseCache.create({
  store: new MemoryCacheStore({ maxBytes: 4e9 }),
  ttlMs: 3_600_000,
  compressMinBytes: 2048,
  semantic: {
    embedder: precomputed,
    threshold: 0.85,
    maxTemperature: 1,
    annFactory: usearch ? usearchFactory(usearch) : typescriptHnswFactory({ efConstruction: 64 }),
    indexKind: usearch ? 'usearch' : 'typescript-hnsw',
  },
});
const req = (text: string): ChatRequest => ({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: text }], temperature: 0 });
const answer = (text: string) => ({
  kind: 'result' as const,
  result: { id: 'x', object: 'chat.completion' as const, created: 0, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant' as const, content: `Answer to ${text}` }, finish_reason: 'stop' as const, logprobs: null }], usage: { prompt_tokens: 20, completion_tokens: 10, total_tokens: 30 } },
});

let t = performance.now();
for (const text of texts) {
  const { probe } = await cache.lookup('bench', req(text), { skipRead: true });
  await cache.put(probe, answer(text), { tokens: 30, costUsd: 0.0001 });
}
const buildS = (performance.now() - t) / 1000;

const times: number[] = [];
let hits = 0;
for (const q of queryTexts) {
  const r = req(q);
  t = performance.now();
  const { hit } = await cache.lookup('bench', r);
  times.push(performance.now() - t);
  if (hit) hits++;
}
times.sort((a, b) => a - b);
const p = (x: number) => +(times[Math.min(times.length - 1, Math.floor(x * times.length))] as number).toFixed(3);
console.log(JSON.stringify({
  bench: 'cache-lookup', index: usearch ? 'usearch' : 'typescript-hnsw', entries: N, queries: Q, buildSeconds: +buildS.toFixed(1),
  p50Ms: p(0.5), p99Ms: p(0.99), maxMs: p(1), hitRate: +(hits / Q).toFixed(3),
}));
await cache.close();
