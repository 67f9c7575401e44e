// Cost in USD from token usage. Prices are USD per million tokens: input, output, and where the
// provider has a prompt cache, cached input read (`cached_input`) and written (`cache_write`); a
// deployment's `price:` in the config overrides the table. Unknown models cost 0 (and say so in the docs).
import type { Usage } from '../canonical/chat.js';

export interface Price {
  input: number;
  output: number;
  /** Prompt tokens read from the provider's prompt cache; unset: `input`. */
  cached_input?: number;
  /** Prompt tokens written to the provider's prompt cache (Anthropic); unset: `input`. */
  cache_write?: number;
  /**
   * USD per call, added to what its tokens cost: a provider's request fee, or the price of a call
   * whose answer reports no tokens (an image from dall-e-3, speech from tts-1).
   */
  per_request?: number;
}

/** Anthropic: a cache read costs a tenth of input, a (5-minute) cache write 1.25 times it. */
const claude = (input: number, output: number): Price => ({ input, output, cached_input: input / 10, cache_write: input * 1.25 });

// Public list prices (USD / 1M tokens). Longest matching prefix wins, so dated snapshots
// (gpt-4o-mini-2024-07-18) inherit their family's price. Cached input where the provider discounts
// it: OpenAI's automatic prompt caching, Anthropic's cache_control, Gemini's implicit caching.
const TABLE: Record<string, Price> = {
  'gpt-4o-mini': { input: 0.15, output: 0.6, cached_input: 0.075 },
  'gpt-4o': { input: 2.5, output: 10, cached_input: 1.25 },
  'gpt-4.1-nano': { input: 0.1, output: 0.4, cached_input: 0.025 },
  'gpt-4.1-mini': { input: 0.4, output: 1.6, cached_input: 0.1 },
  'gpt-4.1': { input: 2, output: 8, cached_input: 0.5 },
  'gpt-4-turbo': { input: 10, output: 30 },
  'gpt-4': { input: 30, output: 60 },
  'gpt-3.5-turbo': { input: 0.5, output: 1.5 },
  'o3-mini': { input: 1.1, output: 4.4, cached_input: 0.55 },
  'o4-mini': { input: 1.1, output: 4.4, cached_input: 0.275 },
  'text-embedding-3-small': { input: 0.02, output: 0 },
  'text-embedding-3-large': { input: 0.13, output: 0 },
  'claude-3-haiku': claude(0.25, 1.25),
  'claude-3-5-haiku': claude(0.8, 4),
  'claude-haiku-4-5': claude(1, 5),
  'claude-3-sonnet': claude(3, 15),
  'claude-3-5-sonnet': claude(3, 15),
  'claude-3-7-sonnet': claude(3, 15),
  'claude-sonnet-4': claude(3, 15),
  'claude-3-opus': claude(15, 75),
  'claude-opus-4': claude(15, 75),
  'gemini-pro': { input: 0.5, output: 1.5 },
  'gemini-1.5-flash': { input: 0.075, output: 0.3, cached_input: 0.01875 },
  'gemini-1.5-pro': { input: 1.25, output: 5, cached_input: 0.3125 },
  'gemini-2.0-flash': { input: 0.1, output: 0.4, cached_input: 0.025 },
  'gemini-2.5-flash': { input: 0.3, output: 2.5, cached_input: 0.075 },
  'gemini-2.5-pro': { input: 1.25, output: 10, cached_input: 0.31 },
  'command-r-plus': { input: 2.5, output: 10 },
  'command-r': { input: 0.15, output: 0.6 },
  'command-a': { input: 2.5, output: 10 },
};

const PREFIXES = Object.keys(TABLE).sort((a, b) => b.length - a.length);

export function priceFor(model: string, override?: Price): Price {
  if (override) return override;
  const m = model.toLowerCase().replace(/^models\//, '');
  for (const prefix of PREFIXES) if (m.startsWith(prefix)) return TABLE[prefix] as Price;
  return { input: 0, output: 0 };
}

/**
 * What `usage` cost at `price`: prompt tokens the provider read from or wrote to its prompt cache at
 * their own prices, the rest of the prompt at `input`, the completion (reasoning included) at `output`,
 * and the call's `per_request` fee.
 */
export function costUsd(usage: Usage, price: Price): number {
  // Never negative: an upstream reporting negative counts must not credit a budget.
  return Math.max(0, tokensCostUsd(usage, price)) + (price.per_request ?? 0);
}

function tokensCostUsd(usage: Usage, price: Price): number {
  const d = usage.prompt_tokens_details;
  if (d === undefined) return (usage.prompt_tokens * price.input + usage.completion_tokens * price.output) / 1_000_000;
  // A provider's counts beyond the prompt (it should never say so) are clamped to it.
  const read = Math.min(Math.max(d.cached_tokens, 0), usage.prompt_tokens);
  const written = Math.min(Math.max(d.cache_write_tokens ?? 0, 0), usage.prompt_tokens - read);
  const plain = usage.prompt_tokens - read - written;
  return (plain * price.input + read * (price.cached_input ?? price.input) + written * (price.cache_write ?? price.input) + usage.completion_tokens * price.output) / 1_000_000;
}
