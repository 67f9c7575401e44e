// The SDK's one error type: what the gateway said (status, stable code, message, parameter) or why
// the call never got an answer (network failure, timeout).

export class InferenceFlowError extends Error {
  /** HTTP status; 0 when no response arrived. */
  readonly status: number;
  /** The gateway's stable error code (`invalid_value`, `upstream_timeout`, …) or `network_error`. */
  readonly code: string;
  readonly type?: string;
  readonly param?: string | null;
  readonly requestId?: string;

  constructor(message: string, init: { status: number; code: string; type?: string; param?: string | null; requestId?: string; cause?: unknown }) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'InferenceFlowError';
    this.status = init.status;
    this.code = init.code;
    this.type = init.type;
    this.param = init.param;
    this.requestId = init.requestId;
  }

  /** Worth trying again: no answer, a timeout, a rate limit or a server-side failure. */
  get retryable(): boolean {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

/**
 * The HTTP status of each of the gateway's error codes (docs/errors.md; a test keeps it equal to
 * the gateway's table). A stream that fails after it started has answered 200 already: its last
 * event names only the code, and the error takes the status that code has.
 */
export const STATUS_OF_CODE: Readonly<Record<string, number>> = {
  invalid_json: 400,
  invalid_request: 400,
  missing_required_parameter: 400,
  invalid_type: 400,
  invalid_value: 400,
  unknown_parameter: 400,
  empty_messages: 400,
  context_length_exceeded: 400,
  unsupported_capability: 400,
  upstream_rejected_request: 400,
  content_policy_violation: 400,
  missing_api_key: 401,
  invalid_api_key: 401,
  budget_exceeded: 402,
  permission_denied: 403,
  invalid_signature: 401,
  duplicate_webhook: 409,
  not_found: 404,
  previous_response_not_found: 400,
  model_not_found: 404,
  method_not_allowed: 405,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limit_exceeded: 429,
  upstream_rate_limited: 429,
  queue_full: 429,
  client_closed_request: 499,
  internal_error: 500,
  upstream_error: 502,
  upstream_auth_failed: 502,
  upstream_unavailable: 503,
  no_healthy_deployment: 503,
  not_ready: 503,
  limiter_unavailable: 503,
  shutting_down: 503,
  upstream_timeout: 504,
};

/** The status of an error event that ended a started stream: its code's, else an upstream failure's. */
export function streamErrorStatus(code: string | undefined): number {
  return (code !== undefined && Object.hasOwn(STATUS_OF_CODE, code) ? STATUS_OF_CODE[code] : undefined) ?? 502;
}

/** Builds the error for a non-2xx response from its OpenAI-style body. */
export async function errorFromResponse(res: Response): Promise<InferenceFlowError> {
  let body: { error?: { message?: string; code?: string; type?: string; param?: string | null } } | undefined;
  try {
    body = (await res.json()) as typeof body;
  } catch {
    body = undefined;
  }
  const e = body?.error;
  return new InferenceFlowError(e?.message ?? `the gateway answered ${res.status}`, {
    status: res.status,
    code: e?.code ?? `http_${res.status}`,
    type: e?.type,
    param: e?.param,
    requestId: res.headers.get('x-request-id') ?? undefined,
  });
}
