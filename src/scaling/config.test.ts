import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { inferenceSchema } from './config.js';

describe('the inference: config section', () => {
  it('defaults to seed 000’s level table', () => {
    const c = inferenceSchema.parse({});
    expect(c.test_time_scaling.difficulty_levels).toEqual({
      easy: { passes: 1, max_tokens: 256, timeout_s: 10 },
      medium: { passes: 2, max_tokens: 512, timeout_s: 20 },
      hard: { passes: 3, max_tokens: 1024, timeout_s: 40 },
      expert: { passes: 5, max_tokens: 2048, timeout_s: 60 },
    });
    expect(c.test_time_scaling.aggregation).toBe('self_consistency');
  });

  it('accepts the inference section of config/scaling_config.yaml as written', async () => {
    const raw = parse(await readFile(new URL('../../config/scaling_config.yaml', import.meta.url), 'utf8')) as { inference: unknown };
    const c = inferenceSchema.parse(raw.inference);
    expect(c.default_model).toBe('llama-3-70b');
    expect(c.test_time_scaling.default_difficulty).toBe('medium');
  });

  it('names the path of a mistyped key', () => {
    const r = inferenceSchema.safeParse({ test_time_scaling: { difficulty_levels: { hard: { passes: 3, max_tokens: 1, timeout: 4 } } } });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toContain('timeout');
  });
});
