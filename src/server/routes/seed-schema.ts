// zod schemas of the seeds' own request bodies: seed 001's `/v1/infer` ({model, prompt, params}) and
// seed 002's InferenceRequest (`/v1/inference`, items of `/v1/batch`). Unknown fields are rejected so
// a typo names itself; `difficulty` and `aggregation` are accepted on all of them.
import { z } from 'zod';
import { AGGREGATIONS } from '../../scaling/config.js';
import { difficultyField } from './openai-schema.js';

const stop = z.union([z.string(), z.array(z.string()).max(4)]);

export const scalingFields = {
  difficulty: difficultyField.optional(),
  aggregation: z.enum(AGGREGATIONS).optional(),
};

/** Seed 001 generation parameters (Hugging Face names); ones no upstream has are accepted and ignored. */
export const inferParamsSchema = z
  .object({
    max_new_tokens: z.number().int().min(1).optional(),
    temperature: z.number().min(0).max(2).optional(),
    top_p: z.number().min(0).max(1).optional(),
    stop: stop.optional(),
    seed: z.number().int().optional(),
    presence_penalty: z.number().min(-2).max(2).optional(),
    frequency_penalty: z.number().min(-2).max(2).optional(),
    /** false means greedy decoding (temperature 0). */
    do_sample: z.boolean().optional(),
    top_k: z.number().int().min(0).optional(),
    repetition_penalty: z.number().min(0).optional(),
  })
  .strict();

export const inferSchema = z
  .object({
    model: z.string().min(1),
    prompt: z.string().min(1),
    /** Optional system prompt placed before the user prompt. */
    system: z.string().optional(),
    params: inferParamsSchema.default({}),
    stream: z.boolean().optional(),
    priority: z.enum(['low', 'normal', 'high']).optional(),
    session_id: z.string().max(256).optional(),
    ...scalingFields,
  })
  .strict();

export type InferBody = z.infer<typeof inferSchema>;

/** Seed 002 InferenceRequest. */
export const inferenceRequestSchema = z
  .object({
    prompt: z.string().min(1),
    model_preference: z.string().min(1).nullable().optional(),
    max_tokens: z.number().int().min(1).nullable().optional(),
    temperature: z.number().min(0).max(2).nullable().optional(),
    stream: z.boolean().default(false),
    user_id: z.string().min(1).max(256).optional(),
    priority: z.enum(['low', 'normal', 'high']).default('normal'),
    metadata: z.record(z.string(), z.unknown()).default({}),
    /** In the seed's model; accepted and ignored (the response carries its own created_at). */
    created_at: z.string().optional(),
    session_id: z.string().max(256).optional(),
    ...scalingFields,
  })
  .strict();

export type InferenceRequestBody = z.infer<typeof inferenceRequestSchema>;

/** The InferenceResponse of seed 002: exactly these ten fields. */
export interface InferenceResponse {
  response: string;
  provider: string;
  model: string;
  /** Milliseconds from the request's arrival at the gateway to its answer. */
  latency: number;
  tokens_used: number;
  /** USD, summed over every upstream call made for the request. */
  cost: number;
  cache_hit: boolean;
  request_id: string;
  /** ISO 8601 time the response was made. */
  created_at: string;
  metadata: Record<string, unknown>;
}
