// Vector index benchmark: lookup latency (p50/p99) and recall@1 of the in-process HNSW against exact
// search, at N entries of D dims, plus exact search's own latency for comparison.
// Usage: tsx bench/cache-index.ts [N=100000] [queries=1000] [--clustered | --prompts | --templated] [--usearch[=<path to usearch>]]
// Vectors are uniform random (the hardest case for any graph index), "clustered" (random cluster
// centres plus noise, like prompt embeddings that gather by topic) or "prompts": the static
// embedder's vectors of generated prompts (100 d), the distribution the gateway's index really holds.
// "templated": the static embedder's vectors of the prompts bench/full-pipeline.ts and bench/soak.ts
// send as misses (one sentence, then a run id and a counter), every two of them at similarity
// ~0.8: a graph index's costly case, where inserts and searches visit about twice the nodes they do
// on "prompts" — what those benchmarks' index thread pays per miss.
//
// The index is searched as the semantic cache searches it: `cache.semantic.candidates` (4) neighbours
// from the (quantized) index, re-scored against the full-precision vectors, best first. Two recalls:
// - recallAt1: queries drawn like the data; the re-scored best equals exact search's best (a tie in
//   similarity counts as agreement).
// - nearRecallAt1: each query is a stored vector moved to a similarity of about 0.9 with it (a
//   paraphrase that should hit); the re-scored best equals exact search's best. This is the lookup a
//   cache depends on: a miss here is a hit lost.
// Tuning from cache.semantic.index's defaults, overridden by EF_ADD, EF_SEARCH, M (connectivity),
// QUANT (usearch: i8 | f16 | f32) and CANDIDATES.
import { semanticCacheSchema } from '../src/cache/config.js';
import { seededRandom } from '../src/capacity/traffic-fixture.js';
import { percentile } from './lib/load.js';
import { StaticEmbedder } from '../src/cache/embedders/static.js';
import { annFromConfig } from '../src/cache/create.js';
import { HnswIndex } from '../src/cache/hnsw.js';
import { dot, normalizeInPlace } from '../src/cache/embedders/types.js';

const N = Number(process.argv[2] ?? 100_000);
const Q = Number(process.argv[3] ?? 1000);
const kind = process.argv.includes('--templated') ? 'templated' : process.argv.includes('--prompts') ? 'prompts' : process.argv.includes('--clustered') ? 'clustered' : 'uniform';
const D = 100;

// A full-period generator (seededRandom, mulberry32). The float LCG used before,
// `seed * 1103515245 + 12345`, overflowed 2^53, lost its low bits and cycled after ~10,500 draws: its
// "100,000 vectors" were ~5,000 overlapping windows of one sequence, and every query was one of
// them, so recall@1 was 1.00 by construction.
const rand = seededRandom(12345);
function gauss(): number {
  return Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
}
const centres = Array.from({ length: 500 }, () => Float32Array.from({ length: D }, gauss));
function synthetic(): Float32Array {
  const v = new Float32Array(D);
  const c = centres[Math.floor(rand() * centres.length)] as Float32Array;
  const clustered = kind === 'clustered';
  for (let d = 0; d < D; d++) v[d] = (clustered ? (c[d] as number) : 0) + gauss() * (clustered ? 0.6 : 1);
  return normalizeInPlace(v);
}

// Prompts: templates over a few hundred words, so topics overlap the way a tenant's traffic does.
const subjects = 'password invoice router printer account laptop battery camera garden bread coffee guitar engine server ticket passport flight hotel refund subscription database kubernetes python spreadsheet email calendar budget mortgage insurance recipe'.split(' ');
const verbs = 'reset fix clean explain compare choose repair describe protect improve measure cancel renew update install configure export import share delete'.split(' ');
const frames = [
  (v: string, s: string, o: string) => `How do I ${v} my ${s} when the ${o} is not working?`,
  (v: string, s: string, o: string) => `What is the best way to ${v} a ${s} and a ${o}?`,
  (v: string, s: string, o: string) => `Can you ${v} the ${s} for me before the ${o} expires?`,
  (v: string, s: string, o: string) => `Why does my ${s} fail after I ${v} the ${o}?`,
  (v: string, s: string, o: string) => `Steps to ${v} ${s} settings on a new ${o}`,
];
const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)] as T;
const embedder = kind === 'prompts' || kind === 'templated' ? await StaticEmbedder.create() : undefined;
function prompt(): Float32Array {
  const text = `${pick(frames)(pick(verbs), pick(subjects), pick(subjects))} (${Math.floor(rand() * 1000)} ${pick(subjects)})`;
  return (embedder as StaticEmbedder).embedOne(text);
}
// As bench/full-pipeline.ts words its misses: `Say something short. ${run}-${phase}-${i}`.
const templatedRun = Math.floor(rand() * 2 ** 40).toString(36);
let templatedNext = 0;
function templated(): Float32Array {
  return (embedder as StaticEmbedder).embedOne(`Say something short. ${templatedRun}-sat-gateway-r1-${templatedNext++}`);
}
const vec = kind === 'templated' ? templated : kind === 'prompts' ? prompt : synthetic;

