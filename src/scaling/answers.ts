// Final-answer extraction for voting: a pass's text is reduced to the answer it commits to (an
// explicit marker, a boxed value, a choice letter, or the last number), normalised so that "42",
// "42.0" and "$42" vote together. Texts with none of these vote by their whole normalised text.
//
// Answers that differ must not vote together: markers are whole words ("this answers your question"
// is no marker) and closing remarks ("I hope this answer helps") are not read as answers; a marked
// sentence's answer is its last number, or the number after its last "=" ("12 + 30 = 42" is 42);
// "−3" (Unicode minus) is -3; an article is not a choice letter ("a dog" is not choice a); and a
// tuple votes whole ("(3, 4)" is not "(3, 5)").

export type AnswerKind = 'marker' | 'boxed' | 'choice' | 'number' | 'text';

export interface ExtractedAnswer {
  /** The normalised answer that votes. */
  value: string;
  kind: AnswerKind;
}

// "final answer" (its own marker, with or without "is" or a colon), or "answer" followed by "is"/"was"/
// a colon or "=" — "the answer to the question is" too. \b keeps "answers", "answered" out.
const MARKER =
  /\b(?:final\s+answer\b\s*(?:(?:is|was)\b\s*)?[:：=]?|answer\b(?:\s+to\s+[^.!?\n:]{1,80}?)?\s*(?:(?:is|was|would\s+be|should\s+be|will\s+be)\b\s*[:：=]?|[:：=]))\s*([^\n]*)/gi;
/** Words before "answer" that make it a remark about an answer, not one: "this answer is based on …". */
const REMARK_DETERMINER = /\b(?:this|that|these|those|above|previous|another|an|any|your|such)\s+(?:final\s+)?$/i;
/** A closing remark's opening: the marker in it is about the reply, not the question. */
const CLOSING_REMARK = /^\s*(?:i\s+hope|hope|hopefully|let\s+me\s+know|feel\s+free|if\s+you\s+(?:have|need|want|would|'d|are|'re)|i'?d\s+be\s+(?:happy|glad)|i\s+am\s+(?:happy|glad)|i'm\s+(?:happy|glad)|happy\s+to|glad\s+to|please|thanks|thank\s+you|i\s+trust|does\s+this|is\s+there\s+anything)\b/i;
const GSM_MARKER = /####\s*([^\n]+)/g;
/** A number: thousands groups of three, decimals, fractions; a minus sign only where it cannot be a hyphen ("12-5", "COVID-19"). */
const NUMBER = /(?:(?<![\w)\]])-)?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?<![\w.])\.\d+)(?:\/\d+)?/g;
/** A parenthesised or bracketed list of numbers: "(3, 4)", "[1, -2, 5]". */
const TUPLE = /[([]\s*-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?)+\s*[)\]]/g;
/** "x = 3": a variable's value, for answers that give several ("x = 3, y = 4"). */
const ASSIGNMENT = /\b([a-z])\s*=\s*(-?\d+(?:\.\d+)?(?:\/\d+)?)/gi;
/** Where a marked answer's explanation starts: its numbers are not the answer. */
const EXPLANATION = /\s(?:because|since|given\s+that|due\s+to|which|where)\b/i;
/** A choice letter at the start of a marked answer: "(b)", "[B]", "B.", "B" alone, "B because …" — not the article in "a dog". */
const CHOICE_AT_START = /^(?:[([]([a-eA-E])[)\]]|([A-E])(?=[.):,;]|$|\s+(?:because|since|as)\b|\s+[-–—(])|([a-e])$)/;
const CHOICE_ALONE = /(?:^|\n)\s*\(?([A-E])\)\s*$|(?:^|\s)\(([A-E])\)(?=[\s.]*$)/;

/**
 * A reply that opens with yes or no answers with it ("Yes, 17 is prime." is not the number 17) —
 * unless the yes or no is an interjection before an answer that follows in sentences of its own
 * ("Yes! Adding them up, the total is 42.", "No problem. 12 × 3 = 36."): then the rules below read it.
 */
