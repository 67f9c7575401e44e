// A worker's backend: any ProviderAdapter (Ollama, an OpenAI-compatible server such as vLLM or
// llama-server, the in-process llama.cpp `local` provider, the simulator) plus the two model lists
// the router needs. Each adapter that can tell installed from loaded says so by its own methods;
// servers that cannot (OpenAI-compatible) serve only what they hold, so both lists are the same.
import type { ProviderAdapter } from '../providers/types.js';

export interface MeshBackend {
  readonly adapter: ProviderAdapter;
  readonly kind: string;
  /** Models this node can serve; throws when the backend is unreachable. */
  installed(): Promise<string[]>;
  /** Models in memory now (no cold load). */
  loaded(): Promise<string[]>;
}

interface OllamaLike {
  listInstalled(): Promise<string[]>;
  listLoaded(): Promise<string[]>;
}
interface LocalLike {
  installedModels(): Promise<string[]>;
  loadedModels(): string[];
}

const PROBE_TIMEOUT_MS = 2_000;

export function meshBackendFor(adapter: ProviderAdapter): MeshBackend {
  const a = adapter as unknown as Partial<OllamaLike & LocalLike>;
  if (typeof a.listInstalled === 'function' && typeof a.listLoaded === 'function') {
    const o = adapter as unknown as OllamaLike;
    return { adapter, kind: adapter.type, installed: () => o.listInstalled(), loaded: () => o.listLoaded() };
  }
  if (typeof a.installedModels === 'function' && typeof a.loadedModels === 'function') {
    const l = adapter as unknown as LocalLike;
    return { adapter, kind: adapter.type, installed: () => l.installedModels(), loaded: async () => l.loadedModels() };
  }
  const list = async () => {
    if (!adapter.listModels) return [];
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), PROBE_TIMEOUT_MS);
    try {
      return await adapter.listModels({ signal: controller.signal, timeoutMs: PROBE_TIMEOUT_MS, requestId: 'mesh-health' });
    } finally {
      clearTimeout(timer);
    }
  };
  return { adapter, kind: adapter.type, installed: list, loaded: list };
}