/** A unit vector at similarity ≈ `sim` with v: v's direction plus an orthogonal random part. */
function near(v: Float32Array, sim: number): Float32Array {
  const r = Float32Array.from({ length: D }, gauss);
  const along = dot(r, v);
  for (let d = 0; d < D; d++) r[d] = (r[d] as number) - along * (v[d] as number);
  normalizeInPlace(r);
  const s = Math.sqrt(1 - sim * sim);
  return normalizeInPlace(Float32Array.from({ length: D }, (_, d) => sim * (v[d] as number) + s * (r[d] as number)));
}

const data = Array.from({ length: N }, vec);
const queries = Array.from({ length: Q }, vec);
const nearQueries = Array.from({ length: Q }, () => near(data[Math.floor(rand() * N)] as Float32Array, 0.9));
// The index as the gateway builds it (annFromConfig), with the overrides above: --usearch[=<path>]
// for usearch (from that path, else the installed package), the TypeScript HNSW otherwise (grown
// from the gateway's small initial capacity as entries arrive, as in the gateway).
const usearchArg = process.argv.find((a) => a === '--usearch' || a.startsWith('--usearch='));
const cfg = semanticCacheSchema.parse({});
const defaults = cfg.index;
const env = (name: string) => (process.env[name] ? Number(process.env[name]) : undefined);
const ann = annFromConfig(
  {
    implementation: usearchArg ? 'usearch' : 'typescript',
    ef_construction: env('EF_ADD') ?? defaults.ef_construction,
    ef_search: env('EF_SEARCH') ?? defaults.ef_search,
    connectivity: env('M') ?? defaults.connectivity,
    quantization: (process.env.QUANT ?? defaults.quantization) as 'i8' | 'f16' | 'f32',
  },
  usearchArg?.includes('=') ? usearchArg.slice('--usearch='.length) : undefined,
);
const { kind: impl, tuning } = ann;
const index = ann.factory(D);
// The TypeScript HNSW is also searched at each of EF_LIST's ef values (the efSearch of one search).
const tsIndex = index instanceof HnswIndex ? index : undefined;
const candidates = env('CANDIDATES') ?? cfg.candidates;
const t = performance.now();
data.forEach((v, i) => index.add(String(i), v));
const buildS = (performance.now() - t) / 1000;

const pct = (xs: number[], p: number) => percentile([...xs].sort((a, b) => a - b), p);

const exactTimes: number[] = [];
function exact(q: Float32Array): { label: number; sim: number } {
  const t0 = performance.now();
  let best = -2;
  let bestI = -1;
  for (let i = 0; i < N; i++) {
    const s = dot(q, data[i] as Float32Array);
    if (s > best) {
      best = s;
      bestI = i;
    }
  }
  exactTimes.push(performance.now() - t0);
  return { label: bestI, sim: best };
}
const truth = queries.map(exact);
const nearTruth = nearQueries.map(exact);

/** The cache's lookup: `candidates` from the index, re-scored at full precision, best first. */
function lookup(q: Float32Array, ef: number): { label: string; similarity: number } | undefined {
  const found = tsIndex ? tsIndex.search(q, candidates, ef) : index.search(q, candidates);
  let best: { label: string; similarity: number } | undefined;
  for (const n of found) {
    const similarity = dot(q, data[Number(n.label)] as Float32Array);
    if (!best || similarity > best.similarity) best = { label: n.label, similarity };
  }
  return best;
}
function recall(qs: Float32Array[], want: { label: number; sim: number }[], ef: number, times?: number[]): number {
  let agree = 0;
  qs.forEach((q, qi) => {
    const t0 = performance.now();
    const got = lookup(q, ef);
    times?.push(performance.now() - t0);
    const w = want[qi] as { label: number; sim: number };
    if (got && (got.label === String(w.label) || Math.abs(got.similarity - w.sim) < 1e-6)) agree++;
  });
  return agree / qs.length;
}

const efs = tsIndex ? (process.env.EF_LIST ?? '16,32,64').split(',').map(Number) : [tuning.efSearch as number];
const byEf = efs.map((ef) => {
  const times: number[] = [];
  const recallAt1 = recall(queries, truth, ef, times);
  const nearRecallAt1 = recall(nearQueries, nearTruth, ef);
  return { ef, p50Ms: +pct(times, 50).toFixed(3), p99Ms: +pct(times, 99).toFixed(3), recallAt1, nearRecallAt1 };
});
console.log(JSON.stringify({
  bench: 'cache-index', impl, n: N, dims: D, queries: Q, vectors: kind, tuning: tsIndex ? { ...tuning, quantization: 'f32' } : tuning, candidates,
  buildSeconds: +buildS.toFixed(1), hnsw: byEf,
  exact: { p50Ms: +pct(exactTimes, 50).toFixed(3), p99Ms: +pct(exactTimes, 99).toFixed(3) },
  heapMB: Math.round(process.memoryUsage().heapUsed / 1e6),
}));
