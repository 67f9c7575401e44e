// False-hit guards for the semantic cache. Embeddings blur exactly the details that change an
// answer: numbers, names, quoted strings, negation, units, opposites and language. Before a semantic
// hit is served, these features are extracted from both prompts and must agree; the rule is
// documented in docs/caching.md ("What a semantic hit must agree on").

export interface PromptFeatures {
  /** Numbers in order, normalised ("1,000" -> "1000", "two" -> "2", "3rd" -> "#3", "-5" keeps its sign). */
  numbers: string[];
  /**
   * Arithmetic operators and comparison signs between operands, in order, canonical ("×" -> "*",
   * "plus" -> "+", "<=" and "≤" -> "<="). Absent on entries stored before this feature existed.
   */
  operators?: string[];
  /** Quoted strings, lower-cased, sorted. */
  quoted: string[];
  /** Names and identifiers (capitalised words, ALLCAPS, words with digits or inner punctuation), sorted. */
  entities: string[];
  /** How many negation markers (not, no, never, n't, without…). */
  negations: number;
  /** Units and currencies in order, canonical ("kilometres" -> "km", "$" -> "usd"). */
  units: string[];
  /** Words from the contrast lexicon (largest/smallest, before/after, buy/sell…), canonical, sorted. */
  polar: string[];
  /** Script and, for Latin script, a guessed language ("latin:en", "cyrillic", "han"…). */
  language: string;
  /** Content words (stop and request words removed), lightly stemmed, synonyms folded, sorted. */
  content: string[];
}

// Words that frame a request rather than say what it is about; paraphrases add and drop these freely.
const FRAME_WORDS = new Set(
  ('a an the of to in on at for with by from about into onto over than then that this these those there here ' +
    'and or but if so as is are was were be been being am do does did done doing can could would should will shall ' +
    'may might must i me my mine you your yours we us our it its they them their he him his she her what what\'s how ' +
    'why when where which who whom whose whats hows please tell give show explain describe list help know want need ' +
    'like some any way ways best good steps step tips tip possible really actually exactly just also very much many ' +
    "get let make made go going try able kind sort type thing things someone something anyone anything one's one " +
    "i'm i'd i'll i've you're it's that's there's can't don't doesn't isn't aren't won't didn't " +
    'simple simply quick quickly short briefly brief detail detailed example examples use using used mean means ' +
    'meaning should proper properly correct correctly right actual main basic basics overview summary summarize summarise ' +
    'write compose create generate provide suggest recommend find show tell teach learn understand calculate compute ' +
    'work works working happen happens difference differ different versus vs ' +
    'between same similar other another each every all both either more most less least new old time times ' +
    'done stand short called call name named info information question answer anybody somebody ever ' +
    'have has had having number ' +
    // Politeness and filler: they change how a request sounds, not what it asks.
    'hi hello hey thanks thank kindly pls plz located currently usually typically generally basically roughly approximately').split(' '),
);

// Common spelling and word-choice variants that do not change a request.
const SYNONYMS: Record<string, string> = {
  colour: 'color', colours: 'color', autumn: 'fall', centre: 'center', favourite: 'favorite', organise: 'organize',
  modify: 'change', update: 'change', alter: 'change', reset: 'change', edit: 'change', swap: 'change',
  delete: 'remove', erase: 'remove', erasing: 'remove', purchase: 'buy', begin: 'start', commence: 'start',
  finish: 'end', halt: 'stop', automobile: 'car', cars: 'car', kids: 'child', kid: 'child', children: 'child',
  people: 'person', persons: 'person', username: 'user', login: 'account', signin: 'account', faster: 'fast',
  quick: 'fast', speed: 'fast', speedy: 'fast', rapid: 'fast', big: 'large', huge: 'large', tiny: 'small',
  little: 'small', fix: 'repair', repair: 'repair', mend: 'repair', leaky: 'leak', leaking: 'leak',
  safely: 'safe', safety: 'safe', purpose: 'function', role: 'function', turn: 'enable', activate: 'enable',
  switch: 'enable', reach: 'contact', phone: 'contact', email: 'email', mail: 'email', distinguish: 'differ',
};

