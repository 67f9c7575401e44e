// Thinking budgets for providers that take a token budget (Gemini's thinkingConfig, Cohere's
// thinking) when the client sent OpenAI's `reasoning_effort` instead of a budget: as Google's own
// OpenAI-compatible endpoint maps them (low 1,024, medium 8,192, high 24,576 tokens; `none` is no
// thinking at all).
const EFFORT_BUDGET: Record<string, number> = { none: 0, minimal: 1_024, low: 1_024, medium: 8_192, high: 24_576, xhigh: 24_576, max: 24_576 };

/** The token budget for a reasoning effort, 0 for `none`; undefined for no effort or an unknown one. */
export function effortBudget(effort: string | undefined): number | undefined {
  return effort === undefined ? undefined : EFFORT_BUDGET[effort];
}
