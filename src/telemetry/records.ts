// The shapes of what the gateway reports to telemetry: one record per finished HTTP request, one per
// upstream attempt, and the states the capabilities (breakers, queue, mesh, GPU pool) publish.
// Prometheus metrics and the rolling /v1/stats window are both fed from these.

export interface RequestRecord {
  /** The route pattern (`/v1/chat/completions`), never the raw URL. */
  route: string;
  method: string;
  status: number;
  durationMs: number;
  model?: string;
  provider?: string;
  /** `miss`, `exact`, `semantic` or `bypass` where a cache looked. */
  cache?: string;
  costUsd?: number;
}

/**
 * How an upstream attempt ended: it answered, it failed, or the gateway cancelled it (a lost hedge
 * race, the client gone, the request's deadline) — no verdict on the provider, so never an error.
 */
export type AttemptOutcome = 'ok' | 'error' | 'cancelled';

export interface AttemptRecord {
  provider: string;
  model: string;
  deployment: string;
  outcome: AttemptOutcome;
  /** Attempt start to its end (a stream: to its last chunk). */
  durationMs: number;
  /** Streams only: attempt start to the first chunk. */
  ttftMs?: number;
  /** UpstreamError kind when the attempt failed (`timeout`, `server`, …); not set for a cancellation. */
  errorKind?: string;
  inputTokens?: number;
  outputTokens?: number;
  costUsd?: number;
}

/** Tokens and spend no attempt reported (a stream without a usage chunk, estimated by admission). */
export interface SpendRecord {
  provider?: string;
  model?: string;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

export type BreakerState = 'closed' | 'half_open' | 'open';
export type HedgeOutcome = 'launched' | 'won' | 'cancelled';
export type CacheHitKind = 'exact' | 'semantic';

/** Capabilities that report into telemetry; a section shows "not enabled" until one reports. */
export type Section = 'cache' | 'breakers' | 'queue' | 'limits' | 'routing' | 'mesh' | 'gpu';
