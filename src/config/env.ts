// Every environment variable the gateway (and its CLI) reads, in one table: the loader applies the
// rows with a config path over the config file, and the README's variable table is checked against
// this list by a test.
// Seed names (TRUTHGPT_*, RATE_LIMIT_*, …) are kept as aliases where an issue asks for them.

import { CACHE_ENV_VARS } from '../cache/config.js';
import { CAPACITY_ENV_VARS } from '../capacity/config.js';
import { MESH_ENV_VARS } from '../mesh/config.js';

export interface EnvVar {
  name: string;
  /** Dotted config path it sets, when it maps onto one. */
  path?: string;
  kind: 'string' | 'int' | 'number' | 'bool' | 'list' | 'special';
  default?: string;
  description: string;
}

export const ENV_VARS: readonly EnvVar[] = [
  { name: 'INFERENCEFLOW_CONFIG', kind: 'special', description: 'Path of the YAML config file (same as `--config`) of `serve`, `worker`, `router` and an in-process `batch`.' },
  { name: 'TRUTHGPT_CONFIG', kind: 'special', description: 'Seed alias of `INFERENCEFLOW_CONFIG` (`serve`, `worker`, `router`, `batch`).' },
  { name: 'HOST', path: 'server.host', kind: 'string', default: '127.0.0.1', description: 'Address to bind.' },
  { name: 'PORT', path: 'server.port', kind: 'int', default: '8080', description: 'Port to listen on.' },
  { name: 'INFERENCEFLOW_WORKERS', path: 'server.workers', kind: 'int', description: 'Processes sharing the port (same as `serve --workers`); unset or 0: the usable core count, capped by a container CPU quota.' },
  { name: 'INFERENCEFLOW_MAX_REQUESTS_PER_CONNECTION', path: 'server.max_requests_per_connection', kind: 'int', description: 'Requests one kept-alive connection carries before the gateway answers `Connection: close` and the client reconnects; unset: 100 with several workers (their shares of long-lived clients even out), unlimited with one; 0: unlimited.' },
  { name: 'NODE_CLUSTER_SCHED_POLICY', kind: 'special', description: 'Read by Node (and `serve --workers`): `rr`, the primary hands connections to the workers round-robin (Node\'s default elsewhere); unset or any other value (empty, `none`), workers accept them from the shared socket themselves (the gateway sets this policy; docs/decisions.md).' },
  { name: 'INFERENCEFLOW_SHUTDOWN_DELAY_MS', path: 'server.shutdown_delay_ms', kind: 'int', default: '0', description: 'On SIGTERM, keep serving while `/ready` reports not-ready for this long before the listener closes (then the drain deadline `server.shutdown_timeout_ms` starts): give a load balancer time to stop sending new connections. The Kubernetes manifests set 5000.' },
  { name: 'INFERENCEFLOW_TRUST_PROXY', path: 'server.trust_proxy', kind: 'special', description: 'Proxies whose `X-Forwarded-For` names the client (per-IP limits and API-key IP allowlists need it behind a load balancer): `true`, a hop count (`1`), or comma-separated addresses and CIDRs (`10.0.0.0/8,127.0.0.1`); unset: the peer address is the client.' },
  { name: 'INFERENCEFLOW_BODY_LIMIT_BYTES', path: 'server.body_limit_bytes', kind: 'int', default: '33554432', description: 'Largest accepted request body (413 above it).' },
  { name: 'TRUTHGPT_API_TOKEN', kind: 'special', description: 'Adds one bearer token to `auth.tokens` (seed 001).' },
  { name: 'INFERENCEFLOW_API_TOKENS', kind: 'special', description: 'Comma-separated bearer tokens added to `auth.tokens`.' },
  { name: 'OPENAI_API_KEY', kind: 'special', description: 'Registers provider `openai` (OpenAI or any OpenAI-compatible server), unless a config-file provider reads it through `api_key_env`.' },
  { name: 'OPENAI_BASE_URL', kind: 'special', default: 'https://api.openai.com/v1', description: 'Base URL of the `openai` provider; alone it registers a keyless OpenAI-compatible server (vLLM, LM Studio…).' },
  { name: 'ANTHROPIC_API_KEY', kind: 'special', description: 'Registers provider `anthropic`, unless a config-file provider reads it through `api_key_env`.' },
  { name: 'ANTHROPIC_BASE_URL', kind: 'special', default: 'https://api.anthropic.com', description: 'Base URL of the `anthropic` provider.' },
  { name: 'GOOGLE_API_KEY', kind: 'special', description: 'Registers provider `google` (Gemini API), unless a config-file provider reads it through `api_key_env`.' },
  { name: 'COHERE_API_KEY', kind: 'special', description: 'Registers provider `cohere` (v2 chat), unless a config-file provider reads it through `api_key_env`.' },
  { name: 'OLLAMA_HOST', kind: 'special', description: 'Registers provider `ollama` at this address, read as Ollama reads it: `127.0.0.1`, `:11434`, `ollama:11434` or `http://gpu-box:11434` (no scheme: http and port 11434; `0.0.0.0` is called on loopback). Also where `inferenceflow worker --backend ollama` calls without `--base-url`.' },
  { name: 'INFERENCEFLOW_MODELS_DIR', kind: 'special', description: 'Registers provider `local`: llama.cpp in-process over the GGUF files in this folder.' },
  { name: 'INFERENCEFLOW_LOCAL_THREADS', kind: 'special', default: '1', description: 'CPU threads for the `local` provider registered from the environment.' },
  { name: 'REDIS_URL', path: 'redis.url', kind: 'string', description: 'Redis for shared state (limits, caches, breakers, mesh).' },
  { name: 'REDIS_HOST', kind: 'special', description: 'Seed 002 form: Redis host (used when `REDIS_URL` is unset).' },
  { name: 'REDIS_PORT', kind: 'special', default: '6379', description: 'Seed 002 form: Redis port; the `tcp://<ip>:<port>` form Kubernetes injects beside a Service named `redis` gives its port.' },
  { name: 'REDIS_PASSWORD', kind: 'special', description: 'Seed 002 form: Redis password.' },
  { name: 'REDIS_CLUSTER_NODES', kind: 'special', description: 'Redis Cluster seed nodes, `host:port,host:port` (used when `REDIS_URL` is unset); same as `REDIS_URL=redis+cluster://host:port,host:port`.' },
  { name: 'DATABASE_URL', path: 'database.url', kind: 'string', description: 'Postgres URL for the ledger, keys and jobs; unset means the embedded PGlite file.' },
  { name: 'INFERENCEFLOW_ADMIN_TOKEN', path: 'auth.admin_token', kind: 'string', description: 'Admin token for `/admin/keys` and `inferenceflow keys`; setting it turns API keys on.' },
  { name: 'INFERENCEFLOW_URL', kind: 'special', description: 'CLI side: gateway URL of `inferenceflow keys` (default `http://127.0.0.1:8080`) and `inferenceflow batch` (unset: the batch starts a gateway in its own process from the config); `--url` wins.' },
  { name: 'INFERENCEFLOW_API_KEY', kind: 'special', description: 'CLI side: bearer token `inferenceflow batch` sends (wins over `OVERSHOOT_API_KEY`; `--api-key` wins over both).' },
  { name: 'JWT_ALGORITHM', path: 'auth.jwt.algorithm', kind: 'string', default: 'HS256', description: 'The one accepted JWT algorithm: `HS256`, `RS256` or `ES256`.' },
  { name: 'JWT_SECRET', path: 'auth.jwt.secret', kind: 'string', description: 'HS256 secret; setting it turns JWT authentication on.' },
  { name: 'JWT_PUBLIC_KEY', path: 'auth.jwt.public_key', kind: 'string', description: 'RS256/ES256 public key (PEM).' },
  { name: 'JWT_JWKS_URL', path: 'auth.jwt.jwks_url', kind: 'string', description: 'RS256/ES256 key set URL.' },
  { name: 'JWT_ISSUER', path: 'auth.jwt.issuer', kind: 'string', description: 'Required `iss` of accepted JWTs.' },
  { name: 'JWT_AUDIENCE', path: 'auth.jwt.audience', kind: 'string', description: 'Required `aud` of accepted JWTs.' },
  { name: 'RATE_LIMIT_RPM', path: 'rate_limiting.requests', kind: 'int', description: 'Seed 001: default requests per `rate_limiting.window_s` — per minute only with the default 60 s window (`RATE_LIMIT_WINDOW` changes it) — per API key or JWT subject, and per client address for anonymous callers and a shared static token (`auth.tokens`, `TRUTHGPT_API_TOKEN`); unset = no default limit.' },
  { name: 'RATE_LIMIT_REQUESTS', path: 'rate_limiting.requests', kind: 'int', description: 'Seed 002: default requests per `RATE_LIMIT_WINDOW`, counted as `RATE_LIMIT_RPM` counts them (wins over `RATE_LIMIT_RPM`).' },
  { name: 'RATE_LIMIT_WINDOW', path: 'rate_limiting.window_s', kind: 'number', default: '60', description: 'Seed 002: the rate-limit window, seconds.' },
  { name: 'WEBHOOK_SECRET', path: 'webhooks.secret', kind: 'string', description: 'Standard Webhooks secret of `POST /webhooks/ingest` and of outgoing webhooks.' },
  { name: 'LOG_LEVEL', path: 'logging.level', kind: 'string', default: 'info', description: 'pino log level (`fatal`…`trace`, `silent`); lower case or upper case.' },
  { name: 'ENABLE_METRICS', path: 'monitoring.metrics.enabled', kind: 'bool', default: 'true', description: 'Serve Prometheus metrics at `/metrics` and `/v1/metrics` (seed 001).' },
  { name: 'PROMETHEUS_PORT', path: 'monitoring.metrics.port', kind: 'int', description: 'Also serve `/metrics` on this separate port (seed 002), on the same host as the API; equal to `PORT` (seed 002 sets both to 8000), `/metrics` is served on the API port alone.' },
  { name: 'METRICS_TOKEN', path: 'monitoring.metrics.token', kind: 'string', description: 'When set, `/metrics` requires `Authorization: Bearer <token>`.' },
  { name: 'INFERENCEFLOW_STATS_WINDOW_S', path: 'monitoring.stats.window_s', kind: 'int', default: '300', description: 'Rolling window of `GET /v1/stats` and the dashboard, seconds.' },
  { name: 'ENABLE_TRACING', path: 'monitoring.tracing.enabled', kind: 'bool', default: 'true', description: 'OpenTelemetry tracing (seed 001): W3C `traceparent` sent upstream; spans per request and stage when an exporter receives them.' },
  { name: 'OTEL_SDK_DISABLED', kind: 'special', description: 'Standard OpenTelemetry switch: `true` turns tracing off.' },
  { name: 'OTEL_SERVICE_NAME', path: 'monitoring.tracing.service_name', kind: 'string', default: 'inferenceflow', description: 'Service name on exported spans.' },
  { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', kind: 'special', description: 'OTLP/HTTP collector base URL (e.g. `http://127.0.0.1:4318`); traces go to `<url>/v1/traces`.' },
  { name: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', path: 'monitoring.tracing.otlp_endpoint', kind: 'string', description: 'Full OTLP/HTTP traces URL; wins over `OTEL_EXPORTER_OTLP_ENDPOINT`.' },
  { name: 'OTEL_EXPORTER_OTLP_HEADERS', kind: 'special', description: 'Headers for the OTLP exporter (`key=value,…`), read by the exporter itself.' },
  { name: 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', kind: 'special', default: '64', description: 'Spans per OTLP export (the SDK default is 512; each batch is serialised on the event loop, ~5 ms for 512). `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE` and `OTEL_BSP_EXPORT_TIMEOUT` are read by the SDK as usual.' },
  { name: 'OTEL_TRACES_EXPORTER', path: 'monitoring.tracing.exporter', kind: 'string', description: '`otlp`, `console` or `none`; default `otlp` when an endpoint is set, else `none` (no spans; trace context still propagates).' },
  { name: 'OTEL_TRACES_SAMPLER', path: 'monitoring.tracing.sampler', kind: 'string', default: 'parentbased_always_on', description: 'Sampler: `always_on`, `always_off`, `traceidratio`, `parentbased_*`.' },
  { name: 'OTEL_TRACES_SAMPLER_ARG', path: 'monitoring.tracing.sampler_arg', kind: 'number', description: 'Sampling ratio (0..1) for the ratio samplers.' },
  { name: 'GRAFANA_URL', path: 'monitoring.dashboard.grafana_url', kind: 'string', description: 'Grafana address; the dashboard links to it (seed 002).' },
  { name: 'OVERSHOOT_API_KEY', kind: 'special', description: 'SDK side (`inferenceflow/client`): bearer token the client sends; also the token `inferenceflow batch` sends when neither `--api-key` nor `INFERENCEFLOW_API_KEY` is set. The gateway server does not read it.' },
  { name: 'OVERSHOOT_ENDPOINT', kind: 'special', default: 'http://127.0.0.1:8080', description: 'SDK side: gateway URL the client calls.' },
  { name: 'OVERSHOOT_MODEL', kind: 'special', default: 'llama-3-70b', description: 'SDK side: model the client asks for when a request names none.' },
  ...CACHE_ENV_VARS,
  ...CAPACITY_ENV_VARS,
  ...MESH_ENV_VARS,
];
