// A small deterministic Embedder for tests of semantic routing: a hashed bag of words, L2-normalised,
// so prompts sharing words are similar. The real embedders live in src/cache/embedders/.
import type { Embedder } from '../../src/cache/embedders/types.js';

export function wordEmbedder(dimensions = 64): Embedder {
  return {
    id: `test-words-${dimensions}`,
    dimensions,
    async embed(texts) {
      return texts.map((t) => {
        const v = new Float32Array(dimensions);
        for (const w of t.toLowerCase().match(/[a-z]+/g) ?? []) {
          let h = 2166136261;
          for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w.charCodeAt(i), 16777619);
          v[(h >>> 0) % dimensions]! += 1;
        }
        let n = 0;
        for (const x of v) n += x * x;
        const inv = n > 0 ? 1 / Math.sqrt(n) : 0;
        for (let i = 0; i < v.length; i++) v[i]! *= inv;
        return v;
      });
    },
  };
}

