// The SDK's request and response shapes: seed 000's InferenceRequest / InferenceResponse in
// TypeScript naming, plus what the gateway adds (usage, cost, passes, request id).
import type { DifficultyLevel } from '../scaling/levels.js';

export type Aggregation = 'self_consistency' | 'best_of_n' | 'adaptive' | 'first';

export interface InferenceRequest {
  prompt: string;
  /** A level, or `auto` to let the gateway estimate it; unset means no test-time scaling. */
  difficulty?: DifficultyLevel | 'auto';
  /** Sticky session id (routing affinity, per-session limits). */
  sessionId?: string;
  /** Model; defaults to the client's model (OVERSHOOT_MODEL). */
  model?: string;
  /** Output token budget; unset takes the difficulty level's budget. */
  maxTokens?: number;
  temperature?: number;
  /** Optional system prompt. */
  system?: string;
  /** How several passes are combined (the gateway's default when unset). */
  aggregation?: Aggregation;
  priority?: 'low' | 'normal' | 'high';
  metadata?: Record<string, string>;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

export interface InferenceResponse {
  text: string;
  /** Wall time of the call as the client saw it, ms. */
  latencyMs: number;
  /** Which deployment (cluster, mesh node, provider/model) answered; the provider when unknown. */
  clusterId: string;
  provider: string;
  model: string;
  /** Summed over every pass the gateway ran. */
  usage: Usage;
  /** USD, summed over every internal call. */
  costUsd: number;
  /** Passes run by test-time scaling (1 without it). */
  passes: number;
  requestId: string;
  cacheHit: boolean;
  finishReason: string | null;
}

export type BatchResult = { ok: true; response: InferenceResponse } | { ok: false; error: import('./errors.js').InferenceFlowError };

export interface ClusterStatus {
  /** The gateway can serve (its /ready). */
  ready: boolean;
  checks: { name: string; ok: boolean; detail?: string }[];
  /** GPU pools and mesh capacity (GET /v1/cluster), when the gateway reports them. */
  cluster?: unknown;
}

export interface ClientOptions {
  /** Bearer token; default OVERSHOOT_API_KEY. */
  apiKey?: string;
  /** Gateway URL; default OVERSHOOT_ENDPOINT, else http://127.0.0.1:8080. */
  endpoint?: string;
  /** Default model; default OVERSHOOT_MODEL, else llama-3-70b (seed 000). */
  model?: string;
  /** Tries after the first on a network error, 408, 429 or 5xx (default 3). */
  maxRetries?: number;
  /** First backoff, ms; doubled each retry, with jitter; Retry-After wins when larger (default 250). */
  initialBackoffMs?: number;
  /** Per-call deadline, ms (default 120000). */
  timeoutMs?: number;
  /**
   * Requests per `POST /v1/batch` round trip of `batchInfer` (default 100, the gateway's default
   * `inference.batch.max_items`); a gateway that takes fewer says so, and the client then sends fewer.
   */
  batchSize?: number;
  /** A fetch implementation (default: the global one). */
  fetch?: typeof fetch;
}
