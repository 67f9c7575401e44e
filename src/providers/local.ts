// The `local` provider: GGUF models run in-process by llama.cpp through node-llama-cpp, an optional
// dependency imported only when this provider is configured. A model loads on first use and stays
// loaded with one context of `max_sequences` sequences; concurrent requests each take a sequence and
// llama.cpp evaluates them together in one batch per step (see local-sequences.ts).
import { randomInt, randomUUID } from 'node:crypto';
import { access } from 'node:fs/promises';
import path from 'node:path';
import type * as LlamaCpp from 'node-llama-cpp';
import { z } from 'zod';
import {
  requestedMaxTokens,
  stopList,
  type ChatChunk,
  type ChatRequest,
  type ChatResult,
  type FinishReason,
} from '../canonical/chat.js';
import type { EmbeddingRequest, EmbeddingResult } from '../canonical/embeddings.js';
import type { ProviderConfig } from '../config/schema.js';
import { Attempt, untilAborted } from './attempt.js';
import { acquireBackend, type BackendLease } from './local-backend.js';
import { UpstreamError } from './errors.js';
import { errorMessage, loadLocalModel, scanModelsDir, type LlamaCppModule, type LoadedModel } from './local-models.js';
import { renderPlainPrompt, toChatHistory } from './local-prompt.js';
import type { SequencePoolStats } from './local-sequences.js';
import { StopSequenceScanner } from './stop-sequences.js';
import { refuseRawParameters } from './text-completion.js';
import { PushQueue } from './push-queue.js';
import type { CallOptions, ProviderAdapter } from './types.js';

const localOptionsSchema = z
  .object({
    /** Folder of GGUF files (or of folders holding one each). Relative paths resolve from the working directory. */
    models_dir: z.string().min(1),
    /** CPU threads for evaluation. Always explicit: the library's default oversubscribes small machines badly. */
    threads: z.number().int().min(1).default(1),
    /** Tokens each sequence holds (prompt + answer); capped at the model's training context. */
    context_size: z.number().int().min(32).default(512),
    /** Tokens evaluated per batch step; node-llama-cpp's default is min(512, context_size). */
    batch_size: z.number().int().min(1).optional(),
    /** Layers offloaded to a GPU; 0 runs on the CPU only and never probes GPU backends. */
    gpu_layers: z.union([z.number().int().min(0), z.enum(['auto', 'max'])]).default(0),
    /** Concurrent requests per model, batched together by llama.cpp. */
    max_sequences: z.number().int().min(1).max(64).default(4),
    /** `auto` (the GGUF's own template, else plain text), `plain`, `transcript`, or a node-llama-cpp wrapper name. */
    chat_template: z.string().min(1).default('auto'),
    default_max_tokens: z.number().int().min(1).default(128),
    /** Used when a request sets no temperature (llama.cpp's server uses 0.8 too). */
    default_temperature: z.number().min(0).max(2).default(0.8),
    log_level: z.enum(['disabled', 'fatal', 'error', 'warn', 'info', 'debug']).default('error'),
  })
  .strict();

export type LocalProviderOptions = z.infer<typeof localOptionsSchema>;

/** Loads node-llama-cpp and llama.cpp's prebuilt binary (never downloads or compiles). */
export async function createLocalProvider(name: string, cfg: ProviderConfig): Promise<LocalProvider> {
  const parsed = localOptionsSchema.safeParse(cfg.options ?? {});
  if (!parsed.success) throw new Error(`provider ${name}: invalid options for type local:\n${z.prettifyError(parsed.error)}`);
  const options = parsed.data;
  const lib = await importLlamaCpp(name);
  const template = options.chat_template;
  if (!['auto', 'plain', 'transcript'].includes(template) && !(lib.resolvableChatWrapperTypeNames as readonly string[]).includes(template)) {
    throw new Error(
      `provider ${name}: chat_template "${template}" is not auto, plain, transcript or one of ${lib.resolvableChatWrapperTypeNames.join(', ')}`,
    );
  }
  let backend: BackendLease;
  try {
    backend = await acquireBackend(lib, { threads: options.threads, gpu: options.gpu_layers !== 0, logLevel: options.log_level });
  } catch (err) {
    throw new Error(`provider ${name}: llama.cpp could not start (no usable prebuilt binary?): ${errorMessage(err)}`, { cause: err });
  }
  return new LocalProvider(name, options, lib, backend);
}

