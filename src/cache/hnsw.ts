// A hierarchical navigable small-world graph (Malkov & Yashunin 2016) over normalised Float32
// vectors with cosine similarity, in plain TypeScript: typed-array storage, neighbour selection by
// the paper's heuristic, tombstone deletes. See docs/caching.md for why this instead of a native
// package, and bench/cache-index.ts for its recall and latency.
import { PairHeap } from './pair-heap.js';

export interface HnswOptions {
  dimensions: number;
  /** Links per node on the upper layers (twice this on layer 0). */
  M?: number;
  efConstruction?: number;
  /** Candidate list size while searching; raised to k when smaller. */
  efSearch?: number;
  initialCapacity?: number;
  /** Seed for level draws, so builds are reproducible. */
  seed?: number;
}

export interface Neighbour {
  label: string;
  similarity: number;
}

export class HnswIndex {
  readonly dimensions: number;
  private readonly M: number;
  private readonly M0: number;
  private readonly efConstruction: number;
  efSearch: number;
  private readonly levelMult: number;
  private rng: number;

  private capacity: number;
  private count = 0;
  private live = 0;
  private vectors: Float32Array;
  private levels: Uint8Array;
  private deleted: Uint8Array;
  /** Layer 0: M0 slots per node, with the link count in `counts0`. */
  private links0: Int32Array;
  private counts0: Uint8Array;
  /** Distance of each link, kept so a full neighbour list can drop its farthest without recomputing. */
  private dists0: Float32Array;
  private upperDists: (Float32Array | undefined)[] = [];
  /** Layers 1..level of node i: `(level) * (M + 1)` ints, each layer [count, ids…]. */
  private upper: (Int32Array | undefined)[] = [];
  private labels: string[] = [];
  private readonly byLabel = new Map<string, number>();
  private entry = -1;
  private maxLevel = -1;

  private visited: Uint32Array;
  private visitTag = 0;
  private readonly candidates = new PairHeap(false);
  private readonly results = new PairHeap(true);

  constructor(opts: HnswOptions) {
    this.dimensions = opts.dimensions;
    this.M = opts.M ?? 16;
    this.M0 = this.M * 2;
    this.efConstruction = opts.efConstruction ?? 100;
    this.efSearch = opts.efSearch ?? 64;
    this.levelMult = 1 / Math.log(this.M);
    this.rng = (opts.seed ?? 0x9e3779b9) >>> 0 || 1;
    this.capacity = Math.max(16, opts.initialCapacity ?? 1024);
    this.vectors = new Float32Array(this.capacity * this.dimensions);
    this.levels = new Uint8Array(this.capacity);
    this.deleted = new Uint8Array(this.capacity);
    this.links0 = new Int32Array(this.capacity * this.M0);
    this.counts0 = new Uint8Array(this.capacity);
    this.dists0 = new Float32Array(this.capacity * this.M0);
    this.visited = new Uint32Array(this.capacity);
  }

  /** Live (not deleted) vectors. */
  get size(): number {
    return this.live;
  }
  /** Slots used, deleted ones included. */
  get slots(): number {
    return this.count;
  }
  has(label: string): boolean {
    return this.byLabel.has(label);
  }
  /** Approximate bytes held (vectors and links). */
  get bytes(): number {
    return this.capacity * (this.dimensions * 4 + this.M0 * 4 + 6);
  }

  *liveEntries(): Generator<[string, Float32Array]> {
    for (let i = 0; i < this.count; i++) {
      if (this.deleted[i]) continue;
      yield [this.labels[i] as string, this.vectors.subarray(i * this.dimensions, (i + 1) * this.dimensions)];
    }
  }

