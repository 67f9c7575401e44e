// Semantic cache quality: over the labelled pairs in bench/cache-eval/pairs.json, prints for each
// embedder and threshold the share of paraphrases that hit and of near misses that falsely hit, with
// the false-hit guards (what the cache does) and without them (the embedder alone); then, at the default
// threshold with the guards, the false-hit rate with its 95% upper bound and the paraphrase hit rate with
// its 95% interval (exact Clopper-Pearson bounds).
// Usage: tsx bench/cache-eval.ts [--set pairs|<name>|<file>.json] [--embedders=static,transformers] [--openai=<base url>,<model>] [--verbose]
// --set (or --set=) names a file in bench/cache-eval/ (default `pairs`) or, ending in .json, a path
// (relative to the working directory). A set file is JSON: { "paraphrases": [[a, b], ...],
// "near_misses": [{ "kind": ..., "a": ..., "b": ... }, ...] }; other fields are ignored.
// bench/cache-eval/heldout.json is a held-out set written blind to the guards (notes in heldout-notes.json).
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StaticEmbedder } from '../src/cache/embedders/static.js';
import { TransformersEmbedder } from '../src/cache/embedders/transformers.js';
import { OpenAICompatibleEmbedder } from '../src/cache/embedders/openai-compatible.js';
import { dot, type Embedder } from '../src/cache/embedders/types.js';
import { extractFeatures, featuresAgree } from '../src/cache/guards.js';

interface Pairs {
  paraphrases: [string, string][];
  near_misses: { kind: string; a: string; b: string }[];
}

const THRESHOLDS = [0.7, 0.75, 0.8, 0.85, 0.9, 0.95];
const DEFAULT_THRESHOLD = 0.85;
const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=').slice(1).join('=');
const wanted = (arg('embedders') ?? 'static,transformers').split(',');
// <repo>/../shared/models in the main checkout; one level further up from a worktree under wt/.
const sharedModel = [
  process.env.INFERENCEFLOW_SHARED_MODELS,
  fileURLToPath(new URL('../../shared/models', import.meta.url)),
  fileURLToPath(new URL('../../../shared/models', import.meta.url)),
]
  .filter((p): p is string => !!p && existsSync(join(p, 'static-glove-minilm', 'config.json')))
  .map((p) => join(p, 'static-glove-minilm'))[0];

const setAt = process.argv.indexOf('--set');
const setNext = setAt >= 0 ? process.argv[setAt + 1] : undefined;
if (setAt >= 0 && (!setNext || setNext.startsWith('--'))) throw new Error('--set needs a set name or a .json path');
const set = (setAt >= 0 ? setNext : arg('set')) ?? 'pairs';
const setFile = set.endsWith('.json') ? set : new URL(`./cache-eval/${set}.json`, import.meta.url);
const pairs = JSON.parse(await readFile(setFile, 'utf8')) as Pairs;

const embedders: Embedder[] = [];
if (wanted.includes('static')) embedders.push(await StaticEmbedder.create());
if (wanted.includes('transformers') && (process.env.EVAL_TRANSFORMERS_MODEL || sharedModel)) {
  try {
    embedders.push(await TransformersEmbedder.create({ model: (process.env.EVAL_TRANSFORMERS_MODEL ?? sharedModel) as string }));
  } catch (err) {
    console.warn(`transformers embedder skipped: ${(err as Error).message}`);
  }
}
const openai = arg('openai');
if (openai) {
  const [baseUrl, model] = openai.split(',') as [string, string];
  embedders.push(await OpenAICompatibleEmbedder.create({ baseUrl, model, apiKey: process.env.OPENAI_API_KEY ?? '' }));
}

async function similarities(e: Embedder, list: [string, string][]): Promise<number[]> {
  const flat = list.flat();
  const vecs: Float32Array[] = [];
  for (let i = 0; i < flat.length; i += 64) vecs.push(...(await e.embed(flat.slice(i, i + 64))));
  return list.map((_, i) => dot(vecs[2 * i] as Float32Array, vecs[2 * i + 1] as Float32Array));
}

const guardOk = (a: string, b: string) => featuresAgree(extractFeatures(a), extractFeatures(b)).ok;
const paraGuard = pairs.paraphrases.map(([a, b]) => guardOk(a, b));
const missList = pairs.near_misses.map((m): [string, string] => [m.a, m.b]);
const missGuard = missList.map(([a, b]) => guardOk(a, b));
const pct = (n: number, d: number) => `${((100 * n) / d).toFixed(1)}%`.padStart(6);

