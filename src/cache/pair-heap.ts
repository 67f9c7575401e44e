// A binary heap of (distance, id) pairs in parallel typed arrays, min- or max-ordered: the candidate
// and result queues of the HNSW search, reused across searches so a lookup allocates nothing here.

export /** Binary heap over (distance, id) pairs in parallel typed arrays; `max` flips the order. */
class PairHeap {
  dist = new Float64Array(64);
  ids = new Int32Array(64);
  size = 0;
  constructor(private readonly max: boolean) {}

  clear(): void {
    this.size = 0;
  }
  topDist(): number {
    return this.dist[0] as number;
  }
  topId(): number {
    return this.ids[0] as number;
  }
  private before(a: number, b: number): boolean {
    return this.max ? (this.dist[a] as number) > (this.dist[b] as number) : (this.dist[a] as number) < (this.dist[b] as number);
  }
  private swap(a: number, b: number): void {
    const d = this.dist[a] as number;
    this.dist[a] = this.dist[b] as number;
    this.dist[b] = d;
    const i = this.ids[a] as number;
    this.ids[a] = this.ids[b] as number;
    this.ids[b] = i;
  }
  push(d: number, id: number): void {
    if (this.size === this.dist.length) {
      const nd = new Float64Array(this.size * 2);
      nd.set(this.dist);
      this.dist = nd;
      const ni = new Int32Array(this.size * 2);
      ni.set(this.ids);
      this.ids = ni;
    }
    let i = this.size++;
    this.dist[i] = d;
    this.ids[i] = id;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): void {
    this.size--;
    if (this.size === 0) return;
    this.dist[0] = this.dist[this.size] as number;
    this.ids[0] = this.ids[this.size] as number;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let best = i;
      if (l < this.size && this.before(l, best)) best = l;
      if (r < this.size && this.before(r, best)) best = r;
      if (best === i) break;
      this.swap(i, best);
      i = best;
    }
  }
}
