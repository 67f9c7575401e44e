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
  const { code, param } = errorObject(body);
  return {
    ...(typeof code === 'string' && code !== '' ? { code } : {}),
    ...(typeof param === 'string' && param !== '' ? { param } : {}),
  };
}

/**
 * An upstream error body saying the account's quota or credit is used up: OpenAI's
 * `insufficient_quota`, as the error's code or its type (compatible servers send either).
 */
function isInsufficientQuota(body: unknown): boolean {
  const { code, type } = errorObject(body);
  return code === 'insufficient_quota' || type === 'insufficient_quota';
}

/**
 * Classifies an HTTP error status from an upstream. `message` is whatever the upstream's error body
 * said, used to spot context-length and content-policy refusals that arrive as plain 400s (and
 * llama-server's refusals of a request, which arrive as 500s); `body`, the parsed error body, tells
 * an exhausted quota from a rate limit (both 429) and carries an error `type`/`code` that names a
 * context overflow.
 */
export function kindForStatus(status: number, message = '', body?: unknown): UpstreamErrorKind {
  // OpenAI answers an exhausted account 429 too: no wait will help, unlike a rate limit.
  if (status === 429) return isInsufficientQuota(body) ? 'quota' : 'rate_limited';
  // 402 Payment Required: the account is out of credit (Anthropic's billing_error, Cohere's billing
  // limit), the deployment's fault as an exhausted quota is.
  if (status === 402) return 'quota';
  if (status === 401 || status === 403) return 'auth';
  if (status === 404) return 'not_found';
  if (status === 408) return 'timeout';
  // 501 Not Implemented: this server cannot do what was asked (llama-server without --embeddings
  // or --reranking answers it, type not_supported_error), whatever the request; another deployment may.
  if (status === 501) return 'unsupported';
  if (status === 503 || status === 529) return 'overloaded';
  const m = message.toLowerCase();
  if (status >= 500) {
    // A 500 is retryable, except what llama-server answers 500 although no retry can change it: its
    // route wrapper turns every exception but std::invalid_argument into a 500 server_error, and that
    // includes its refusals of a request (what this server cannot do, or a malformed request) and of
    // a prompt longer than n_ctx (so do Ollama's older embedding routes).
    if (status === 500) {
      if (isContextOverflow(m, body)) return 'context_length';
      if (LLAMA_SERVER_CANNOT.some((re) => re.test(m))) return 'unsupported';
      if (LLAMA_SERVER_REJECTIONS.some((re) => re.test(m))) return 'bad_request';
    }
    return 'server';
  }
  if (isContextOverflow(m, body)) return 'context_length';
  // Anthropic answers an account out of credit 400 invalid_request_error, not 402.
  if (status === 400 && /credit balance is too low/.test(m)) return 'quota';
  // Newer llama-server builds answer some of the same refusals 400 (std::invalid_argument), and
  // Ollama a model without a capability the request needs.
  if (status === 400 && (LLAMA_SERVER_CANNOT.some((re) => re.test(m)) || OLLAMA_MODEL_CANNOT.test(m))) return 'unsupported';
  if (/content[_ ]policy|content[_ ]filter|safety/.test(m)) return 'content_policy';
  return 'bad_request';
}

/**
 * The wordings of "the prompt does not fit the model" (lower-cased message). OpenAI's and vLLM's
 * "maximum context length is N tokens"; Anthropic's "prompt is too long" and "input length and
 * `max_tokens` exceed context limit: N + M > L"; llama-server's "request
 * (N tokens) exceeds the available context size (M tokens)" and, before that, "the request exceeds
 * the available context size"; vLLM's "The decoder prompt (length N) … is longer than the maximum
 * model length of M"; LM Studio's "Trying to keep the first N tokens when context the overflows";
 * Ollama's "the input length exceeds the context length"; TGI's "`inputs` tokens + `max_new_tokens`
 * must be <= N" and "`inputs` must have less than N tokens".
 */
