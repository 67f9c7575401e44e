// Config sections of src/batching: `batching:` for the micro-batcher that groups concurrent
// embedding calls (seed 001's BATCH_MAX_SIZE / BATCH_FLUSH_TIMEOUT_MS), and `batch_jobs:` for the
// OpenAI-compatible Batch API (files, jobs, the completion webhook).
import { z } from 'zod';

/** Size of one stored part of a batch job's output or error file (a part ends at the line that reaches it). */
export const DEFAULT_FILE_PART_BYTES = 4 * 1024 * 1024;

/** Runs of one batch line before it is recorded as failed (`batch_jobs.max_attempts`). */
export const DEFAULT_MAX_ATTEMPTS = 3;

export const batchingSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** Largest batch sent upstream; unset: `cache.batch.max_size` (BATCH_MAX_SIZE, 32). */
    max_size: z.number().int().min(1).max(2048).optional(),
    /** Longest the first queued item waits for company, ms; unset: `cache.batch.flush_timeout_ms` (BATCH_FLUSH_TIMEOUT_MS, 20). */
    flush_timeout_ms: z.number().min(0).max(10_000).optional(),
    /** Batches in flight at once per model. */
    max_concurrency: z.number().int().min(1).default(8),
    /** Provider types whose embeddings are batched (their upstream takes a list of inputs). */
    provider_types: z.array(z.string()).default(['openai', 'simulator']),
  })
  .strict();

export type BatchingConfig = z.infer<typeof batchingSchema>;

export const batchJobsSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** Requests of all running jobs in flight at once. */
    concurrency: z.number().int().min(1).max(1024).default(8),
    /** Largest accepted input file, bytes (OpenAI allows 200 MB). */
    max_file_bytes: z.number().int().positive().default(200 * 1024 * 1024),
    /** Most request lines one batch may hold (OpenAI: 50,000). */
    max_requests: z.number().int().positive().default(50_000),
    /** How long a worker holds an item before another replica may take it over, ms. */
    lease_ms: z.number().int().positive().default(60_000),
    /** How often idle workers look for new work, ms. */
    poll_ms: z.number().int().positive().default(1_000),
    /** Output and error files are stored (and served) in parts of about this size, bytes. */
    file_part_bytes: z.number().int().positive().default(DEFAULT_FILE_PART_BYTES),
    /**
     * How long a new job may run before it expires, ms; unset: its `completion_window` (24 h, the only
     * value the API accepts). For tests and operators: the API still shows `completion_window: "24h"`.
     */
    completion_window_ms: z.number().int().positive().optional(),
    /** Runs of one line (each claim counts) before it is recorded as failed with `max_attempts_exceeded`. */
    max_attempts: z.number().int().min(1).max(100).default(DEFAULT_MAX_ATTEMPTS),
    /** Signed completion webhook (Standard Webhooks); unset sends none. */
    webhook: z
      .object({
        url: z.url(),
        /** `whsec_…` base64 secret (Standard Webhooks); or name an environment variable. */
        secret: z.string().min(8).optional(),
        secret_env: z.string().optional(),
        max_attempts: z.number().int().min(1).max(20).default(5),
      })
      .strict()
      .optional(),
  })
  .strict();

export type BatchJobsConfig = z.infer<typeof batchJobsSchema>;
