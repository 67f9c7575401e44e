import { describe, expect, it } from 'vitest';
import { seededVectors } from '../../test/helpers/vectors.js';
import { semanticCacheSchema } from './config.js';
import { dot, normalizeInPlace } from './embedders/types.js';
import { CompactingAnn, loadUsearch, usearchFactory } from './vector-index.js';

const { vec } = seededVectors(11);
/** A vector at about `similarity` to `v`. */
function near(v: Float32Array, similarity: number): Float32Array {
  const noise = vec(v.length);
  const k = Math.sqrt(1 - similarity * similarity);
  return normalizeInPlace(v.map((x, i) => similarity * x + k * (noise[i] as number)));
}

const usearch = loadUsearch();

describe('the semantic index configuration', () => {
  it('stores usearch vectors as i8 by default and accepts f16 and f32', () => {
    expect(semanticCacheSchema.parse({}).index.quantization).toBe('i8');
    expect(semanticCacheSchema.parse({ index: { quantization: 'f32' } }).index.quantization).toBe('f32');
    expect(semanticCacheSchema.safeParse({ index: { quantization: 'f8' } }).success).toBe(false);
  });
});

describe.skipIf(!usearch)('usearch with quantized vectors (skipped: the optional usearch package is not installed)', () => {
  const d = 64;
  const data = Array.from({ length: 1500 }, () => vec(d));
  const queries = Array.from({ length: 100 }, (_, i) => ({ want: i * 13, q: near(data[i * 13] as Float32Array, 0.92) }));

  it('finds near duplicates in an i8 graph, and the similarities it reports are exact', () => {
    const make = usearchFactory(usearch!, { quantization: 'i8' });
    const raw = make(d);
    const ann = new CompactingAnn(() => make(d));
    data.forEach((v, i) => {
      raw.add(`v${i}`, v);
      ann.add(`v${i}`, v);
    });
    let found = 0;
    let rawOff = 0;
    for (const { want, q } of queries) {
      const got = ann.search(q, 4);
      if (got[0]?.label === `v${want}`) found++;
      // Re-scored against the stored f32 vectors, best first.
      for (const n of got) expect(n.similarity).toBeCloseTo(dot(q, data[Number(n.label.slice(1))] as Float32Array), 6);
      for (let i = 1; i < got.length; i++) expect(got[i - 1]!.similarity).toBeGreaterThanOrEqual(got[i]!.similarity);
      // The graph itself holds 8-bit vectors: its own distances are only approximately the cosine.
      const r = raw.search(q, 1)[0];
      if (r && Math.abs(r.similarity - dot(q, data[Number(r.label.slice(1))] as Float32Array)) > 1e-4) rawOff++;
    }
    expect(found).toBeGreaterThanOrEqual(99);
    expect(rawOff).toBeGreaterThan(50);
  });

  it('never calls usearch remove (it can loop forever), yet never returns a removed entry and finds the live ones among the dead', () => {
    // usearch with its remove made to fail: a removal must not reach it.
    const guarded = {
      Index: class extends usearch!.Index {
        remove(): number {
          throw new Error('usearch remove must not be called');
        }
      },
    };
    const ann = new CompactingAnn(() => usearchFactory(guarded, { quantization: 'i8' })(d), 1 << 30);
    data.forEach((v, i) => ann.add(`v${i}`, v));
    // Half removed, as many as CompactingAnn lets pile up before it rebuilds (here the threshold is
    // out of reach): the graph keeps them.
    data.forEach((_, i) => i % 2 !== 0 && ann.remove(`v${i}`));
    expect(ann.size).toBe(750);
    let found = 0;
    for (let i = 0; i < data.length; i += 2) {
      const got = ann.search(near(data[i] as Float32Array, 0.95), 4);
      expect(got.length).toBe(4);
      for (const n of got) expect(Number(n.label.slice(1)) % 2).toBe(0);
      if (got[0]?.label === `v${i}`) found++;
    }
    expect(found).toBeGreaterThanOrEqual(742);
    // Re-adding a removed label brings it back.
    ann.add('v1', data[1] as Float32Array);
    expect(ann.search(data[1] as Float32Array, 1)[0]?.label).toBe('v1');
  });

  it('rebuilds a small index once its dead nodes outnumber its live ones, counting those removed while a rebuild ran', async () => {
    const ann = new CompactingAnn(() => usearchFactory(usearch!, {})(d), 64, 0);
    const settle = () => new Promise((r) => setTimeout(r, 50));
    // Ten live entries, a churn of 290 removals: far fewer than the 1,024 a fixed minimum would wait for.
    for (let i = 0; i < 300; i++) {
      ann.add(`v${i}`, data[i] as Float32Array);
      if (i >= 10) ann.remove(`v${i - 10}`);
    }
    await settle();
    expect(ann.rebuilds).toBe(1);
    // The removals made while that rebuild ran are dead nodes of the new index: one more is enough.
    ann.add('v300', data[300] as Float32Array);
    ann.remove('v290');
    await settle();
    expect(ann.rebuilds).toBe(2);
    expect(ann.size).toBe(10);
    for (let i = 291; i <= 300; i++) expect(ann.search(data[i] as Float32Array, 1)[0]?.label).toBe(`v${i}`);
  });

  it('keeps f32 similarities exact without re-scoring when asked for f32', () => {
    const idx = usearchFactory(usearch!, { quantization: 'f32' })(d);
    data.forEach((v, i) => idx.add(`v${i}`, v));
    for (const { q } of queries.slice(0, 20)) {
      const r = idx.search(q, 1)[0]!;
      expect(r.similarity).toBeCloseTo(dot(q, data[Number(r.label.slice(1))] as Float32Array), 5);
    }
  });
});
