// Response cache lookup latency with N entries in one partition (the worst case: one tenant, one
// system prompt), embedding excluded: vectors are computed beforehand and served from a table.
// Measures ResponseCache.lookup end to end, reported per code path, because the paths differ by an
// order of magnitude and a mix of them says nothing about any one:
//   - exact hit:     the exact-key probe finds the entry (fetch + decode, no embedding or index).
//   - semantic hit:  a paraphrase of a stored prompt: exact probe misses, index search, guards agree,
//                    entry fetch, decode.
//   - miss:          an unrelated prompt: exact probe, index search, no candidate above the threshold.
//   - near miss:     a stored prompt with another order number: candidates above the threshold, each
//                    refused by the guards (numbers), then a miss — the costliest miss.
// Every lookup is classified by the path it really took (hit kind, and whether guards refused a
// candidate), and the table also says how many queries of each kind took their intended path.
// The cache is built as the gateway builds it from `cache:`'s defaults (src/cache/config.ts):
// threshold, candidates, max_temperature, ttl, compression, the index implementation (`auto`:
// usearch when installed) and its tuning (connectivity, ef_construction, ef_search, quantization)
// by src/cache/create.ts's annFromConfig. Only the store's byte budget is raised (--max-bytes,
// default 4 GB) so that all N entries stay: the default 256 MiB would evict part of them.
// Usage: tsx bench/cache-lookup.ts [N=100000] [queries per kind=2000] [--usearch[=<path>] | --typescript] [--max-bytes=<n>]
import os from 'node:os';
import type { ChatRequest } from '../src/canonical/chat.js';
import { cacheConfigSchema } from '../src/cache/config.js';
import { annFromConfig } from '../src/cache/create.js';
import { StaticEmbedder } from '../src/cache/embedders/static.js';
import type { Embedder } from '../src/cache/embedders/types.js';
import { ResponseCache } from '../src/cache/response-cache.js';
import { MemoryCacheStore } from '../src/cache/stores/memory.js';
import { seededRandom } from '../src/capacity/traffic-fixture.js';
import { percentile } from './lib/load.js';

const positional = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const N = Number(positional[0] ?? 100_000);
const Q = Number(positional[1] ?? 2000);
const flag = (name: string) => process.argv.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
const flagValue = (name: string) => flag(name)?.split('=').slice(1).join('=') || undefined;

const cfg = cacheConfigSchema.parse({});
const maxBytes = Number(flagValue('max-bytes') ?? 4e9);
// The gateway's choice (`implementation: auto` by default) unless --typescript or --usearch names one.
const implementation = flag('typescript') ? 'typescript' : flag('usearch') ? 'usearch' : cfg.semantic.index.implementation;
const ann = annFromConfig({ ...cfg.semantic.index, implementation }, flagValue('usearch'));

// Prompts over a few hundred words, so entries are mostly distinct and some share their words.
const verbs = 'fix clean explain compare choose repair describe protect improve measure cancel renew update install configure export import share delete reset move paint sell test sort'.split(' ');
const nouns = (
  'river mountain password invoice router bread garden planet engine guitar coffee winter python server ticket market doctor island camera battery ' +
  'printer laptop account passport flight hotel refund subscription database spreadsheet email calendar budget mortgage insurance recipe kitchen ' +
  'bicycle window station bridge library museum school hospital airport harbour factory office warehouse tractor boat truck train bus car ' +
  'phone tablet keyboard monitor speaker headphone charger cable modem antenna satellite telescope microscope violin piano drum trumpet flute ' +
  'carpet curtain sofa chair table lamp mirror shelf drawer closet door roof chimney fence gate lawn pool fountain statue tower castle church ' +
  'forest desert valley canyon lake ocean beach glacier volcano cave meadow swamp jungle prairie orchard vineyard farm barn stable ranch ' +
  'contract lease warranty receipt license permit certificate diploma passport visa deposit loan pension salary payroll tax audit report ' +
  'website domain firewall backup cluster container kernel compiler debugger browser plugin widget dashboard sensor thermostat boiler furnace'
).split(' ');
const random = seededRandom(7);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
interface Parts {
  v: string;
  a: string;
  b: string;
  n: number;
}
const stored = ({ v, a, b, n }: Parts) => `How do I ${v} the ${a} near the ${b} for order ${n}?`;
// Rewordings the static embedder puts at similarity ~0.90-0.99 to the stored prompt and the guards
// accept (same numbers, same content words).
const paraphrases = [
  ({ v, a, b, n }: Parts) => `How can I ${v} the ${a} near the ${b} for order ${n}?`,
  ({ v, a, b, n }: Parts) => `how do i ${v} the ${a} near the ${b} for order ${n}`,
  ({ v, a, b, n }: Parts) => `What is the way to ${v} the ${a} near the ${b} for order ${n}?`,
  ({ v, a, b, n }: Parts) => `Please, how do I ${v} the ${a} near the ${b} for order ${n}?`,
  ({ v, a, b, n }: Parts) => `Tell me how to ${v} the ${a} near the ${b} for order ${n}.`,
];
const entries: Parts[] = Array.from({ length: N }, (_, n) => ({ v: pick(verbs), a: pick(nouns), b: pick(nouns), n }));
const texts = entries.map(stored);