const CONTEXT_OVERFLOW =
  /context[_ ]length|maximum context|exceed context limit|too many tokens|prompt is too long|context window|exceeds? the available context size|longer than the maximum model length|when context the overflows|`?inputs`? tokens \+ `?max_new_tokens`? must be <=|`?inputs`? must have less than \d+ tokens/;

/**
 * Whether an upstream error says the prompt does not fit: by its message, or by the error's `type`
 * or `code` (llama-server's `exceed_context_size_error`, OpenAI's `context_length_exceeded`), which
 * stay the same when a server rewords its message.
 */
function isContextOverflow(lowerMessage: string, body: unknown): boolean {
  const { type, code } = errorObject(body);
  if (type === 'exceed_context_size_error' || code === 'context_length_exceeded' || type === 'context_length_exceeded') return true;
  return CONTEXT_OVERFLOW.test(lowerMessage);
}

/** The `error` object of an error body in OpenAI's shape (`{"error": {…}}`), or {} for any other. */
function errorObject(body: unknown): { type?: unknown; code?: unknown; param?: unknown } {
  if (body === null || typeof body !== 'object') return {};
  const e = (body as { error?: unknown }).error;
  return e !== null && typeof e === 'object' ? (e as { type?: unknown; code?: unknown; param?: unknown }) : {};
}

/**
 * What llama-server (ggml-org/llama.cpp, tools/server; examples/server in older trees) throws while
 * it reads an OpenAI-compatible request (oaicompat_chat_params_parse, oaicompat_completion_params_parse,
 * the message and tool parsers, the media loaders) as std::runtime_error, which its route wrapper
 * answers as HTTP 500 `server_error`: a request that server will never take, not a failure of the
 * server. Newer builds throw some of them as std::invalid_argument (a 400); older builds say them all
 * with a 500. Messages lower-cased.
 *
 * These first ones are what this server cannot do (how it was started, or what llama-server does not
 * implement), which another deployment of the group may: kind `unsupported`.
 */
/**
 * Ollama's refusal of a request its model lacks the capability for (server/routes.go:
 * `"%s does not support tools"`, `… insert`, `… completion`, `… embeddings`, `… vision`): another
 * deployment of the group may have it. (`… thinking` is retried without `think` by the adapter.)
 */
const OLLAMA_MODEL_CANNOT = /does not support (tools|insert|completion|embeddings|vision)$/;

const LLAMA_SERVER_CANNOT: readonly RegExp[] = [
  /only one completion choice is allowed/, // n != 1 (also "Illegal param: only one …")
  /requires --jinja|--jinja mode required/, // tools / tool_choice on a server started without --jinja
  /^unsupported param\b/, // best_of, suffix, echo; tools (older builds)
  /^only no echo is supported/,
  /^(image|audio) input is not supported/, // no multimodal projector (--mmproj)
  /^multimodal data provided, but model does not support/,
  /^logprobs is not supported with tools/,
  /^(illegal param: )?"?response_format"? (type )?must be one of/, // json_schema on older builds
  /^'input_file' is not supported/,
];

/** llama-server's refusals of a malformed request, any server would refuse too: kind `bad_request`. */
const LLAMA_SERVER_REJECTIONS: readonly RegExp[] = [
  /^illegal param\b/, // older builds' invalid values
  /^cannot use both json_schema and grammar/,
  /^cannot use custom grammar constraints with tools/,
  /^top_logprobs requires logprobs/,
  /^"prompt" (is required|must not be empty|elements must be)/,
  /^invalid url (value|format)|^url must be base64 encoded|^failed to download image/,
  /^failed to load image or audio file/,
  /^failed to parse (messages|tools)\b/,
  /^invalid tool_choice\b/,
  /^expected '(content|messages|message)' to be/,
  /^unsupported content\[\]\.type/,
  /^'messages' is required/,
  /^all non-assistant messages must contain 'content'/,
  /^assistant message must contain either/,
  /^cannot have 2 or more assistant messages/,
  /^assistant response prefill is incompatible/,
  /^input_audio\.format must be/,
];
