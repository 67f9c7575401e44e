// Cache keys from the canonical request. The exact key covers everything that changes the answer
// (model group, messages, tools, sampling and output parameters, the requested difficulty) and
// nothing that does not (stream, user, metadata…). The semantic key splits the same request into the text that is embedded (the
// last user turn) and a fingerprint of the rest, which must match exactly for a semantic hit.
import { hash as digest } from 'node:crypto';
import { messageText, stopList, withoutCacheControl, type ChatMessage, type ChatRequest } from '../canonical/chat.js';
import { parseDifficulty } from '../scaling/levels.js';

/** JSON with sorted keys and undefined fields dropped, so equal requests serialise equally. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

/** Part of a response_format's key (changed when Anthropic started applying the format). */
const RESPONSE_FORMAT_KEY = 2;

/** What a request for log-probabilities hashes as (changed when stored answers stopped dropping them). */
const LOGPROBS_KEY = 'carried';

/**
 * Part of every semantic fingerprint (changed when top_k joined it): entries stored with a top_k
 * under a fingerprint that left it out are in partitions no lookup reaches any more, rather than in
 * the partition of requests that set none.
 */
const FINGERPRINT_KEY = 2;

function hash(s: string): string {
  return digest('sha256', s, 'base64url').slice(0, 32);
}

function canonicalMessage(m: ChatMessage): unknown {
  // Text-only content compares as a plain string whichever form the client sent, its parts one per
  // line as the upstreams read them (messageText: run together, ["Is 12", "3 prime?"] would share
  // "Is 123 prime?"'s key). Prompt-cache breakpoints (cache_control) change what the provider bills,
  // not the answer: never in the key.
  const content =
    typeof m.content === 'string' || m.content == null || m.content.every((p) => p.type === 'text') ? messageText(m.content) : withoutCacheControl(m.content);
  // An assistant turn's refusal (history sent back) is part of what the model sees, and so is its
  // spoken answer's reference (`audio: {id}`, sent on to OpenAI-compatible upstreams). Old entries
  // keyed without it are only reachable by the same history with that turn empty.
  return {
    role: m.role === 'developer' ? 'system' : m.role,
    content,
    name: m.name,
    tool_calls: m.tool_calls,
    tool_call_id: m.tool_call_id,
    refusal: m.refusal || undefined,
    // A history sent back as it came (`model_dump()`) carries `audio: null`: the same as none.
    audio: m.audio ?? undefined,
    // Claude's signed thinking sent back: what an Anthropic deployment continues from.
    thinking_blocks: m.thinking_blocks?.length ? m.thinking_blocks : undefined,
  };
}

/**
 * Parameters that change the output, with defaults folded so `n: 1` equals no `n`. Without
 * `withSampling`, temperature and top_p are left out (semantic hits only happen at low temperature);
 * top_k stays: a top_k: 1 answer is greedy, a top_k: 40 one is not.
 */
function outputParameters(req: ChatRequest, withSampling: boolean): Record<string, unknown> {
  const stop = stopList(req.stop);
  return {
    temperature: withSampling ? req.temperature : undefined,
    top_p: withSampling && req.top_p !== 1 ? req.top_p : undefined,
    top_k: req.top_k,
    n: req.n === 1 ? undefined : req.n,
    max_tokens: req.max_completion_tokens ?? req.max_tokens,
    stop: stop.length ? stop : undefined,
    seed: req.seed,
    tools: req.tools?.length ? withoutCacheControl(req.tools) : undefined,
    tool_choice: req.tool_choice,
    parallel_tool_calls: req.parallel_tool_calls,
    // Versioned: answers stored before every provider applied the format (Anthropic answered prose) are not served.
    response_format: req.response_format?.type === 'text' || !req.response_format ? undefined : { ...req.response_format, key: RESPONSE_FORMAT_KEY },
    presence_penalty: req.presence_penalty || undefined,
    frequency_penalty: req.frequency_penalty || undefined,
    logit_bias: req.logit_bias && Object.keys(req.logit_bias).length ? req.logit_bias : undefined,
    // Not `true`: entries stored before answers carried log-probabilities hold null ones.
    logprobs: req.logprobs ? LOGPROBS_KEY : undefined,
    top_logprobs: req.logprobs ? req.top_logprobs : undefined,
    reasoning_effort: req.reasoning_effort,
    verbosity: req.verbosity,
    modalities: req.modalities,
    audio: req.audio,
    prediction: req.prediction,
    web_search_options: req.web_search_options,
    moderation: req.moderation,
    // The Anthropic route's own: thinking changes the answer (its blocks are part of it), a beta can
    // (a longer context, interleaved thinking), and so do Anthropic-defined tools.
    thinking: req.thinking,
    anthropic_beta: req.anthropic_beta?.length ? [...req.anthropic_beta].sort() : undefined,
    // Breakpoints stripped as from function tools: they change what is billed, not the answer.
    anthropic_tools: req.anthropic_tools?.length ? req.anthropic_tools.map(({ position, tool: { cache_control: _c, ...tool } }) => ({ position, tool })) : undefined,
    // A legacy text completion (its prompt is also the one user message) is not the chat request of
    // the same text: a raw-text deployment continues the prompt, a chat model answers it. Its suffix,
    // echo (a native echo is stored in the answer) and best_of change the answer too.
    text_completion: textCompletionPart(req),
  };
}

