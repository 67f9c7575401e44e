// OpenAI's reasoning models — the o-series (o1, o3, o4-mini, …) and the gpt-5 family — accept only
// the default temperature (1) and answer any other value with a 400 that is not retried. The scaling
// stage must then neither give its passes `pass_temperature` nor its judge temperature 0. The OpenAI
// adapter meets the same family's refusal of `max_tokens` by host (`max_tokens_field` in
// src/providers/openai.ts: `max_completion_tokens` for api.openai.com) and exports no rule by model
// name, so the name rule lives here; keep the two in mind together.

/** Whether an upstream model name is one that refuses any temperature but the default. */
export function fixedTemperatureModel(model: string): boolean {
  // "openai/o3-mini" (a router's prefix) names the same model as "o3-mini".
  const name = (model.split('/').pop() ?? model).toLowerCase();
  return /^o\d+(?:$|-)/.test(name) || /^gpt-5(?:$|[-.])/.test(name);
}
