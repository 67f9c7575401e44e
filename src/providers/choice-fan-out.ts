// For upstreams that answer one choice per call (Cohere, Ollama), `n > 1` becomes n parallel calls
// whose choices are renumbered and whose usage is summed, so callers see one OpenAI-shaped result.
// When one call fails the others are cancelled, and the error carries what the calls that did
// answer used (`spentUsage`): the upstream billed it, so the attempt is charged it (routing/attempt.ts).
import { addUsage, emptyUsage, type ChatRequest, type ChatResult, type Usage } from '../canonical/chat.js';
import { Cancellation, type CancelSignal } from './cancel.js';

/** One single-choice call, ended by `signal` (the request's, or a failed sibling's). */
export type CallOne = (req: ChatRequest, signal: CancelSignal) => Promise<ChatResult>;

/** What the calls of a failed fan-out that did answer used, on the error that failed it. */
export function spentUsageOf(err: unknown): Usage | undefined {
  return typeof err === 'object' && err !== null ? (err as { spentUsage?: Usage }).spentUsage : undefined;
}

export async function chatWithChoices(req: ChatRequest, signal: CancelSignal, callOne: CallOne): Promise<ChatResult> {
  const n = req.n ?? 1;
  if (n <= 1) return callOne(req, signal);
  const results = await allOrSpent(n, signal, (i, s) => callOne(single(req, i), s));
  const head = results[0] as ChatResult;
  return merged({ ...head, choices: head.choices.slice(0, 1) }, results.slice(1));
}

/**
 * An answer with fewer choices than the request's `n` (a server that ignores `n`: Ollama's /v1, LM
 * Studio), completed by single-choice calls for the missing ones; an answer with all of them, or
 * none, as it came.
 */
export async function withMissingChoices(req: ChatRequest, answer: ChatResult, signal: CancelSignal, callOne: CallOne): Promise<ChatResult> {
  const n = req.n ?? 1;
  const have = answer.choices.length;
  if (have >= n || have === 0) return answer;
  const more = await allOrSpent(n - have, signal, (i, s) => callOne(single(req, have + i), s), answer.usage);
  return merged(answer, more);
}

/**
 * `count` calls in parallel, every result; or, on the first failure, that error once the others
 * were cancelled and settled, with the usage of those that answered (and `spent` before them).
 */
async function allOrSpent(count: number, signal: CancelSignal, call: (i: number, signal: CancelSignal) => Promise<ChatResult>, spent?: Usage): Promise<ChatResult[]> {
  const calls = new Cancellation();
  const unlink = calls.follow(signal);
  let failure: { err: unknown } | undefined;
  const settled = await Promise.allSettled(
    Array.from({ length: count }, (_, i) =>
      call(i, calls).catch((err: unknown) => {
        failure ??= { err };
        calls.abort(err);
        throw err;
      }),
    ),
  );
  unlink();
  if (!failure) return settled.map((r) => (r as PromiseFulfilledResult<ChatResult>).value);
  let used = spent;
  for (const r of settled) if (r.status === 'fulfilled') used = addUsage(used ?? emptyUsage(), r.value.usage);
  const { err } = failure;
  if (used && typeof err === 'object' && err !== null) (err as { spentUsage?: Usage }).spentUsage = addUsage(spentUsageOf(err) ?? emptyUsage(), used);
  throw err;
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
