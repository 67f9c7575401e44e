// `inferenceflow/client`: seed 000's worker interface in TypeScript over the gateway's HTTP API —
// infer (one answer with latency, who answered, usage and cost), inferStream (tokens as they
// arrive), batchInfer (seed 002's /v1/batch, one result or error per request) and clusterStatus —
// configured from OVERSHOOT_API_KEY / OVERSHOOT_ENDPOINT / OVERSHOOT_MODEL, with retry and backoff.
// It uses only fetch, so it runs in Node 20+, Deno, Bun and browsers.
import { createParser } from 'eventsource-parser';
import { DifficultyLevel } from '../scaling/levels.js';
import { errorFromResponse, InferenceFlowError, streamErrorStatus } from './errors.js';
import type { BatchResult, ClientOptions, ClusterStatus, InferenceRequest, InferenceResponse } from './types.js';

export { DifficultyLevel, InferenceFlowError };
export type { Aggregation, BatchResult, ClientOptions, ClusterStatus, InferenceRequest, InferenceResponse, Usage } from './types.js';

const DEFAULT_ENDPOINT = 'http://127.0.0.1:8080';
const DEFAULT_MODEL = 'llama-3-70b';
/** The gateway's default `POST /v1/batch` limit (`inference.batch.max_items`). */
const BATCH_CHUNK = 100;

function env(name: string): string | undefined {
  const p = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  const v = p?.env?.[name];
  return v === '' ? undefined : v;
}

interface ChatBody {
  choices?: { message?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  model?: string;
}

interface SeedResponse {
  response: string;
  provider: string;
  model: string;
  latency: number;
  tokens_used: number;
  cost: number;
  cache_hit: boolean;
  request_id: string;
  metadata: { usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number }; deployment?: string | null; passes?: number; finish_reason?: string | null };
}

export class OvershootInferenceWorker {
  readonly endpoint: string;
  readonly model: string;
  private readonly apiKey?: string;
  private readonly maxRetries: number;
  private readonly initialBackoffMs: number;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;
  /** Requests per `POST /v1/batch`; lowered to the gateway's limit when it refuses a larger batch. */
  private batchSize: number;

