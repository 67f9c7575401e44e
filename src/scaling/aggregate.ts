// Picks one answer out of several passes: a majority vote over extracted final answers
// (self_consistency and adaptive), a judge's scores (best_of_n), or simply the first pass. The
// winner's full text is what the client gets; the vote or the scores go into the response metadata.
import { contentText, type ChatMessage, type ChatRequest, type ChatResult } from '../canonical/chat.js';
import type { ResponseFacts } from '../gateway/context.js';
import { countPromptTokens } from '../providers/tokens.js';
import { extractAnswer } from './answers.js';
import type { Aggregation } from './config.js';
import { tally } from './vote.js';

export interface Candidate {
  /** Order in which the pass finished (0-based). */
  pass: number;
  /** A one-choice result (choice index 0). */
  result: ChatResult;
  text: string;
  /** Normalised final answer used for voting. */
  answer: string;
  facts?: ResponseFacts;
}

export interface Selection {
  winner: Candidate;
  /** Answer -> votes (voting strategies). */
  votes?: Record<string, number>;
  /** Judge scores by pass (best_of_n). */
  scores?: (number | null)[];
  /** Set when best_of_n could not use the judge and voted instead. */
  judgeFallback?: string;
}

export function toCandidate(result: ChatResult, choiceIndex: number, pass: number, facts?: ResponseFacts): Candidate {
  const choice = result.choices[choiceIndex] ?? result.choices[0];
  const text = choice?.message.content ?? (choice?.message.tool_calls ? JSON.stringify(choice.message.tool_calls) : '');
  return {
    pass,
    result: { ...result, choices: choice ? [{ ...choice, index: 0 }] : [] },
    text,
    answer: extractAnswer(text).value,
    ...(facts ? { facts } : {}),
  };
}

/**
 * A pass that gives no usable answer: no text (a refusal, a content filter: null content becomes ''),
 * or cut off — at the token limit (an intermediate answer) or by a content filter.
 */
export function isIncomplete(c: Candidate): boolean {
  const reason = c.result.choices[0]?.finish_reason;
  return c.text.trim() === '' || reason === 'length' || reason === 'content_filter';
}

/**
 * The candidates that vote or are judged: the complete ones, or all of them when none is — then the
 * vote still picks one, as before. Otherwise two empty refusals would outvote one real answer (and
 * '' wins a tie when it came first), and a truncated pass would vote with a half-worked answer.
 */
export function voters(candidates: readonly Candidate[]): Candidate[] {
  const complete = candidates.filter((c) => !isIncomplete(c));
  return complete.length > 0 ? complete : [...candidates];
}

/** Majority vote over the voters; ties go to the answer that appeared first. */
export function majority(candidates: readonly Candidate[]): Selection {
  const pool = voters(candidates);
  const t = tally(pool.map((c) => c.answer));
  const winner = pool.find((c) => c.answer === t.leader) ?? (pool[0] as Candidate);
  return { winner, votes: Object.fromEntries(t.counts) };
}

export function select(kind: Exclude<Aggregation, 'best_of_n'>, candidates: readonly Candidate[]): Selection {
  if (candidates.length === 0) throw new Error('no candidates to select from');
  if (kind === 'first') return { winner: candidates[0] as Candidate };
  return majority(candidates);
}

const JUDGE_INSTRUCTIONS =
  'You are a strict grader. Score each candidate answer to the question from 0 to 10 for correctness and completeness. ' +
  'Reply with exactly one line per candidate in the form "Candidate <number>: <score>" and nothing else.';

/** The judge's answer budget: a short score line per candidate. */
export function judgeMaxTokens(candidates: number): number {
  return 16 * candidates + 32;
}

/**
 * The judge's request: the question and every candidate, numbered from 1. At temperature 0, unless
 * the judge model accepts only its default (`fixedTemperature`: OpenAI's reasoning models).
 */
export function judgeRequest(model: string, question: ChatMessage[], candidates: readonly Candidate[], opts: { fixedTemperature?: boolean } = {}): ChatRequest {
  const asked = question.filter((m) => m.role !== 'system').map((m) => `${m.role}: ${contentText(m.content)}`).join('\n');
  const listed = candidates.map((c, i) => `Candidate ${i + 1}:\n${c.text}`).join('\n\n');
  return {
    model,
    ...(opts.fixedTemperature ? {} : { temperature: 0 }),
    max_tokens: judgeMaxTokens(candidates.length),
    messages: [
      { role: 'system', content: JUDGE_INSTRUCTIONS },
      { role: 'user', content: `Question:\n${asked}\n\n${listed}` },
    ],
  };
}

/** The judge's prompt without the question or any candidate: its instructions, labels and framing. */
export const JUDGE_FRAME_TOKENS = countPromptTokens(judgeRequest('', [], []).messages);

/** "Candidate 2: 7" lines -> scores by candidate (null where the judge gave none). */
export function parseJudgeScores(text: string, count: number): (number | null)[] {
  const scores: (number | null)[] = new Array<number | null>(count).fill(null);
  for (const m of text.matchAll(/candidate\s*#?\s*(\d+)\s*[:=\-–]\s*(\d+(?:\.\d+)?)/gi)) {
    const i = Number(m[1]) - 1;
    if (i >= 0 && i < count) scores[i] = Number(m[2]);
  }
  return scores;
}

/** Highest judged score wins (ties: earliest pass); falls back to a vote when no score parsed. */
export function selectByScores(candidates: readonly Candidate[], scores: (number | null)[]): Selection {
  let best = -1;
  let bestScore = -Infinity;
  for (const [i, s] of scores.entries()) {
    if (s !== null && s > bestScore) {
      best = i;
      bestScore = s;
    }
  }
  if (best < 0) return { ...majority(candidates), scores, judgeFallback: 'the judge gave no parsable scores' };
  return { winner: candidates[best] as Candidate, scores };
}