async function importLlamaCpp(provider: string): Promise<LlamaCppModule> {
  try {
    return await import('node-llama-cpp');
  } catch (err) {
    throw new Error(
      `provider ${provider}: type local needs the optional package node-llama-cpp, which could not be loaded ` +
        `(${errorMessage(err)}). Install it with \`npm install node-llama-cpp\`.`,
      { cause: err },
    );
  }
}

/** A request turned into tokens and sampling settings, ready to run on any sequence of its model. */
interface PreparedRequest {
  loaded: LoadedModel;
  /** Prompt tokens without the leading BOS (LlamaCompletion adds it). */
  tokens: LlamaCpp.Token[];
  /** What the sequence will hold: BOS + tokens. Its length is the prompt token count. */
  fullTokens: LlamaCpp.Token[];
  maxTokens: number;
  /** The client's stop sequences (and the plain formats'), matched on text by StopSequenceScanner. */
  stops: string[];
  /** The stops the client sent (`stops` adds the prompt format's own). */
  clientStops: readonly string[];
  /** A chat template's own end-of-turn markers, matched by node-llama-cpp (they may be special tokens). */
  templateStops: LlamaCpp.LlamaText[];
  temperature: number;
  topP?: number;
  topK?: number;
  seed: number;
  grammar?: LlamaCpp.LlamaGrammar;
  repeatPenalty?: LlamaCpp.LLamaContextualRepeatPenalty;
}

interface ChoiceOutcome {
  text: string;
  finish: FinishReason;
  completionTokens: number;
  /** The stop sequence that ended the text (Anthropic clients see it as stop_reason `stop_sequence`). */
  stopSequence?: string;
}

export class LocalProvider implements ProviderAdapter {
  readonly type = 'local' as const;
  readonly modelsDir: string;
  private index = new Map<string, string>();
  private readonly loading = new Map<string, Promise<LoadedModel>>();
  private readonly loaded = new Map<string, LoadedModel>();
  private jsonGrammar?: Promise<LlamaCpp.LlamaGrammar>;
  private closing?: Promise<void>;

  constructor(
    readonly name: string,
    readonly options: LocalProviderOptions,
    private readonly lib: LlamaCppModule,
    private readonly backend: BackendLease,
  ) {
    this.modelsDir = path.resolve(options.models_dir);
  }

  private get llama(): LlamaCpp.Llama {
    return this.backend.llama;
  }

  async chat(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    const attempt = new Attempt(opts.signal, opts.timeoutMs);
    try {
      const prepared = await this.prepare(req, attempt.signal);
      const n = req.n ?? 1;
      const outcomes = await Promise.all(Array.from({ length: n }, (_, i) => this.generate(prepared, i, attempt.signal)));
      const promptTokens = prepared.fullTokens.length;
      const completionTokens = outcomes.reduce((sum, o) => sum + o.completionTokens, 0);
      return {
        id: `chatcmpl-local-${randomUUID()}`,
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model: req.model,
        choices: outcomes.map((o, index) => ({
          index,
          message: { role: 'assistant', content: o.text },
          finish_reason: o.finish,
          logprobs: null,
          ...(o.stopSequence ? { stop_sequence: o.stopSequence } : {}),
        })),
        usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
      };
    } catch (err) {
      throw this.toUpstreamError(err, attempt);
    } finally {
      attempt.finish();
    }
  }

  /**
   * Resolves once the model is loaded and the prompt fits; generation starts when the stream is
   * first read. The attempt's timeout covers the wait for the first token only. Leaving the stream
   * early (or aborting the signal) stops generation and frees the sequence.
   */
  async streamChat(req: ChatRequest, opts: CallOptions): Promise<AsyncIterable<ChatChunk>> {
    const attempt = new Attempt(opts.signal, opts.timeoutMs);
    let prepared: PreparedRequest;
    try {
      prepared = await this.prepare(req, attempt.signal);
    } catch (err) {
      attempt.finish();
      throw this.toUpstreamError(err, attempt);
    }
    return { [Symbol.asyncIterator]: () => this.streamChoices(req, prepared, attempt) };
  }

