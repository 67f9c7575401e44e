// One typed error for every upstream failure, whatever the provider. Routing reads `retryable` and
// `retryAfterMs`; the server maps `kind` to a client status (502/503/504, 429, 400).

export type UpstreamErrorKind =
  | 'connect' // could not connect / connection reset before a response
  | 'timeout' // no response (or no first byte) within the attempt's time
  | 'rate_limited' // 429 from the upstream
  | 'quota' // 429 insufficient_quota: the account's credit or quota is used up (billing), not a rate
  | 'overloaded' // 503/529 from the upstream
  | 'server' // other 5xx
  | 'bad_request' // 400/422: the upstream rejected the request itself
  | 'context_length' // the prompt does not fit the model
  | 'content_policy' // refused by the upstream's content filter
  | 'auth' // 401/403: our credentials for the upstream are wrong
  | 'not_found' // 404: model or route unknown upstream
  | 'malformed' // the upstream answered something we could not parse
  | 'stream_interrupted' // a stream broke after it had started
  | 'aborted' // cancelled by us (client gone, hedge won, deadline)
  | 'unsupported'; // the adapter cannot do this (embeddings on a chat-only upstream)

const RETRYABLE: ReadonlySet<UpstreamErrorKind> = new Set([
  'connect',
  'timeout',
  'rate_limited',
  'overloaded',
  'server',
  'malformed',
]);

export interface UpstreamErrorInit {
  provider: string;
  kind: UpstreamErrorKind;
  message: string;
  status?: number;
  retryAfterMs?: number;
  body?: unknown;
  cause?: unknown;
  retryable?: boolean;
}

export class UpstreamError extends Error {
  readonly provider: string;
  readonly kind: UpstreamErrorKind;
  /** HTTP status from the upstream, 0 when there was none. */
  readonly status: number;
  readonly retryable: boolean;
  readonly retryAfterMs?: number;
  readonly body?: unknown;

  constructor(init: UpstreamErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'UpstreamError';
    this.provider = init.provider;
    this.kind = init.kind;
    this.status = init.status ?? 0;
    this.retryable = init.retryable ?? RETRYABLE.has(init.kind);
    this.retryAfterMs = init.retryAfterMs;
    this.body = init.body;
  }
}

export function isUpstreamError(err: unknown): err is UpstreamError {
  return err instanceof UpstreamError;
}

/** Parses a Retry-After header (seconds or HTTP date) or retry-after-ms into milliseconds. */
export function parseRetryAfter(
  retryAfter: string | string[] | undefined,
  retryAfterMs?: string | string[] | undefined,
  now = Date.now(),
): number | undefined {
  const ms = first(retryAfterMs);
  if (ms !== undefined && /^\d+(\.\d+)?$/.test(ms)) return Math.ceil(Number(ms));
  const value = first(retryAfter);
  if (value === undefined || value === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return Math.ceil(Number(value) * 1000);
  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** A header's value, the first when it came more than once. */
export function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The machine-readable fields of an upstream's error body in OpenAI's shape (`{"error": {"code",
 * "param", …}}`, which OpenAI-compatible servers copy): the code when it is a string, the param
 * when it names one. Other shapes (Anthropic's `type`, Gemini's numeric `code`) give neither.
 */
export function upstreamErrorFields(body: unknown): { code?: string; param?: string } {
  if (body === null || typeof body !== 'object') return {};
  const e = (body as { error?: unknown }).error;
  if (e === null || typeof e !== 'object') return {};
  const { code, param } = e as { code?: unknown; param?: unknown };
  return {
    ...(typeof code === 'string' && code !== '' ? { code } : {}),
    ...(typeof param === 'string' && param !== '' ? { param } : {}),
  };
}

/**
 * An upstream error body saying the account's quota or credit is used up: OpenAI's
 * `insufficient_quota`, as the error's code or its type (compatible servers send either).
 */
export function isInsufficientQuota(body: unknown): boolean {
  if (body === null || typeof body !== 'object') return false;
  const e = (body as { error?: unknown }).error;
  if (e === null || typeof e !== 'object') return false;
  const { code, type } = e as { code?: unknown; type?: unknown };
  return code === 'insufficient_quota' || type === 'insufficient_quota';
}

/**
 * Classifies an HTTP error status from an upstream. `message` is whatever the upstream's error body
 * said, used to spot context-length and content-policy refusals that arrive as plain 400s; `body`,
 * the parsed error body, tells an exhausted quota from a rate limit (both 429).
 */
export function kindForStatus(status: number, message = '', body?: unknown): UpstreamErrorKind {
  // OpenAI answers an exhausted account 429 too: no wait will help, unlike a rate limit.
  if (status === 429) return isInsufficientQuota(body) ? 'quota' : 'rate_limited';
  if (status === 401 || status === 403) return 'auth';
  if (status === 404) return 'not_found';
  if (status === 408) return 'timeout';
  if (status === 503 || status === 529) return 'overloaded';
  if (status >= 500) return 'server';
  const m = message.toLowerCase();
  if (/context[_ ]length|maximum context|too many tokens|prompt is too long|context window/.test(m)) {
    return 'context_length';
  }
  if (/content[_ ]policy|content[_ ]filter|safety/.test(m)) return 'content_policy';
  return 'bad_request';
}
