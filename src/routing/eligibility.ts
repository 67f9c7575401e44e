// What a request may be sent to: per request state (deadline, visited groups, prompt size) and the
// eligibility rules — the prompt plus max_tokens fits the context window (counted with the real
// tokenizer only when a cheap byte bound cannot decide), the provider can return what was asked
// (token log-probabilities), the breaker lets calls through, and the deployment is not cooling down
// after a Retry-After.
import type { Context as TraceContext } from '@opentelemetry/api';
import { contentText, fileMediaTypes, needsAnthropic, requestedMaxTokens, type ChatRequest } from '../canonical/chat.js';
import type { RequestContext } from '../gateway/context.js';
import type { CircuitBreaker } from './breaker.js';
import type { Cancellation } from '../providers/cancel.js';
import type { Deployment } from './catalog.js';
import type { DeploymentStats } from './stats.js';
import { carriedPromptTokens, promptTokensOf } from './prompt-tokens.js';
import { UNKNOWN_IMAGE_TOKENS } from '../providers/image-tokens.js';
import { DEFAULT_COOLDOWN_MS } from './retry.js';

/** Per request: the deadline, what was tried, the exact prompt size once counted. */
export interface RequestState {
  ctx: RequestContext;
  req: ChatRequest;
  signal: Cancellation;
  deadlineAt: number;
  /** Model groups already tried (a few at most: an array, not a Set, for the common request's one). */
  visited: string[];
  promptTokens?: number;
  promptChars?: number;
  /** Image parts in the prompt, counted with promptChars. */
  promptImages?: number;
  /** A semantic decision that sent the request to another group, kept in the route header. */
  routePrefix?: string;
  /** The media types of the documents (`file` parts) the messages carry, found once per request. */
  fileTypes?: string[];
  /** The route span's context; attempt spans are its children. */
  trace?: TraceContext;
}

/** Exact prompt tokens (o200k), counted once per request: the count carried with it when a stage before made one. */
export function promptTokens(state: RequestState): number {
  state.promptTokens ??= promptTokensOf(state.req);
  return state.promptTokens;
}

/** Whether the prompt plus max_tokens fits the deployment's context window. */
export function fits(state: RequestState, d: Deployment): boolean {
  if (d.contextWindow === undefined) return true;
  const budget = d.contextWindow - (requestedMaxTokens(state.req) ?? 0);
  // A count carried with the request (admission's, a truncation's) is used as it is. Else a token is
  // at least one UTF-8 byte (at most 3 per UTF-16 unit): a short prompt fits without running the
  // tokenizer; only prompts near the window are counted exactly.
  state.promptTokens ??= carriedPromptTokens(state.req);
  if (state.promptTokens === undefined && promptUpperBound(state) <= budget) return true;
  return promptTokens(state) <= budget;
}

/**
 * An upper bound on prompt tokens from its size (a token is at least one UTF-8 byte), each image at
 * the most the token count gives any image (image-tokens.ts).
 */
export function promptUpperBound(state: RequestState): number {
  if (state.promptChars === undefined) {
    let chars = 0;
    let images = 0;
    for (const m of state.req.messages) {
      chars += contentText(m.content).length + (m.name?.length ?? 0) + (m.tool_calls ? JSON.stringify(m.tool_calls).length : 0);
      if (Array.isArray(m.content)) for (const p of m.content) if (p.type === 'image_url') images++;
    }
    state.promptChars = chars;
    state.promptImages = images;
  }
  // Tools and documents are counted exactly (a document's size says little about its tokens).
  if (state.req.tools || (state.fileTypes ??= fileMediaTypes(state.req.messages)).length > 0) return Infinity;
  return 3 + state.req.messages.length * 5 + state.promptChars * 3 + (state.promptImages ?? 0) * UNKNOWN_IMAGE_TOKENS;
}

/** Whether a provider's `files` capability covers every one of these media types. */
function readsFiles(files: boolean | readonly string[] | undefined, types: readonly string[]): boolean {
  if (files === true) return true;
  if (!files) return false;
  return types.every((t) => files.includes(t));
}

/**
 * The deployments a request may go to now: able to do what it asks (log-probabilities, documents of
 * its types, Anthropic's own tools and blocks), context window fits, breaker allows, not cooling.
 */
export function eligibleDeployments(
state: RequestState,
deployments: readonly Deployment[],
now: number,
breakerFor: (id: string) => CircuitBreaker,
statsFor: (id: string) => DeploymentStats,
) {
  const eligible: Deployment[] = [];
  let tooLong = 0;
  let incapable = 0;
  /** The capability the first incapable deployment lacked, for the error. */
  let missing: 'logprobs' | 'files' | 'anthropic' | undefined;
  const wantsLogprobs = state.req.logprobs === true;
  // Anthropic-defined tools and server-tool history blocks: Anthropic deployments only.
  const wantsAnthropic = needsAnthropic(state.req);
  const fileTypes = (state.fileTypes ??= fileMediaTypes(state.req.messages));
  let cooling = 0;
  let earliest = Infinity;
  for (const d of deployments) {
    // A deployment that cannot do what is asked counts as incapable, whether or not it fits.
    const lacks =
      wantsLogprobs && !d.provider.logprobs
        ? 'logprobs'
        : fileTypes.length > 0 && !readsFiles(d.provider.files, fileTypes)
          ? 'files'
          : wantsAnthropic && d.provider.type !== 'anthropic'
            ? 'anthropic'
            : undefined;
    if (lacks) {
      incapable++;
      missing ??= lacks;
      continue;
    }
    if (!fits(state, d)) {
      tooLong++;
      continue;
    }
    const b = breakerFor(d.id);
    if (!b.canPass()) {
      earliest = Math.min(earliest, b.retryAt ?? now + DEFAULT_COOLDOWN_MS);
      continue;
    }
    const s = statsFor(d.id);
    if (s.cooling(now)) {
      cooling++;
      earliest = Math.min(earliest, s.coolingUntil);
      continue;
    }
    eligible.push(d);
  }
  return { eligible, tooLong, incapable, missing, cooling, earliest };
}
