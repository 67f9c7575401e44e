// Thinking budgets for providers that take a token budget (Gemini's thinkingConfig, Cohere's
// thinking) when the client sent OpenAI's `reasoning_effort` instead of a budget: as Google's own
// OpenAI-compatible endpoint maps them (low 1,024, medium 8,192, high 24,576 tokens; `none` is no
// thinking at all).
import type { ChatRequest } from '../canonical/chat.js';

// Every effort level the canonical request takes: a new one does not compile until it has a budget.
const EFFORT_BUDGET: Record<NonNullable<ChatRequest['reasoning_effort']>, number> = { none: 0, minimal: 1_024, low: 1_024, medium: 8_192, high: 24_576, xhigh: 24_576, max: 24_576 };

/**
 * The thinking budget the client asked for: the Anthropic route's `thinking` (its `budget_tokens`;
 * 0 when disabled), else OpenAI's `reasoning_effort` (0 for `none`). Undefined when nothing was
 * asked (the model's own default). Each provider only shapes this into its own field.
 */
export function requestedThinkingBudget(req: ChatRequest): number | undefined {
  if (req.thinking?.type === 'enabled') return req.thinking.budget_tokens;
  if (req.thinking?.type === 'disabled') return 0;
  return req.reasoning_effort === undefined ? undefined : EFFORT_BUDGET[req.reasoning_effort];
}
