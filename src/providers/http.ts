// Raw HTTP to an upstream over an undici keep-alive pool: one pool per provider instance, created
// once. Every failure leaves here as an UpstreamError; adapters only build bodies and map shapes.
import { Pool, util as undiciUtil, type Dispatcher } from 'undici';
import type { CancelSignal } from './cancel.js';
import type { CallOptions } from './types.js';
import { UpstreamError, kindForStatus, parseRetryAfter, type UpstreamErrorKind } from './errors.js';

export interface UpstreamHttpOptions {
  provider: string;
  baseUrl: string;
  headers?: Record<string, string>;
  maxConnections?: number;
  /** Idle time allowed between two chunks of a streamed body. */
  streamIdleTimeoutMs?: number;
}

export interface UpstreamResponse<T> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: T;
}

export interface StreamBody extends AsyncIterable<Uint8Array> {
  destroy(err?: Error): void;
}

export class UpstreamHttp {
  readonly provider: string;
  private readonly pool: Pool;
  private readonly basePath: string;
  private readonly headers: Record<string, string>;
  private readonly idleMs: number;

  constructor(opts: UpstreamHttpOptions) {
    const url = new URL(opts.baseUrl);
    this.provider = opts.provider;
    this.basePath = url.pathname.replace(/\/+$/, '');
    this.headers = { 'content-type': 'application/json', ...opts.headers };
    this.idleMs = opts.streamIdleTimeoutMs ?? 60_000;
    this.pool = new Pool(url.origin, {
      connections: opts.maxConnections ?? 256,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 600_000,
      pipelining: 1,
    });
  }

  /**
   * A request whose whole body is read and parsed as JSON. opts.timeoutMs bounds the wait for the
   * response headers and each gap in the body (undici's own timers: no per-request AbortSignal
   * composition, which is costly on the hot path).
   */
  async json<T>(
    method: Dispatcher.HttpMethod,
    path: string,
    body: unknown,
    opts: CallOptions,
    headers?: Record<string, string>,
  ): Promise<UpstreamResponse<T>> {
    let res: CollectingHandler;
    try {
      const all = opts.headers === undefined && headers === undefined ? this.headers : { ...this.headers, ...opts.headers, ...headers };
      const request = new JsonRequest(method, this.basePath + path, all, body === undefined ? undefined : JSON.stringify(body), opts.timeoutMs);
      res = await new Promise<CollectingHandler>((resolve, reject) => {
        this.pool.dispatch(request, new CollectingHandler(opts.signal, resolve, reject));
      });
    } catch (err) {
      throw this.toUpstreamError(err, opts.signal);
    }
    const { text } = res;
    if (res.status >= 400) throw this.errorFromText(res.status, text, res.headers);
    let parsed: T;
    try {
      parsed = JSON.parse(text) as T;
    } catch (cause) {
      throw new UpstreamError({
        provider: this.provider,
        kind: 'malformed',
        message: `${this.provider} answered with a body that is not JSON`,
        status: res.status,
        body: text.slice(0, 500),
        cause,
      });
    }
    return { status: res.status, headers: res.headers, body: parsed };
  }

