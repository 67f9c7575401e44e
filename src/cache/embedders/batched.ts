// Puts an embedder behind the micro-batcher, so concurrent single-prompt lookups become one
// embedding call (one forward pass, one HTTP request) per batch. A batch the upstream refuses for an
// input (a prompt over the model's context, say) is sent again one lookup at a time, so only the
// lookup at fault fails.
import { refusedAnInput } from '../../batching/embedding-batcher.js';
import { MicroBatcher } from '../../batching/micro-batcher.js';
import type { Embedder } from './types.js';

interface Lookup {
  text: string;
  /** The embed() call the text came with: its texts are retried together. */
  caller: object;
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
