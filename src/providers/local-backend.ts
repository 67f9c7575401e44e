// One llama.cpp backend (node-llama-cpp's `Llama`) per distinct setting in the process, shared by
// every local provider that asks for the same one. Starting a backend takes 1–3 s on a small
// machine, so providers built from the same settings (several models_dirs, config reloads, tests)
// should not each start their own. The last provider to let go disposes it.
import type * as LlamaCpp from 'node-llama-cpp';

export interface BackendSettings {
  threads: number;
  /** Any GPU offload at all; false never probes GPU backends. */
  gpu: boolean;
  logLevel: 'disabled' | 'fatal' | 'error' | 'warn' | 'info' | 'debug';
}

export interface BackendLease {
  llama: LlamaCpp.Llama;
  /** Gives the backend back; disposes it when no provider holds it any more. */
  release(): Promise<void>;
}

interface SharedBackend {
  llama: Promise<LlamaCpp.Llama>;
  holders: number;
}

const backends = new Map<string, SharedBackend>();

export async function acquireBackend(lib: typeof LlamaCpp, settings: BackendSettings): Promise<BackendLease> {
  const key = JSON.stringify([settings.threads, settings.gpu, settings.logLevel]);
  let shared = backends.get(key);
  if (!shared) {
    const llama = lib.getLlama({
      // Use the prebuilt binary or fail: never download llama.cpp or compile it at request time.
      build: 'never',
      skipDownload: true,
      progressLogs: false,
      gpu: settings.gpu ? 'auto' : false,
      maxThreads: settings.threads,
      logLevel: lib.LlamaLogLevel[settings.logLevel],
    });
    shared = { llama, holders: 0 };
    backends.set(key, shared);
    llama.catch(() => backends.delete(key)); // a failed start is retried by the next provider
  }
  shared.holders++;
  const entry = shared;
  let llama: LlamaCpp.Llama;
  try {
    llama = await entry.llama;
  } catch (err) {
    entry.holders--;
    throw err;
  }
  let released = false;
  return {
    llama,
    async release() {
      if (released) return;
      released = true;
      entry.holders--;
      if (entry.holders === 0 && backends.get(key) === entry) {
        backends.delete(key);
        await llama.dispose();
      }
    },
  };
}
