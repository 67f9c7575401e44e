// The catalog of models the GPU pool can host and what each needs of a device (seed 004):
// memory to load it, compute to serve it, decode speed to estimate how long it holds a GPU.
// Config entries extend the built-ins and replace one of the same name.
import type { GpuModelConfig } from './config.js';

export interface GpuModelSpec {
  name: string;
  memoryGb: number;
  tflops: number;
  tokensPerS: number;
}

export const BUILTIN_GPU_MODELS: readonly GpuModelConfig[] = [
  { name: 'gemma-2b', aliases: ['google/gemma-2b', 'gemma-2b-it'], memory_gb: 2, tflops: 5, tokens_per_s: 120 },
  { name: 'mistral-7b', aliases: ['mistralai/mistral-7b-instruct', 'mistral-7b-instruct'], memory_gb: 6, tflops: 10, tokens_per_s: 60 },
  { name: 'qwen-32b', aliases: ['qwen/qwen2.5-32b-instruct', 'qwen2.5-32b'], memory_gb: 32, tflops: 40, tokens_per_s: 25 },
];

export class GpuModelCatalog {
  private readonly byName = new Map<string, GpuModelSpec>();

  constructor(extra: readonly GpuModelConfig[] = []) {
    // Later entries win, so a config entry named like a built-in replaces it.
    for (const m of [...BUILTIN_GPU_MODELS, ...extra]) {
      const spec: GpuModelSpec = { name: m.name, memoryGb: m.memory_gb, tflops: m.tflops, tokensPerS: m.tokens_per_s };
      for (const key of [m.name, ...m.aliases]) this.byName.set(key.toLowerCase(), spec);
    }
  }

  /** The spec for a model name or alias (case-insensitive), or undefined if the pool cannot host it. */
  get(model: string): GpuModelSpec | undefined {
    return this.byName.get(model.toLowerCase());
  }

  list(): GpuModelSpec[] {
    return [...new Set(this.byName.values())];
  }
}