  /** Adds a vector under a label; a label already present is deleted first (an update). */
  add(label: string, vector: Float32Array): void {
    if (vector.length !== this.dimensions) throw new RangeError(`vector has ${vector.length} dims, index ${this.dimensions}`);
    if (this.byLabel.has(label)) this.remove(label);
    if (this.count === this.capacity) this.grow();
    const node = this.count++;
    this.live++;
    this.vectors.set(vector, node * this.dimensions);
    this.labels[node] = label;
    this.byLabel.set(label, node);
    const level = Math.min(31, Math.floor(-Math.log(this.random()) * this.levelMult));
    this.levels[node] = level;
    if (level > 0) {
      this.upper[node] = new Int32Array(level * (this.M + 1));
      this.upperDists[node] = new Float32Array(level * (this.M + 1));
    }
    if (this.entry < 0) {
      this.entry = node;
      this.maxLevel = level;
      return;
    }
    let ep = this.entry;
    for (let l = this.maxLevel; l > level; l--) ep = this.greedy(node, ep, l);
    for (let l = Math.min(level, this.maxLevel); l >= 0; l--) {
      const found = this.searchLayer(this.vectors, node * this.dimensions, ep, this.efConstruction, l, false);
      const chosen = this.selectNeighbours(found, this.M);
      this.setLinks(node, l, chosen);
      for (const [d, n] of chosen) this.linkBack(n, node, d, l);
      ep = found[0]?.[1] ?? ep;
    }
    if (level > this.maxLevel) {
      this.maxLevel = level;
      this.entry = node;
    }
  }

  /** Marks a label deleted; it keeps routing searches but is never returned. */
  remove(label: string): boolean {
    const node = this.byLabel.get(label);
    if (node === undefined) return false;
    this.byLabel.delete(label);
    this.deleted[node] = 1;
    this.live--;
    return true;
  }

  /** The k most similar live vectors, most similar first. */
  search(query: Float32Array, k = 1, ef = this.efSearch): Neighbour[] {
    if (this.entry < 0 || this.live === 0) return [];
    let ep = this.entry;
    for (let l = this.maxLevel; l > 0; l--) ep = this.greedyQuery(query, ep, l);
    const found = this.searchLayer(query, 0, ep, Math.max(ef, k), 0, true);
    const out: Neighbour[] = [];
    for (const [d, id] of found) {
      if (out.length >= k) break;
      out.push({ label: this.labels[id] as string, similarity: 1 - d });
    }
    return out;
  }

  private random(): number {
    let x = this.rng;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.rng = x;
    return (x + 1) / 4294967297;
  }

  private grow(): void {
    const cap = this.capacity * 2;
    const v = new Float32Array(cap * this.dimensions);
    v.set(this.vectors);
    this.vectors = v;
    const lv = new Uint8Array(cap);
    lv.set(this.levels);
    this.levels = lv;
    const del = new Uint8Array(cap);
    del.set(this.deleted);
    this.deleted = del;
    const l0 = new Int32Array(cap * this.M0);
    l0.set(this.links0);
    this.links0 = l0;
    const c0 = new Uint8Array(cap);
    c0.set(this.counts0);
    this.counts0 = c0;
    const d0 = new Float32Array(cap * this.M0);
    d0.set(this.dists0);
    this.dists0 = d0;
    this.visited = new Uint32Array(cap);
    this.visitTag = 0;
    this.capacity = cap;
  }

  private distTo(q: Float32Array, qOff: number, node: number): number {
    const v = this.vectors;
    const dims = this.dimensions;
    const off = node * dims;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let d = 0;
    for (; d + 3 < dims; d += 4) {
      s0 += (q[qOff + d] as number) * (v[off + d] as number);
      s1 += (q[qOff + d + 1] as number) * (v[off + d + 1] as number);
      s2 += (q[qOff + d + 2] as number) * (v[off + d + 2] as number);
      s3 += (q[qOff + d + 3] as number) * (v[off + d + 3] as number);
    }
    for (; d < dims; d++) s0 += (q[qOff + d] as number) * (v[off + d] as number);
    return 1 - (s0 + s1 + s2 + s3);
  }

  private nodeDist(a: number, b: number): number {
    return this.distTo(this.vectors, a * this.dimensions, b);
  }

  private greedy(node: number, ep: number, level: number): number {
    return this.greedyFrom(this.vectors, node * this.dimensions, ep, level);
  }
  private greedyQuery(q: Float32Array, ep: number, level: number): number {
    return this.greedyFrom(q, 0, ep, level);
  }
  private greedyFrom(q: Float32Array, qOff: number, ep: number, level: number): number {
    let cur = ep;
    let curDist = this.distTo(q, qOff, cur);
    for (let changed = true; changed; ) {
      changed = false;
      const links = this.upper[cur] as Int32Array;
      const base = (level - 1) * (this.M + 1);
      const n = links[base] as number;
      for (let i = 1; i <= n; i++) {
        const cand = links[base + i] as number;
        const d = this.distTo(q, qOff, cand);
        if (d < curDist) {
          curDist = d;
          cur = cand;
          changed = true;
        }
      }
    }
    return cur;
  }