/** A light suffix stripper: enough to fold plurals and verb forms (vaccines/vaccine, boiling/boil). */
function stem(word: string): string {
  let w = word.replace(/'s$/, '');
  if (w.length > 4) {
    if (w.endsWith('ies')) w = `${w.slice(0, -3)}y`;
    else if (/(ches|shes|xes|sses|zes)$/.test(w)) w = w.slice(0, -2);
    else if (w.endsWith('s') && !w.endsWith('ss') && !w.endsWith('us') && !w.endsWith('is')) w = w.slice(0, -1);
  }
  if (w.length > 5) {
    if (w.endsWith('ing')) w = w.slice(0, -3);
    else if (w.endsWith('ed')) w = w.slice(0, -2);
    else if (w.endsWith('ly')) w = w.slice(0, -2);
  }
  return w;
}

// A stem matches a frame word as it is or without its final e ("calculat" -> calculate).
const FRAME_STEMS = new Set([...FRAME_WORDS].flatMap((w) => (w.endsWith('e') ? [w, w.slice(0, -1)] : [w])));

function contentWord(lower: string): string | undefined {
  if (FRAME_WORDS.has(lower) || !/\p{L}/u.test(lower)) return undefined;
  const canon = SYNONYMS[lower] ?? POLAR[lower] ?? lower;
  const stemmed = stem(canon);
  // Inflected frame words too: "explained" -> explain, "calculated" -> calculat(e).
  if (FRAME_STEMS.has(stemmed)) return undefined;
  return SYNONYMS[stemmed] ?? stemmed;
}

export type GuardResult = { ok: true } | { ok: false; reason: keyof PromptFeatures };

const NUMBER_WORDS: Record<string, number> = {
  zero: 0, one: 1, two: 2, three: 3, four: 4, five: 5, six: 6, seven: 7, eight: 8, nine: 9, ten: 10,
  eleven: 11, twelve: 12, thirteen: 13, fourteen: 14, fifteen: 15, sixteen: 16, seventeen: 17,
  eighteen: 18, nineteen: 19, twenty: 20, thirty: 30, forty: 40, fifty: 50, sixty: 60, seventy: 70,
  eighty: 80, ninety: 90, hundred: 100, thousand: 1000, million: 1e6, billion: 1e9, trillion: 1e12,
  dozen: 12, half: 0.5, twice: 2, double: 2, triple: 3, once: 1,
};
const ORDINAL_WORDS: Record<string, number> = {
  first: 1, second: 2, third: 3, fourth: 4, fifth: 5, sixth: 6, seventh: 7, eighth: 8, ninth: 9,
  tenth: 10, eleventh: 11, twelfth: 12, twentieth: 20, hundredth: 100,
};

const NEGATIONS = new Set([
  'not', 'no', 'never', "n't", 'without', 'none', 'nothing', 'nobody', 'nowhere', 'neither', 'nor',
  'cannot', 'non', 'ne', 'pas', 'nicht', 'kein', 'keine', 'nunca', 'jamais', 'nie', 'niet',
]);

// Canonical unit per spelling; order matters ("5 km to miles" is not "5 miles to km").
const UNITS: Record<string, string> = {};
for (const [canon, spellings] of Object.entries({
  km: 'km kilometer kilometers kilometre kilometres', mile: 'mi mile miles', m: 'meter meters metre metres',
  cm: 'cm centimeter centimeters centimetre centimetres', mm: 'mm millimeter millimeters millimetre millimetres',
  ft: 'ft foot feet', inch: 'inch inches', yard: 'yd yard yards', kg: 'kg kilo kilos kilogram kilograms',
  g: 'gram grams', mg: 'mg milligram milligrams', lb: 'lb lbs pound pounds', oz: 'oz ounce ounces',
  ton: 'ton tons tonne tonnes', l: 'liter liters litre litres', ml: 'ml milliliter milliliters millilitre millilitres',
  gallon: 'gal gallon gallons', cup: 'cup cups', c: 'celsius centigrade °c', f: 'fahrenheit °f', k: 'kelvin',
  second: 'sec secs seconds', minute: 'min mins minute minutes', hour: 'hr hrs hour hours', day: 'day days',
  week: 'week weeks', month: 'month months', year: 'yr yrs year years', mph: 'mph', kph: 'kph kmh',
  byte: 'byte bytes', kb: 'kb kib kilobyte kilobytes', mb: 'mb mib megabyte megabytes', gb: 'gb gib gigabyte gigabytes',
  tb: 'tb tib terabyte terabytes', usd: 'usd dollar dollars $', eur: 'eur euro euros €', gbp: 'gbp £ sterling',
  jpy: 'jpy yen ¥', percent: '% percent percentage', degree: 'degree degrees °', calorie: 'calorie calories kcal',
  watt: 'watt watts w kw kilowatt kilowatts', volt: 'volt volts', acre: 'acre acres', hectare: 'hectare hectares ha',
})) {
  for (const s of spellings.split(' ')) UNITS[s] = canon;
}

// Contrast lexicon: words whose swap for a near neighbour flips the answer. Synonyms share a key.
const POLAR: Record<string, string> = {};
for (const [canon, spellings] of Object.entries({
  max: 'largest biggest greatest maximum max highest tallest most longest heaviest deepest',
  min: 'smallest tiniest least minimum min lowest shortest fewest lightest shallowest',
  fast: 'fastest quickest faster quicker', slow: 'slowest slower', best: 'best better', worst: 'worst worse',
  first: 'earliest oldest', last: 'latest newest youngest', before: 'before prior earlier', after: 'after later',
  above: 'above over', below: 'below under beneath', more: 'more greater larger bigger higher', less: 'less fewer smaller lower',
  up: 'increase raise grow upgrade', down: 'decrease reduce shrink downgrade', hot: 'hot warm hotter warmer',
  cold: 'cold cool colder cooler coldest coolest', north: 'north northern', south: 'south southern', east: 'east eastern',
  west: 'west western', left: 'left', right: 'right', buy: 'buy purchase', sell: 'sell', add: 'add insert append',
  remove: 'remove delete drop', enable: 'enable activate', disable: 'disable deactivate', open: 'open', close: 'close',
  import: 'import', export: 'export', encrypt: 'encrypt encode', decrypt: 'decrypt decode',
  compress: 'compress zip', decompress: 'decompress unzip', pro: 'advantages pros benefits', con: 'disadvantages cons drawbacks risks',
  cheap: 'cheap cheapest cheaper', expensive: 'expensive priciest costly', true: 'true', false: 'false',
  start: 'start begin', end: 'stop end finish', input: 'input', output: 'output', upload: 'upload', download: 'download',
  push: 'push', pull: 'pull', win: 'win', lose: 'lose', yesterday: 'yesterday', today: 'today', tomorrow: 'tomorrow',
  past: 'past', future: 'future', male: 'male men man', female: 'female women woman', positive: 'positive', negative: 'negative',
  legal: 'legal', illegal: 'illegal', safe: 'safe', unsafe: 'unsafe dangerous', healthy: 'healthy', unhealthy: 'unhealthy',
  monday: 'monday', tuesday: 'tuesday', wednesday: 'wednesday', thursday: 'thursday', friday: 'friday', saturday: 'saturday',
  sunday: 'sunday', january: 'january', february: 'february', march: 'march', april: 'april', june: 'june', july: 'july',
  august: 'august', september: 'september', october: 'october', november: 'november', december: 'december',
  spring: 'spring', summer: 'summer', autumn: 'autumn fall', winter: 'winter', morning: 'morning', evening: 'evening night',
  cat: 'cat cats', dog: 'dog dogs', mother: 'mother mom', father: 'father dad', brother: 'brother', sister: 'sister',
  synchronous: 'synchronous sync', asynchronous: 'asynchronous async', client: 'client', server: 'server',
  frontend: 'frontend', backend: 'backend', read: 'read', write: 'write', send: 'send', receive: 'receive',
  import_: 'importing', export_: 'exporting', inner: 'inner', outer: 'outer', union: 'union', intersection: 'intersection',
  ascending: 'ascending', descending: 'descending', horizontal: 'horizontal horizontally', vertical: 'vertical vertically',
})) {
  for (const s of spellings.split(' ')) POLAR[s] = canon;
}

// Capitalised words that open sentences without naming anything.
const STARTERS = new Set(
  ('what how who why when where which whose whom can could would should will shall is are was were do does did ' +
    'please tell explain give write list describe show find i the a an in on at for to of my me we you it is ' +
    "if so and but or why's what's how's who's where's when's help summarize summarise translate define name " +
    'compare convert calculate compute create make generate suggest recommend provide let any some there this that ' +
    'these those have has had am be been being may might must need its your our their his her they he she hi hello hey')
    .split(' '),
);

const LANG_STOPWORDS: Record<string, string[]> = {
  en: 'the is are what how of and to in a you it for with do does can i my on this that'.split(' '),
  fr: 'le la les est sont que quoi comment de des et un une en pour avec je mon ma ce qui quel quelle'.split(' '),
  es: 'el la los las es son que qué cómo de del y un una en para con yo mi por cual cuál'.split(' '),
  de: 'der die das ist sind was wie und ein eine zu mit ich mein für nicht von den welche welcher'.split(' '),
  it: 'il lo la gli le è sono che cosa come di e un una per con io mio quale'.split(' '),
  pt: 'o a os as é são que como de do da e um uma em para com eu meu qual'.split(' '),
  nl: 'de het is zijn wat hoe van en een te met ik mijn voor welke'.split(' '),
};
const LANG_INDEX = new Map<string, string[]>();
for (const [lang, words] of Object.entries(LANG_STOPWORDS)) {
  for (const w of words) LANG_INDEX.set(w, [...(LANG_INDEX.get(w) ?? []), lang]);
}

const QUOTED = /"([^"]+)"|“([^”]+)”|`([^`]+)`|«([^»]+)»|(?:^|[\s(])'([^']+)'(?=[\s).,?!:;]|$)/g;
const WORD = /\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|[\p{L}\p{M}\p{N}][\p{L}\p{M}\p{N}_'’.\-/+#]*[\p{L}\p{M}\p{N}+#]|[\p{L}\p{M}\p{N}]|[$€£¥%°]/gu;
const NUMERIC = /^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$/;

// The per-word patterns, built once: a regex literal is a new RegExp object each time it is evaluated.
const CURLY_APOSTROPHE = /’/g;
const ABBREVIATION = /^(?:\p{Lu}\.)+$/u;
const HAS_DIGIT = /\d/;
const STARTS_UPPER = /^\p{Lu}/u;
const CODE_PUNCT = /[_./#+-]/;
const CAMEL = /\p{Ll}\p{Lu}/u;
const ALL_CAPS = /^[\p{Lu}\p{N}]+$/u;
const FROM_APOSTROPHE = /'.*$/;
const SENTENCE_GAP = /[\s"'“‘([*_-]/;
const SENTENCE_END = /[.!?:\n]/;
const ORDINAL = /^(\d+)(st|nd|rd|th)$/i;
const WITH_UNIT = /^(\d+(?:[.,]\d+)?)([a-z°%]+)$/i;
const DIGIT_RUNS = /\d+(?:\.\d+)?/g;
const HAS_LETTER = /\p{L}/u;
const THOUSANDS = /,/g;

function normaliseNumber(s: string): string {
  const n = Number(s.replace(THOUSANDS, ''));
  return Number.isFinite(n) ? String(n) : s;
}

/** Script tests, in order; built once (a regex literal inside the loop made a RegExp per character). */
const SCRIPTS: readonly (readonly [RegExp, string])[] = [
  [/\p{Script=Latin}/u, 'latin'],
  [/\p{Script=Cyrillic}/u, 'cyrillic'],
  [/\p{Script=Han}/u, 'han'],
  [/\p{Script=Hiragana}|\p{Script=Katakana}/u, 'kana'],
  [/\p{Script=Hangul}/u, 'hangul'],
  [/\p{Script=Arabic}/u, 'arabic'],
  [/\p{Script=Greek}/u, 'greek'],
  [/\p{Script=Hebrew}/u, 'hebrew'],
  [/\p{Script=Devanagari}/u, 'devanagari'],
  [/\p{Script=Thai}/u, 'thai'],
];

function scriptOf(text: string): string {
  const counts: Record<string, number> = {};
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    let s: string | undefined;
    if (code < 0x80) {
      // ASCII: only its letters belong to a script (Latin).
      if ((code >= 65 && code <= 90) || (code >= 97 && code <= 122)) s = 'latin';
    } else {
      const cp = text.codePointAt(i) as number;
      if (cp > 0xffff) i++;
      const ch = String.fromCodePoint(cp);
      for (const [re, name] of SCRIPTS) {
        if (re.test(ch)) {
          s = name;
          break;
        }
      }
    }
    if (s) counts[s] = (counts[s] ?? 0) + 1;
  }
  // Japanese mixes kana and Han: any kana makes it Japanese.
  if (counts.kana) return 'kana';
  let best = 'none';
  let bestN = 0;
  for (const [s, n] of Object.entries(counts)) if (n > bestN) [best, bestN] = [s, n];
  return best;
}

function guessLatinLanguage(words: string[]): string {
  const score: Record<string, number> = {};
  for (const w of words) for (const lang of LANG_INDEX.get(w) ?? []) score[lang] = (score[lang] ?? 0) + 1;
  let best = 'und';
  let bestN = 0;
  for (const [lang, n] of Object.entries(score)) {
    if (n > bestN) [best, bestN] = [lang, n];
    else if (n === bestN) best = 'und';
  }
  return best;
}

/** Whether the word at `at` opens a sentence: nothing but quotes or brackets since . ! ? : or a newline. */
function opensSentence(text: string, at: number): boolean {
  for (let i = at - 1; i >= 0; i--) {
    const ch = text[i] as string;
    if (ch !== '\n' && SENTENCE_GAP.test(ch)) continue;
    return SENTENCE_END.test(ch);
  }
  return true;
}

// Operators and signs. A binary operator counts only between two operands (a number, a number word,
// a one-letter variable, a bracket), so hyphens in words (gpt-4, state-of-the-art), dashes in prose
// ("Python - sorting") and arrows (->, =>) are not operators. A minus directly before a number, where
// no operand precedes it, is the number's sign ("What is -5 + 3?").
const OPERATOR_SYMBOLS: Record<string, string> = {
  '+': '+', '-': '-', '−': '-', '–': '-', '*': '*', '×': '*', '·': '*', '/': '/', '÷': '/', '^': '^', '**': '^',
  '<': '<', '>': '>', '<=': '<=', '>=': '>=', '≤': '<=', '≥': '>=', '=': '=', '==': '=', '!=': '!=', '≠': '!=',
  '<>': '!=',
};
// Word operators count between two number operands only ("5 plus 3", not "plus size"); `by` and
// `to the power of` are read as part of the operator.
const OPERATOR_WORDS: Record<string, string> = {
  plus: '+', minus: '-', times: '*', x: '*', multiplied: '*', divided: '/', mod: '%', modulo: '%', equals: '=', equal: '=',
  power: '^', raised: '^',
};
const MATH_TOKEN = /\d+(?:[.,]\d+)*|[\p{L}\p{M}]+|\*\*|<=|>=|==|!=|<>|[-+−–*×·/÷^<>=≤≥≠]|[()[\]]|\S/gu;
const MINUS = new Set(['-', '−', '–']);
// Whether a text may hold an operator at all: one of the symbols, a bracket, or an operator word as a
// whole letter run (as MATH_TOKEN cuts it). Most prompts have none and skip the token scan.
const MAY_HAVE_OPERATOR = new RegExp(
  `[-+−–*×·/÷^<>=≤≥≠()[\\]]|(?<![\\p{L}\\p{M}])(?:${Object.keys(OPERATOR_WORDS).join('|')})(?![\\p{L}\\p{M}])`,
  'iu',
);
const DIGIT_START = /^\d/;
const WORD_START = /^[\p{L}\p{M}]/u;
const OPERATOR_FILLER = new Set(['by', 'to', 'the', 'of']);

interface MathToken {
  text: string;
  start: number;
  end: number;
}

function isNumberToken(t: MathToken | undefined): boolean {
  if (!t) return false;
  return DIGIT_START.test(t.text) || t.text.toLowerCase() in NUMBER_WORDS;
}

/** Operand on the left of an operator: a number, a one-letter variable or a closing bracket. */
function leftOperand(t: MathToken | undefined): boolean {
  if (!t) return false;
  return isNumberToken(t) || t.text === ')' || t.text === ']' || (t.text.length === 1 && WORD_START.test(t.text));
}

/** Operand on the right: as on the left, an opening bracket, or a signed number. */
function rightOperand(tokens: MathToken[], i: number): boolean {
  const t = tokens[i];
  if (!t) return false;
  if (isNumberToken(t) || t.text === '(' || t.text === '[' || (t.text.length === 1 && WORD_START.test(t.text))) return true;
  return MINUS.has(t.text) && tokens[i + 1]?.start === t.end && DIGIT_START.test(tokens[i + 1]?.text ?? '');
}

/**
 * The operators of a text in order, the start offsets of numbers that carry a minus sign, and of
 * words read as operators. A minus is a sign when it touches the number and nothing that could be an
 * operand precedes it.
 */
function scanOperators(text: string): { operators: string[]; negative: Set<number>; operatorWords: Set<number> } {
  if (!MAY_HAVE_OPERATOR.test(text)) return { operators: [], negative: new Set(), operatorWords: new Set() };
  const tokens: MathToken[] = [];
  for (const m of text.matchAll(MATH_TOKEN)) tokens.push({ text: m[0], start: m.index, end: m.index + m[0].length });
  const operators: string[] = [];
  const negative = new Set<number>();
  const operatorWords = new Set<number>();
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] as MathToken;
    const prev = tokens[i - 1];
    const symbol = OPERATOR_SYMBOLS[t.text];
    if (symbol) {
      const next = tokens[i + 1];
      const touchesNext = next !== undefined && next.start === t.end && DIGIT_START.test(next.text);
      // A sign: "-5", "(-5", "3 * -5", "is -5"; but not "10 -5", "2-5" (binary) or "gpt-4" (a word).
      const touchesWord = prev !== undefined && prev.end === t.start && WORD_START.test(prev.text);
      if ((symbol === '-' || symbol === '+') && touchesNext && !touchesWord && !leftOperand(prev)) {
        if (symbol === '-') negative.add(next.start);
        continue;
      }
      if (touchesWord && symbol === '-') continue;
      if (leftOperand(prev) && rightOperand(tokens, i + 1)) operators.push(symbol);
      continue;
    }
    if (t.text === '(' || t.text === '[') {
      // Brackets group: "(2+3)*4" is not "2+(3*4)".
      if (rightOperand(tokens, i + 1)) operators.push('(');
      continue;
    }
    if (t.text === ')' || t.text === ']') {
      if (leftOperand(prev)) operators.push(')');
      continue;
    }
    const word = OPERATOR_WORDS[t.text.toLowerCase()];
    if (!word) continue;
    let before = i - 1;
    while (tokens[before] && OPERATOR_FILLER.has((tokens[before] as MathToken).text.toLowerCase())) before--;
    let after = i + 1;
    while (tokens[after] && OPERATOR_FILLER.has((tokens[after] as MathToken).text.toLowerCase())) after++;
    const signedAfter = MINUS.has(tokens[after]?.text ?? '') && DIGIT_START.test(tokens[after + 1]?.text ?? '');
    if (isNumberToken(tokens[before]) && (isNumberToken(tokens[after]) || signedAfter)) {
      operators.push(word);
      operatorWords.add(t.start);
    }
  }
  return { operators, negative, operatorWords };
}

