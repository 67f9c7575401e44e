// The SDK's one error type: what the gateway said (status, stable code, message, parameter) or why
// the call never got an answer (network failure, timeout).
import { ERROR_CODES, type ErrorCode } from '../server/error-codes.js';

export class InferenceFlowError extends Error {
  /** HTTP status; 0 when no response arrived. */
  readonly status: number;
  /** The gateway's stable error code (`invalid_value`, `upstream_timeout`, …) or `network_error`. */
  readonly code: string;
  readonly type?: string;
  readonly param?: string | null;
  readonly requestId?: string;
  /**
   * The gateway's `x-should-retry` header, when it sent one: `false` for failures no retry cures
   * (`upstream_quota_exceeded`, `upstream_auth_failed`), `true` where retrying is safe.
   */
  readonly shouldRetry?: boolean;

  constructor(message: string, init: { status: number; code: string; type?: string; param?: string | null; requestId?: string; shouldRetry?: boolean; cause?: unknown }) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'InferenceFlowError';
    this.status = init.status;
    this.code = init.code;
    this.type = init.type;
    this.param = init.param;
    this.requestId = init.requestId;
    if (init.shouldRetry !== undefined) this.shouldRetry = init.shouldRetry;
  }

  /**
   * Worth trying again: what the gateway's `x-should-retry` says, else no answer, a timeout, a rate
   * limit or a server-side failure.
   */
  get retryable(): boolean {
    if (this.shouldRetry !== undefined) return this.shouldRetry;
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

/** The status of an error event that ended a started stream: its code's, else an upstream failure's. */
export function streamErrorStatus(code: string | undefined): number {
  return code !== undefined && Object.hasOwn(ERROR_CODES, code) ? ERROR_CODES[code as ErrorCode].status : 502;
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
  // As OpenAI's SDK reads it: only the exact values count.
  const hint = res.headers.get('x-should-retry');
  return new InferenceFlowError(e?.message ?? `the gateway answered ${res.status}`, {
    status: res.status,
    code: e?.code ?? `http_${res.status}`,
    type: e?.type,
    param: e?.param,
    requestId: res.headers.get('x-request-id') ?? undefined,
    ...(hint === 'true' ? { shouldRetry: true } : hint === 'false' ? { shouldRetry: false } : {}),
  });
}