// Exact (Clopper-Pearson) binomial bounds: the p at which k or fewer successes of n (upper bound) or k
// or more (lower bound) have probability alpha, found by bisection on the binomial distribution function.
function binomCdf(k: number, n: number, p: number): number {
  if (k < 0) return 0;
  if (k >= n) return 1;
  let logC = 0; // log C(n, i)
  let s = 0;
  for (let i = 0; i <= k; i++) {
    if (i > 0) logC += Math.log(n - i + 1) - Math.log(i);
    s += Math.exp(logC + i * Math.log(p) + (n - i) * Math.log1p(-p));
  }
  return Math.min(1, s);
}
function bisect(f: (p: number) => number): number {
  // f decreasing in p on (0, 1): the p where it crosses 0
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 100; i++) {
    const mid = (lo + hi) / 2;
    if (f(mid) > 0) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}
const cpUpper = (k: number, n: number, alpha: number) => (k >= n ? 1 : bisect((p) => binomCdf(k, n, p) - alpha));
const cpLower = (k: number, n: number, alpha: number) => (k <= 0 ? 0 : bisect((p) => alpha - 1 + binomCdf(k - 1, n, p)));
const pc2 = (x: number) => `${(100 * x).toFixed(2)}%`;

console.log(`set ${set}: ${pairs.paraphrases.length} paraphrases, ${pairs.near_misses.length} near misses`);
console.log(`guards alone: pass ${pct(paraGuard.filter(Boolean).length, paraGuard.length)} of paraphrases, ${pct(missGuard.filter(Boolean).length, missGuard.length)} of near misses`);
for (const e of embedders) {
  const ps = await similarities(e, pairs.paraphrases);
  const ms = await similarities(e, missList);
  console.log(`\nembedder ${e.id} (${e.dimensions} dims)`);
  console.log('threshold | paraphrase hit (guarded) | false hit (guarded) | paraphrase hit (raw) | false hit (raw)');
  for (const t of THRESHOLDS) {
    const hit = ps.filter((s, i) => s >= t && paraGuard[i]).length;
    const fh = ms.filter((s, i) => s >= t && missGuard[i]).length;
    const hitRaw = ps.filter((s) => s >= t).length;
    const fhRaw = ms.filter((s) => s >= t).length;
    console.log(
      `${t.toFixed(2).padStart(9)} | ${pct(hit, ps.length).padStart(24)} | ${pct(fh, ms.length).padStart(19)} | ${pct(hitRaw, ps.length).padStart(20)} | ${pct(fhRaw, ms.length).padStart(15)}`,
    );
  }
  const hitAt = ps.filter((s, i) => s >= DEFAULT_THRESHOLD && paraGuard[i]).length;
  const fhAt = ms.filter((s, i) => s >= DEFAULT_THRESHOLD && missGuard[i]).length;
  console.log(
    `at ${DEFAULT_THRESHOLD} (guarded): false hits ${fhAt}/${ms.length} = ${pc2(fhAt / ms.length)}, 95% upper bound ${pc2(cpUpper(fhAt, ms.length, 0.05))} (one-sided Clopper-Pearson)`,
  );
  console.log(
    `at ${DEFAULT_THRESHOLD} (guarded): paraphrase hits ${hitAt}/${ps.length} = ${pc2(hitAt / ps.length)}, 95% interval ${pc2(cpLower(hitAt, ps.length, 0.025))} to ${pc2(cpUpper(hitAt, ps.length, 0.025))} (two-sided Clopper-Pearson)`,
  );
  const leaks = pairs.near_misses.filter((_, i) => (ms[i] as number) >= DEFAULT_THRESHOLD && missGuard[i]);
  for (const m of leaks) console.log(`  false hit at ${DEFAULT_THRESHOLD}: [${m.kind}] ${m.a} | ${m.b}`);
  if (process.argv.includes('--verbose')) {
    pairs.paraphrases.forEach(([a, b], i) => {
      if ((ps[i] as number) < DEFAULT_THRESHOLD || !paraGuard[i]) console.log(`  missed paraphrase ${(ps[i] as number).toFixed(3)}${paraGuard[i] ? '' : ' (guard)'}: ${a} | ${b}`);
    });
  }
}
