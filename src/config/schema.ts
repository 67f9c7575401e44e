// The one configuration schema. Each section is validated by zod; unknown keys are rejected so a
// typo is an error that names its path, not a silently ignored setting. Later capabilities add their
// sections here, each defined beside the code it configures.
import { z } from 'zod';
import { capacitySections } from '../capacity/config.js';
import { PROVIDER_TYPES } from '../providers/types.js';

const price = z.object({ input: z.number().min(0), output: z.number().min(0) }).strict();

export const serverSchema = z
  .object({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8080),
    /** Largest accepted request body, bytes. */
    body_limit_bytes: z.number().int().positive().default(4 * 1024 * 1024),
    /** Drain deadline on SIGTERM, ms. */
    shutdown_timeout_ms: z.number().int().positive().default(30_000),
    /** Allow binding a non-loopback address with no auth configured (not recommended). */
    allow_unauthenticated: z.boolean().default(false),
    /** Processes sharing the port (`serve --workers`); 0 or unset: the usable core count. */
    workers: z.number().int().min(0).max(1024).optional(),
  })
  .strict();

export const authSchema = z
  .object({
    tokens: z.array(z.string().min(8, 'tokens must be at least 8 characters')).default([]),
  })
  .strict();

export const providerSchema = z
  .object({
    type: z.enum(PROVIDER_TYPES),
    base_url: z.url().optional(),
    api_key: z.string().optional(),
    api_key_env: z.string().optional(),
    headers: z.record(z.string(), z.string()).optional(),
    timeout_ms: z.number().int().positive().optional(),
    max_connections: z.number().int().positive().optional(),
    options: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

export const deploymentSchema = z
  .object({
    provider: z.string().min(1),
    model: z.string().min(1),
    /** A name for headers, metrics and breaker keys; defaults to `provider/model`. */
    id: z.string().min(1).optional(),
    weight: z.number().min(0).default(1),
    priority: z.number().int().default(0),
    price: price.optional(),
    timeout_ms: z.number().int().positive().default(30_000),
    context_window: z.number().int().positive().optional(),
    max_concurrency: z.number().int().positive().optional(),
  })
  .strict();

export const modelGroupSchema = z
  .object({
    name: z.string().min(1),
    strategy: z
      .enum(['fallback', 'weighted', 'round_robin', 'least_busy', 'latency', 'cost', 'semantic'])
      .default('fallback'),
    deployments: z.array(deploymentSchema).min(1),
    fallbacks: z.array(z.string()).default([]),
    description: z.string().optional(),
  })
  .strict();

export const redisSchema = z
  .object({
    url: z.string().optional(),
    key_prefix: z.string().default('inferenceflow:'),
  })
  .strict();

export const databaseSchema = z
  .object({
    /** postgres://… for a shared ledger; empty means the embedded PGlite file. */
    url: z.string().optional(),
    pglite_path: z.string().default('./data/inferenceflow.pglite'),
  })
  .strict();

export const loggingSchema = z
  .object({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

export const configSchema = z
  .object({
    server: serverSchema.default(serverSchema.parse({})),
    auth: authSchema.default(authSchema.parse({})),
    providers: z.record(z.string().min(1), providerSchema).default({}),
    models: z.array(modelGroupSchema).default([]),
    redis: redisSchema.default(redisSchema.parse({})),
    database: databaseSchema.default(databaseSchema.parse({})),
    logging: loggingSchema.default(loggingSchema.parse({})),
    // Capacity (GPU pools, autoscaler, spot/on-demand mix): src/capacity/config.ts
    ...capacitySections,
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type ServerConfig = z.infer<typeof serverSchema>;
export type ProviderConfig = z.infer<typeof providerSchema>;
export type DeploymentConfig = z.infer<typeof deploymentSchema>;
export type ModelGroupConfig = z.infer<typeof modelGroupSchema>;
