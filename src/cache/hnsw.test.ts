import { describe, expect, it } from 'vitest';
import { seededVectors } from '../../test/helpers/vectors.js';
import { dot } from './embedders/types.js';
import { HnswIndex } from './hnsw.js';
import { CompactingAnn, EXACT_SEARCH_UP_TO, PartitionedVectorIndex, typescriptHnswFactory } from './vector-index.js';

const { vec } = seededVectors(7);

describe('HnswIndex', () => {
  it('finds the exact nearest neighbour for almost every query', () => {
    const d = 32;
    const data = Array.from({ length: 2000 }, () => vec(d));
    const idx = new HnswIndex({ dimensions: d, initialCapacity: 16 });
    data.forEach((v, i) => idx.add(`v${i}`, v));
    expect(idx.size).toBe(2000);
    let agree = 0;
    for (let q = 0; q < 100; q++) {
      const query = vec(d);
      let best = -1;
      let bestI = -1;
      data.forEach((v, i) => {
        const s = dot(query, v);
        if (s > best) [best, bestI] = [s, i];
      });
      const got = idx.search(query, 1)[0];
      if (got?.label === `v${bestI}`) agree++;
      expect(got?.similarity).toBeLessThanOrEqual(best + 1e-6);
    }
    expect(agree).toBeGreaterThanOrEqual(95);
  });

  it('returns the stored vector itself with similarity 1, best first', () => {
    const idx = new HnswIndex({ dimensions: 8 });
    const vs = Array.from({ length: 50 }, () => vec(8));
    vs.forEach((v, i) => idx.add(String(i), v));
    const res = idx.search(vs[17]!, 3);
    expect(res[0]?.label).toBe('17');
    expect(res[0]?.similarity).toBeCloseTo(1, 5);
    expect(res[1]!.similarity).toBeLessThanOrEqual(res[0]!.similarity);
  });

  it('never returns removed labels and treats a re-add as an update', () => {
    const idx = new HnswIndex({ dimensions: 8 });
    const vs = Array.from({ length: 30 }, () => vec(8));
    vs.forEach((v, i) => idx.add(String(i), v));
    expect(idx.remove('5')).toBe(true);
    expect(idx.remove('5')).toBe(false);
    expect(idx.search(vs[5]!, 30).map((n) => n.label)).not.toContain('5');
    idx.add('6', vs[5]!);
    expect(idx.search(vs[5]!, 1)[0]).toMatchObject({ label: '6' });
    expect(idx.size).toBe(29);
  });
});

describe('PartitionedVectorIndex', () => {
  it('searches only the asked partition and frees empty ones', () => {
    const idx = new PartitionedVectorIndex(8, typescriptHnswFactory());
    const v = vec(8);
    idx.add('tenant-a', 'k1', v);
    idx.add('tenant-b', 'k2', v);
    expect(idx.search('tenant-a', v, 5).map((n) => n.label)).toEqual(['k1']);
    expect(idx.search('tenant-c', v, 5)).toEqual([]);
    idx.remove('k1');
    expect(idx.partitions).toBe(1);
    expect(idx.size).toBe(1);
  });
});

describe('CompactingAnn', () => {
  it('rebuilds after as many removals as it holds, in the background, losing no add or remove made meanwhile', async () => {
    const built: HnswIndex[] = [];
    const ann = new CompactingAnn(() => {
      const h = new HnswIndex({ dimensions: 8, initialCapacity: 16 });
      built.push(h);
      return h;
    }, 50, 0);
    const vectors = new Map<string, Float32Array>();
    let next = 0;
    const add = () => {
      const label = `k${next++}`;
      const v = vec(8);
      vectors.set(label, v);
      ann.add(label, v);
    };
    for (let i = 0; i < 100; i++) add();
    // Churn at the budget: one removal per add, oldest first.
    let oldest = 0;
    for (let i = 0; i < 100; i++) {
      add();
      vectors.delete(`k${oldest}`);
      expect(ann.remove(`k${oldest++}`)).toBe(true);
    }
    // The 100th removal started a rebuild; the old graph (with its deleted nodes) still answers.
    expect(built).toHaveLength(2);
    expect(ann.rebuilds).toBe(0);
    // Changes while the rebuild runs reach the new index too.
    add();
    vectors.delete(`k${oldest}`);
    ann.remove(`k${oldest++}`);
    await expect.poll(() => ann.rebuilds, { timeout: 2000, interval: 5 }).toBe(1);
    expect(ann.size).toBe(vectors.size);
    const fresh = built[1] as HnswIndex;
    expect(fresh.size).toBe(vectors.size);
    for (const [label, v] of vectors) {
      expect(ann.has(label)).toBe(true);
      expect(ann.search(v, 1)[0]?.label).toBe(label);
    }
    expect(ann.has('k0')).toBe(false);
    expect(ann.search(vec(8), 200).every((n) => vectors.has(n.label))).toBe(true);
  });
});

describe('partitions too small for an approximate index', () => {
  it('are searched exactly with no index built (each would cost ~50 KB): one entry per partition builds none', () => {
    let made = 0;
    const factory = typescriptHnswFactory();
    const index = new PartitionedVectorIndex(8, (dims) => (made++, factory(dims)));
    const entries = Array.from({ length: 500 }, (_, i) => [`p${i}`, `k${i}`, vec(8)] as const);
    for (const [p, k, v] of entries) index.add(p, k, v);
    expect(index.partitions).toBe(500);
    expect(made).toBe(0);
    for (const [p, k, v] of entries.slice(0, 50)) expect(index.search(p, v, 1)[0]).toMatchObject({ label: k, similarity: expect.closeTo(1, 5) });
  });

  it('a partition that grows to EXACT_SEARCH_UP_TO entries gets its index, built in the background, and finds the same neighbours', async () => {
    let made = 0;
    const factory = typescriptHnswFactory();
    const ann = new CompactingAnn(() => (made++, factory(8)));
    const stored = Array.from({ length: EXACT_SEARCH_UP_TO + 20 }, () => vec(8));
    stored.forEach((v, i) => ann.add(`k${i}`, v));
    expect(ann.indexed).toBe(false);
    const queries = Array.from({ length: 20 }, () => vec(8));
    const exact = queries.map((q) => ann.search(q, 3).map((n) => n.label));
    await expect.poll(() => ann.indexed, { timeout: 2000, interval: 5 }).toBe(true);
    expect(made).toBe(1);
    const indexed = queries.map((q) => ann.search(q, 3).map((n) => n.label));
    // The approximate index finds the exact search's best match for (nearly) every query.
    expect(indexed.filter((labels, i) => labels[0] === exact[i]?.[0]).length).toBeGreaterThanOrEqual(18);
    // Removing below the threshold keeps the index (no rebuild back and forth).
    for (let i = 0; i < 100; i++) ann.remove(`k${i}`);
    expect(ann.indexed).toBe(true);
  });
});
