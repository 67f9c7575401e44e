// Legacy text completions (`POST /v1/completions`) at the adapters. The route sets the request's
// `text_completion` (the raw prompt, suffix, echo, legacy logprobs, best_of) beside one user message;
// an adapter that completes raw text sends the prompt as it is, one that does not serves the user
// message through chat and refuses what chat cannot do.
import type { ChatRequest, TextCompletion, TextLogprobs } from '../canonical/chat.js';
import { UpstreamError } from './errors.js';

type RawOnly = 'prompt_ids' | 'suffix' | 'logprobs' | 'best_of' | 'no_tokens';
const RAW_ONLY: readonly RawOnly[] = ['prompt_ids', 'suffix', 'logprobs', 'best_of', 'no_tokens'];

/**
 * The first of `among` a raw-text request asks for, of what only a raw-text completion can give:
 * a prompt of token ids, text after the completion (`suffix`), the prompt's own log-probabilities
 * (`echo` with `logprobs`), several candidates ranked server-side (`best_of` above 1), no
 * completion at all (`max_tokens` 0: scoring the echoed prompt, as vLLM serves it). Undefined when none.
 */
function firstAsked(t: TextCompletion, among: readonly RawOnly[], maxTokens: number | null | undefined): RawOnly | undefined {
  const asked: Record<RawOnly, boolean> = {
    prompt_ids: t.prompt_ids !== undefined,
    suffix: Boolean(t.suffix),
    logprobs: Boolean(t.echo) && t.logprobs !== undefined,
    best_of: (t.best_of ?? 1) > 1,
    no_tokens: maxTokens === 0,
  };
  return among.find((p) => asked[p]);
}

const WHY: Record<RawOnly, string> = {
  prompt_ids: 'a prompt of token ids',
  suffix: '`suffix` (fill-in-the-middle)',
  logprobs: '`logprobs` with `echo` (log-probabilities of the prompt)',
  best_of: '`best_of` above 1',
  no_tokens: '`max_tokens` 0 (the prompt alone, scored)',
};

/** Which deployments can take each: an OpenAI-compatible raw-text server; for a suffix, Ollama too. */
const whoCan = (p: RawOnly) =>
  p === 'prompt_ids'
    ? "an OpenAI-compatible server that completes raw text can (vLLM, llama.cpp's server; options.completions: native)"
    : `a deployment that completes raw text can (an OpenAI-compatible server with options.completions: native${p === 'suffix' ? ', Ollama' : ''})`;

/** The request field each is asked in: token ids come as `prompt`. */
const paramOf = (p: RawOnly) => (p === 'prompt_ids' ? 'prompt' : p === 'no_tokens' ? 'max_tokens' : p);

/**
 * The request as a chat request for an adapter that serves /v1/completions through chat: the same
 * object when it is no text completion, else without `text_completion` (no upstream or mesh node
 * sees it). What chat cannot do is refused with kind `unsupported`, a fault of this deployment: the
 * router moves on to one that completes raw text, and the client gets 400 `unsupported_capability`
 * (param `prompt` for token ids, `suffix`, `logprobs` or `best_of`) when none of the model's can.
 */
export function asChatRequest(provider: string, req: ChatRequest): ChatRequest {
  const t = req.text_completion;
  if (!t) return req;
  const param = firstAsked(t, RAW_ONLY, req.max_tokens);
  if (param) {
    throw unsupported(provider, paramOf(param), `${provider} serves /v1/completions through chat, which cannot take ${WHY[param]}; ${whoCan(param)}.`);
  }
  const { text_completion: _raw, ...chat } = req;
  return chat;
}

/**
 * For an adapter that completes raw text but not everything the legacy API offers: refuses (kind
 * `unsupported`, as asChatRequest) the first of `lacks` the request asks for.
 */
export function refuseRawParameters(provider: string, t: TextCompletion, lacks: readonly RawOnly[], maxTokens?: number | null): void {
  const param = firstAsked(t, lacks, maxTokens);
  if (param) throw unsupported(provider, paramOf(param), `${provider} completes raw text but cannot take ${WHY[param]}.`);
}

/**
 * `options.completions` of an adapter that completes raw text (openai, ollama): `native`, `chat`, or
 * undefined when unset (the adapter's default); anything else is refused at start-up.
 */
export function completionsOption(provider: string, options: Record<string, unknown> | undefined): 'native' | 'chat' | undefined {
  const value = options?.completions;
  if (value === undefined || value === 'native' || value === 'chat') return value;
  throw new Error(`provider ${provider}: options.completions must be "native" or "chat", not ${JSON.stringify(value)}`);
}

/** A refusal the gateway answers as 400 `unsupported_capability` naming `param` (fromUpstream reads it from the body). */
function unsupported(provider: string, param: string, message: string): UpstreamError {
  return new UpstreamError({ provider, kind: 'unsupported', message, body: { error: { message, param } } });
}

/**
 * Legacy log-probabilities as an upstream sent them (parallel arrays), or undefined for any other
 * shape (llama.cpp's server answers /v1/completions with chat's `{content: [...]}`, read apart).
 */
export function readTextLogprobs(lp: unknown): TextLogprobs | undefined {
  if (lp === null || typeof lp !== 'object' || Array.isArray(lp)) return undefined;
  const { tokens, token_logprobs: logprobs, top_logprobs: top, text_offset: offsets } = lp as Record<string, unknown>;
  if (!Array.isArray(tokens) || !tokens.every((t) => typeof t === 'string')) return undefined;
  if (!Array.isArray(logprobs) || logprobs.length !== tokens.length || !logprobs.every((v) => v === null || typeof v === 'number')) return undefined;
  const topList = Array.isArray(top) && top.length === tokens.length && top.every((m) => m === null || (typeof m === 'object' && !Array.isArray(m))) ? (top as (Record<string, number> | null)[]) : null;
  let textOffset: number[];
  if (Array.isArray(offsets) && offsets.length === tokens.length && offsets.every((o) => typeof o === 'number')) textOffset = offsets as number[];
  else {
    // A server that sends no offsets: each token starts where the one before it ended.
    textOffset = [];
    let at = 0;
    for (const t of tokens as string[]) {
      textOffset.push(at);
      at += t.length;
    }
  }
  return { tokens: tokens as string[], token_logprobs: logprobs as (number | null)[], top_logprobs: topList, text_offset: textOffset };
}
