// A request's prompt tokens (o200k, src/providers/tokens.ts), counted once and carried with it, so the
// stages that need the size — a Responses request's truncation, admission's reservation, routing's
// context-window check, a hedge loser's charge — share one count instead of each tokenizing the prompt.
// Carried beside the request, keyed by its messages array: every copy of the request made by spreading
// it (a scaling pass, an upstream attempt) shares the array and so the count, while a request given
// other messages (a judge prompt, a truncated conversation) has another array and is counted afresh.
// Nothing is added to the request itself, so no upstream body, cache key or dedup key changes.
import type { ChatMessage, ChatRequest } from '../canonical/chat.js';
import { countPromptTokens } from '../providers/tokens.js';

interface Carried {
  /** The tools counted with the messages (the same object, or the count is for another prompt). */
  tools: ChatRequest['tools'];
  /** The messages' length when counted: a message added since makes the count stale. */
  length: number;
  tokens: number;
}

const carried = new WeakMap<readonly ChatMessage[], Carried>();

type Prompt = Pick<ChatRequest, 'messages' | 'tools'>;

/**
 * Carries `tokens` as the prompt count of `req` (its messages with its tools): a count made on the
 * way, as a Responses request's truncation makes it. It must be exactly countPromptTokens(messages, tools).
 */
export function carryPromptTokens(req: Prompt, tokens: number): void {
  carried.set(req.messages, { tools: req.tools, length: req.messages.length, tokens });
}

/** The count carried with `req`, when it still describes its messages and tools; undefined otherwise (nothing is counted). */
export function carriedPromptTokens(req: Prompt): number | undefined {
  const c = carried.get(req.messages);
  return c && c.tools === req.tools && c.length === req.messages.length ? c.tokens : undefined;
}

/** The prompt tokens of `req`: the carried count, else counted now and carried from here on. */
export function promptTokensOf(req: Prompt): number {
  const known = carriedPromptTokens(req);
  if (known !== undefined) return known;
  const tokens = countPromptTokens(req.messages, req.tools);
  carryPromptTokens(req, tokens);
  return tokens;
}
