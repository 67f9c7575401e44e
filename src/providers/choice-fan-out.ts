// For upstreams that answer one choice per call (Cohere, Ollama), `n > 1` becomes n parallel calls
// whose choices are renumbered and whose usage is summed, so callers see one OpenAI-shaped result.
import { addUsage, emptyUsage, type ChatRequest, type ChatResult } from '../canonical/chat.js';

export async function chatWithChoices(
  req: ChatRequest,
  callOne: (req: ChatRequest) => Promise<ChatResult>,
): Promise<ChatResult> {
  const n = req.n ?? 1;
  if (n <= 1) return callOne(req);
  // A seeded request gets seed, seed + 1, …: the same seed on every call would make every choice the
  // same answer, and the set of choices is still reproducible.
  const results = await Promise.all(Array.from({ length: n }, (_, i) => callOne({ ...req, n: 1, ...(req.seed !== undefined ? { seed: req.seed + i } : {}) })));
  const first = results[0] as ChatResult;
  let usage = emptyUsage();
  for (const r of results) usage = addUsage(usage, r.usage);
  // Every call saw the same prompt; the prompt is billed n times, and that is what usage reports.
  return {
    ...first,
    choices: results.flatMap((r, index) => r.choices.slice(0, 1).map((c) => ({ ...c, index }))),
    usage,
  };
}