  /**
   * A request whose body is streamed. Resolves once the status line and headers are in (within
   * opts.timeoutMs); an error status rejects with the parsed error body. Between chunks the body may
   * idle at most `streamIdleTimeoutMs`.
   */
  async stream(
    method: Dispatcher.HttpMethod,
    path: string,
    body: unknown,
    opts: CallOptions,
    headers?: Record<string, string>,
  ): Promise<UpstreamResponse<StreamBody>> {
    try {
      const res = await this.pool.request({
        method,
        path: this.basePath + path,
        headers: { ...this.headers, ...opts.headers, ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
        // undici takes any EventTarget-like signal (see cancel.ts); its types only name AbortSignal.
        signal: opts.signal as AbortSignal,
        headersTimeout: opts.timeoutMs,
        bodyTimeout: this.idleMs,
      });
      if (res.statusCode >= 400) throw await this.errorFrom(res);
      const source = res.body;
      const provider = this.provider;
      const self = this;
      const wrapped: StreamBody = {
        destroy: (err?: Error) => source.destroy(err),
        async *[Symbol.asyncIterator]() {
          const it = source[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
          let ended = false;
          try {
            while (true) {
              const next = await it.next();
              if (next.done) {
                ended = true;
                return;
              }
              yield next.value;
            }
          } catch (err) {
            ended = true;
            const e = self.toUpstreamError(err, opts.signal);
            if (e.kind === 'aborted') throw e;
            throw new UpstreamError({
              provider,
              kind: e.kind === 'timeout' ? 'timeout' : 'stream_interrupted',
              message: `${provider} stream broke: ${e.message}`,
              retryable: false,
              cause: err,
            });
          } finally {
            // The reader stopped early (an SSE stream's [DONE]): the rest of the body is usually already
            // in, so read it to its end rather than destroy it, which builds an AbortError and formats
            // its stack (~30 µs per stream). A body that does not end within 50 ms is destroyed as
            // before; a cancelled request's body is already destroyed, so its read fails at once.
            if (!ended) await drainOrDestroy(it, source);
          }
        },
      };
      return { status: res.statusCode, headers: res.headers, body: wrapped };
    } catch (err) {
      throw this.toUpstreamError(err, opts.signal);
    }
  }

  async close(): Promise<void> {
    await this.pool.close().catch(() => this.pool.destroy());
  }

  private async errorFrom(res: Dispatcher.ResponseData): Promise<UpstreamError> {
    return this.errorFromText(res.statusCode, await res.body.text().catch(() => ''), res.headers);
  }

  private errorFromText(status: number, text: string, headers: UpstreamResponse<unknown>['headers']): UpstreamError {
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // keep the raw text
    }
    const message = upstreamErrorMessage(parsed) ?? (text.slice(0, 300) || `HTTP ${status}`);
    return new UpstreamError({
      provider: this.provider,
      kind: kindForStatus(status, message),
      status,
      message: `${this.provider} returned ${status}: ${message}`,
      retryAfterMs: parseRetryAfter(headers['retry-after'], headers['retry-after-ms']),
      body: parsed,
    });
  }

  private toUpstreamError(err: unknown, clientSignal: CancelSignal): UpstreamError {
    if (err instanceof UpstreamError) return err;
    const e = err as { code?: string; name?: string; message?: string };
    let kind: UpstreamErrorKind = 'connect';
    if (clientSignal.aborted) kind = 'aborted';
    else if (
      e.code === 'UND_ERR_HEADERS_TIMEOUT' ||
      e.code === 'UND_ERR_BODY_TIMEOUT' ||
      e.code === 'UND_ERR_CONNECT_TIMEOUT' ||
      e.name === 'TimeoutError'
    ) {
      kind = 'timeout';
    } else if (e.name === 'AbortError') kind = 'aborted';
    return new UpstreamError({
      provider: this.provider,
      kind,
      message:
        kind === 'timeout'
          ? `${this.provider} did not answer in time`
          : kind === 'aborted'
            ? `request to ${this.provider} was cancelled`
            : `could not reach ${this.provider}: ${e.code ?? e.message ?? String(err)}`,
      cause: err,
    });
  }
}

/** The human message inside any provider's error body (OpenAI, Anthropic, Gemini, Cohere, Ollama). */
export function upstreamErrorMessage(body: unknown): string | undefined {
  if (typeof body === 'string') return body || undefined;
  if (body === null || typeof body !== 'object') return undefined;
  const b = body as { error?: unknown; message?: unknown; detail?: unknown };
  if (typeof b.error === 'string') return b.error;
  if (b.error && typeof b.error === 'object') {
    const m = (b.error as { message?: unknown }).message;
    if (typeof m === 'string') return m;
  }
  if (typeof b.message === 'string') return b.message;
  if (typeof b.detail === 'string') return b.detail;
  return undefined;
}

/**
 * A JSON call's dispatch options. A class, not an object literal: V8 decided to allocate one of this
 * path's literals straight into the old generation (allocation-site pretenuring), which quadrupled
 * what each request left there for the major collector (~190 → ~780 bytes at saturation, measured
 * with --trace-gc-nvp); instances of a class are not pretenured by site.
 */
class JsonRequest implements Dispatcher.DispatchOptions {
  readonly headersTimeout: number;
  readonly bodyTimeout: number;
  constructor(
    readonly method: Dispatcher.HttpMethod,
    readonly path: string,
    readonly headers: Record<string, string>,
    readonly body: string | undefined,
    timeoutMs: number,
  ) {
    this.headersTimeout = timeoutMs;
    this.bodyTimeout = timeoutMs;
  }
}

/**
 * An undici dispatch handler that collects a whole response body. What `pool.request()` then
 * `body.text()` did, without what that pays per request for a body read whole: a Readable stream,
 * an async resource and a promise to consume the stream (docs/decisions.md, "JSON upstream calls use
 * undici's dispatch"). Speaks undici's handler protocol (onConnect, onHeaders, onData, onComplete,
 * onError), which `request()` itself uses. undici's header and body buffers are views of the
 * socket's read buffers: they are turned into strings as soon as they arrive, never kept, or every
 * answer held alive would hold a read buffer too.
 */
class CollectingHandler {
  /** Set by the time the handler resolves with itself (no result object is made). */
  status = 0;
  headers: UpstreamResponse<unknown>['headers'] = NO_HEADERS;
  /** The body as text (UTF-8). */
  text = '';
  private chunks: Buffer[] = [];
  private abort: ((err: Error) => void) | null = null;
  private readonly onAbort: (() => void) | null = null;