export function extractFeatures(text: string): PromptFeatures {
  const numbers: string[] = [];
  const units: string[] = [];
  const entities = new Set<string>();
  const polar = new Set<string>();
  const quoted = new Set<string>();
  let negations = 0;

  for (const m of text.matchAll(QUOTED)) {
    const q = (m[1] ?? m[2] ?? m[3] ?? m[4] ?? m[5] ?? '').trim().toLowerCase();
    if (q) quoted.add(q);
  }

  const { operators, negative, operatorWords } = scanOperators(text);
  // A number keeps its minus sign: "-5" is not "5".
  const signed = (n: string, at: number) => (negative.has(at) && n !== '0' ? `-${n}` : n);

  const lowerWords: string[] = [];
  const content = new Set<string>();
  for (const m of text.matchAll(WORD)) {
    let w = m[0].replace(CURLY_APOSTROPHE, "'");
    const at = m.index ?? 0;
    const atStart = opensSentence(text, at);
    // Trailing sentence punctuation glued on by the pattern ("2.5." or "U.S.") stays with abbreviations only.
    if (w.endsWith('.') && !ABBREVIATION.test(w)) w = w.slice(0, -1);
    const lower = w.toLowerCase();
    lowerWords.push(lower);
    if (NUMERIC.test(w)) {
      numbers.push(signed(normaliseNumber(w), at));
      continue;
    }
    // Mixed expressions like 2+2, 3x5, 10/2, 1e6, 3rd, 5km: keep digit runs and their unit suffix.
    if (HAS_DIGIT.test(w)) {
      const ord = ORDINAL.exec(w);
      if (ord) {
        numbers.push(`#${ord[1]}`);
        continue;
      }
      const withUnit = WITH_UNIT.exec(w);
      if (withUnit && UNITS[(withUnit[2] as string).toLowerCase()]) {
        numbers.push(signed(normaliseNumber(withUnit[1] as string), at));
        units.push(UNITS[(withUnit[2] as string).toLowerCase()] as string);
        continue;
      }
      for (const d of w.matchAll(DIGIT_RUNS)) numbers.push(signed(normaliseNumber(d[0]), at + d.index));
      // An identifier with digits (gpt-4, python3, e2e) is also a name.
      if (HAS_LETTER.test(w)) entities.add(lower);
      continue;
    }
    // An operator word between numbers ("5 plus 3") is in `operators`, not a content word.
    if (operatorWords.has(at)) continue;
    if (lower in NUMBER_WORDS) {
      numbers.push(String(NUMBER_WORDS[lower]));
      continue;
    }
    if (lower in ORDINAL_WORDS) {
      numbers.push(`#${ORDINAL_WORDS[lower]}`);
      continue;
    }
    const unit = UNITS[lower];
    if (unit) units.push(unit);
    const cw = contentWord(lower);
    if (cw && !unit) content.add(cw);
    if (NEGATIONS.has(lower) || lower.endsWith("n't")) negations++;
    const p = POLAR[lower];
    if (p) polar.add(p);
    const capitalised = STARTS_UPPER.test(w);
    const code = CODE_PUNCT.test(w.slice(1)) || CAMEL.test(w);
    const allCaps = w.length > 1 && ALL_CAPS.test(w);
    // A capital opening a sentence says nothing, so only capitals elsewhere mark names.
    if (code || allCaps || (capitalised && !atStart && !STARTERS.has(lower.replace(FROM_APOSTROPHE, '')))) {
      if (!unit && !p) entities.add(lower);
    }
  }
  const script = scriptOf(text);
  const language = script === 'latin' ? `latin:${guessLatinLanguage(lowerWords)}` : script;
  return {
    numbers,
    operators,
    quoted: [...quoted].sort(),
    entities: [...entities].sort(),
    negations,
    units,
    polar: [...polar].sort(),
    language,
    content: [...content].sort(),
  };
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Both prompts must have the same content words. A word on one side only is either a substitution
 * ("a poem about the ocean" / "about the desert") or an added qualifier ("recipe for pancakes" /
 * "*vegan* recipe for pancakes"), and embeddings rate both as close. Politeness and filler words
 * never become content words (FRAME_WORDS), so they may come and go.
 */
function contentCompatible(a: readonly string[], b: readonly string[]): boolean {
  const sb = new Set(b);
  const sa = new Set(a);
  return !a.some((w) => !sb.has(w)) && !b.some((w) => !sa.has(w));
}

/**
 * Whether a cached prompt's features allow serving its answer for a new prompt. Everything must
 * match exactly except the language, where an undetermined Latin-script guess matches any Latin one.
 */
export function featuresAgree(a: PromptFeatures, b: PromptFeatures): GuardResult {
  if (!sameList(a.numbers, b.numbers)) return { ok: false, reason: 'numbers' };
  // Entries stored before operators were extracted have none recorded: they match operator-free prompts only.
  if (!sameList(a.operators ?? [], b.operators ?? [])) return { ok: false, reason: 'operators' };
  if (!sameList(a.quoted, b.quoted)) return { ok: false, reason: 'quoted' };
  if (!sameList(a.entities, b.entities)) return { ok: false, reason: 'entities' };
  if (a.negations !== b.negations) return { ok: false, reason: 'negations' };
  if (!sameList(a.units, b.units)) return { ok: false, reason: 'units' };
  if (!sameList(a.polar, b.polar)) return { ok: false, reason: 'polar' };
  if (a.language !== b.language) {
    const und = a.language === 'latin:und' || b.language === 'latin:und';
    if (!(und && a.language.startsWith('latin') && b.language.startsWith('latin'))) return { ok: false, reason: 'language' };
  }
  if (!contentCompatible(a.content, b.content)) return { ok: false, reason: 'content' };
  return { ok: true };
}
