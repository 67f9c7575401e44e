// For a test file that needs the built-in static embedder (src/cache/*.test.ts): skip without its
// optional word table (fail with CI=true), load it once, close the caches the tests made.
import { afterAll, beforeAll } from 'vitest';
import { StaticEmbedder } from '../../src/cache/embedders/static.js';
import type { ResponseCache } from '../../src/cache/response-cache.js';
import { winkAvailable } from './services.js';

/**
 * For a test file that needs the static embedder: `hasWink` says whether its optional word table is
 * installed (the tests skip without it, and fail with CI=true); the embedder is loaded once before
 * the tests (read `embedder` inside them), and the caches they push are closed after.
 */
export function staticEmbedderSuite(tests: string): { readonly hasWink: boolean; readonly embedder: StaticEmbedder; readonly caches: ResponseCache[] } {
  const hasWink = winkAvailable(tests);
  let embedder: StaticEmbedder | undefined;
  const caches: ResponseCache[] = [];
  beforeAll(async () => {
    if (hasWink) embedder = await StaticEmbedder.create();
  }, 120_000);
  afterAll(async () => {
    for (const c of caches) await c.close();
  });
  return {
    hasWink,
    get embedder() {
      if (!embedder) throw new Error('the static embedder is loaded before the tests run (staticEmbedderSuite)');
      return embedder;
    },
    caches,
  };
}