  constructor(
    private readonly signal: CancelSignal,
    private readonly resolve: (res: CollectingHandler) => void,
    private readonly reject: (err: unknown) => void,
  ) {
    if (!signal.aborted) {
      this.onAbort = () => this.abort?.(abortReason(signal));
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  onConnect(abort: (err: Error) => void): void {
    // Aborted before the request left (or before this handler listened): undici ends it with onError.
    if (this.signal.aborted) abort(abortReason(this.signal));
    else this.abort = abort;
  }

  onHeaders(status: number, raw: Buffer[]): boolean {
    // 1xx (100 Continue, 103 Early Hints): the final status follows.
    if (status < 200) return true;
    this.status = status;
    this.headers = undiciUtil.parseHeaders(raw);
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    return true;
  }

  onComplete(): void {
    this.unlisten();
    const { chunks } = this;
    this.chunks = NO_CHUNKS;
    // One chunk (a small answer) is decoded as it is; several are joined first, so a character
    // split between two chunks is decoded whole.
    this.text = chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8');
    this.resolve(this);
  }

  onError(err: Error): void {
    this.unlisten();
    this.chunks = NO_CHUNKS;
    this.reject(err);
  }

  private unlisten(): void {
    if (this.onAbort) this.signal.removeEventListener('abort', this.onAbort);
    this.abort = null;
  }
}

// Frozen: a chunk arriving after the end (undici never sends one) fails loudly instead of landing here.
const NO_CHUNKS = Object.freeze([]) as unknown as Buffer[];
const NO_HEADERS: UpstreamResponse<unknown>['headers'] = Object.freeze({});

function abortReason(signal: CancelSignal): Error {
  const r = signal.reason;
  if (r instanceof Error) return r;
  const err = new Error('request aborted');
  err.name = 'AbortError';
  return err;
}

const DRAIN_MS = 50;

/** Reads what is left of a body whose reader stopped early; destroys it if it does not end soon. */
async function drainOrDestroy(it: AsyncIterator<Uint8Array>, source: { destroy(err?: Error): unknown }): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const drained = (async () => {
    for (let i = 0; i < 64; i++) if ((await it.next()).done) return true;
    return false;
  })().catch(() => false);
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), DRAIN_MS);
  });
  const ok = await Promise.race([drained, timedOut]);
  clearTimeout(timer);
  if (!ok) {
    source.destroy();
    await it.return?.().catch(() => undefined);
  }
}
