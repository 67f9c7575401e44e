// Puts an embedder behind the micro-batcher, so concurrent single-prompt lookups become one
// embedding call (one forward pass, one HTTP request) per batch. A batch the upstream refuses for an
// input (a prompt over the model's context, say) is sent again one lookup at a time, so only the
// lookup at fault fails.
import { REQUEST_FAULTS } from '../../batching/embedding-batcher.js';
import { MicroBatcher } from '../../batching/micro-batcher.js';
import { isUpstreamError } from '../../providers/errors.js';
import type { Embedder } from './types.js';

interface Lookup {
  text: string;
  /** The embed() call the text came with: its texts are retried together. */
  caller: object;
}

/** Statuses that are not one input's doing: retried apart they would only multiply. */
const NOT_AN_INPUT = new Set([401, 403, 404, 408, 429]);

/**
 * The upstream refused the request itself, which one input may cause: a provider's UpstreamError of
 * such a kind, or a 4xx from an embeddings URL other than auth, a missing model, a timeout or a limit.
 */
function refusedAnInput(err: unknown): boolean {
  if (isUpstreamError(err)) return REQUEST_FAULTS.has(err.kind);
  const status = (err as { status?: unknown } | null)?.status;
  return typeof status === 'number' && status >= 400 && status < 500 && !NOT_AN_INPUT.has(status);
}

export class BatchedEmbedder implements Embedder {
  readonly id: string;
  readonly dimensions: number;
  private readonly batcher: MicroBatcher<Lookup, Float32Array>;

  constructor(
    readonly inner: Embedder,
    opts: { maxSize: number; flushTimeoutMs: number },
  ) {
    this.id = inner.id;
    this.dimensions = inner.dimensions;
    this.batcher = new MicroBatcher<Lookup, Float32Array>((items) => inner.embed(items.map((i) => i.text)), {
      ...opts,
      retryApart: refusedAnInput,
      groupOf: (item) => item.caller,
    });
  }

  embed(texts: string[]): Promise<Float32Array[]> {
    const caller = {};
    return this.batcher.submitMany(texts.map((text) => ({ text, caller })));
  }

  close(): void {
    this.batcher.close();
  }
}
