// Reproducible random unit vectors for the vector-index tests: a linear congruential generator
// from a fixed seed, so a failing recall assertion fails the same way every run.
import { normalizeInPlace } from '../../src/cache/embedders/types.js';

/** `vec(d)` gives the next d-dimensional unit vector of the sequence that `seed` starts. */
export function seededVectors(seed: number): { vec: (d: number) => Float32Array } {
  let state = seed;
  const rand = () => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state / 0x7fffffff - 0.5;
  };
  return { vec: (d) => normalizeInPlace(Float32Array.from({ length: d }, rand)) };
}