  async embed(_req: EmbeddingRequest, _opts: CallOptions): Promise<EmbeddingResult> {
    throw new UpstreamError({ provider: this.name, kind: 'unsupported', message: `${this.name}: the local provider serves chat models only, not embeddings` });
  }

  async listModels(): Promise<string[]> {
    return this.installedModels();
  }

  /** GGUF models in models_dir, by name (file name without `.gguf`). */
  async installedModels(): Promise<string[]> {
    try {
      this.index = await scanModelsDir(this.modelsDir);
    } catch (err) {
      throw new UpstreamError({ provider: this.name, kind: 'not_found', message: `${this.name}: cannot read models_dir ${this.modelsDir}: ${errorMessage(err)}`, cause: err });
    }
    return [...this.index.keys()].sort();
  }

  /** Models loaded in memory now (they stay loaded until close). */
  loadedModels(): string[] {
    return [...this.loaded.keys()];
  }

  /** Per loaded model: how many sequences exist, are busy, and how many requests wait for one. */
  sequenceStats(): Record<string, SequencePoolStats> {
    const out: Record<string, SequencePoolStats> = {};
    for (const [name, m] of this.loaded) out[name] = m.pool.stats();
    return out;
  }

  async ready(): Promise<boolean> {
    if (this.closing) return false;
    try {
      await access(this.modelsDir);
      return true;
    } catch {
      return false;
    }
  }

  close(): Promise<void> {
    this.closing ??= this.disposeAll();
    return this.closing;
  }

  private async disposeAll(): Promise<void> {
    const closed = this.closedError();
    const pending = await Promise.allSettled(this.loading.values());
    const models = new Set([...this.loaded.values(), ...pending.flatMap((p) => (p.status === 'fulfilled' ? [p.value] : []))]);
    for (const m of models) m.pool.close(closed);
    for (const m of models) {
      await m.context.dispose();
      await m.model.dispose();
    }
    this.loaded.clear();
    await this.backend.release();
  }