function textCompletionPart(req: ChatRequest): Record<string, unknown> | undefined {
  const t = req.text_completion;
  if (!t) return undefined;
  return { raw: true, ids: t.prompt_ids, suffix: t.suffix || undefined, echo: t.echo || undefined, best_of: (t.best_of ?? 1) > 1 ? t.best_of : undefined };
}

/** What the gateway does to a request after the cache, beside the request body. */
export interface KeyOptions {
  /**
   * The difficulty the client asked for (`difficulty` field or `x-inferenceflow-difficulty`).
   * Test-time scaling runs after the cache and turns it into passes, a token budget and a
   * temperature, so answers to different levels are different answers.
   */
  difficulty?: string;
  /** How the client asked test-time scaling to combine passes (`x-inferenceflow-aggregation`): it changes the passes and the answer. */
  aggregation?: string;
}

/** The requested level, canonical (`EASY`, `1` -> `easy`); `auto` and unknown values as given, lower-cased. */
function difficultyPart(opts: KeyOptions): string | undefined {
  if (opts.difficulty === undefined) return undefined;
  return parseDifficulty(opts.difficulty) ?? opts.difficulty.trim().toLowerCase();
}

/** The scaling parts of a key: level and aggregation as asked, absent when not asked for. */
function scalingParts(opts: KeyOptions): { difficulty?: string; aggregation?: string } {
  return { difficulty: difficultyPart(opts), aggregation: opts.aggregation?.trim().toLowerCase() };
}

/** Hash of the canonical request; `model` is the model group the client named. */
export function exactKey(req: ChatRequest, opts: KeyOptions = {}): string {
  return hash(
    canonicalJson({ model: req.model, messages: req.messages.map(canonicalMessage), ...outputParameters(req, true), ...scalingParts(opts) }),
  );
}

export interface SemanticKey {
  /** The embedded text: the last user turn. */
  text: string;
  /**
   * Everything else that must match exactly: model, system prompt, earlier turns, tools and output
   * parameters, top_k included (temperature and top_p excepted: semantic hits only happen at low
   * temperature).
   */
  fingerprint: string;
}

/** Undefined when the request does not end with a text user turn (tool results, images). */
export function semanticKey(req: ChatRequest, opts: KeyOptions = {}): SemanticKey | undefined {
  const last = req.messages[req.messages.length - 1];
  if (!last || last.role !== 'user') return undefined;
  if (Array.isArray(last.content) && last.content.some((p) => p.type !== 'text')) return undefined;
  const text = messageText(last.content).trim();
  if (!text) return undefined;
  const context = req.messages.slice(0, -1).map(canonicalMessage);
  // Only the last turn's text is compared by meaning; who says it (its `name`, in a group chat one
  // tenant serves) is part of the fingerprint, or Bob's "What is my name?" would get Alice's answer.
  const speaker = last.name ? { speaker: last.name } : {};
  return {
    text,
    fingerprint: hash(canonicalJson({ model: req.model, context, ...speaker, ...outputParameters(req, false), ...scalingParts(opts), fingerprint: FINGERPRINT_KEY })),
  };
}

/** Store key `<namespace>:<model>:<hash>`; the parts are escaped so invalidation globs can split on `:`. */
export function entryKey(namespace: string, model: string, requestHash: string): string {
  return `${escapePart(namespace)}:${escapePart(model)}:${requestHash}`;
}

export function escapePart(s: string): string {
  return s.replace(/[%:*?[\]\\]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/** A Redis-style glob (`*`, `?`, `[abc]`, `\x`) as a RegExp for the memory store. */
export function globToRegExp(glob: string): RegExp {
  let re = '^';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '\\' && i + 1 < glob.length) re += `\\${glob[++i]}`.replace(/^\\([A-Za-z0-9])$/, '$1');
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        re += `[${glob.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\/]/g, '\\$&');
  }
  return new RegExp(`${re}$`, 's');
}
