import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { DifficultyEstimator, featureScore, parseLabelledExamples } from './estimator.js';
import { DifficultyLevel, parseDifficulty } from './levels.js';

const examples = parseLabelledExamples(await readFile(new URL('../../config/difficulty-examples.jsonl', import.meta.url), 'utf8'));

describe('difficulty estimator', () => {
  it('parses levels by name and number', () => {
    expect(parseDifficulty('HARD')).toBe(DifficultyLevel.HARD);
    expect(parseDifficulty(4)).toBe(DifficultyLevel.EXPERT);
    expect(parseDifficulty('impossible')).toBeUndefined();
  });

  it('orders an obvious easy, medium, hard and expert prompt', () => {
    const e = new DifficultyEstimator(examples.filter((x) => x.split === 'train'));
    expect(e.estimate('What is the capital of Italy?').level).toBe(DifficultyLevel.EASY);
    expect(e.estimate('Explain how a bloom filter works.').level).toBe(DifficultyLevel.MEDIUM);
    expect(e.estimate('Implement a trie in Python and analyse the complexity of insert and search.').level).toBe(DifficultyLevel.HARD);
    expect(e.estimate('Prove rigorously that the square root of 2 is irrational and generalise the proof to every non-square integer, discussing the theorem it relies on.').level).toBe(DifficultyLevel.EXPERT);
  });

  it('beats always-guessing-one-level on the held-out split by a wide margin', () => {
    const e = new DifficultyEstimator(examples.filter((x) => x.split === 'train'));
    const test = examples.filter((x) => x.split === 'test');
    const right = test.filter((x) => e.estimate(x.prompt).level === x.level).length;
    // Four balanced classes: a constant guess scores 25%.
    expect(right / test.length).toBeGreaterThan(0.5);
  });

  it('keeps the feature score on the 0..3 scale', () => {
    expect(featureScore('')).toBeGreaterThanOrEqual(0);
    expect(featureScore('prove theorem rigorous formal distributed consensus '.repeat(50))).toBeLessThanOrEqual(3);
  });

  it('rejects a labelled line without a level', () => {
    expect(() => parseLabelledExamples('{"prompt":"x"}')).toThrow(/line 1/);
  });
});
