// Loads the shared offline sentence model through the real transformers.js pipeline.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { dot } from './types.js';

// <repo>/../shared/models for the main checkout; worktrees live one level deeper (wt/<name>).
const modelDir = [
  process.env.INFERENCEFLOW_SHARED_MODELS,
  fileURLToPath(new URL('../../../../shared/models', import.meta.url)),
  fileURLToPath(new URL('../../../../../shared/models', import.meta.url)),
]
  .filter((p): p is string => !!p)
  .map((p) => join(p, 'static-glove-minilm'))
  .find((p) => existsSync(join(p, 'onnx', 'model.onnx')));

async function hasTransformers(): Promise<boolean> {
  try {
    await import('@huggingface/transformers');
    return true;
  } catch {
    return false;
  }
}
const available = modelDir !== undefined && (await hasTransformers());
if (!available) console.warn('skipping transformers embedder test: model folder or @huggingface/transformers missing');

describe.skipIf(!available)('TransformersEmbedder', () => {
  it('embeds offline from a local folder, normalised, scoring the known paraphrase pair', async () => {
    const { TransformersEmbedder } = await import('./transformers.js');
    const e = await TransformersEmbedder.create({ model: modelDir as string });
    expect(e.dimensions).toBe(100);
    const [a, b, c] = await e.embed([
      'How do I reset my password?',
      'What are the steps to change my login password?',
      'What is the tallest mountain in Africa?',
    ]);
    expect(dot(a!, a!)).toBeCloseTo(1, 5);
    // The model card's reference score for this pair.
    expect(dot(a!, b!)).toBeCloseTo(0.844, 2);
    expect(dot(a!, c!)).toBeLessThan(dot(a!, b!));
    expect(await e.embed([])).toEqual([]);
  }, 60_000);

  it('refuses a hub id while remote models are off', async () => {
    const { TransformersEmbedder } = await import('./transformers.js');
    await expect(TransformersEmbedder.create({ model: 'Xenova/all-MiniLM-L6-v2' })).rejects.toThrow();
  });
});
