// Builds provider adapters from configuration, one instance per `providers:` entry, created once at
// start-up. Heavy optional adapters (local llama.cpp) are loaded by dynamic import only when used.
import type { Config, ProviderConfig } from '../config/schema.js';
import type { MeshConfig } from '../mesh/config.js';
import { createAnthropicProvider } from './anthropic.js';
import { createOpenAIProvider } from './openai.js';
import { createCohereProvider } from './cohere.js';
import { createGoogleProvider } from './google.js';
import { createOllamaProvider } from './ollama.js';
import { createSimulatorProvider } from './simulator.js';
import type { ProviderAdapter } from './types.js';

/** Gateway-wide settings some providers need besides their own `providers:` entry. */
export interface ProviderContext {
  /** The gateway's Redis (`redis.url`, which REDIS_URL, REDIS_HOST… or REDIS_CLUSTER_NODES set). */
  redisUrl?: string;
  /** `clusters.mesh` (config file plus MESH_* variables), for the `mesh` provider. */
  mesh?: MeshConfig;
}

/** The provider context of a loaded configuration. */
export function providerContext(config: Pick<Config, 'redis' | 'clusters'>): ProviderContext {
  return { redisUrl: config.redis.url, mesh: config.clusters.mesh };
}

export async function createProvider(name: string, cfg: ProviderConfig, ctx: ProviderContext = {}): Promise<ProviderAdapter> {
  // `options.logprobs` / `options.files` override the type's defaults on every type: a compatible
  // server or a model that cannot (false), a Gemini model or a mesh whose nodes' backends can (true).
  // They are taken out first, so a type that checks its own options strictly never sees them.
  const { logprobs, files, ...own } = cfg.options ?? {};
  const adapter = await createAdapter(name, cfg.options ? { ...cfg, options: own } : cfg, ctx);
  for (const [capability, value] of [['logprobs', logprobs], ['files', files]] as const) {
    if (typeof value === 'boolean') Object.defineProperty(adapter, capability, { value, enumerable: true });
  }
  return adapter;
}

async function createAdapter(name: string, cfg: ProviderConfig, ctx: ProviderContext): Promise<ProviderAdapter> {
  switch (cfg.type) {
    case 'simulator':
      return createSimulatorProvider(name, cfg.options);
    case 'openai':
      return createOpenAIProvider(name, cfg);
    case 'anthropic':
      return createAnthropicProvider(name, cfg);
    case 'google':
      return createGoogleProvider(name, cfg);
    case 'cohere':
      return createCohereProvider(name, cfg);
    case 'ollama':
      return createOllamaProvider(name, cfg);
    case 'local': {
      // Imported here so node-llama-cpp (optional, native) loads only when a local provider is configured.
      const { createLocalProvider } = await import('./local.js');
      return await createLocalProvider(name, cfg);
    }
    case 'mesh': {
      // Imported here so mesh code (and its Redis connections) load only when a mesh provider is configured.
      const { createMeshProvider } = await import('./mesh.js');
      return createMeshProvider(name, cfg, ctx);
    }
    default:
      throw new Error(`provider ${name}: type "${cfg.type}" is not available in this build`);
  }
}

export async function createProviders(configs: Record<string, ProviderConfig>, ctx: ProviderContext = {}): Promise<Map<string, ProviderAdapter>> {
  const out = new Map<string, ProviderAdapter>();
  for (const [name, cfg] of Object.entries(configs)) out.set(name, await createProvider(name, cfg, ctx));
  return out;
}
