// Raw HTTP to an upstream over an undici keep-alive pool: one pool per provider instance, created
// once. Every failure leaves here as an UpstreamError; adapters only build bodies and map shapes.
import { Pool, util as undiciUtil, type Dispatcher } from 'undici';
import type { CancelSignal } from './cancel.js';
import type { CallOptions } from './types.js';
import { UpstreamError, kindForStatus, parseRetryAfter, type UpstreamErrorKind } from './errors.js';
import { rateLimitResetMs } from './rate-limit-headers.js';

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
    const res = await this.dispatch<CollectingHandler>(method, path, body, opts, headers, opts.timeoutMs, (resolve, reject) => new CollectingHandler(opts.signal, resolve, reject));
    const { text } = res;
    if (res.status >= 400) throw upstreamErrorFromText(this.provider, res.status, text, res.headers);
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
   * idle at most the call's `streamIdleTimeoutMs`, else the provider's.
   */
  async stream(
    method: Dispatcher.HttpMethod,
    path: string,
    body: unknown,
    opts: CallOptions,
    headers?: Record<string, string>,
  ): Promise<UpstreamResponse<StreamBody>> {
    const res = await this.dispatch<StreamingHandler>(method, path, body, opts, headers, opts.streamIdleTimeoutMs ?? this.idleMs, (resolve, reject) => new StreamingHandler(opts.signal, resolve, reject, (err) => this.streamBroke(err, opts.signal)));
    if (res.status >= 400) throw upstreamErrorFromText(this.provider, res.status, res.errorText, res.headers);
    return { status: res.status, headers: res.headers, body: res };
  }

  /**
   * A request whose body is sent as given, bytes or text, with `contentType` (a re-encoded
   * multipart form, a JSON body forwarded as it is), and whose answer is streamed as `stream` streams
   * it: resolves once the status and headers are in, an error status rejects with its parsed error body.
   */
  raw(
    method: Dispatcher.HttpMethod,
    path: string,
    body: Buffer | string,
    contentType: string,
    opts: CallOptions,
    headers?: Record<string, string>,
  ): Promise<UpstreamResponse<StreamBody>> {
    return this.stream(method, path, new RawPayload(body), opts, { ...headers, 'content-type': contentType });
  }

  async close(): Promise<void> {
    await this.pool.close().catch(() => this.pool.destroy());
  }

  /**
   * Sends the request with the handler `handler` makes, which resolves with itself once its
   * response is in (the whole body, or the headers of a stream); any failure until then is an
   * UpstreamError. `bodyTimeoutMs` bounds each gap in the body. `body` is sent as JSON, or as it
   * is when a RawPayload.
   */
  private dispatch<H>(
    method: Dispatcher.HttpMethod,
    path: string,
    body: unknown,
    opts: CallOptions,
    headers: Record<string, string> | undefined,
    bodyTimeoutMs: number,
    handler: (resolve: (h: H) => void, reject: (err: unknown) => void) => Dispatcher.DispatchHandler,
  ): Promise<H> {
    // One promise per call, as on the hot path before this was shared: no async wrapper around it.
    return new Promise<H>((resolve, reject) => {
      const fail = (err: unknown) => reject(this.toUpstreamError(err, opts.signal));
      try {
        const all = opts.headers === undefined && headers === undefined ? this.headers : { ...this.headers, ...opts.headers, ...headers };
        const payload = body instanceof RawPayload ? body.bytes : body === undefined ? undefined : JSON.stringify(body);
        const request = new UpstreamRequest(method, this.basePath + path, all, payload, opts.timeoutMs, bodyTimeoutMs);
        this.pool.dispatch(request, handler(resolve, fail));
      } catch (err) {
        fail(err);
      }
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

  /** What a streamed body's failure after its headers is: cancelled, timed out between chunks, or broken. */
  private streamBroke(err: unknown, clientSignal: CancelSignal): UpstreamError {
    const e = this.toUpstreamError(err, clientSignal);
    if (e.kind === 'aborted') return e;
    return new UpstreamError({
      provider: this.provider,
      kind: e.kind === 'timeout' ? 'timeout' : 'stream_interrupted',
      message: `${this.provider} stream broke: ${e.message}`,
      retryable: false,
      cause: err,
    });
  }
}

/** A request body sent as it is (UpstreamHttp.raw), not as JSON. */
class RawPayload {
  constructor(readonly bytes: Buffer | string) {}
}

/**
 * An error status's body as the upstream error every caller sees: its message read from any
 * provider's error shape (or the text), its kind from the status and that message (a refused input
 * told from auth, quota, limits and outages), and when to retry.
 */
export function upstreamErrorFromText(provider: string, status: number, text: string, headers: UpstreamResponse<unknown>['headers']): UpstreamError {
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // keep the raw text
  }
  const message = upstreamErrorMessage(parsed) ?? (text.slice(0, 300) || `HTTP ${status}`);
  return new UpstreamError({
    provider,
    kind: kindForStatus(status, message, parsed),
    status,
    message: `${provider} returned ${status}: ${message}`,
    // No Retry-After on a 429: when the provider's own rate-limit headers say the limit resets.
    retryAfterMs: parseRetryAfter(headers['retry-after'], headers['retry-after-ms']) ?? (status === 429 ? rateLimitResetMs(headers) : undefined),
    body: parsed,
  });
}

/** The human message inside any provider's error body (OpenAI, Anthropic, Gemini, Cohere, Ollama). */
export function upstreamErrorMessage(body: unknown): string | undefined {
  if (typeof body === 'string') return readableText(body) || undefined;
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
 * A body that is not JSON, as a message: an HTML error page (a proxy's, or Google's 404 page for a
 * wrong path) as its title, else its text without tags; whitespace collapsed, at most 300 characters.
 */
function readableText(text: string): string {
  let out = text;
  if (/^\s*</.test(text)) {
    const title = /<title[^>]*>([^<]*)<\/title>/i.exec(text)?.[1];
    out = title?.trim() ? title : text.replace(/<(script|style)\b[\s\S]*?<\/\1>/gi, ' ').replace(/<[^>]*>/g, ' ');
  }
  out = out.replace(/\s+/g, ' ').trim();
  return out.length > 300 ? `${out.slice(0, 297)}...` : out;
}

/**
 * An upstream call's dispatch options. A class, not an object literal: V8 decided to allocate one of
 * the JSON path's literals straight into the old generation (allocation-site pretenuring), which
 * quadrupled what each request left there for the major collector (~190 → ~780 bytes at saturation,
 * measured with --trace-gc-nvp); instances of a class are not pretenured by site. `bodyTimeout` is
 * the longest gap between two chunks of the body (a stream's idle timeout; a JSON call's own timeout).
 */
class UpstreamRequest implements Dispatcher.DispatchOptions {
  readonly headersTimeout: number;
  readonly bodyTimeout: number;
  constructor(
    readonly method: Dispatcher.HttpMethod,
    readonly path: string,
    readonly headers: Record<string, string>,
    readonly body: Buffer | string | undefined,
    timeoutMs: number,
    bodyTimeoutMs: number,
  ) {
    this.headersTimeout = timeoutMs;
    this.bodyTimeout = bodyTimeoutMs;
  }
}

/**
 * What both dispatch handlers share: the client's cancellation aborts the request through the abort
 * function undici hands the handler (or, cancelled before that, ends it at once), and the listener
 * goes when the response ends either way.
 */
abstract class CancellableHandler {
  /** The final status and headers, once they are in (0 until then). */
  status = 0;
  headers: UpstreamResponse<unknown>['headers'] = NO_HEADERS;
  protected abort: ((err: Error) => void) | null = null;
  private onAbort: (() => void) | null = null;

  constructor(protected readonly signal: CancelSignal) {
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

  /**
   * Takes a response's status and headers, parsed as they arrive (undici's buffers are views of the
   * socket's read buffers, not to be kept); false for a 1xx (100 Continue, 103 Early Hints), whose
   * final status follows.
   */
  protected finalHeaders(status: number, raw: Buffer[]): boolean {
    if (status < 200) return false;
    this.status = status;
    this.headers = undiciUtil.parseHeaders(raw);
    return true;
  }

  protected unlisten(): void {
    if (this.onAbort) this.signal.removeEventListener('abort', this.onAbort);
    this.onAbort = null;
    this.abort = null;
  }
}

/**
 * An undici dispatch handler that collects a whole response body. What `pool.request()` then
 * `body.text()` did, without what that pays per request for a body read whole: a Readable stream,
 * an async resource and a promise to consume the stream (docs/decisions.md, "Upstream calls use
 * undici's dispatch"). Speaks undici's handler protocol (onConnect, onHeaders, onData, onComplete,
 * onError), which `request()` itself uses. undici's header and body buffers are views of the
 * socket's read buffers: they are turned into strings as soon as they arrive, never kept, or every
 * answer held alive would hold a read buffer too.
 */
class CollectingHandler extends CancellableHandler {
  /** The body as text (UTF-8), set by the time the handler resolves with itself (no result object is made). */
  text = '';
  private chunks: Buffer[] = [];

  constructor(
    signal: CancelSignal,
    private readonly resolve: (res: CollectingHandler) => void,
    private readonly reject: (err: unknown) => void,
  ) {
    super(signal);
  }

  onHeaders(status: number, raw: Buffer[]): boolean {
    this.finalHeaders(status, raw);
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
    this.text = utf8(chunks);
    this.resolve(this);
  }

  onError(err: Error): void {
    this.unlisten();
    this.chunks = NO_CHUNKS;
    this.reject(err);
  }
}

// Frozen: a chunk arriving after the end (undici never sends one) fails loudly instead of landing here.
const NO_CHUNKS = Object.freeze([]) as unknown as Buffer[];
const NO_HEADERS: UpstreamResponse<unknown>['headers'] = Object.freeze({});

/** Chunks as UTF-8 text: one as it is, several joined first so a character split between two is decoded whole. */
function utf8(chunks: readonly Buffer[]): string {
  return chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8');
}

function abortReason(signal: CancelSignal): Error {
  const r = signal.reason;
  if (r instanceof Error) return r;
  const err = new Error('request aborted');
  err.name = 'AbortError';
  return err;
}

/** How long a body whose reader stopped early may take to end before its connection is closed, ms. */
const DRAIN_MS = 50;
/** Queued bytes at which a streamed body's reading pauses until its reader catches up. */
const STREAM_HIGH_WATER = 64 * 1024;

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/**
 * An undici dispatch handler for a body read as it arrives, and the body's iterator itself: what
 * `pool.request()` gave before — a Readable, its async iterator and a generator around it — in one
 * object (docs/decisions.md, "Upstream calls use undici's dispatch"). Resolves once the final status
 * and headers are in; an error status's body is collected whole for its error. Chunks queue until
 * read; past STREAM_HIGH_WATER bytes undici stops reading the socket until the reader catches up.
 * A failure after the headers (cancelled, an idle timeout, a broken connection) is thrown from the
 * next read, as `broke` describes it. A reader that stops early (`return()`, an SSE stream's
 * [DONE]) leaves the rest to be read and dropped if it ends within DRAIN_MS — the connection then
 * stays in the pool — else the request is aborted, which closes the connection.
 */
class StreamingHandler extends CancellableHandler implements StreamBody, AsyncIterator<Uint8Array> {
  private queue: Buffer[] = [];
  private queued = 0;
  /** Collected for an error status (>= 400), turned into `errorText` at the end. */
  private errorChunks: Buffer[] | undefined;
  errorText = '';
  /** undici's onComplete came. */
  private ended = false;
  private failure: Error | undefined;
  /** The reader is gone (return or destroy): what still arrives is dropped. */
  private dropping = false;
  private reader: { resolve(r: IteratorResult<Uint8Array>): void; reject(err: unknown): void } | undefined;
  private resumeReading: (() => void) | null = null;
  private paused = false;
  private drained: (() => void) | undefined;

  constructor(
    signal: CancelSignal,
    private readonly resolve: (res: StreamingHandler) => void,
    private readonly reject: (err: unknown) => void,
    private readonly broke: (err: unknown) => Error,
  ) {
    super(signal);
  }

  onHeaders(status: number, raw: Buffer[], resume: () => void): boolean {
    if (!this.finalHeaders(status, raw)) return true;
    this.resumeReading = resume;
    if (status >= 400) this.errorChunks = [];
    else this.resolve(this);
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.errorChunks) {
      this.errorChunks.push(chunk);
      return true;
    }
    if (this.dropping) return true;
    const reader = this.reader;
    if (reader) {
      this.reader = undefined;
      reader.resolve({ done: false, value: chunk });
      return true;
    }
    this.queue.push(chunk);
    this.queued += chunk.length;
    if (this.queued < STREAM_HIGH_WATER) return true;
    this.paused = true;
    return false;
  }

  onComplete(): void {
    this.unlisten();
    this.ended = true;
    if (this.errorChunks) {
      this.errorText = utf8(this.errorChunks);
      this.errorChunks = undefined;
      this.resolve(this);
      return;
    }
    this.settleReader();
    this.drained?.();
  }

  onError(err: Error): void {
    this.unlisten();
    // Before the final headers: the request failed.
    if (this.status === 0) return this.reject(err);
    // An error status whose body broke off is still that status (its text is what arrived whole: none).
    if (this.errorChunks) {
      this.errorChunks = undefined;
      return this.resolve(this);
    }
    this.failure = err;
    this.queue = [];
    this.queued = 0;
    this.settleReader();
    this.drained?.();
  }

  /** One read at a time, as `for await` reads: a second call while one waits is not supported. */
  next(): Promise<IteratorResult<Uint8Array>> {
    const chunk = this.queue.shift();
    if (chunk !== undefined) {
      this.queued -= chunk.length;
      if (this.paused && this.queued < STREAM_HIGH_WATER / 2) {
        this.paused = false;
        this.resumeReading?.();
      }
      return Promise.resolve({ done: false, value: chunk });
    }
    // A reader that gave the body up (return, destroy) is told it has ended, whatever ended it.
    if (this.dropping) return Promise.resolve(DONE);
    if (this.failure) return Promise.reject(this.broke(this.failure));
    if (this.ended) return Promise.resolve(DONE);
    return new Promise((resolve, reject) => {
      this.reader = { resolve, reject };
    });
  }

  /** The reader stopped early: the rest is dropped if it comes within DRAIN_MS, else the request is aborted. */
  return(): Promise<IteratorResult<Uint8Array>> {
    this.stopReading();
    if (this.ended || this.failure) return Promise.resolve(DONE);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.abortRequest(), DRAIN_MS);
      this.drained = () => {
        clearTimeout(timer);
        this.drained = undefined;
        resolve(DONE);
      };
    });
  }

  destroy(err?: Error): void {
    if (this.ended || this.failure) return;
    this.stopReading();
    this.abortRequest(err);
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this;
  }

  private stopReading(): void {
    this.dropping = true;
    this.queue = [];
    this.queued = 0;
    // A read still waiting (return() while a next() is pending) ends: the reader gave the body up.
    const reader = this.reader;
    this.reader = undefined;
    reader?.resolve(DONE);
    if (this.paused) {
      this.paused = false;
      this.resumeReading?.();
    }
  }

  private abortRequest(err?: Error): void {
    const abort = this.abort;
    if (!abort) return;
    const e = err ?? new Error('the reader stopped before the body ended');
    if (!err) e.name = 'AbortError';
    abort(e);
  }

  /** Wakes a waiting read: with the failure, or the end. */
  private settleReader(): void {
    const reader = this.reader;
    if (!reader) return;
    this.reader = undefined;
    if (this.failure) reader.reject(this.broke(this.failure));
    else reader.resolve(DONE);
  }
}
