// The contract every provider adapter meets. An adapter turns canonical requests into one upstream's
// wire format and back, and every failure into an UpstreamError. Adapters know nothing of tenants,
// routing or caching; one adapter instance serves many deployments (model names) of one upstream.
import type { ChatChunk, ChatRequest, ChatResult } from '../canonical/chat.js';
import type { EmbeddingRequest, EmbeddingResult } from '../canonical/embeddings.js';
import type { CancelSignal } from './cancel.js';
import type { StreamBody } from './http.js';

export const PROVIDER_TYPES = [
  'openai',
  'anthropic',
  'google',
  'cohere',
  'ollama',
  'local',
  'simulator',
  'mesh',
] as const;
export type ProviderType = (typeof PROVIDER_TYPES)[number];

export interface CallOptions {
  /** Aborted when the client goes away, the deadline passes or a hedge wins elsewhere. */
  signal: CancelSignal;
  /** Time allowed for this one attempt, connect to last byte (streams: to the first byte). */
  timeoutMs: number;
  /**
   * Streams: the longest silence the transport allows in the body, first chunk included (the router
   * sets it from its own idle and attempt timeouts, which it enforces itself); unset: 60 s.
   */
  streamIdleTimeoutMs?: number;
  requestId: string;
  /** Extra headers for the upstream (W3C traceparent and the like). */
  headers?: Record<string, string>;
}

export interface ProviderAdapter {
  /** Instance name from configuration, e.g. `my-openai`. */
  readonly name: string;
  readonly type: ProviderType;
  /**
   * True when answers carry token log-probabilities on request (`logprobs`, `top_logprobs`). A
   * request that asks for them is routed only to such deployments.
   */
  readonly logprobs?: boolean;
  /**
   * True when `n` choices are made as n calls of one choice each (each reads the prompt) although the
   * provider type takes `n` natively: an openai provider with `options.choices: fan_out`. Test-time
   * scaling then runs its passes as separate calls, and admission reserves the prompt per choice.
   */
  readonly fansOutChoices?: boolean;
  /**
   * True when it reads documents given inline (`file` content parts: PDFs and the like). A request
   * carrying one is routed only to such deployments.
   */
  readonly files?: boolean | readonly string[];
  /** Non-streaming chat. `req.model` is already the upstream's model name. */
  chat(req: ChatRequest, opts: CallOptions): Promise<ChatResult>;
  /**
   * Streaming chat. Resolves once the upstream has accepted the request (status checked), so a
   * failure before the first byte rejects here and can be retried. The iterable always ends with a
   * usage chunk (`choices: []`); if it fails mid-stream it throws an UpstreamError.
   */
  streamChat(req: ChatRequest, opts: CallOptions): Promise<AsyncIterable<ChatChunk>>;
  /** Embeddings; adapters without them throw UpstreamError kind `unsupported`. */
  embed(req: EmbeddingRequest, opts: CallOptions): Promise<EmbeddingResult>;
  /**
   * Whether `embed(req)` joins other requests in a shared upstream call (embedding batching) rather
   * than making one of its own: such a request holds no deployment slot while it waits for its batch,
   * and its outcome says nothing about the deployment on its own (one failed batch fails all of them).
   */
  sharesEmbedCall?(req: EmbeddingRequest): boolean;
  /**
   * An OpenAI API call outside chat and embeddings (audio, images, moderations) sent on as it came,
   * its model already replaced by the upstream's. Resolves once the upstream's status and headers
   * are in; an error status rejects with an UpstreamError (so the next deployment can be tried).
   * Adapters of upstreams that do not speak OpenAI's API lack it.
   */
  forward?(req: ForwardRequest, opts: CallOptions): Promise<ForwardResponse>;
  /** Models the upstream offers, where it can say. */
  listModels?(opts: CallOptions): Promise<string[]>;
  /** Cheap readiness: configured and (where checkable without a paid call) reachable. */
  ready(): Promise<boolean>;
  /** Close pools and free native resources. */
  close(): Promise<void>;
}

/** A request forwarded as bytes (ProviderAdapter.forward). */
export interface ForwardRequest {
  /** The path under the provider's base URL, e.g. `/audio/speech`. */
  path: string;
  /** The body's content type (a multipart one carries its boundary). */
  contentType: string;
  body: Buffer | string;
  /** The client's `Accept`, passed on. */
  accept?: string;
}

/** The upstream's answer to a forwarded request: its status, headers and body as it arrives. */
export interface ForwardResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: StreamBody;
}

/** Settings shared by every provider entry in the config file (`providers:`). */
export interface ProviderSettings {
  type: ProviderType;
  base_url?: string;
  api_key?: string;
  api_key_env?: string;
  headers?: Record<string, string>;
  timeout_ms?: number;
  max_connections?: number;
  /** Type-specific options (simulator latency, local models dir, ollama keep_alive, …). */
  options?: Record<string, unknown>;
}
