// The `inference:` config section (seed 000's scaling_config.yaml, same keys as
// config/scaling_config.yaml): model defaults for the seed endpoints and `test_time_scaling` — the
// level table, when scaling applies, how passes are combined, the difficulty estimator, the judge.
import { z } from 'zod';
import { DEFAULT_LEVEL_BUDGETS, type LevelBudget } from './levels.js';

export const AGGREGATIONS = ['self_consistency', 'best_of_n', 'adaptive', 'first'] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];

const levelSchema = z
  .object({
    passes: z.number().int().min(1).max(64),
    max_tokens: z.number().int().positive(),
    /** Deadline over all passes together, seconds (fractions allowed). */
    timeout_s: z.number().positive().max(3600),
  })
  .strict();

const seconds = (b: LevelBudget) => ({ passes: b.passes, max_tokens: b.max_tokens, timeout_s: b.timeout_ms / 1000 });

const levelsSchema = z
  .object({
    easy: levelSchema.default(seconds(DEFAULT_LEVEL_BUDGETS.easy)),
    medium: levelSchema.default(seconds(DEFAULT_LEVEL_BUDGETS.medium)),
    hard: levelSchema.default(seconds(DEFAULT_LEVEL_BUDGETS.hard)),
    expert: levelSchema.default(seconds(DEFAULT_LEVEL_BUDGETS.expert)),
  })
  .strict();

const groupOverrideSchema = z
  .object({
    aggregation: z.enum(AGGREGATIONS).optional(),
    /** `always`: scale every request to this group, estimating a level where none is named. */
    apply: z.enum(['explicit', 'always']).optional(),
    judge_model: z.string().min(1).optional(),
  })
  .strict();

export const estimatorSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** JSONL of `{prompt, level}` whose embeddings become the level prototypes; unset uses the bundled set. */
    examples_file: z.string().optional(),
    /** Weight of the prototype vote against the prompt-feature score (0..1). */
    prototype_weight: z.number().min(0).max(1).default(0.25),
  })
  .strict();

export const testTimeScalingSchema = z
  .object({
    enabled: z.boolean().default(true),
    /**
     * `explicit` (default): scale requests that name a difficulty (field or header) and every seed
     * endpoint request; `always`: every chat request, with `default_difficulty` where none is named.
     */
    apply: z.enum(['explicit', 'always']).default('explicit'),
    /** Level for requests that name none: `auto` estimates it from the prompt. */
    default_difficulty: z.enum(['auto', 'easy', 'medium', 'hard', 'expert']).default('auto'),
    difficulty_levels: levelsSchema.default(levelsSchema.parse({})),
    aggregation: z.enum(AGGREGATIONS).default('self_consistency'),
    /** Model that scores candidates for best_of_n; unset means the request's own model. */
    judge_model: z.string().min(1).optional(),
    /** Adaptive-Consistency stopping confidence. */
    adaptive_confidence: z.number().gt(0.5).lt(1).default(0.95),
    /** Temperature of the passes when the client set none (identical passes would vote for nothing). */
    pass_temperature: z.number().min(0).max(2).default(0.7),
    estimator: estimatorSchema.default(estimatorSchema.parse({})),
    /** Per model group overrides, keyed by the public model name. */
    groups: z.record(z.string().min(1), groupOverrideSchema).default({}),
  })
  .strict();

export const inferenceSchema = z
  .object({
    /** Model for seed requests that name none; unset: the first model group, else `default`. */
    default_model: z.string().min(1).optional(),
    /** Temperature for seed requests that name none (seed 002's InferenceRequest default). */
    temperature: z.number().min(0).max(2).default(0.7),
    /** false: the seed endpoints refuse `stream: true` and /v1/infer/stream. */
    streaming: z.boolean().default(true),
    /** Extra tries of a failed scaling pass while the level's deadline allows. */
    retries: z.number().int().min(0).max(10).default(1),
    test_time_scaling: testTimeScalingSchema.default(testTimeScalingSchema.parse({})),
    /** `POST /v1/batch` (seed 002): largest list accepted and how many items run at once. */
    batch: z
      .object({ max_items: z.number().int().min(1).max(10_000).default(100), concurrency: z.number().int().min(1).max(256).default(8) })
      .strict()
      .default({ max_items: 100, concurrency: 8 }),
  })
  .strict();

export type InferenceConfig = z.infer<typeof inferenceSchema>;
export type TestTimeScalingConfig = z.infer<typeof testTimeScalingSchema>;
