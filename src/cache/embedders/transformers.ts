// Sentence embeddings from an ONNX model through transformers.js (@huggingface/transformers, an
// optional dependency imported only when configured): a local folder in the transformers.js layout
// (config.json, tokenizer.json, onnx/model.onnx), or a hub model id when remote models are allowed.
import { basename, dirname, resolve } from 'node:path';
import { normalizeInPlace, type Embedder } from './types.js';

export interface TransformersEmbedderOptions {
  /** A local model folder, or a hub id like `Xenova/all-MiniLM-L6-v2`. */
  model: string;
  /** Allow downloading from the hub (default false: offline, local folders only). */
  allowRemote?: boolean;
  /** Where hub downloads are cached. */
  cacheDir?: string;
  dtype?: 'fp32' | 'fp16' | 'q8';
  pooling?: 'mean' | 'cls';
}

interface Tensor {
  dims: number[];
  data: Float32Array;
}
type FeatureExtractor = (texts: string[], opts: { pooling: string; normalize: boolean }) => Promise<Tensor>;
interface TransformersModule {
  env: { allowRemoteModels: boolean; allowLocalModels: boolean; localModelPath: string; cacheDir: string | null };
  pipeline: (task: 'feature-extraction', model: string, opts: Record<string, unknown>) => Promise<FeatureExtractor>;
}

/**
 * transformers.js takes its settings (local folder, remote models, cache) from one global `env`, read
 * while a pipeline loads: creates take turns, so one's folder is not another's by the time it is read.
 */
let loading: Promise<unknown> = Promise.resolve();

function inTurn<T>(load: () => Promise<T>): Promise<T> {
  const run = loading.then(load, load);
  loading = run.catch(() => undefined);
  return run;
}

export class TransformersEmbedder implements Embedder {
  private constructor(
    readonly id: string,
    readonly dimensions: number,
    private readonly extract: FeatureExtractor,
    private readonly pooling: string,
  ) {}

  /** `load` imports the package (a test passes a stand-in). */
  static async create(opts: TransformersEmbedderOptions, load: () => Promise<unknown> = () => import('@huggingface/transformers')): Promise<TransformersEmbedder> {
    let mod: TransformersModule;
    try {
      mod = (await load()) as TransformersModule;
    } catch (err) {
      throw new Error(`the transformers embedder needs the optional package @huggingface/transformers: ${(err as Error).message}`);
    }
    const local = opts.model.startsWith('.') || opts.model.startsWith('/');
    const extract = await inTurn(() => {
      let modelId = opts.model;
      mod.env.allowRemoteModels = opts.allowRemote ?? false;
      if (local) {
        // transformers.js resolves `<localModelPath>/<id>/`, so a folder splits into parent and name.
        const folder = resolve(opts.model);
        mod.env.allowLocalModels = true;
        mod.env.localModelPath = `${dirname(folder)}/`;
        modelId = basename(folder);
      }
      if (opts.cacheDir) mod.env.cacheDir = opts.cacheDir;
      return mod.pipeline('feature-extraction', modelId, { dtype: opts.dtype ?? 'fp32', device: 'cpu' });
    });
    const pooling = opts.pooling ?? 'mean';
    const probe = await extract(['dimension probe'], { pooling, normalize: true });
    const dims = probe.dims[probe.dims.length - 1] as number;
    return new TransformersEmbedder(`transformers:${opts.model}:${pooling}`, dims, extract, pooling);
  }

  async embed(texts: string[]): Promise<Float32Array[]> {
    if (texts.length === 0) return [];
    const out = await this.extract(texts, { pooling: this.pooling, normalize: true });
    const dims = this.dimensions;
    return texts.map((_, i) => normalizeInPlace(Float32Array.from(out.data.subarray(i * dims, (i + 1) * dims))));
  }
}
