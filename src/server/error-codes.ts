// The one table of client-facing error codes: status, OpenAI error type and default message.
// docs/errors.md documents every row and a test keeps the two in step. No imports: the gateway
// (src/server/errors.ts) and the SDK (src/client/errors.ts) both read it.

export interface ErrorSpec {
  status: number;
  type: string;
  message: string;
}

export const ERROR_CODES = {
  // 4xx: the client's request
  invalid_json: { status: 400, type: 'invalid_request_error', message: 'The request body is not valid JSON.' },
  invalid_request: { status: 400, type: 'invalid_request_error', message: 'The request is not valid.' },
  missing_required_parameter: { status: 400, type: 'invalid_request_error', message: 'A required parameter is missing.' },
  invalid_type: { status: 400, type: 'invalid_request_error', message: 'A parameter has the wrong type.' },
  invalid_value: { status: 400, type: 'invalid_request_error', message: 'A parameter has a value outside its allowed range or set.' },
  unknown_parameter: { status: 400, type: 'invalid_request_error', message: 'The request has a parameter this API does not accept.' },
  empty_messages: { status: 400, type: 'invalid_request_error', message: '`messages` must hold at least one message.' },
  context_length_exceeded: { status: 400, type: 'invalid_request_error', message: 'The prompt and max_tokens do not fit any deployment of this model.' },
  unsupported_capability: { status: 400, type: 'invalid_request_error', message: 'No deployment of this model supports the request.' },
  upstream_rejected_request: { status: 400, type: 'invalid_request_error', message: 'The upstream provider rejected the request.' },
  request_too_large: { status: 400, type: 'invalid_request_error', message: 'The request needs more tokens than a token rate limit allows in a whole window, so no retry can admit it.' },
  content_policy_violation: { status: 400, type: 'invalid_request_error', message: 'The upstream provider refused the request on content policy grounds.' },
  missing_api_key: { status: 401, type: 'authentication_error', message: 'No API key was given. Send `Authorization: Bearer <key>` or `x-api-key: <key>`.' },
  invalid_api_key: { status: 401, type: 'authentication_error', message: 'The API key is not valid.' },
  budget_exceeded: { status: 402, type: 'insufficient_quota', message: 'The budget for this key, user or team is used up.' },
  permission_denied: { status: 403, type: 'permission_error', message: 'This key may not do that.' },
  invalid_signature: { status: 401, type: 'authentication_error', message: 'The webhook signature is missing, malformed, stale or does not match.' },
  duplicate_webhook: { status: 409, type: 'invalid_request_error', message: 'This webhook id was already received.' },
  not_found: { status: 404, type: 'invalid_request_error', message: 'No such route.' },
  previous_response_not_found: { status: 400, type: 'invalid_request_error', message: 'The previous response was not found.' },
  model_not_found: { status: 404, type: 'invalid_request_error', message: 'The model does not exist.' },
  method_not_allowed: { status: 405, type: 'invalid_request_error', message: 'Method not allowed on this route.' },
  payload_too_large: { status: 413, type: 'invalid_request_error', message: 'The request body is larger than the server accepts.' },
  unsupported_media_type: { status: 415, type: 'invalid_request_error', message: 'Send the body as application/json.' },
  rate_limit_exceeded: { status: 429, type: 'rate_limit_error', message: 'Rate limit exceeded; retry after the time in Retry-After.' },
  upstream_rate_limited: { status: 429, type: 'rate_limit_error', message: 'Every upstream for this model is rate limiting; retry after the time in Retry-After.' },
  queue_full: { status: 429, type: 'rate_limit_error', message: 'The gateway queue for this model is full; retry after the time in Retry-After.' },
  upstream_quota_exceeded: { status: 429, type: 'insufficient_quota', message: "The upstream provider's quota or credit for the gateway's account is used up." },
  // nginx's 499: never seen by the client that left, it names the outcome in logs, spans and metrics.
  client_closed_request: { status: 499, type: 'invalid_request_error', message: 'The client closed the connection before the answer was complete.' },
  // 5xx: the gateway or the upstreams
  internal_error: { status: 500, type: 'server_error', message: 'The gateway failed unexpectedly.' },
  upstream_error: { status: 502, type: 'upstream_error', message: 'The upstream provider failed.' },
  upstream_auth_failed: { status: 502, type: 'upstream_error', message: "The gateway's credentials were refused by the upstream provider." },
  upstream_unavailable: { status: 503, type: 'upstream_error', message: 'The upstream provider is overloaded or unavailable.' },
  no_healthy_deployment: { status: 503, type: 'upstream_error', message: 'No deployment of this model can take the request now.' },
  not_ready: { status: 503, type: 'server_error', message: 'The gateway is not ready.' },
  store_unavailable: { status: 503, type: 'server_error', message: 'The database that holds API keys is unreachable; retry shortly.' },
  jwks_unavailable: { status: 503, type: 'server_error', message: 'The key set that verifies bearer tokens could not be fetched; retry shortly.' },
  limiter_unavailable: { status: 503, type: 'server_error', message: 'The shared rate limiter is unreachable and the gateway is configured to fail closed.' },
  shutting_down: { status: 503, type: 'server_error', message: 'The gateway is shutting down.' },
  upstream_timeout: { status: 504, type: 'upstream_error', message: 'The upstream provider did not answer in time.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;
