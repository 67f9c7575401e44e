// The index worker's logic, run in this thread (what runs inside a worker thread is not covered).
import { describe, expect, it } from 'vitest';
import { seededVectors } from '../../test/helpers/vectors.js';
import { annFactoryFor, IndexHost, isPostFailure, postFailure, type IndexMessage } from './index-host.js';
import { loadUsearch } from './vector-index.js';

const { vec } = seededVectors(23);

describe('IndexHost', () => {
  it('applies adds, removes and clears to partitions and answers searches from the asked one', () => {
    const host = new IndexHost({ dimensions: 8, kind: 'typescript-hnsw', tuning: { efSearch: 32 } });
    const a = vec(8);
    const b = vec(8);
    expect(host.handle({ op: 'add', partition: 'acme', label: 'k1', vector: a })).toBeUndefined();
    host.handle({ op: 'add', partition: 'globex', label: 'k2', vector: a });
    host.handle({ op: 'add', partition: 'acme', label: 'k3', vector: b });
    expect(host.handle({ op: 'search', partition: 'acme', vector: a, k: 4 })?.map((n) => n.label)).toEqual(['k1', 'k3']);
    expect(host.handle({ op: 'search', partition: 'globex', vector: b, k: 4 })?.map((n) => n.label)).toEqual(['k2']);
    expect(host.handle({ op: 'search', partition: 'initech', vector: a, k: 4 })).toEqual([]);
    host.handle({ op: 'remove', label: 'k1' });
    expect(host.handle({ op: 'search', partition: 'acme', vector: a, k: 4 })?.map((n) => n.label)).toEqual(['k3']);
    expect(host.index.size).toBe(2);
    host.handle({ op: 'clear' });
    expect(host.index.size).toBe(0);
    expect(host.handle({ op: 'search', partition: 'acme', vector: b, k: 4 })).toEqual([]);
  });

  it('applies a batch in order, each add with its own slice of the packed vectors, and goes on past an update that fails', () => {
    const host = new IndexHost({ dimensions: 8, kind: 'typescript-hnsw', tuning: { efSearch: 32 } });
    const [a, b, c] = [vec(8), vec(8), vec(8)];
    const vectors = new Float32Array(24);
    [a, b, c].forEach((v, i) => vectors.set(v, i * 8));
    host.handle({
      op: 'batch',
      updates: [
        { op: 'add', partition: 'acme', label: 'k1' },
        { op: 'add', partition: 'acme', label: 'k2' },
        { op: 'remove', label: 'k1' },
        { op: 'add', partition: 'globex', label: 'k3' },
      ],
      vectors,
    });
    expect(host.handle({ op: 'search', partition: 'acme', vector: b, k: 4 })?.map((n) => n.label)).toEqual(['k2']);
    const [hit] = host.handle({ op: 'search', partition: 'globex', vector: c, k: 1 }) ?? [];
    expect(hit?.label).toBe('k3');
    expect(hit?.similarity).toBeCloseTo(1, 5);
    // The stored vectors are copies: the batch's buffer can be reused or freed.
    vectors.fill(0);
    expect(host.handle({ op: 'search', partition: 'globex', vector: c, k: 1 })?.[0]?.similarity).toBeCloseTo(1, 5);

    const broken = { op: 'batch', updates: [{ op: 'add', partition: 'acme', label: 'k4' }, { op: 'bogus' }, { op: 'add', partition: 'acme', label: 'k5' }], vectors: new Float32Array(16) };
    broken.vectors.set(a, 0);
    broken.vectors.set(c, 8);
    expect(() => host.handle(broken as unknown as IndexMessage)).toThrow(/unknown semantic index message "bogus"/);
    expect(host.index.has('k4') && host.index.has('k5')).toBe(true);
  });

  it('applies the updates a search carries before searching, and still answers when one of them fails', () => {
    const failures: unknown[] = [];
    const host = new IndexHost({ dimensions: 8, kind: 'typescript-hnsw', tuning: { efSearch: 32 } }, (err) => failures.push(err));
    const a = vec(8);
    const vectors = new Float32Array(8);
    vectors.set(a);
    const batch = { op: 'batch' as const, updates: [{ op: 'add' as const, partition: 'acme', label: 'k1' }, { op: 'bogus' }], vectors };
    const found = host.handle({ op: 'search', partition: 'acme', vector: a, k: 1, batch: batch as never });
    expect(found?.map((n) => n.label)).toEqual(['k1']);
    expect(failures).toHaveLength(1);
    expect(String(failures[0])).toMatch(/unknown semantic index message "bogus"/);
  });

  it('refuses a message it does not know', () => {
    const host = new IndexHost({ dimensions: 8, kind: 'typescript-hnsw', tuning: {} });
    expect(() => host.handle({ op: 'compact' } as unknown as IndexMessage)).toThrow(/unknown semantic index message "compact"/);
  });

  it('builds the implementation the cache resolved, and says when usearch cannot be loaded from a path', () => {
    expect(annFactoryFor({ dimensions: 4, kind: 'typescript-hnsw', tuning: {} })(4).size).toBe(0);
    expect(() => annFactoryFor({ dimensions: 4, kind: 'usearch', tuning: {}, usearchPath: '/nonexistent/usearch' })).toThrow(/could not load usearch from \/nonexistent/);
  });

  it.skipIf(!loadUsearch())('builds usearch with the tuning it is given', () => {
    const host = new IndexHost({ dimensions: 8, kind: 'usearch', tuning: { quantization: 'i8', efConstruction: 48 } });
    const v = vec(8);
    host.handle({ op: 'add', partition: 'p', label: 'k', vector: v });
    expect(host.handle({ op: 'search', partition: 'p', vector: v, k: 1 })?.[0]?.label).toBe('k');
  });
});

describe('postFailure', () => {
  it('carries an unanswered message’s error back under id 0, and is recognised as such', () => {
    const err = postFailure(new Error('no room'));
    expect(err).toMatchObject({ id: 0, postError: { message: 'no room' } });
    expect(err.postError.stack).toMatch(/no room/);
    expect(postFailure('plain')).toEqual({ id: 0, postError: { message: 'plain' } });
    expect(isPostFailure(err)).toBe(true);
    expect(isPostFailure({ id: 0, ok: true })).toBe(false);
    expect(isPostFailure({ id: 3, postError: {} })).toBe(false);
    expect(isPostFailure(null)).toBe(false);
  });
});
