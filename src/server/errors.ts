// Gateway errors: the code table (error-codes.ts, documented in docs/errors.md) and GatewayError.
// Route adapters render a GatewayError in their own dialect (OpenAI or Anthropic body); the code
// is the same everywhere.
import { isUpstreamError, upstreamErrorFields, type UpstreamError } from '../providers/errors.js';
import { ERROR_CODES, type ErrorCode } from './error-codes.js';

export { ERROR_CODES, type ErrorCode, type ErrorSpec } from './error-codes.js';

export interface GatewayErrorOptions {
  message?: string;
  param?: string | null;
  provider?: string;
  retryAfterMs?: number;
  headers?: Record<string, string>;
  cause?: unknown;
  /** The upstream's own error code, when the error came from an upstream that gave one. */
  upstreamCode?: string;
}

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly provider?: string;
  readonly retryAfterMs?: number;
  readonly headers?: Record<string, string>;
  /**
   * The upstream's own `code` (e.g. `unsupported_parameter`), sent beside the gateway's as
   * `upstream_code`: `code` stays one of the table's (docs/errors.md, docs/decisions.md).
   */
  readonly upstreamCode?: string;

  constructor(code: ErrorCode, opts: GatewayErrorOptions = {}) {
    const spec = ERROR_CODES[code];
    super(opts.message ?? spec.message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.status = spec.status;
    this.type = spec.type;
    this.param = opts.param ?? null;
    this.provider = opts.provider;
    this.retryAfterMs = opts.retryAfterMs;
    this.headers = opts.headers;
    if (opts.upstreamCode !== undefined) this.upstreamCode = opts.upstreamCode;
  }
}

/** Where an upstream failure happened, as far as the client-facing error depends on it. */
export interface UpstreamErrorSource {
  /**
   * The request went to the passthrough provider under the client's own model name: a 404 there
   * means that name does not exist upstream (404 `model_not_found`), not a broken deployment (502).
   */
  passthrough?: boolean;
}

/**
 * Tells OpenAI's and Anthropic's SDKs not to retry (they honour `x-should-retry`): for upstream
 * failures no retry can cure, which they would otherwise retry by status (429, 5xx).
 */
const NO_RETRY: Readonly<Record<string, string>> = { 'x-should-retry': 'false' };

/** The client-facing error for an upstream failure. */
export function fromUpstream(err: UpstreamError, source: UpstreamErrorSource = {}): GatewayError {
  // The upstream's `param` (what it rejected) is the client's too; its `code` travels beside ours.
  const fields = upstreamErrorFields(err.body);
  const opts: GatewayErrorOptions = { message: err.message, provider: err.provider, retryAfterMs: err.retryAfterMs, cause: err, param: fields.param, upstreamCode: fields.code };
  switch (err.kind) {
    case 'not_found':
      // A configured deployment's model missing upstream is the gateway's misconfiguration: a retry
      // cannot succeed, so the SDKs are told not to (their default retries 5xx).
      return source.passthrough ? new GatewayError('model_not_found', { ...opts, param: 'model' }) : new GatewayError('upstream_error', { ...opts, headers: NO_RETRY });
    case 'timeout':
      return new GatewayError('upstream_timeout', opts);
    case 'quota':
      // Billing, not a rate limit: no Retry-After, and OpenAI's and Anthropic's SDKs are told not to retry.
      return new GatewayError('upstream_quota_exceeded', { ...opts, retryAfterMs: undefined, headers: NO_RETRY });
    case 'rate_limited':
      return new GatewayError('upstream_rate_limited', { ...opts, retryAfterMs: err.retryAfterMs ?? 1000 });
    case 'overloaded':
      return new GatewayError('upstream_unavailable', opts);
    case 'auth':
      // The gateway's own credentials refused (revoked key, region, permission): no retry helps.
      return new GatewayError('upstream_auth_failed', { ...opts, headers: NO_RETRY });
    case 'context_length':
      return new GatewayError('context_length_exceeded', opts);
    case 'content_policy':
      return new GatewayError('content_policy_violation', opts);
    case 'bad_request':
      return new GatewayError('upstream_rejected_request', opts);
    case 'unsupported':
      return new GatewayError('unsupported_capability', opts);
    default:
      return new GatewayError('upstream_error', opts);
  }
}

/** Any thrown value as a GatewayError (unknown failures become internal_error). */
export function toGatewayError(err: unknown, source: UpstreamErrorSource = {}): GatewayError {
  if (err instanceof GatewayError) return err;
  if (isUpstreamError(err)) return fromUpstream(err, source);
  return new GatewayError('internal_error', { cause: err });
}

/** OpenAI's error body. */
export function openAiErrorBody(err: GatewayError): { error: Record<string, unknown> } {
  return {
    error: {
      message: err.message,
      type: err.type,
      code: err.code,
      param: err.param,
      ...(err.provider ? { provider: err.provider } : {}),
      ...(err.upstreamCode !== undefined ? { upstream_code: err.upstreamCode } : {}),
    },
  };
}

/** Headers every error response carries beyond the body (Retry-After on 429/503). */
export function errorHeaders(err: GatewayError): Record<string, string> {
  const h: Record<string, string> = { ...err.headers };
  if (err.retryAfterMs !== undefined) h['retry-after'] = String(Math.max(1, Math.ceil(err.retryAfterMs / 1000)));
  return h;
}
