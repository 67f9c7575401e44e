// Cost in USD from token usage. Prices are USD per million input and output tokens; a deployment's
// `price:` in the config overrides the table. Unknown models cost 0 (and say so in the docs).
import type { Usage } from '../canonical/chat.js';

export interface Price {
  input: number;
  output: number;
}

// Public list prices (USD / 1M tokens). Longest matching prefix wins, so dated snapshots
// (gpt-4o-mini-2024-07-18) inherit their family's price.
const TABLE: Record<string, Price> = {
  'gpt-4o-mini': { input: 0.15, output: 0.6 },
  'gpt-4o': { input: 2.5, output: 10 },
  'gpt-4.1-nano': { input: 0.1, output: 0.4 },
  'gpt-4.1-mini': { input: 0.4, output: 1.6 },
  'gpt-4.1': { input: 2, output: 8 },
  'gpt-4-turbo': { input: 10, output: 30 },
  'gpt-4': { input: 30, output: 60 },
  'gpt-3.5-turbo': { input: 0.5, output: 1.5 },
  'o3-mini': { input: 1.1, output: 4.4 },
  'o4-mini': { input: 1.1, output: 4.4 },
  'text-embedding-3-small': { input: 0.02, output: 0 },
  'text-embedding-3-large': { input: 0.13, output: 0 },
  'claude-3-haiku': { input: 0.25, output: 1.25 },
  'claude-3-5-haiku': { input: 0.8, output: 4 },
  'claude-haiku-4-5': { input: 1, output: 5 },
  'claude-3-sonnet': { input: 3, output: 15 },
  'claude-3-5-sonnet': { input: 3, output: 15 },
  'claude-3-7-sonnet': { input: 3, output: 15 },
  'claude-sonnet-4': { input: 3, output: 15 },
  'claude-3-opus': { input: 15, output: 75 },
  'claude-opus-4': { input: 15, output: 75 },
  'gemini-pro': { input: 0.5, output: 1.5 },
  'gemini-1.5-flash': { input: 0.075, output: 0.3 },
  'gemini-1.5-pro': { input: 1.25, output: 5 },
  'gemini-2.0-flash': { input: 0.1, output: 0.4 },
  'gemini-2.5-flash': { input: 0.3, output: 2.5 },
  'gemini-2.5-pro': { input: 1.25, output: 10 },
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

export function costUsd(usage: Usage, price: Price): number {
  return (usage.prompt_tokens * price.input + usage.completion_tokens * price.output) / 1_000_000;
}
