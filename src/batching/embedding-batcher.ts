// Dynamic batching for embeddings (seed 001): a provider wrapper whose `embed` hands each input to a
// MicroBatcher per (model, dimensions, user), so concurrent requests become one upstream call of up to
// BATCH_MAX_SIZE inputs, flushed after BATCH_FLUSH_TIMEOUT_MS. Each request gets its own vectors and
// its share of the batch's token usage; a batch the upstream refuses for a bad input is sent again
// one request at a time, so only that request fails. Everything else passes straight through, and so
// does a request of max_size inputs or more: it fills a batch on its own, so sharing gains it nothing,
// while cut into max_size slices it would cost one upstream call per slice (rate limits), fail whole
// for one failed slice, and fill the queue other requests wait in. Each request keeps its deployment's
// timeout_ms (a timeout as its own call would give); the shared call gets the longest of its requests'.
// Inputs of a caller that went away are dropped while still queued; a full queue refuses new work
// (503 overloaded, retryable elsewhere); a (model, dimensions, user) batcher is let go once it is
// idle, so clients naming ever new models, dimensions or users do not leave one behind each. `user`
// (the end user the upstream's abuse monitoring attributes a call to) is sent with the batch: inputs
// of different users never share a call, which would send one user's inputs under another's name or
// under none.
import { Cancellation, type CancelSignal } from '../providers/cancel.js';
import { Attempt, untilAborted } from '../providers/attempt.js';
import type { ChatChunk, ChatRequest, ChatResult } from '../canonical/chat.js';
import { embeddingInputs, type EmbeddingRequest, type EmbeddingResult } from '../canonical/embeddings.js';
import { isUpstreamError, UpstreamError, type UpstreamErrorKind } from '../providers/errors.js';
import { countTextTokens } from '../providers/tokens.js';
import type { CallOptions, ProviderAdapter, ProviderType } from '../providers/types.js';
import { MicroBatcher, MicroBatcherFull, type MicroBatcherOptions } from './micro-batcher.js';

interface EmbedItem {
  text: string;
  /** The embed() call the input came with: its inputs are retried together. */
  caller: object;
  /** That call's signal (aborted at its deadline too): a batch whose every caller has gone is cancelled upstream. */
  signal: CancelSignal;
  /** That call's timeoutMs: the batch's upstream call is given the longest of its items'. */
  timeoutMs: number;
}
interface EmbedOutput {
  embedding: number[];
  tokens: number;
}

/** Upstream refusals of the request itself: one input in a batch can cause them. */
export const REQUEST_FAULTS: ReadonlySet<UpstreamErrorKind> = new Set(['bad_request', 'context_length', 'content_policy']);

/** Whether a batch's failure may be one input's doing (a refusal of the request itself): worth retrying apart. */
export function refusedAnInput(err: unknown): boolean {
  return isUpstreamError(err) && REQUEST_FAULTS.has(err.kind);
}

export type EmbeddingBatchingOptions = MicroBatcherOptions;

/**
 * Default queue cap per (model, dimensions), in rounds of full batches on every concurrent slot:
 * work that waits longer than that many upstream calls is better refused and sent elsewhere.
 */
const QUEUED_ROUNDS = 16;

export class EmbeddingBatchingProvider implements ProviderAdapter {
  readonly name: string;
  readonly type: ProviderType;
  readonly logprobs: boolean;
  readonly files: boolean | readonly string[];
  private readonly batchers = new Map<string, MicroBatcher<EmbedItem, EmbedOutput>>();
  /** Upstream embedding calls made; for benchmarks and tests. */
  upstreamCalls = 0;

  /** (model, dimensions, user) batchers with work queued or in flight; for tests. */
  get batchersAlive(): number {
    return this.batchers.size;
  }

  constructor(
    readonly inner: ProviderAdapter,
    private readonly options: EmbeddingBatchingOptions,
  ) {
    this.name = inner.name;
    this.type = inner.type;
    this.logprobs = inner.logprobs === true;
    this.files = inner.files ?? false;
    if (inner.listModels) this.listModels = (opts) => (inner.listModels as (o: CallOptions) => Promise<string[]>)(opts);
    // Forwarded requests (audio, images, moderations) are not batched: as the inner adapter has them.
    if (inner.forward) this.forward = inner.forward.bind(inner);
  }

