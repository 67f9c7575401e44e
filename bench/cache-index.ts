// Vector index benchmark: lookup latency (p50/p99) and recall@1 of the in-process HNSW against exact
// search, at N entries of D dims, plus exact search's own latency for comparison.
// Usage: tsx bench/cache-index.ts [N=100000] [queries=1000] [--clustered] [--usearch[=<path to usearch>]]
// Vectors are "clustered" (random cluster centres plus noise, like prompt embeddings that gather by
// topic) or uniform random (the hardest case for any graph index).
import { semanticCacheSchema } from '../src/cache/config.js';
import { HnswIndex } from '../src/cache/hnsw.js';
import { loadUsearch, usearchFactory, type AnnIndex } from '../src/cache/vector-index.js';
import { dot, normalizeInPlace } from '../src/cache/embedders/types.js';

const N = Number(process.argv[2] ?? 100_000);
const Q = Number(process.argv[3] ?? 1000);
const clustered = process.argv.includes('--clustered');
const D = 100;

let seed = 12345;
function rand(): number {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
}
function gauss(): number {
  return Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
}
const centres = Array.from({ length: 500 }, () => Float32Array.from({ length: D }, gauss));
function vec(): Float32Array {
  const v = new Float32Array(D);
  const c = centres[Math.floor(rand() * centres.length)] as Float32Array;
  for (let d = 0; d < D; d++) v[d] = (clustered ? (c[d] as number) : 0) + gauss() * (clustered ? 0.6 : 1);
  return normalizeInPlace(v);
}

const data = Array.from({ length: N }, vec);
const queries = Array.from({ length: Q }, vec);
const usearchArg = process.argv.find((a) => a.startsWith('--usearch'));
const usearchMod = usearchArg ? loadUsearch(usearchArg.includes('=') ? usearchArg.slice('--usearch='.length) : undefined) : undefined;
if (usearchArg && !usearchMod) throw new Error('usearch not found');
const impl = usearchMod ? 'usearch' : 'typescript-hnsw';
// EF_ADD / EF_SEARCH: the index's expansion when adding and searching (cache.semantic.index's
// defaults otherwise, for both implementations, as the gateway builds them).
const defaults = semanticCacheSchema.parse({}).index;
const tuning = { efConstruction: Number(process.env.EF_ADD ?? defaults.ef_construction), efSearch: Number(process.env.EF_SEARCH ?? defaults.ef_search) };
const tsIndex = new HnswIndex({ dimensions: D, initialCapacity: N, efConstruction: tuning.efConstruction, efSearch: tuning.efSearch });
const index: AnnIndex = usearchMod ? usearchFactory(usearchMod, tuning)(D) : tsIndex;
const t = performance.now();
data.forEach((v, i) => index.add(String(i), v));
const buildS = (performance.now() - t) / 1000;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
}

const efs = usearchMod ? [64] : (process.env.EF_LIST ?? '16,32,64').split(',').map(Number);
const exactTimes: number[] = [];
const truth: { label: number; sim: number }[] = [];
for (const q of queries) {
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
  truth.push({ label: bestI, sim: best });
}
const byEf = efs.map((ef) => {
  const times: number[] = [];
  let agree = 0;
  queries.forEach((q, qi) => {
    const t0 = performance.now();
    const got = usearchMod ? index.search(q, 1)[0] : tsIndex.search(q, 1, ef)[0];
    times.push(performance.now() - t0);
    const want = truth[qi] as { label: number; sim: number };
    // A tie in similarity counts as agreement.
    if (got && (got.label === String(want.label) || Math.abs(got.similarity - want.sim) < 1e-6)) agree++;
  });
  return { ef, p50Ms: +pct(times, 50).toFixed(3), p99Ms: +pct(times, 99).toFixed(3), recallAt1: agree / Q };
});
console.log(JSON.stringify({
  bench: 'cache-index', impl, n: N, dims: D, queries: Q, vectors: clustered ? 'clustered' : 'uniform',
  buildSeconds: +buildS.toFixed(1), hnsw: byEf,
  exact: { p50Ms: +pct(exactTimes, 50).toFixed(3), p99Ms: +pct(exactTimes, 99).toFixed(3) },
  heapMB: Math.round(process.memoryUsage().heapUsed / 1e6),
}));
