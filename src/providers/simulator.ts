// The built-in simulator: deterministic answers with configurable latency, speed and error rate.
// It is the embedded default when no provider is configured (and says so in every answer), and
// the upstream for demos, tests and benchmarks. Same request -> same answer, so caches and
// aggregation can be checked against it.
import type { CancelSignal } from './cancel.js';
import { randomBytes } from 'node:crypto';
import {
  contentText,
  requestedMaxTokens,
  stopList,
  type ChatChunk,
  type ChatRequest,
  type ChatResult,
  type FinishReason,
  type TokenLogprob,
  type ToolCall,
  type TopLogprob,
  type ToolDefinition,
} from '../canonical/chat.js';
import { embeddingInputs, type EmbeddingRequest, type EmbeddingResult } from '../canonical/embeddings.js';
import { UpstreamError } from './errors.js';
import type { CallOptions, ProviderAdapter } from './types.js';
import { countPromptTokens, countTextTokens } from './tokens.js';
import { asChatRequest } from './text-completion.js';

export interface SimulatorOptions {
  /** Time to first token, ms. */
  latency_ms: number;
  /** Output speed; 0 means as fast as possible. */
  tokens_per_second: number;
  /** Share of calls that fail with a simulated 500 (0..1). */
  error_rate: number;
  /** Seed for the error draw; unset draws from Math.random. */
  seed?: number;
  /** Words in an answer when max_tokens does not cut it shorter. */
  answer_words: number;
  /** Dimensions of simulated embeddings. */
  embedding_dimensions: number;
  /** Noisy-oracle mode for checking answer aggregation against arithmetic (see OracleOptions). */
  oracle?: OracleOptions;
}

/**
 * Noisy oracle: questions with a known right answer ("What is 17+25?", or listed in `answer_key`)
 * are answered right with probability `p`, independently per pass (seeded), otherwise with one fixed
 * wrong answer derived from the question. Other prompts get the usual simulated text.
 */
export interface OracleOptions {
  p: number;
  /** Seed for the right/wrong draws; unset uses the simulator's `seed`, then Math.random. */
  seed?: number;
  /** Exact prompt (trimmed) -> right answer, for questions that are not arithmetic. */
  answer_key?: Record<string, string>;
}

const DEFAULTS: SimulatorOptions = {
  latency_ms: 0,
  tokens_per_second: 0,
  error_rate: 0,
  answer_words: 24,
  embedding_dimensions: 256,
};

const WORDS = (
  'the a model gateway answer request token stream cache route provider latency cost budget ' +
  'node cluster batch pass vote prompt reply fast simple clear small large quiet bright river ' +
  'mountain story light data signal value number green blue open careful steady ready'
).split(' ');

export const SIMULATOR_FINGERPRINT = 'inferenceflow-simulator';

export function createSimulatorProvider(name: string, options: Record<string, unknown> = {}): SimulatorProvider {
  return new SimulatorProvider(name, { ...DEFAULTS, ...(options as Partial<SimulatorOptions>) });
}

export class SimulatorProvider implements ProviderAdapter {
  readonly type = 'simulator' as const;
  readonly logprobs = true;
  /** Documents are accepted (and, like images, not read). */
  readonly files = true;
  private rngState: number;
  private oracleState: number;

  constructor(
    readonly name: string,
    readonly options: SimulatorOptions,
  ) {
    this.rngState = options.seed ?? randomBytes(4).readUInt32LE(0);
    this.oracleState = options.oracle?.seed ?? options.seed ?? randomBytes(4).readUInt32LE(0);
  }