const YES_NO = /^[\s*_`"']*(yes|no)\b(?!\s+(?:problem|worries|doubt)\b)(?![\s*_`"']*!)/i;

export function extractAnswer(text: string): ExtractedAnswer {
  const t = unicodeMinus(text).trim();
  const boxed = lastBoxed(t);
  if (boxed !== undefined) return { value: normaliseAnswer(latexAnswer(boxed)), kind: 'boxed' };
  // A JSON answer (response_format) votes whole: its numbers are fields, not the answer.
  const json = canonicalJson(t);
  if (json !== undefined) return { value: json, kind: 'text' };
  const gsm = lastMatch(GSM_MARKER, t);
  if (gsm !== undefined) {
    const value = reduceMarked(gsm);
    if (value !== '') return { value, kind: 'marker' };
  }
  const marked = lastMarked(t);
  if (marked !== undefined) return { value: marked, kind: 'marker' };
  const choice = CHOICE_ALONE.exec(t);
  if (choice) return { value: (choice[1] ?? choice[2] ?? '').toLowerCase(), kind: 'choice' };
  const yesNo = YES_NO.exec(t);
  if (yesNo) return { value: (yesNo[1] as string).toLowerCase(), kind: 'choice' };
  const number = numberAnswer(t);
  if (number !== undefined) return { value: number, kind: 'number' };
  return { value: normaliseAnswer(t), kind: 'text' };
}

/** The answer after the last marker that is one (not in a closing remark, not about "this answer"), reduced. */
function lastMarked(t: string): string | undefined {
  let found: string | undefined;
  for (const m of t.matchAll(MARKER)) {
    const at = m.index;
    const before = t.slice(sentenceStart(t, at), at);
    if (CLOSING_REMARK.test(before) || REMARK_DETERMINER.test(before)) continue;
    const value = reduceMarked(m[1] ?? '');
    if (value !== '') found = value;
  }
  return found;
}

const WHITESPACE = /\s/;

/** Where the sentence holding `at` starts: after the last newline, or . ! ? followed by a space, before `at`. */
function sentenceStart(t: string, at: number): number {
  for (let i = at - 1; i >= 0; i--) {
    const ch = t[i];
    if (ch === '\n') return i + 1;
    if ((ch === '.' || ch === '!' || ch === '?') && i + 1 < at && WHITESPACE.test(t[i + 1] as string)) return i + 1;
  }
  return 0;
}

/**
 * What follows an answer marker, up to the end of its sentence: a choice letter; a tuple; several
 * variables' values; the number after the last "="; else the last number; else the text.
 */
function reduceMarked(raw: string): string {
  const sentence = (raw.split(/[.!?](?=\s|$)|;/)[0] ?? raw).replace(/[*_`]/g, '').trim();
  const letter = CHOICE_AT_START.exec(sentence);
  if (letter) return (letter[1] ?? letter[2] ?? letter[3] ?? '').toLowerCase();
  const clause = sentence.split(EXPLANATION)[0] ?? sentence;
  const clauseLast = lastNumber(clause);
  const tuple = tupleAt(clause, clauseLast);
  if (tuple !== undefined) return tuple;
  // Asides in parentheses ("42 (6 × 7)") are not the answer.
  const plain = clause.replace(/\([^()]*\)/g, ' ');
  const assignments = [...plain.matchAll(ASSIGNMENT)];
  if (new Set(assignments.map((a) => (a[1] as string).toLowerCase())).size > 1) {
    return assignments.map((a) => `${(a[1] as string).toLowerCase()}=${normaliseNumber(a[2] as string)}`).join(',');
  }
  const eq = plain.lastIndexOf('=');
  if (eq >= 0) {
    const after = plain.slice(eq + 1).match(NUMBER);
    if (after?.[0] !== undefined) return normaliseNumber(after[0]);
  }
  // Without asides the clause's numbers are the plain text's: its last one is already known.
  const last = plain === clause ? clauseLast : lastNumber(plain);
  if (last) return normaliseNumber(last[0]);
  return normaliseAnswer(sentence);
}

/** The text's last number — the whole tuple when that number is in one. */
function numberAnswer(t: string): string | undefined {
  const last = lastNumber(t);
  if (!last) return undefined;
  return tupleAt(t, last) ?? normaliseNumber(last[0]);
}

function lastNumber(t: string): RegExpMatchArray | undefined {
  let last: RegExpMatchArray | undefined;
  for (const m of t.matchAll(NUMBER)) last = m;
  return last;
}

/** "(3, 4)" -> "(3,4)" when `last`, the last number of `t`, lies inside a tuple. */
function tupleAt(t: string, last: RegExpMatchArray | undefined): string | undefined {
  if (!last) return undefined;
  const at = last.index ?? 0;
  for (const m of t.matchAll(TUPLE)) {
    if (m.index <= at && at < m.index + m[0].length) {
      const parts = m[0].slice(1, -1).split(',').map((p) => normaliseNumber(p.trim()));
      return `(${parts.join(',')})`;
    }
  }
  return undefined;
}

/** Lower case, no markup, no surrounding punctuation or articles, single spaces. */
export function normaliseAnswer(s: string): string {
  const n = unicodeMinus(s)
    .toLowerCase()
    .replace(/[*_`$\\]/g, '')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/^(?:the|a|an)\s+/, '')
    .replace(/^[\s"'([{]+|[\s"')\]}.,!?:;]+$/g, '');
  return /^-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$/.test(n) ? normaliseNumber(n) : n;
}

/** "1,000.50" -> "1000.5"; "-0" -> "0"; fractions kept as written. */
export function normaliseNumber(s: string): string {
  const plain = s.replace(/,/g, '');
  if (plain.includes('/')) return plain;
  const v = Number(plain);
  if (!Number.isFinite(v)) return plain;
  return String(v === 0 ? 0 : v);
}

/** U+2212 (and the small and full-width forms) as an ASCII minus. */
function unicodeMinus(s: string): string {
  return s.replace(/[\u2212\uFE63\uFF0D]/g, '-');
}

/** The content of the last `\boxed{…}`, its braces balanced (`\boxed{\frac{1}{2}}` holds `\frac{1}{2}`). */
function lastBoxed(t: string): string | undefined {
  let found: string | undefined;
  let from = 0;
  while (true) {
    const at = t.indexOf('\\boxed{', from);
    if (at < 0) return found;
    const start = at + '\\boxed{'.length;
    let depth = 1;
    let i = start;
    for (; i < t.length && depth > 0; i++) {
      if (t[i] === '{') depth++;
      else if (t[i] === '}') depth--;
    }
    if (depth > 0) return found;
    found = t.slice(start, i - 1);
    from = i;
  }
}

/** LaTeX an answer is written in, as plain text: `\frac{1}{2}` is 1/2, `2^{10}` is 2^10. */
function latexAnswer(s: string): string {
  let out = s;
  for (let i = 0; i < 4; i++) out = out.replace(/\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}/g, '$1/$2');
  return out.replace(/\^\{([^{}]*)\}/g, '^$1').replace(/\\(?:left|right|,|;|!|\s)/g, '').replace(/\\text\{([^{}]*)\}/g, '$1');
}

/** A reply that is one JSON object or array, as canonical JSON (keys sorted); none otherwise. */
function canonicalJson(t: string): string | undefined {
  const first = t[0];
  if ((first !== '{' && first !== '[') || (t[t.length - 1] !== '}' && t[t.length - 1] !== ']')) return undefined;
  try {
    return JSON.stringify(sortKeys(JSON.parse(t) as unknown));
  } catch {
    return undefined;
  }
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]));
}

function lastMatch(re: RegExp, text: string): string | undefined {
  let last: string | undefined;
  for (const m of text.matchAll(re)) last = m[1];
  return last;
}