type Kind = 'exact' | 'semantic' | 'miss' | 'near_miss';
const KINDS: Kind[] = ['exact', 'semantic', 'miss', 'near_miss'];
const queries: { kind: Kind; text: string }[] = [];
for (let i = 0; i < Q; i++) {
  const e = entries[Math.floor(random() * N)] as Parts;
  queries.push({ kind: 'exact', text: stored(e) });
  queries.push({ kind: 'semantic', text: (paraphrases[i % paraphrases.length] as (p: Parts) => string)(entries[Math.floor(random() * N)] as Parts) });
  queries.push({ kind: 'miss', text: `Write a short poem about ${pick(nouns)} and ${pick(nouns)} in the style of ${pick(['Keats', 'Basho', 'Whitman', 'Dickinson'])}` });
  // Not stored: order numbers of stored entries are 0..N-1.
  queries.push({ kind: 'near_miss', text: stored({ ...(entries[Math.floor(random() * N)] as Parts), n: N + i }) });
}
// Interleaved in a random order, so every path is measured under the same conditions (GC, machine load).
for (let i = queries.length - 1; i > 0; i--) {
  const j = Math.floor(random() * (i + 1));
  [queries[i], queries[j]] = [queries[j] as (typeof queries)[number], queries[i] as (typeof queries)[number]];
}

const stat = await StaticEmbedder.create({ vocabSize: cfg.semantic.vocab_size });
const table = new Map<string, Float32Array>();
for (const t of [...texts, ...queries.map((q) => q.text)]) table.set(t, stat.embedOne(t));
const precomputed: Embedder = { id: stat.id, dimensions: stat.dimensions, embed: async (ts) => ts.map((t) => table.get(t) ?? stat.embedOne(t)) };

const cache = await ResponseCache.create({
  store: new MemoryCacheStore({ maxBytes }),
  ttlMs: cfg.ttl_s * 1000,
  compressMinBytes: cfg.compress_min_bytes,
  semantic: {
    embedder: precomputed,
    threshold: cfg.semantic.threshold,
    maxTemperature: cfg.semantic.max_temperature,
    candidates: cfg.semantic.candidates,
    annFactory: ann.factory,
    indexKind: ann.kind,
  },
});
const req = (text: string): ChatRequest => ({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: text }], temperature: 0 });
const answer = (text: string) => ({
  kind: 'result' as const,
  result: { id: 'x', object: 'chat.completion' as const, created: 0, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant' as const, content: `Answer to ${text}` }, finish_reason: 'stop' as const, logprobs: null }], usage: { prompt_tokens: 20, completion_tokens: 10, total_tokens: 30 } },
});

const t = performance.now();
for (const text of texts) {
  const { probe } = await cache.lookup('bench', req(text), { skipRead: true });
  await cache.put(probe, answer(text), { tokens: 30, costUsd: 0.0001 });
}
const buildS = (performance.now() - t) / 1000;
const built = await cache.stats();
if (built.entries !== N || built.semantic.indexedEntries !== N) throw new Error(`the cache holds ${built.entries} entries (${built.semantic.indexedEntries} indexed) of ${N}: raise --max-bytes`);

type Path = 'exact_hit' | 'semantic_hit' | 'miss' | 'near_miss';
const guardRejections = async () => Object.values((await cache.stats()).semantic.guardRejections).reduce((a, b) => a + b, 0);
async function run(text: string): Promise<{ ms: number; path: Path }> {
  const before = await guardRejections();
  const r = req(text);
  const t0 = performance.now();
  const { hit } = await cache.lookup('bench', r);
  const ms = performance.now() - t0;
  const path: Path = hit ? (hit.kind === 'exact' ? 'exact_hit' : 'semantic_hit') : (await guardRejections()) > before ? 'near_miss' : 'miss';
  return { ms, path };
}
// Warm-up (JIT, caches), not recorded.
for (const q of queries.slice(0, 400)) await run(q.text);

const times: Record<Path, number[]> = { exact_hit: [], semantic_hit: [], miss: [], near_miss: [] };
const intended: Record<Kind, Path> = { exact: 'exact_hit', semantic: 'semantic_hit', miss: 'miss', near_miss: 'near_miss' };
const asIntended: Record<Kind, { total: number; ok: number; got: Partial<Record<Path, number>> }> = Object.fromEntries(KINDS.map((k) => [k, { total: 0, ok: 0, got: {} }])) as never;
for (const q of queries) {
  const { ms, path } = await run(q.text);
  times[path].push(ms);
  const a = asIntended[q.kind];
  a.total++;
  if (path === intended[q.kind]) a.ok++;
  a.got[path] = (a.got[path] ?? 0) + 1;
}
const byPath = Object.fromEntries(
  Object.entries(times).map(([path, xs]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    const ms = (p: number) => +percentile(sorted, p).toFixed(3);
    return [path, xs.length ? { n: xs.length, p50Ms: ms(50), p95Ms: ms(95), p99Ms: ms(99), maxMs: ms(100) } : { n: 0 }];
  }),
);
const s = await cache.stats();

console.log(JSON.stringify({
  bench: 'cache-lookup', index: ann.kind, tuning: ann.tuning, threshold: cfg.semantic.threshold, candidates: cfg.semantic.candidates,
  entries: N, queriesPerKind: Q, buildSeconds: +buildS.toFixed(1), storeMB: +(s.bytes / 1e6).toFixed(1), evictions: s.evictions,
  byPath, asIntended, meanSimilarity: s.semantic.meanSimilarity === null ? null : +s.semantic.meanSimilarity.toFixed(3), guardRejections: s.semantic.guardRejections,
  machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, load ${os.loadavg()[0]?.toFixed(1)}`,
}, null, 1));
await cache.close();