  async chat(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    // A legacy text completion goes through chat here (asChatRequest: what chat cannot do is refused).
    req = asChatRequest(this.name, req);
    this.maybeFail();
    await sleep(this.options.latency_ms, opts.signal, this.name);
    const choices = this.answerAll(req);
    if (this.options.tokens_per_second > 0) {
      const longest = Math.max(...choices.map((c) => c.tokens));
      await sleep((longest / this.options.tokens_per_second) * 1000, opts.signal, this.name);
    }
    const promptTokens = countPromptTokens(req.messages, req.tools);
    const completionTokens = choices.reduce((s, c) => s + c.tokens, 0);
    return {
      id: `chatcmpl-sim${hashString(JSON.stringify(req.messages)).toString(36)}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: req.model,
      system_fingerprint: SIMULATOR_FINGERPRINT,
      choices: choices.map((c, index) => ({
        index,
        message: { role: 'assistant', content: c.content, refusal: null, ...(c.toolCalls ? { tool_calls: c.toolCalls } : {}) },
        finish_reason: c.finish,
        logprobs: req.logprobs && c.content ? { content: simulatedLogprobs(textPieces(c.content), req.top_logprobs ?? 0) } : null,
        ...(c.stopSequence ? { stop_sequence: c.stopSequence } : {}),
      })),
      usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
    };
  }

  async streamChat(req: ChatRequest, opts: CallOptions): Promise<AsyncIterable<ChatChunk>> {
    // A legacy text completion goes through chat here (asChatRequest: what chat cannot do is refused).
    req = asChatRequest(this.name, req);
    this.maybeFail();
    await sleep(this.options.latency_ms, opts.signal, this.name);
    const choices = this.answerAll(req);
    const id = `chatcmpl-sim${hashString(JSON.stringify(req.messages)).toString(36)}`;
    const created = Math.floor(Date.now() / 1000);
    const base = { id, object: 'chat.completion.chunk' as const, created, model: req.model, system_fingerprint: SIMULATOR_FINGERPRINT };
    const tokenDelay = this.options.tokens_per_second > 0 ? 1000 / this.options.tokens_per_second : 0;
    const promptTokens = countPromptTokens(req.messages, req.tools);
    const name = this.name;
    return {
      async *[Symbol.asyncIterator]() {
        let completion = 0;
        for (const [index, c] of choices.entries()) {
          yield { ...base, choices: [{ index, delta: { role: 'assistant', content: '' }, finish_reason: null }] };
          if (c.toolCalls) {
            for (const [i, call] of c.toolCalls.entries()) {
              yield {
                ...base,
                choices: [{ index, delta: { tool_calls: [{ index: i, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] }, finish_reason: null }],
              };
              yield {
                ...base,
                choices: [{ index, delta: { tool_calls: [{ index: i, function: { arguments: call.function.arguments } }] }, finish_reason: null }],
              };
            }
          } else if (c.content) {
            const pieces = textPieces(c.content);
            const logprobs = req.logprobs ? simulatedLogprobs(pieces, req.top_logprobs ?? 0) : undefined;
            for (const [k, piece] of pieces.entries()) {
              if (tokenDelay > 0) await sleep(tokenDelay, opts.signal, name);
              else if (opts.signal.aborted) throw abortedError(name);
              const lp = logprobs?.[k];
              yield { ...base, choices: [{ index, delta: { content: piece }, finish_reason: null, ...(lp ? { logprobs: { content: [lp] } } : {}) }] };
            }
          }
          completion += c.tokens;
          yield { ...base, choices: [{ index, delta: {}, finish_reason: c.finish, ...(c.stopSequence ? { stop_sequence: c.stopSequence } : {}) }] };
        }
        yield {
          ...base,
          choices: [],
          usage: { prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion },
        };
      },
    };
  }

  async embed(req: EmbeddingRequest, opts: CallOptions): Promise<EmbeddingResult> {
    this.maybeFail();
    await sleep(this.options.latency_ms, opts.signal, this.name);
    const inputs = embeddingInputs(req.input);
    if (!inputs) {
      throw new UpstreamError({ provider: this.name, kind: 'bad_request', message: 'the simulator embeds text inputs only', status: 400 });
    }
    const dims = req.dimensions ?? this.options.embedding_dimensions;
    let tokens = 0;
    const data = inputs.map((text, index) => {
      tokens += countTextTokens(text);
      return { object: 'embedding' as const, index, embedding: hashEmbedding(text, dims) };
    });
    return { object: 'list', data, model: req.model, usage: { prompt_tokens: tokens, total_tokens: tokens } };
  }

  async listModels(): Promise<string[]> {
    return ['simulator'];
  }

  async ready(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {}

  private maybeFail(): void {
    if (this.options.error_rate <= 0) return;
    if (this.random() < this.options.error_rate) {
      throw new UpstreamError({ provider: this.name, kind: 'server', status: 500, message: `${this.name} returned 500: simulated failure` });
    }
  }

  /** mulberry32: small, seedable, good enough for failure draws. */
  private random(): number {
    const [value, state] = mulberry32(this.rngState);
    this.rngState = state;
    return value;
  }

  /** The oracle's text for a question it knows, right with probability p; undefined otherwise. */
  private oracleAnswer(prompt: string): string | undefined {
    const oracle = this.options.oracle;
    if (!oracle) return undefined;
    const known = oracleKey(prompt, oracle.answer_key);
    if (!known) return undefined;
    const [draw, state] = mulberry32(this.oracleState);
    this.oracleState = state;
    const answer = draw < oracle.p ? known.right : known.wrong;
    return `Working through the question step by step. The answer is ${answer}.`;
  }

  private answerAll(req: ChatRequest): SimAnswer[] {
    const n = req.n ?? 1;
    const out: SimAnswer[] = [];
    for (let i = 0; i < n; i++) out.push(this.answer(req, (req.temperature ?? 1) > 0 ? i : 0));
    return out;
  }

  private answer(req: ChatRequest, variant: number): SimAnswer {
    const last = req.messages[req.messages.length - 1];
    const prompt = contentText(last?.content ?? '');
    const seed = hashString(`${req.model}\u0000${JSON.stringify(req.messages)}\u0000${variant}\u0000${req.seed ?? ''}`);
    const tool = last?.role === 'tool' ? undefined : pickTool(req, prompt);
    if (tool) {
      const call: ToolCall = {
        id: `call_sim${(seed >>> 0).toString(36)}`,
        type: 'function',
        function: { name: tool.function.name, arguments: JSON.stringify(exampleArguments(tool.function.parameters)) },
      };
      return { content: null, toolCalls: [call], finish: 'tool_calls', tokens: countTextTokens(call.function.arguments) + 5 };
    }
    let text: string;
    const oracleText = last?.role === 'user' ? this.oracleAnswer(prompt) : undefined;
    if (oracleText !== undefined) {
      text = oracleText;
    } else if (last?.role === 'tool') {
      text = `Simulated answer using the tool result: ${contentText(last.content).slice(0, 120)}`;
    } else {
      const excerpt = prompt.replace(/\s+/g, ' ').trim().slice(0, 60);
      const words: string[] = [];
      let s = seed;
      for (let i = 0; i < this.options.answer_words; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        words.push(WORDS[s % WORDS.length] as string);
      }
      text = `Simulated answer (InferenceFlow simulator) to "${excerpt}": ${words.join(' ')}.`;
    }
    const format = req.response_format?.type;
    if (format === 'json_object' || format === 'json_schema') {
      const schema = req.response_format?.type === 'json_schema' ? req.response_format.json_schema.schema : undefined;
      text = JSON.stringify(schema ? exampleArguments(schema) : { answer: text });
    }
    let finish: FinishReason = 'stop';
    let stopSequence: string | undefined;
    for (const stop of stopList(req.stop)) {
      const at = text.indexOf(stop);
      if (at >= 0) {
        text = text.slice(0, at);
        stopSequence = stop;
      }
    }
    const max = requestedMaxTokens(req);
    let tokens = countTextTokens(text);
    if (max !== undefined && tokens > max) {
      const words = text.split(/(?<=\s)/);
      let cut = '';
      for (const w of words) {
        if (countTextTokens(cut + w) > max) break;
        cut += w;
      }
      text = cut;
      tokens = countTextTokens(text);
      finish = 'length';
      stopSequence = undefined;
    }
    return { content: text, finish, tokens, ...(stopSequence !== undefined ? { stopSequence } : {}) };
  }
}

interface SimAnswer {
  content: string | null;
  toolCalls?: ToolCall[];
  finish: FinishReason;
  /** The stop sequence the answer was cut at. */
  stopSequence?: string;
  tokens: number;
}

/** A tool is called when the client requires it, names it, or the prompt mentions it. */
function pickTool(req: ChatRequest, prompt: string): ToolDefinition | undefined {
  const tools = req.tools;
  if (!tools || tools.length === 0 || req.tool_choice === 'none') return undefined;
  const choice = req.tool_choice;
  if (choice && typeof choice === 'object') return tools.find((t) => t.function.name === choice.function.name);
  if (choice === 'required') return tools[0];
  const p = prompt.toLowerCase();
  return tools.find((t) => p.includes(t.function.name.toLowerCase()) || p.includes(t.function.name.toLowerCase().replace(/_/g, ' ')));
}

/** A value that satisfies a JSON schema's required properties, for simulated tool calls and JSON mode. */
export function exampleArguments(schema: unknown): Record<string, unknown> {
  const value = exampleValue(schema, 0);
  return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : { value };
}

function exampleValue(schema: unknown, depth: number): unknown {
  if (!schema || typeof schema !== 'object' || depth > 6) return 'example';
  const s = schema as Record<string, unknown>;
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[0];
  if ('const' in s) return s.const;
  const type = Array.isArray(s.type) ? s.type[0] : s.type;
  switch (type) {
    case 'object': {
      const props = (s.properties ?? {}) as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(props)) out[k] = exampleValue(v, depth + 1);
      return out;
    }
    case 'array':
      return [exampleValue(s.items, depth + 1)];
    case 'integer':
      return 1;
    case 'number':
      return 1.5;
    case 'boolean':
      return true;
    case 'null':
      return null;
    default:
      return 'example';
  }
}

/** The simulator's tokens: a word with its trailing space (streamed one per chunk). */
function textPieces(content: string): string[] {
  return content.match(/\S+\s*|\s+/g) ?? [];
}

/**
 * Deterministic log-probabilities for simulated tokens: each token's own in (-3, 0], and `top`
 * alternatives (the token itself first, then vocabulary words, each less likely than the last).
 */
export function simulatedLogprobs(tokens: readonly string[], top: number): TokenLogprob[] {
  const entry = (token: string, logprob: number) => ({ token, logprob, bytes: [...Buffer.from(token, 'utf8')] });
  return tokens.map((token, position) => {
    const h = hashString(`${position}\u0000${token}`);
    const logprob = -((h % 3000) / 1000);
    const alternatives: TopLogprob[] = [];
    for (let k = 0; k < top; k++) {
      if (k === 0) alternatives.push(entry(token, logprob));
      else alternatives.push(entry(`${WORDS[(h + k * 7) % WORDS.length]} `, logprob - k * 0.75 - ((h >>> (k % 16)) % 100) / 1000));
    }
    return { ...entry(token, logprob), top_logprobs: alternatives };
  });
}

function mulberry32(state: number): [number, number] {
  const next = (state + 0x6d2b79f5) | 0;
  let t = next;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return [((t ^ (t >>> 14)) >>> 0) / 4294967296, next];
}

const ARITHMETIC = /what is\s+(-?\d+)\s*([-+*x×])\s*(-?\d+)\s*\??\s*$/i;

/** The right answer to an oracle question and its one fixed wrong answer. */
export function oracleKey(prompt: string, answerKey?: Record<string, string>): { right: string; wrong: string } | undefined {
  const q = prompt.trim();
  const keyed = answerKey?.[q];
  if (keyed !== undefined) {
    const n = Number(keyed);
    return { right: keyed, wrong: Number.isFinite(n) && keyed.trim() !== '' ? String(n + 1) : `not ${keyed}` };
  }
  const m = ARITHMETIC.exec(q);
  if (!m) return undefined;
  const a = Number(m[1]);
  const b = Number(m[3]);
  const right = m[2] === '+' ? a + b : m[2] === '-' ? a - b : a * b;
  // The wrong answer is off by 1..9, fixed per question, so every wrong pass agrees with the others.
  return { right: String(right), wrong: String(right + 1 + (hashString(q) % 9)) };
}

/** FNV-1a, 32 bits. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A deterministic unit vector for a text (bag of hashed words, so similar texts are near). */
function hashEmbedding(text: string, dims: number): number[] {
  const v = new Array<number>(dims).fill(0);
  for (const word of text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []) {
    const h = hashString(word);
    v[h % dims] = (v[h % dims] as number) + ((h >>> 16) & 1 ? 1 : -1);
  }
  const norm = Math.hypot(...v) || 1;
  return v.map((x) => x / norm);
}

function abortedError(provider: string): UpstreamError {
  return new UpstreamError({ provider, kind: 'aborted', message: `request to ${provider} was cancelled` });
}

function sleep(ms: number, signal: CancelSignal, provider: string): Promise<void> {
  if (signal.aborted) return Promise.reject(abortedError(provider));
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortedError(provider));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