  private async *streamChoices(req: ChatRequest, prepared: PreparedRequest, attempt: Attempt): AsyncGenerator<ChatChunk> {
    const base = { id: `chatcmpl-local-${randomUUID()}`, object: 'chat.completion.chunk' as const, created: Math.floor(Date.now() / 1000), model: req.model };
    let inFlight: Promise<ChoiceOutcome> | undefined;
    try {
      let completionTokens = 0;
      for (let index = 0; index < (req.n ?? 1); index++) {
        yield { ...base, choices: [{ index, delta: { role: 'assistant', content: '' }, finish_reason: null }] };
        const texts = new PushQueue<string>();
        inFlight = this.generate(prepared, index, attempt.signal, (text) => {
          attempt.firstTokenArrived();
          texts.push(text);
        });
        inFlight.then(() => texts.end(), (err: unknown) => texts.fail(err));
        for await (const text of texts) yield { ...base, choices: [{ index, delta: { content: text }, finish_reason: null }] };
        const outcome = await inFlight;
        completionTokens += outcome.completionTokens;
        yield { ...base, choices: [{ index, delta: {}, finish_reason: outcome.finish, ...(outcome.stopSequence ? { stop_sequence: outcome.stopSequence } : {}) }] };
      }
      const promptTokens = prepared.fullTokens.length;
      yield { ...base, choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens } };
    } catch (err) {
      throw this.toUpstreamError(err, attempt);
    } finally {
      // Reached on completion, on error and when the reader stops early: stop any generation still
      // running and wait until its sequence is back in the pool.
      attempt.finish();
      await inFlight?.catch(() => undefined);
    }
  }

  private async prepare(req: ChatRequest, signal: AbortSignal): Promise<PreparedRequest> {
    if (this.closing) throw this.closedError();
    const choice = req.tool_choice;
    if (req.tools?.length && (choice === 'required' || (typeof choice === 'object' && choice !== null))) {
      throw new UpstreamError({ provider: this.name, kind: 'unsupported', message: `${this.name}: local models here do not call tools` });
    }
    const raw = req.text_completion;
    // A legacy text completion: no token-id prompt, fill-in-the-middle, prompt log-probabilities,
    // best_of or max_tokens 0 here — refused before a model is loaded for it.
    if (raw) refuseRawParameters(this.name, raw, ['prompt_ids', 'suffix', 'logprobs', 'best_of', 'no_tokens'], req.max_tokens);
    const loaded = await untilAborted(this.modelFor(req.model), signal);
    const stops = stopList(req.stop).filter((s) => s.length > 0);
    const templateStops: LlamaCpp.LlamaText[] = [];
    let tokens: LlamaCpp.Token[];
    if (raw) {
      // The prompt as it is, no chat template or plain format around it (LlamaCompletion continues raw text).
      tokens = loaded.model.tokenize(raw.prompt, false, loaded.bos !== null ? 'trimLeadingSpace' : undefined);
    } else if (loaded.wrapper) {
      const state = loaded.wrapper.generateContextState({ chatHistory: toChatHistory(req.messages) });
      tokens = state.contextText.tokenize(loaded.model.tokenizer);
      if (loaded.bos !== null && tokens[0] === loaded.bos) tokens = tokens.slice(1);
      templateStops.push(...state.stopGenerationTriggers);
    } else {
      const prompt = renderPlainPrompt(req.messages, loaded.plainFormat);
      tokens = loaded.model.tokenize(prompt.text, false, loaded.bos !== null ? 'trimLeadingSpace' : undefined);
      stops.push(...prompt.stops);
    }
    const fullTokens = loaded.bos !== null ? [loaded.bos, ...tokens] : tokens;
    if (fullTokens.length === 0) {
      throw new UpstreamError({ provider: this.name, kind: 'bad_request', status: 400, message: `${this.name}: the prompt is empty` });
    }
    const contextSize = loaded.context.contextSize;
    if (fullTokens.length >= contextSize) {
      throw new UpstreamError({
        provider: this.name,
        kind: 'context_length',
        status: 400,
        message: `${this.name}: the prompt is ${fullTokens.length} tokens; model ${loaded.name} holds ${contextSize} (context_size)`,
      });
    }
    const penalties = (req.presence_penalty ?? 0) > 0 || (req.frequency_penalty ?? 0) > 0;
    return {
      loaded,
      tokens,
      fullTokens,
      maxTokens: requestedMaxTokens(req) ?? this.options.default_max_tokens,
      stops,
      clientStops: stopList(req.stop).filter((s) => s.length > 0),
      templateStops,
      temperature: req.temperature ?? this.options.default_temperature,
      topP: req.top_p,
      topK: req.top_k,
      // node-llama-cpp's own default seed is the current second, which would make concurrent
      // unseeded requests (and n > 1 choices) identical.
      seed: req.seed ?? randomInt(0, 2 ** 31 - 1),
      grammar: await this.grammarFor(req),
      repeatPenalty: penalties
        ? { presencePenalty: Math.max(0, req.presence_penalty ?? 0), frequencyPenalty: Math.max(0, req.frequency_penalty ?? 0) }
        : undefined,
    };
  }

  /** Generates one choice on a sequence of its own; `onText` receives text as it is released. */
  private async generate(p: PreparedRequest, index: number, signal: AbortSignal, onText?: (text: string) => void): Promise<ChoiceOutcome> {
    const { pool } = p.loaded;
    // Prefer the idle sequence that already holds the longest prefix of this prompt.
    const sequence = await pool.acquire(signal, (s) => s.compareContextTokens(p.fullTokens).firstDifferentIndex);
    const completion = new this.lib.LlamaCompletion({ contextSequence: sequence });
    const before = sequence.tokenMeter.getState();
    // A stop sequence ends generation through this controller; node-llama-cpp then returns what it
    // has (stopOnAbortSignal) instead of throwing, so the caller's abort is checked separately.
    const stopper = new AbortController();
    const stopOrCancel = AbortSignal.any([signal, stopper.signal]);
    const scanner = new StopSequenceScanner(p.stops);
    let text = '';
    const emit = (piece: string) => {
      if (piece.length === 0) return;
      text += piece;
      onText?.(piece);
    };
    try {
      const result = await completion.generateCompletionWithMeta(p.tokens, {
        maxTokens: p.maxTokens,
        temperature: p.temperature,
        ...(p.topP !== undefined ? { topP: p.topP } : {}),
        ...(p.topK !== undefined ? { topK: p.topK } : {}),
        seed: llamaSeed(p.seed, index),
        signal: stopOrCancel,
        stopOnAbortSignal: true,
        customStopTriggers: p.templateStops,
        grammar: p.grammar,
        ...(p.repeatPenalty ? { repeatPenalty: p.repeatPenalty } : {}),
        // The prompt was checked to fit; the answer stops at the context's end ("length") rather
        // than silently dropping the start of the prompt to make room.
        disableContextShift: true,
        contextShiftSize: 0,
        onTextChunk: (piece) => {
          emit(scanner.push(piece));
          if (scanner.stopped) stopper.abort();
        },
      });
      if (signal.aborted) throw signal.reason;
      emit(scanner.flush());
      const used = sequence.tokenMeter.diff(before);
      const finish: FinishReason = !scanner.stopped && result.metadata.stopReason === 'maxTokens' ? 'length' : 'stop';
      // Only a stop the client sent is reported: the transcript format's own turn marker is not one.
      const stopSequence = scanner.matched !== undefined && p.clientStops.includes(scanner.matched) ? scanner.matched : undefined;
      return { text, finish, completionTokens: used.usedOutputTokens, ...(stopSequence !== undefined ? { stopSequence } : {}) };
    } finally {
      completion.dispose({ disposeSequence: false });
      pool.release(sequence);
    }
  }

  private async grammarFor(req: ChatRequest): Promise<LlamaCpp.LlamaGrammar | undefined> {
    const format = req.response_format;
    if (!format || format.type === 'text') return undefined;
    const schema = format.type === 'json_schema' ? format.json_schema.schema : undefined;
    if (!schema) return (this.jsonGrammar ??= this.llama.getGrammarFor('json'));
    try {
      return await this.llama.createGrammarForJsonSchema<LlamaCpp.GbnfJsonSchema>(schema as unknown as LlamaCpp.GbnfJsonSchema);
    } catch (err) {
      throw new UpstreamError({ provider: this.name, kind: 'bad_request', status: 400, message: `${this.name}: cannot constrain output to this JSON schema: ${errorMessage(err)}`, cause: err });
    }
  }

  /** The loaded model, loading it first if needed; concurrent first requests share one load. */
  private modelFor(name: string): Promise<LoadedModel> {
    const ready = this.loaded.get(name);
    if (ready) return Promise.resolve(ready);
    let pending = this.loading.get(name);
    if (!pending) {
      pending = this.loadModel(name)
        .then((m) => {
          this.loaded.set(name, m);
          return m;
        })
        .finally(() => this.loading.delete(name));
      this.loading.set(name, pending);
    }
    return pending;
  }

  private async loadModel(name: string): Promise<LoadedModel> {
    let file = this.index.get(name);
    if (!file) {
      await this.installedModels();
      file = this.index.get(name);
    }
    if (!file) {
      throw new UpstreamError({ provider: this.name, kind: 'not_found', status: 404, message: `${this.name}: no model "${name}" (no ${name}.gguf in ${this.modelsDir})` });
    }
    return loadLocalModel({ lib: this.lib, llama: this.llama, provider: this.name, name, file, options: this.options });
  }

  private toUpstreamError(err: unknown, attempt: Attempt): UpstreamError {
    if (err instanceof UpstreamError) return err;
    if (attempt.signal.aborted) return attempt.abortError(this.name, err);
    return new UpstreamError({ provider: this.name, kind: 'server', message: `${this.name}: llama.cpp failed: ${errorMessage(err)}`, cause: err });
  }

  private closedError(): UpstreamError {
    return new UpstreamError({ provider: this.name, kind: 'overloaded', message: `${this.name}: the provider is shutting down` });
  }
}

/**
 * The seed node-llama-cpp samples choice `index` with: any client seed as an unsigned 32-bit value,
 * plus the index. node-llama-cpp clamps a negative seed to 0 (seeds -3, -2 and -1 sampled three
 * identical choices), and one past 2^53 plus an index was the same number again.
 */
export function llamaSeed(seed: number, index: number): number {
  const base = ((Math.trunc(seed) % 2 ** 32) + 2 ** 32) % 2 ** 32;
  return (base + index) % 2 ** 32;
}