  constructor(options: ClientOptions = {}) {
    this.endpoint = (options.endpoint ?? env('OVERSHOOT_ENDPOINT') ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
    this.model = options.model ?? env('OVERSHOOT_MODEL') ?? DEFAULT_MODEL;
    this.apiKey = options.apiKey ?? env('OVERSHOOT_API_KEY');
    this.maxRetries = options.maxRetries ?? 3;
    this.initialBackoffMs = options.initialBackoffMs ?? 250;
    this.timeoutMs = options.timeoutMs ?? 120_000;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    const batchSize = Math.floor(options.batchSize ?? BATCH_CHUNK);
    // NaN (an unset variable read as a number) would send empty batches for ever.
    if (!Number.isFinite(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a number of at least 1, not ${String(options.batchSize)}`);
    this.batchSize = batchSize;
  }

  /** One answer; with a difficulty, the gateway runs and combines several passes first. */
  async infer(request: InferenceRequest): Promise<InferenceResponse> {
    const started = now();
    const res = await this.send('POST', '/v1/chat/completions', this.chatBody(request, false), this.scalingHeaders(request));
    const body = await this.json<ChatBody>(res);
    const h = res.headers;
    const usage = body.usage ?? { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
    const provider = h.get('x-inferenceflow-provider') ?? 'unknown';
    const cache = h.get('x-inferenceflow-cache');
    return {
      text: body.choices?.[0]?.message?.content ?? '',
      latencyMs: round(now() - started),
      clusterId: h.get('x-inferenceflow-deployment') ?? provider,
      provider,
      model: h.get('x-inferenceflow-model') ?? body.model ?? request.model ?? this.model,
      usage: { promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens, totalTokens: usage.total_tokens },
      costUsd: Number(h.get('x-inferenceflow-cost-usd') ?? 0),
      passes: Number(h.get('x-inferenceflow-passes') ?? 1),
      requestId: h.get('x-request-id') ?? '',
      cacheHit: cache === 'exact' || cache === 'semantic',
      finishReason: body.choices?.[0]?.finish_reason ?? null,
    };
  }

  /**
   * Tokens as they arrive. With several passes the gateway streams the winning answer once it is
   * chosen. A failure before the first token is retried; one after it ends the iteration with an error.
   */
  async *inferStream(request: InferenceRequest): AsyncGenerator<string, void, undefined> {
    const res = await this.send('POST', '/v1/chat/completions', this.chatBody(request, true), this.scalingHeaders(request));
    if (!res.body) throw new InferenceFlowError('the gateway sent no stream body', { status: res.status, code: 'empty_stream' });
    const queue: string[] = [];
    const timeoutMs = this.timeoutMs;
    let failure: InferenceFlowError | undefined;
    let finished = false;
    const parser = createParser({
      onEvent(event) {
        if (event.data === '[DONE]') {
          finished = true;
          return;
        }
        let chunk: { choices?: { delta?: { content?: string | null } }[]; error?: { message: string; code: string; type?: string; param?: string | null } };
        try {
          chunk = JSON.parse(event.data) as typeof chunk;
        } catch (err) {
          failure ??= readError(err, res, timeoutMs);
          return;
        }
        if (chunk.error) {
          failure = new InferenceFlowError(chunk.error.message, {
            status: streamErrorStatus(chunk.error.code),
            code: chunk.error.code,
            type: chunk.error.type,
            param: chunk.error.param,
            requestId: res.headers.get('x-request-id') ?? undefined,
          });
          return;
        }
        const piece = chunk.choices?.[0]?.delta?.content;
        if (piece) queue.push(piece);
      },
    });
    const decoder = new TextDecoder();
    const reader = res.body.getReader();
    try {
      let ended = false;
      while (!finished && !ended) {
        let next: Awaited<ReturnType<typeof reader.read>>;
        try {
          next = await reader.read();
        } catch (err) {
          throw readError(err, res, timeoutMs, 'stream_interrupted');
        }
        const { done, value } = next;
        ended = done;
        parser.feed(done ? decoder.decode() : decoder.decode(value, { stream: true }));
        while (queue.length > 0) yield queue.shift() as string;
        if (failure) throw failure;
      }
      // The answer is complete only with its [DONE]: a stream that just stops was cut short.
      if (!finished) throw new InferenceFlowError('the stream ended before the answer was complete (no [DONE])', { status: 0, code: 'stream_interrupted', requestId: res.headers.get('x-request-id') ?? undefined });
    } finally {
      await reader.cancel().catch(() => undefined);
    }
  }

  /**
   * Many requests in one round trip per `batchSize` (seed 002's POST /v1/batch). One failing request
   * never fails the others: each gets `{ok: true, response}` or `{ok: false, error}`, in order — and
   * neither does a failed round trip: its requests each get its error, the other round trips' results
   * are kept (they ran and were paid for).
   */
  async batchInfer(requests: InferenceRequest[]): Promise<BatchResult[]> {
    const out: BatchResult[] = [];
    for (let start = 0; start < requests.length; ) {
      const chunk = requests.slice(start, start + this.batchSize);
      let body: { results: ({ index: number; status: 'success'; result: SeedResponse } | { index: number; status: 'error'; error: { message: string; code: string; type?: string; param?: string | null; status: number } })[] };
      try {
        // Not idempotent: a batch that may have run (a timeout, a 5xx) is not sent again — its requests
        // would run and be paid for twice. Only a 429 or a connection never made is retried.
        const res = await this.send('POST', '/v1/batch', { requests: chunk.map((r) => this.seedItem(r)) }, {}, [], 'unsent');
        body = await this.json<typeof body>(res);
      } catch (err) {
        if (!(err instanceof InferenceFlowError)) throw err;
        // A gateway whose inference.batch.max_items is lower says so before running anything: the
        // same requests go again in batches it takes, this call's and the next.
        const limit = batchLimit(err);
        if (limit !== undefined && limit >= 1 && limit < chunk.length) {
          this.batchSize = limit;
          continue;
        }
        for (let i = 0; i < chunk.length; i++) out.push({ ok: false, error: err });
        start += chunk.length;
        continue;
      }
      for (const r of body.results) {
        if (r.status === 'success') out.push({ ok: true, response: fromSeed(r.result) });
        else out.push({ ok: false, error: new InferenceFlowError(r.error.message, { status: r.error.status, code: r.error.code, type: r.error.type, param: r.error.param }) });
      }
      start += chunk.length;
    }
    return out;
  }

  /** Whether the gateway can serve, its dependency checks, and its GPU/mesh capacity where known. */
  async clusterStatus(): Promise<ClusterStatus> {
    const ready = await this.send('GET', '/ready', undefined, {}, [503]);
    const body = await this.json<{ status: string; checks: ClusterStatus['checks'] }>(ready);
    let cluster: unknown;
    try {
      const res = await this.send('GET', '/v1/cluster', undefined, {}, [404]);
      if (res.ok) cluster = await res.json();
    } catch {
      cluster = undefined;
    }
    return { ready: body.status === 'ready', checks: body.checks ?? [], ...(cluster !== undefined ? { cluster } : {}) };
  }

  /** An answer's JSON body; a failure while reading it (the call's timeout, a cut connection, bad JSON) is an InferenceFlowError. */
  private async json<T>(res: Response): Promise<T> {
    try {
      return (await res.json()) as T;
    } catch (err) {
      throw readError(err, res, this.timeoutMs);
    }
  }

  private chatBody(r: InferenceRequest, stream: boolean): Record<string, unknown> {
    const messages: { role: string; content: string }[] = r.system ? [{ role: 'system', content: r.system }] : [];
    messages.push({ role: 'user', content: r.prompt });
    return {
      model: r.model ?? this.model,
      messages,
      ...(r.maxTokens !== undefined ? { max_tokens: r.maxTokens } : {}),
      ...(r.temperature !== undefined ? { temperature: r.temperature } : {}),
      ...(r.difficulty ? { difficulty: r.difficulty } : {}),
      ...(r.priority ? { priority: r.priority } : {}),
      ...(r.sessionId ? { session_id: r.sessionId } : {}),
      ...(r.metadata ? { metadata: r.metadata } : {}),
      ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
    };
  }

  private seedItem(r: InferenceRequest): Record<string, unknown> {
    return {
      prompt: r.system ? `${r.system}\n\n${r.prompt}` : r.prompt,
      model_preference: r.model ?? this.model,
      ...(r.maxTokens !== undefined ? { max_tokens: r.maxTokens } : {}),
      ...(r.temperature !== undefined ? { temperature: r.temperature } : {}),
      ...(r.difficulty ? { difficulty: r.difficulty } : {}),
      ...(r.aggregation ? { aggregation: r.aggregation } : {}),
      ...(r.priority ? { priority: r.priority } : {}),
      ...(r.sessionId ? { session_id: r.sessionId } : {}),
      ...(r.metadata ? { metadata: r.metadata } : {}),
    };
  }

  private scalingHeaders(r: InferenceRequest): Record<string, string> {
    return r.aggregation ? { 'x-inferenceflow-aggregation': r.aggregation } : {};
  }

  /**
   * One call with retries. `any`: network errors, timeouts, 408, 429 and 5xx back off and try again,
   * unless the gateway's `x-should-retry: false` says no retry cures the failure (`true` retries any
   * status). `unsent` (calls that must not run twice): only a 429 (refused before any work) without
   * `x-should-retry: false`, and a connection that was never made.
   */
  private async send(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, accept: number[] = [], retry: 'any' | 'unsent' = 'any'): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      let res: Response | undefined;
      let error: InferenceFlowError;
      let unsent = false;
      try {
        res = await this.fetchImpl(`${this.endpoint}${path}`, {
          method,
          headers: {
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
            ...(this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}),
            ...headers,
          },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        if (res.ok || accept.includes(res.status)) return res;
        error = await errorFromResponse(res);
      } catch (err) {
        const timedOut = (err as Error).name === 'TimeoutError';
        unsent = !timedOut && neverConnected(err);
        error = new InferenceFlowError(timedOut ? `no answer within ${this.timeoutMs} ms` : `could not reach ${this.endpoint}: ${(err as Error).message}`, { status: 0, code: timedOut ? 'timeout' : 'network_error', cause: err });
      }
      // A batch is retried only when it cannot have run, and not even then if the gateway says no retry cures it.
      const again = retry === 'any' ? error.retryable : (error.status === 429 || unsent) && error.shouldRetry !== false;
      if (!again || attempt >= this.maxRetries) throw error;
      const wait = this.backoff(attempt, res?.headers.get('retry-after'));
      if (wait === undefined) throw error;
      await sleep(wait);
    }
  }

  /**
   * The wait before the next try: exponential with jitter (at most 30 s), or the gateway's
   * Retry-After when longer — a try sooner would only be refused again. Undefined (give up now) when
   * Retry-After is longer than the call's timeout: not worth waiting for.
   */
  private backoff(attempt: number, retryAfter: string | null | undefined): number | undefined {
    const exp = this.initialBackoffMs * 2 ** attempt;
    const jittered = Math.min(30_000, exp / 2 + Math.random() * (exp / 2));
    const hinted = retryAfterMs(retryAfter);
    if (hinted > this.timeoutMs) return undefined;
    return Math.max(jittered, hinted);
  }
}

/** Retry-After in ms: delay-seconds or an HTTP date; 0 when absent or unreadable. */
function retryAfterMs(value: string | null | undefined): number {
  if (!value) return 0;
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? 0 : Math.max(0, at - Date.now());
}

/** The gateway's `POST /v1/batch` limit from its 400 for a batch over it ("A batch takes at most N requests…"). */
function batchLimit(err: InferenceFlowError): number | undefined {
  if (err.status !== 400 || err.param !== 'requests') return undefined;
  const n = /at most (\d+) requests/.exec(err.message)?.[1];
  return n !== undefined && Number(n) >= 1 ? Number(n) : undefined;
}

/** The same class under the gateway's name. */
export { OvershootInferenceWorker as InferenceFlowClient };

function fromSeed(r: SeedResponse): InferenceResponse {
  const u = r.metadata.usage ?? { prompt_tokens: 0, completion_tokens: r.tokens_used, total_tokens: r.tokens_used };
  return {
    text: r.response,
    latencyMs: r.latency,
    clusterId: r.metadata.deployment ?? r.provider,
    provider: r.provider,
    model: r.model,
    usage: { promptTokens: u.prompt_tokens, completionTokens: u.completion_tokens, totalTokens: u.total_tokens },
    costUsd: r.cost,
    passes: r.metadata.passes ?? 1,
    requestId: r.request_id,
    cacheHit: r.cache_hit,
    finishReason: r.metadata.finish_reason ?? null,
  };
}

/**
 * What went wrong while an answer's body was read, as an InferenceFlowError: the call's timeout
 * (`timeout`), a body that is not JSON (`malformed_response`), or the connection lost (`cut`).
 */
function readError(err: unknown, res: Response, timeoutMs: number, cut: 'network_error' | 'stream_interrupted' = 'network_error'): InferenceFlowError {
  if (err instanceof InferenceFlowError) return err;
  const e = err instanceof Error ? err : new Error(String(err));
  const requestId = res.headers.get('x-request-id') ?? undefined;
  if (e.name === 'TimeoutError') return new InferenceFlowError(`the answer did not arrive in full within ${timeoutMs} ms`, { status: 0, code: 'timeout', requestId, cause: err });
  if (e.name === 'SyntaxError') return new InferenceFlowError(`the gateway's answer could not be read: ${e.message}`, { status: res.status, code: 'malformed_response', requestId, cause: err });
  return new InferenceFlowError(`the answer was cut short: ${e.message}`, { status: 0, code: cut, requestId, cause: err });
}

/** Connection failures that happen before a request is written (fetch's cause codes in Node). */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/** True when the error says the connection was never made, so the request was never sent. */
function neverConnected(err: unknown): boolean {
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && CONNECT_CODES.has(code)) return true;
  }
  return false;
}

function now(): number {
  return globalThis.performance?.now() ?? Date.now();
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
