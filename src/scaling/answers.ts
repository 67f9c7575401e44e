// Final-answer extraction for voting: a pass's text is reduced to the answer it commits to (an
// explicit marker, a boxed value, a choice letter, or the last number), normalised so that "42",
// "42.0" and "$42" vote together. Texts with none of these vote by their whole normalised text.

export type AnswerKind = 'marker' | 'boxed' | 'choice' | 'number' | 'text';

export interface ExtractedAnswer {
  /** The normalised answer that votes. */
  value: string;
  kind: AnswerKind;
}

const MARKER = /(?:final answer|the answer is|answer is|answer)\s*(?:is)?\s*[:：=]?\s*([^\n]+)/gi;
const BOXED = /\\boxed\{([^{}]*)\}/g;
const GSM_MARKER = /####\s*([^\n]+)/g;
const NUMBER = /-?\d[\d,]*(?:\.\d+)?(?:\/\d+)?/g;
const CHOICE_AT_START = /^\(?([a-e])\)?(?:[\s.,:;)]|$)/i;
const CHOICE_ALONE = /(?:^|\n)\s*\(?([A-E])\)\s*$|(?:^|\s)\(([A-E])\)(?=[\s.]*$)/;

export function extractAnswer(text: string): ExtractedAnswer {
  const t = text.trim();
  const boxed = lastMatch(BOXED, t);
  if (boxed !== undefined) return { value: normaliseAnswer(boxed), kind: 'boxed' };
  const gsm = lastMatch(GSM_MARKER, t);
  if (gsm !== undefined) return { value: reduceMarked(gsm), kind: 'marker' };
  const marked = lastMatch(MARKER, t);
  if (marked !== undefined && marked.trim() !== '') return { value: reduceMarked(marked), kind: 'marker' };
  const choice = CHOICE_ALONE.exec(t);
  if (choice) return { value: (choice[1] ?? choice[2] ?? '').toLowerCase(), kind: 'choice' };
  const numbers = t.match(NUMBER);
  if (numbers && numbers.length > 0) return { value: normaliseNumber(numbers[numbers.length - 1] as string), kind: 'number' };
  return { value: normaliseAnswer(t), kind: 'text' };
}

/** What follows an answer marker, up to the end of its sentence, as a letter, number or text. */
function reduceMarked(raw: string): string {
  const sentence = (raw.split(/(?<=[^\d])\.(?:\s|$)|;/)[0] ?? raw).trim();
  const letter = CHOICE_AT_START.exec(sentence);
  if (letter) return (letter[1] as string).toLowerCase();
  const numbers = sentence.match(NUMBER);
  if (numbers && numbers.length > 0) return normaliseNumber(numbers[0] as string);
  return normaliseAnswer(sentence);
}

/** Lower case, no markup, no surrounding punctuation or articles, single spaces. */
export function normaliseAnswer(s: string): string {
  const n = s
    .toLowerCase()
    .replace(/[*_`$\\]/g, '')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/^(?:the|a|an)\s+/, '')
    .replace(/^[\s"'([{]+|[\s"')\]}.,!?:;]+$/g, '');
  return /^-?\d[\d,]*(?:\.\d+)?$/.test(n) ? normaliseNumber(n) : n;
}

/** "1,000.50" -> "1000.5"; "-0" -> "0"; fractions kept as written. */
export function normaliseNumber(s: string): string {
  const plain = s.replace(/,/g, '');
  if (plain.includes('/')) return plain;
  const v = Number(plain);
  if (!Number.isFinite(v)) return plain;
  return String(v === 0 ? 0 : v);
}

function lastMatch(re: RegExp, text: string): string | undefined {
  let last: string | undefined;
  for (const m of text.matchAll(re)) last = m[1];
  return last;
}
