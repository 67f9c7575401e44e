// Finds and loads the local provider's GGUF models. A model's name is its file name without
// `.gguf`; files sit in models_dir itself or one folder down (`<dir>/<name>/<name>.gguf`, the layout
// model downloads usually leave). Only names found here can be loaded, so a request's model name
// never becomes a path by itself. A loaded model is one llama.cpp context with a pool of sequences.
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type * as LlamaCpp from 'node-llama-cpp';
import { UpstreamError } from './errors.js';
import type { LocalProviderOptions } from './local.js';
import type { PlainPromptFormat } from './local-prompt.js';
import { SequencePool } from './local-sequences.js';

export type LlamaCppModule = typeof LlamaCpp;

const GGUF = /\.gguf$/i;

/** Name -> absolute file path. Files in the directory itself win over same-named ones in folders. */
export async function scanModelsDir(dir: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const entries = await readdir(dir, { withFileTypes: true });
  const folders: string[] = [];
  for (const entry of entries) {
    if (entry.isFile() && GGUF.test(entry.name)) found.set(modelName(entry.name), path.join(dir, entry.name));
    else if (entry.isDirectory() && !entry.name.startsWith('.')) folders.push(entry.name);
  }
  const nested = await Promise.all(
    folders.map(async (folder) => {
      try {
        const inner = await readdir(path.join(dir, folder), { withFileTypes: true });
        return inner.filter((e) => e.isFile() && GGUF.test(e.name)).map((e) => path.join(dir, folder, e.name));
      } catch {
        return []; // unreadable folder: not a model
      }
    }),
  );
  for (const file of nested.flat().sort()) {
    const name = modelName(path.basename(file));
    if (!found.has(name)) found.set(name, file);
  }
  return found;
}

function modelName(file: string): string {
  return file.replace(GGUF, '');
}

export interface LoadedModel {
  name: string;
  model: LlamaCpp.LlamaModel;
  context: LlamaCpp.LlamaContext;
  pool: SequencePool<LlamaCpp.LlamaContextSequence>;
  /** The chat wrapper rendering this model's template; null means a plain-text prompt. */
  wrapper: LlamaCpp.ChatWrapper | null;
  plainFormat: PlainPromptFormat;
  /** The token LlamaCompletion puts before every prompt, if this vocabulary wants one. */
  bos: LlamaCpp.Token | null;
}

export interface LoadModelInput {
  lib: LlamaCppModule;
  llama: LlamaCpp.Llama;
  provider: string;
  name: string;
  file: string;
  options: LocalProviderOptions;
}

/** Loads a GGUF file, creates its context and picks how prompts are rendered for it. */
export async function loadLocalModel({ lib, llama, provider, name, file, options }: LoadModelInput): Promise<LoadedModel> {
  let model: LlamaCpp.LlamaModel;
  try {
    model = await llama.loadModel({ modelPath: file, gpuLayers: options.gpu_layers });
  } catch (err) {
    throw new UpstreamError({ provider, kind: 'server', retryable: false, message: `${provider}: cannot load ${file}: ${errorMessage(err)}`, cause: err });
  }
  let context: LlamaCpp.LlamaContext;
  try {
    context = await model.createContext({
      sequences: options.max_sequences,
      contextSize: Math.min(options.context_size, model.trainContextSize || options.context_size),
      threads: options.threads,
      ...(options.batch_size !== undefined ? { batchSize: options.batch_size } : {}),
    });
  } catch (err) {
    await model.dispose();
    throw new UpstreamError({ provider, kind: 'server', retryable: false, message: `${provider}: cannot create a context for ${name}: ${errorMessage(err)}`, cause: err });
  }
  const template = options.chat_template;
  const hasTemplate = typeof model.fileInfo.metadata?.tokenizer?.chat_template === 'string';
  let wrapper: LlamaCpp.ChatWrapper | null = null;
  if (template === 'auto' ? hasTemplate : template !== 'plain' && template !== 'transcript') {
    const type = (template === 'auto' ? 'auto' : template) as LlamaCpp.ResolvableChatWrapperTypeName;
    wrapper = lib.resolveChatWrapper(model, { type });
  }
  return {
    name,
    model,
    context,
    pool: new SequencePool(context.totalSequences, () => context.getSequence()),
    wrapper,
    plainFormat: template === 'transcript' ? 'transcript' : 'plain',
    bos: beginningToken(model),
  };
}

/** Mirrors node-llama-cpp's own rule for when LlamaCompletion prepends a beginning token. */
function beginningToken(model: LlamaCpp.LlamaModel): LlamaCpp.Token | null {
  const vocab: string = model.vocabularyType;
  if (vocab === 'rwkv' || vocab === 'ugm') return null;
  if (vocab === 'wpm') return model.tokens.bos;
  return model.tokens.shouldPrependBosToken ? model.tokens.bos : null;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
