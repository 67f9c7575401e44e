// Every environment variable the gateway reads, in one table: the loader applies them over the
// config file, and the README's variable table is checked against this list by a test.
// Seed names (TRUTHGPT_*, RATE_LIMIT_*, …) are kept as aliases where an issue asks for them.

import { CAPACITY_ENV_VARS } from '../capacity/config.js';

export interface EnvVar {
  name: string;
  /** Dotted config path it sets, when it maps onto one. */
  path?: string;
  kind: 'string' | 'int' | 'number' | 'bool' | 'list' | 'special';
  default?: string;
  description: string;
}

export const ENV_VARS: readonly EnvVar[] = [
  { name: 'INFERENCEFLOW_CONFIG', kind: 'special', description: 'Path of the YAML config file (same as `--config`).' },
  { name: 'TRUTHGPT_CONFIG', kind: 'special', description: 'Seed alias of `INFERENCEFLOW_CONFIG`.' },
  { name: 'HOST', path: 'server.host', kind: 'string', default: '127.0.0.1', description: 'Address to bind.' },
  { name: 'PORT', path: 'server.port', kind: 'int', default: '8080', description: 'Port to listen on.' },
  { name: 'INFERENCEFLOW_WORKERS', path: 'server.workers', kind: 'int', description: 'Processes sharing the port (same as `serve --workers`); unset or 0: the usable core count, capped by a container CPU quota.' },
  { name: 'INFERENCEFLOW_BODY_LIMIT_BYTES', path: 'server.body_limit_bytes', kind: 'int', default: '4194304', description: 'Largest accepted request body (413 above it).' },
  { name: 'TRUTHGPT_API_TOKEN', kind: 'special', description: 'Adds one bearer token to `auth.tokens` (seed 001).' },
  { name: 'INFERENCEFLOW_API_TOKENS', kind: 'special', description: 'Comma-separated bearer tokens added to `auth.tokens`.' },
  { name: 'OPENAI_API_KEY', kind: 'special', description: 'Registers provider `openai` (OpenAI or any OpenAI-compatible server).' },
  { name: 'OPENAI_BASE_URL', kind: 'special', default: 'https://api.openai.com/v1', description: 'Base URL of the `openai` provider; alone it registers a keyless OpenAI-compatible server (vLLM, LM Studio…).' },
  { name: 'ANTHROPIC_API_KEY', kind: 'special', description: 'Registers provider `anthropic`.' },
  { name: 'ANTHROPIC_BASE_URL', kind: 'special', default: 'https://api.anthropic.com', description: 'Base URL of the `anthropic` provider.' },
  { name: 'GOOGLE_API_KEY', kind: 'special', description: 'Registers provider `google` (Gemini API).' },
  { name: 'COHERE_API_KEY', kind: 'special', description: 'Registers provider `cohere` (v2 chat).' },
  { name: 'OLLAMA_HOST', kind: 'special', description: 'Registers provider `ollama` at this address (e.g. `http://127.0.0.1:11434`).' },
  { name: 'INFERENCEFLOW_MODELS_DIR', kind: 'special', description: 'Registers provider `local`: llama.cpp in-process over the GGUF files in this folder.' },
  { name: 'INFERENCEFLOW_LOCAL_THREADS', kind: 'special', default: '1', description: 'CPU threads for the `local` provider registered from the environment.' },
  { name: 'REDIS_URL', path: 'redis.url', kind: 'string', description: 'Redis for shared state (limits, caches, breakers, mesh).' },
  { name: 'REDIS_HOST', kind: 'special', description: 'Seed 002 form: Redis host (used when `REDIS_URL` is unset).' },
  { name: 'REDIS_PORT', kind: 'special', default: '6379', description: 'Seed 002 form: Redis port.' },
  { name: 'REDIS_PASSWORD', kind: 'special', description: 'Seed 002 form: Redis password.' },
  { name: 'REDIS_CLUSTER_NODES', kind: 'special', description: 'Redis Cluster seed nodes, `host:port,host:port` (used when `REDIS_URL` is unset); same as `REDIS_URL=redis+cluster://host:port,host:port`.' },
  { name: 'DATABASE_URL', path: 'database.url', kind: 'string', description: 'Postgres URL for the ledger, keys and jobs; unset means the embedded PGlite file.' },
  { name: 'LOG_LEVEL', path: 'logging.level', kind: 'string', default: 'info', description: 'pino log level (`fatal`…`trace`, `silent`); lower case or upper case.' },
  ...CAPACITY_ENV_VARS,
];