  /** Best-first search of one layer; returns (distance, node) sorted nearest first. */
  private searchLayer(q: Float32Array, qOff: number, ep: number, ef: number, level: number, liveOnly: boolean): [number, number][] {
    if (++this.visitTag === 0xffffffff) {
      this.visited.fill(0);
      this.visitTag = 1;
    }
    const tag = this.visitTag;
    const visited = this.visited;
    const cands = this.candidates;
    const res = this.results;
    cands.clear();
    res.clear();
    const d0 = this.distTo(q, qOff, ep);
    visited[ep] = tag;
    cands.push(d0, ep);
    if (!liveOnly || !this.deleted[ep]) res.push(d0, ep);
    while (cands.size > 0) {
      const cd = cands.topDist();
      const c = cands.topId();
      if (res.size >= ef && cd > res.topDist()) break;
      cands.pop();
      let links: Int32Array;
      let from: number;
      let to: number;
      if (level === 0) {
        links = this.links0;
        from = c * this.M0;
        to = from + (this.counts0[c] as number);
      } else {
        links = this.upper[c] as Int32Array;
        from = (level - 1) * (this.M + 1) + 1;
        to = from + (links[from - 1] as number);
      }
      for (let i = from; i < to; i++) {
        const n = links[i] as number;
        if (visited[n] === tag) continue;
        visited[n] = tag;
        const d = this.distTo(q, qOff, n);
        if (res.size < ef || d < res.topDist()) {
          cands.push(d, n);
          if (!liveOnly || !this.deleted[n]) {
            res.push(d, n);
            if (res.size > ef) res.pop();
          }
        }
      }
    }
    const out: [number, number][] = new Array(res.size);
    for (let i = res.size - 1; i >= 0; i--) {
      out[i] = [res.topDist(), res.topId()];
      res.pop();
    }
    return out;
  }

  /** The paper's heuristic: keep a candidate only if it is nearer the base than any kept one. */
  private selectNeighbours(sorted: [number, number][], m: number): [number, number][] {
    const kept: [number, number][] = [];
    for (const cand of sorted) {
      if (kept.length >= m) break;
      const [d, c] = cand;
      let good = true;
      for (const [, k] of kept) {
        if (this.nodeDist(c, k) < d) {
          good = false;
          break;
        }
      }
      if (good) kept.push(cand);
    }
    return kept;
  }

  private setLinks(node: number, level: number, pairs: [number, number][]): void {
    if (level === 0) {
      const base = node * this.M0;
      for (let i = 0; i < pairs.length; i++) {
        const [d, id] = pairs[i] as [number, number];
        this.links0[base + i] = id;
        this.dists0[base + i] = d;
      }
      this.counts0[node] = pairs.length;
    } else {
      const links = this.upper[node] as Int32Array;
      const dists = this.upperDists[node] as Float32Array;
      const base = (level - 1) * (this.M + 1);
      links[base] = pairs.length;
      for (let i = 0; i < pairs.length; i++) {
        const [d, id] = pairs[i] as [number, number];
        links[base + 1 + i] = id;
        dists[base + 1 + i] = d;
      }
    }
  }

  /**
   * Adds the reverse link n -> node. A full list drops its farthest link if the new one is nearer:
   * re-running the heuristic here (as the paper does) costs ~M0^2 distances per neighbour and made
   * inserts 5x slower in TypeScript for no measurable recall gain at our sizes (bench/cache-index.ts).
   */
  private linkBack(n: number, node: number, d: number, level: number): void {
    let links: Int32Array;
    let dists: Float32Array;
    let from: number;
    let count: number;
    const max = level === 0 ? this.M0 : this.M;
    if (level === 0) {
      links = this.links0;
      dists = this.dists0;
      from = n * this.M0;
      count = this.counts0[n] as number;
    } else {
      links = this.upper[n] as Int32Array;
      dists = this.upperDists[n] as Float32Array;
      const base = (level - 1) * (this.M + 1);
      from = base + 1;
      count = links[base] as number;
    }
    if (count < max) {
      links[from + count] = node;
      dists[from + count] = d;
      if (level === 0) this.counts0[n] = count + 1;
      else links[from - 1] = count + 1;
      return;
    }
    let worst = from;
    for (let i = from + 1; i < from + count; i++) if ((dists[i] as number) > (dists[worst] as number)) worst = i;
    if (d < (dists[worst] as number)) {
      links[worst] = node;
      dists[worst] = d;
    }
  }
}
