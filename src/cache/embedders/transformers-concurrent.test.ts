// transformers.js reads its model folder from a global `env` while a pipeline loads: two embedders
// created at once from different folders must each load their own. A stand-in for the package reads
// `env` as the real one does, a turn after pipeline() is called.
import { describe, expect, it } from 'vitest';
import { TransformersEmbedder } from './transformers.js';

function standIn() {
  const loaded: string[] = [];
  const env = { allowRemoteModels: false, allowLocalModels: true, localModelPath: '/models/', cacheDir: null as string | null };
  const pipeline = async (_task: string, model: string) => {
    await new Promise((r) => setTimeout(r, 5));
    const path = `${env.localModelPath}${model}`;
    if (path.includes('missing')) throw new Error('no such model');
    loaded.push(path);
    // Each folder's model has its own width, so the embedder shows which one it loaded.
    const dims = path.startsWith('/models/small/') ? 3 : 5;
    return async (texts: string[]) => ({ dims: [texts.length, dims], data: new Float32Array(texts.length * dims).fill(1) });
  };
  return { loaded, load: async () => ({ env, pipeline }) };
}

describe('TransformersEmbedder.create', () => {
  it('loads each folder when two embedders of different folders are created at once', async () => {
    const { loaded, load } = standIn();
    const [small, large] = await Promise.all([TransformersEmbedder.create({ model: '/models/small/encoder' }, load), TransformersEmbedder.create({ model: '/models/large/encoder' }, load)]);
    expect(loaded.sort()).toEqual(['/models/large/encoder', '/models/small/encoder']);
    expect([small.dimensions, large.dimensions]).toEqual([3, 5]);
  });

  it('a create that fails does not hold up the next', async () => {
    const { load } = standIn();
    const [failed, next] = await Promise.allSettled([TransformersEmbedder.create({ model: '/models/small/missing' }, load), TransformersEmbedder.create({ model: '/models/small/encoder' }, load)]);
    expect(failed).toMatchObject({ status: 'rejected', reason: { message: 'no such model' } });
    expect(next).toMatchObject({ status: 'fulfilled', value: { dimensions: 3 } });
  });
});
