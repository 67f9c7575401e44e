// For upstreams that answer one choice per call (Cohere, Ollama), `n > 1` becomes n parallel calls
// whose choices are renumbered and whose usage is summed, so callers see one OpenAI-shaped result.
import { addUsage, emptyUsage, type ChatRequest, type ChatResult } from '../canonical/chat.js';

export async function chatWithChoices(
  req: ChatRequest,
  callOne: (req: ChatRequest) => Promise<ChatResult>,
): Promise<ChatResult> {
  const n = req.n ?? 1;
  if (n <= 1) return callOne(req);
  const results = await Promise.all(Array.from({ length: n }, (_, i) => callOne(single(req, i))));
  const head = results[0] as ChatResult;
  return merged({ ...head, choices: head.choices.slice(0, 1) }, results.slice(1));
}

/**
 * An answer with fewer choices than the request's `n` (a server that ignores `n`: Ollama's /v1, LM
 * Studio), completed by single-choice calls for the missing ones; an answer with all of them, or
 * none, as it came.
 */
export async function withMissingChoices(
  req: ChatRequest,
  answer: ChatResult,
  callOne: (req: ChatRequest) => Promise<ChatResult>,
): Promise<ChatResult> {
  const n = req.n ?? 1;
  const have = answer.choices.length;
  if (have >= n || have === 0) return answer;
  const more = await Promise.all(Array.from({ length: n - have }, (_, i) => callOne(single(req, have + i))));
  return merged(answer, more);
}

/**
 * The request for the i-th single choice. A seeded request gets seed, seed + 1, …: the same seed on
 * every call would make every choice the same answer, and the set of choices is still reproducible.
 */
function single(req: ChatRequest, i: number): ChatRequest {
  return { ...req, n: 1, ...(req.seed !== undefined ? { seed: req.seed + i } : {}) };
}

/** `first`'s choices, then the first choice of each of `more`, renumbered; usage summed. */
function merged(first: ChatResult, more: readonly ChatResult[]): ChatResult {
  let usage = emptyUsage();
  for (const r of [first, ...more]) usage = addUsage(usage, r.usage);
  // Every call saw the same prompt; the prompt is billed once per call, and that is what usage reports.
  return {
    ...first,
    choices: [...first.choices, ...more.flatMap((r) => r.choices.slice(0, 1))].map((c, index) => ({ ...c, index })),
    usage,
  };
}