  listModels?: (opts: CallOptions) => Promise<string[]>;
  forward?: ProviderAdapter['forward'];

  /** Chat passes through: an inner adapter that makes `n` choices as n calls still does (test-time scaling and admission plan by it). */
  get fansOutChoices(): boolean {
    return this.inner.fansOutChoices === true;
  }

  chat(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    return this.inner.chat(req, opts);
  }

  streamChat(req: ChatRequest, opts: CallOptions): Promise<AsyncIterable<ChatChunk>> {
    return this.inner.streamChat(req, opts);
  }

  /**
   * Text inputs for float vectors, fewer than a batch holds, are batched; token-array inputs, base64
   * output and requests of a batch's size or more go straight through.
   */
  sharesEmbedCall(req: EmbeddingRequest): boolean {
    const inputs = embeddingInputs(req.input);
    return inputs !== null && inputs.length > 0 && inputs.length < this.options.maxSize && req.encoding_format !== 'base64';
  }

  async embed(req: EmbeddingRequest, opts: CallOptions): Promise<EmbeddingResult> {
    // Token-array inputs and base64 output go straight through (the batch is built from text), and so
    // does a request that fills a batch alone: one upstream call of its own, sliced only as far as the
    // inner adapter's upstream requires.
    if (!this.sharesEmbedCall(req)) return this.inner.embed(req, opts);
    const inputs = embeddingInputs(req.input) as string[];
    const batcher = this.batcherFor(req.model, req.dimensions, req.user);
    const caller = {};
    // The deployment's timeout_ms holds as it does for a call of its own (waiting for the batch
    // included): past it the request fails with a timeout, so routing can move on to the next
    // deployment, and its inputs still queued are dropped.
    const attempt = new Attempt(opts.signal, opts.timeoutMs);
    let outputs: EmbedOutput[];
    try {
      if (attempt.signal.aborted) throw attempt.abortError(this.name);
      // The signal drops this request's inputs still queued (not sent upstream for nobody).
      outputs = await untilAborted(batcher.submitMany(inputs.map((text) => ({ text, caller, signal: attempt.signal, timeoutMs: opts.timeoutMs })), attempt.signal), attempt.signal);
    } catch (err) {
      // Its deadline passed or its caller went: a timeout or a cancellation, whatever the batch did.
      if (attempt.signal.aborted) throw attempt.abortError(this.name, err);
      if (err instanceof MicroBatcherFull) throw new UpstreamError({ provider: this.name, kind: 'overloaded', status: 503, message: `${this.name}: the embedding batch queue for ${req.model} is full (${err.queued} inputs waiting)`, cause: err });
      throw err;
    } finally {
      attempt.finish();
    }
    const tokens = outputs.reduce((s, o) => s + o.tokens, 0);
    return {
      object: 'list',
      data: outputs.map((o, index) => ({ object: 'embedding', index, embedding: o.embedding })),
      model: req.model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  }

  ready(): Promise<boolean> {
    return this.inner.ready();
  }

  async close(): Promise<void> {
    for (const b of this.batchers.values()) b.close();
    await this.inner.close();
  }

  private batcherFor(model: string, dimensions: number | undefined, user: string | undefined): MicroBatcher<EmbedItem, EmbedOutput> {
    // A user of "" is sent as given, so it is told apart from no user.
    const key = `${model}\u0000${dimensions ?? ''}\u0000${user === undefined ? '' : `u${user}`}`;
    let batcher = this.batchers.get(key);
    if (!batcher) {
      const made: MicroBatcher<EmbedItem, EmbedOutput> = new MicroBatcher<EmbedItem, EmbedOutput>((items) => this.embedBatch(model, dimensions, user, items), {
        ...this.options,
        maxQueued: this.options.maxQueued ?? QUEUED_ROUNDS * this.options.maxSize * (this.options.maxConcurrency ?? 1),
        // The upstream refused an input (a 4xx such as 400, 413 or 422): each request's inputs go again
        // on their own, so only the request at fault fails. Not on 401/403/404/429, 5xx or transport
        // failures: those are not one input's doing, and a call per request would only multiply them.
        retryApart: refusedAnInput,
        groupOf: (item) => item.caller,
        // Idle: nobody holds it (embed() submits in the same turn it looks a batcher up), so the next
        // request for this key makes a new one.
        onIdle: () => {
          if (this.batchers.get(key) === made) this.batchers.delete(key);
        },
      });
      batcher = made;
      this.batchers.set(key, batcher);
    }
    return batcher;
  }

  private async embedBatch(model: string, dimensions: number | undefined, user: string | undefined, items: EmbedItem[]): Promise<EmbedOutput[]> {
    this.upstreamCalls++;
    // Each caller holds its own deadline; the shared call lasts as long as the most patient one allows.
    const timeoutMs = Math.max(...items.map((i) => i.timeoutMs));
    const cancel = new Cancellation();
    const forgetCallers = whenAllGone(items, () => cancel.abort(new Error('every request in the batch was cancelled')));
    let result: EmbeddingResult;
    try {
      result = await this.inner.embed(
        { model, input: items.map((i) => i.text), encoding_format: 'float', ...(dimensions ? { dimensions } : {}), ...(user !== undefined ? { user } : {}) },
        { signal: cancel, timeoutMs, requestId: `embed-batch-${this.upstreamCalls}` },
      );
    } finally {
      forgetCallers();
    }
    const byIndex = new Map(result.data.map((d) => [d.index, d.embedding]));
    // The upstream reports one usage for the batch: each input is charged its share by token count.
    const shares = shareOut(result.usage.prompt_tokens, items.map((i) => Math.max(1, countTextTokens(i.text))));
    return items.map((_, i) => {
      const embedding = byIndex.get(i);
      if (!Array.isArray(embedding)) throw new UpstreamError({ provider: this.name, kind: 'server', message: `${this.name}: batched embeddings came back without input ${i}` });
      return { embedding, tokens: shares[i] as number };
    });
  }
}

/**
 * `total` split in proportion to `weights` in whole tokens that add up to exactly `total` (largest
 * remainder: each share rounded down, the tokens left over going to the largest fractions), so the
 * requests of a batch are charged together what the upstream reported, no more and no less.
 */
function shareOut(total: number, weights: readonly number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (total === sum) return [...weights];
  const exact = weights.map((w) => (total * w) / sum);
  const shares = exact.map(Math.floor);
  let left = total - shares.reduce((a, b) => a + b, 0);
  const byFraction = exact.map((x, i) => ({ i, fraction: x - Math.floor(x) })).sort((a, b) => b.fraction - a.fraction || a.i - b.i);
  for (const { i } of byFraction) {
    if (left <= 0) break;
    shares[i] = (shares[i] as number) + 1;
    left--;
  }
  return shares;
}

/**
 * Calls `gone` once every caller with inputs in `items` has aborted (a batch sent upstream for
 * nobody is cancelled: its upstream call would be paid for and its answer thrown away); returns
 * what stops listening.
 */
function whenAllGone(items: readonly EmbedItem[], gone: () => void): () => void {
  const signals = new Set(items.map((i) => i.signal));
  let left = 0;
  const onAbort = () => {
    if (--left === 0) gone();
  };
  for (const s of signals) {
    if (s.aborted) continue;
    left++;
    s.addEventListener('abort', onAbort, { once: true });
  }
  if (left === 0) gone();
  return () => {
    for (const s of signals) s.removeEventListener('abort', onAbort);
  };
}

/** Wraps the providers whose embeddings can be batched; others are returned as they are. */
export function withEmbeddingBatching(providers: Map<string, ProviderAdapter>, types: readonly string[], options: EmbeddingBatchingOptions): Map<string, ProviderAdapter> {
  const out = new Map<string, ProviderAdapter>();
  for (const [name, p] of providers) out.set(name, types.includes(p.type) ? new EmbeddingBatchingProvider(p, options) : p);
  return out;
}
