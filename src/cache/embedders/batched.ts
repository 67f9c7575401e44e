// Puts an embedder behind the micro-batcher, so concurrent single-prompt lookups become one
// embedding call (one forward pass, one HTTP request) per batch.
import { MicroBatcher } from '../../batching/micro-batcher.js';
import type { Embedder } from './types.js';

export class BatchedEmbedder implements Embedder {
  readonly id: string;
  readonly dimensions: number;
  private readonly batcher: MicroBatcher<string, Float32Array>;

  constructor(
    readonly inner: Embedder,
    opts: { maxSize: number; flushTimeoutMs: number },
  ) {
    this.id = inner.id;
    this.dimensions = inner.dimensions;
    this.batcher = new MicroBatcher((texts) => inner.embed(texts), opts);
  }

  embed(texts: string[]): Promise<Float32Array[]> {
    return this.batcher.submitMany(texts);
  }

  close(): void {
    this.batcher.close();
  }
}
