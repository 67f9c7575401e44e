// The `inference:` config section (seed 000's scaling_config.yaml): the level table, the default way
// of combining passes, when scaling applies, the difficulty estimator and the judge for best_of_n.
import { z } from 'zod';
import { DEFAULT_LEVEL_BUDGETS } from './levels.js';

export const AGGREGATIONS = ['self_consistency', 'best_of_n', 'adaptive', 'first'] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];

const levelSchema = z
  .object({
    passes: z.number().int().min(1).max(64),
    max_tokens: z.number().int().positive(),
    timeout_ms: z.number().int().positive(),
  })
  .strict();

const levelsSchema = z
  .object({
    easy: levelSchema.default(DEFAULT_LEVEL_BUDGETS.easy),
    medium: levelSchema.default(DEFAULT_LEVEL_BUDGETS.medium),
    hard: levelSchema.default(DEFAULT_LEVEL_BUDGETS.hard),
    expert: levelSchema.default(DEFAULT_LEVEL_BUDGETS.expert),
  })
  .strict();

const groupOverrideSchema = z
  .object({
    aggregation: z.enum(AGGREGATIONS).optional(),
    /** `always`: estimate a level for every request to this group that names none. */
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

export const inferenceSchema = z
  .object({
    levels: levelsSchema.default(levelsSchema.parse({})),
    aggregation: z.enum(AGGREGATIONS).default('self_consistency'),
    /**
     * `explicit` (default): scale only requests that name a difficulty (field or header; `auto` asks
     * for an estimate) and the seed endpoints; `always`: estimate a level for every chat request.
     */
    apply: z.enum(['explicit', 'always']).default('explicit'),
    /** Model that scores candidates for best_of_n; unset means the request's own model. */
    judge_model: z.string().min(1).optional(),
    /** Adaptive-Consistency stopping confidence. */
    adaptive_confidence: z.number().gt(0.5).lt(1).default(0.95),
    /** Temperature for passes when the client set none (identical passes vote for nothing). */
    pass_temperature: z.number().min(0).max(2).default(0.7),
    estimator: estimatorSchema.default(estimatorSchema.parse({})),
    /** Per model group overrides, keyed by group name. */
    groups: z.record(z.string().min(1), groupOverrideSchema).default({}),
  })
  .strict();

export type InferenceConfig = z.infer<typeof inferenceSchema>;
