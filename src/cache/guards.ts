// False-hit guards for the semantic cache. Embeddings blur exactly the details that change an
// answer: numbers, names, quoted strings, code symbols, which way a conversion or comparison goes,
// negation, units, opposites, tense, language, the request verb and the answer's form. Before a
// semantic hit is served, these features are extracted from both prompts and must agree; the rule is
// documented in docs/caching.md ("What a semantic hit must agree on").

/**
 * Guard features as stored with a cache entry, by whichever rules extracted them: fields the rules
 * gained after version 1 may be absent from older entries. Only features of the current rules are
 * indexed and compared, and those have every field (CurrentFeatures, told apart by isCurrent).
 */
export interface PromptFeatures {
  /**
   * Which rules extracted these features (FEATURES_VERSION). Features of other versions are not
   * comparable: a cached entry whose features predate the current rules is never a semantic hit.
   */
  version?: number;
  /** Numbers in order, normalised ("1,000" -> "1000", "two" -> "2", "3rd" -> "#3", "-5" keeps its sign). */
  numbers: string[];
  /**
   * Arithmetic operators and comparison signs between operands, in order, canonical ("×" -> "*",
   * "plus" -> "+", "<=" and "≤" -> "<=").
   */
  operators?: string[];
  /** Code symbols of two or more characters standing between words ("==", "===", "&&", "??"), sorted. */
  symbols?: string[];
  /** Quoted strings, lower-cased, sorted. */
  quoted: string[];
  /** Names and identifiers (capitalised words, ALLCAPS, words with digits or inner punctuation), sorted. */
  entities: string[];
  /**
   * Words on one side of a direction, comparison or sequence construction, as `<family><side>:<word>`:
   * `ds`/`dt` source and target ("from X to Y", "convert X to Y", "X into Y", "X -> Y"), `ca`/`cb`
   * the two sides of a comparison ("X than Y", "X over Y", "X instead of Y"), `tp`/`tq` earlier and
   * later ("X before Y", "Y after X"), `wa`/`wb` the two sides of "X without Y" and "X per Y", `qs`/`qo`
   * subject and object of a yes/no question ("is X a Y"). What comes before a `from` that no `to`
   * follows is a target too ("remove X from Y", "get downtown from the airport"). Sorted.
   */
  order?: string[];
  /** "past" when the prompt's auxiliaries are all past (was, were, did), "present" when all present, else "". */
  tense?: string;
  /** How many negation markers (not, no, never, n't, without…). */
  negations: number;
  /** Units and currencies in order, canonical ("kilometres" -> "km", "$" -> "usd"). */
  units: string[];
  /** Words from the contrast lexicon (largest/smallest, before/after, buy/sell…), canonical, sorted. */
  polar: string[];
  /** Script and, for Latin script, a guessed language ("latin:en", "cyrillic", "han"…). */
  language: string;
  /** What the request asks to be done (explain, write, summarize, list, learn, teach, compute), sorted. */
  request?: string[];
  /** Requested shape and level of the answer (simple, brief, detailed, example, beginner, expert), sorted. */
  form?: string[];
  /** Content words (stop and request words removed), lightly stemmed, synonyms folded, sorted. */
  content: string[];
}

/** Version of the extraction rules; bump it whenever a change would extract different features. */
export const FEATURES_VERSION = 3;

/** Features extracted by the current rules (FEATURES_VERSION): every field present. */
export type CurrentFeatures = Required<PromptFeatures>;

/**
 * Whether features were extracted by the current rules (those stored before rules had versions count
 * as version 1). Features of other rules are neither indexed nor compared.
 */
export function isCurrent(features: PromptFeatures): features is CurrentFeatures {
  return (features.version ?? 1) === FEATURES_VERSION;
}

// Words that frame a request rather than say what it is about; paraphrases add and drop these freely.
// Words that change the answer are not here even when they look like framing: request verbs
// (explain, write, summarize, list, learn, teach, calculate…) are in REQUEST, the answer's shape and
// level (simple, brief, detailed, example, beginner…) in FORM, and `similar`, `same`, `old`, `sort`
// and `call` are content words ("how are X and Y similar" is not "…different").
const FRAME_WORDS = new Set(
  ('a an the of to in on at for with by from about into onto over than then that this these those there here ' +
    'and or but if so as is are was were be been being am do does did done doing can could would should will shall ' +
    'may might must i me my mine you your yours we us our it its they them their he him his she her what what\'s how ' +
    'why when where which who whom whose whats hows please tell give show help know want need ' +
    'like some any way ways best good steps step tips tip possible really actually exactly just also very much many ' +
    "get let make made go going try able kind type thing things someone something anyone anything one's one " +
    "i'm i'd i'll i've you're it's that's there's can't don't doesn't isn't aren't won't didn't " +
    'quick quickly use using used mean means meaning should proper properly correct correctly right actual main ' +
    'provide suggest recommend work works working happen happens difference differ different versus vs ' +
    'between other another each every all both either more most less least new time times ' +
    'done stand called name named info information question answer anybody somebody ever whether ' +
    'have has had having number ' +
    // Politeness and filler: they change how a request sounds, not what it asks.
    'hi hello hey thanks thank kindly pls plz located currently current now usually typically generally basically ' +
    'roughly approximately').split(' '),
);

/** Each space-separated spelling of a group to the group's canonical word (a later group wins a shared spelling). */
function lexicon(groups: Record<string, string>): Map<string, string> {
  const map = new Map<string, string>();
  for (const [canon, spellings] of Object.entries(groups)) for (const w of spellings.split(' ')) map.set(w, canon);
  return map;
}

// Request verbs grouped by what the answer does: two prompts that both name one must name the same
// group ("explain X" / "summarize X", "write a query" / "explain a query", "learn" / "teach"). A prompt
// that names none ("what is X?") matches any. "teach me" is read as explain. Forms are listed, not
// stemmed: "machine learning", "quantum computing" and "creative writing" are subjects, not requests.
const REQUEST = lexicon({
  explain: 'explain explains explained explaining explanation describe describes described describing understand clarify',
  write: 'write writes wrote written compose composes composed create creates created generate generates generated',
  summarize: 'summarize summarise summarizes summarises summarized summarised summary overview recap tldr',
  list: 'list enumerate',
  learn: 'learn learns learned learnt',
  teach: 'teach teaches taught',
  compute: 'calculate calculates calculated calculation compute computes computed find finds solve solves solved determine',
});

// The answer's shape and level: both prompts must ask for the same ("simple" / "detailed", "brief" /
// none, "for beginners" / "for experts", "an example of X" / "X").
const FORM = lexicon({
  simple: 'simple simply simpler simplest simplified easy easier easiest easily layman laymans layperson eli5',
  brief: 'brief briefly short concise concisely succinct succinctly nutshell',
  detailed: 'detailed detail details thorough thoroughly comprehensive comprehensively depth in-depth elaborate extensive extensively exhaustive lengthy',
  example: 'example examples',
  beginner: 'beginner beginners novice novices newbie newbies basic basics fundamentals',
  expert: 'expert experts advanced',
});

// Spelling variants, abbreviations and words that lead to the same answer. Verbs are grouped by
// outcome, and a word that leads elsewhere in some common use is not folded: `modify`, `alter` and
// `edit` are one group, but `change` (also: replace), `update` (also: install a new version), `reset`
// (back to a default), `swap`, `switch`, `erase` (wipe), `finish` (complete), `reach` (also: travel
// to) and `role` (CREATE ROLE is not CREATE FUNCTION) each keep their own word.
const SYNONYMS = new Map<string, string>(
  Object.entries({
    colour: 'color', colours: 'color', autumn: 'fall', centre: 'center', favourite: 'favorite', organise: 'organize',
    alter: 'modify', edit: 'modify',
    delete: 'remove', purchase: 'buy', begin: 'start', commence: 'start',
    halt: 'stop', automobile: 'car', cars: 'car', kids: 'child', kid: 'child', children: 'child',
    people: 'person', persons: 'person', username: 'user', signin: 'login', faster: 'fast',
    speed: 'fast', speedy: 'fast', rapid: 'fast', big: 'large', huge: 'large', tiny: 'small',
    little: 'small', fix: 'repair', mend: 'repair', leaky: 'leak', leaking: 'leak',
    safely: 'safe', safety: 'safe', purpose: 'function', activate: 'enable', distinguish: 'differ',
    // Abbreviations (applied to names too: "JS" is "JavaScript").
    js: 'javascript', ts: 'typescript', py: 'python', k8s: 'kubernetes', postgres: 'postgresql', mongo: 'mongodb',
    dict: 'dictionary', dicts: 'dictionary', int: 'integer', ints: 'integer', str: 'string', repo: 'repository',
    db: 'database',
  }),
);

// Two-word verbs read as one word before the rules above ("turn on" is enable, "log in" is login).
const PHRASES = new Map<string, string>();
for (const [first, seconds] of Object.entries({
  turn: 'on:enable off:disable',
  switch: 'on:enable off:disable',
  log: 'in:login on:login out:logout off:logout',
  sign: 'in:login on:login out:logout off:logout up:signup',
})) {
  for (const pair of seconds.split(' ')) {
    const [second, canon] = pair.split(':') as [string, string];
    PHRASES.set(`${first} ${second}`, canon);
  }
}

const SIBILANT_PLURAL = /(ches|shes|xes|sses|zes)$/;
// A doubled final consonant left by -ing/-ed ("shipping" -> shipp -> ship); not ll, ss, zz, ff.
const DOUBLED = /([bdgmnprt])\1$/;

/** A light suffix stripper: enough to fold plurals and verb forms (vaccines/vaccine, boiling/boil, declining/decline). */
function stem(word: string): string {
  let w = word.endsWith("'s") ? word.slice(0, -2) : word;
  if (w.length > 4) {
    if (w.endsWith('ies')) w = `${w.slice(0, -3)}y`;
    else if (w.endsWith('es') && SIBILANT_PLURAL.test(w)) w = w.slice(0, -2);
    else if (w.endsWith('s') && !w.endsWith('ss') && !w.endsWith('us') && !w.endsWith('is')) w = w.slice(0, -1);
  }
  if (w.length > 5) {
    let cut = 0;
    if (w.endsWith('ing')) cut = 3;
    else if (w.endsWith('ed')) cut = 2;
    else if (w.endsWith('ly')) w = w.slice(0, -2);
    if (cut) {
      w = w.slice(0, -cut);
      if (DOUBLED.test(w)) w = w.slice(0, -1);
    }
  }
  // "decline" and "declin(ing)" meet without their final e.
  if (w.length > 4 && w.endsWith('e')) w = w.slice(0, -1);
  return w;
}

// A stem matches a frame word as it is or without its final e ("calculat" -> calculate).
const FRAME_STEMS = new Set([...FRAME_WORDS].flatMap((w) => (w.endsWith('e') ? [w, w.slice(0, -1)] : [w])));

function contentWord(lower: string): string | undefined {
  if (FRAME_WORDS.has(lower) || !HAS_LETTER.test(lower)) return undefined;
  const canon = SYNONYMS.get(lower) ?? POLAR.get(lower) ?? lower;
  const stemmed = stem(canon);
  // Inflected frame words too: "explained" -> explain, "calculated" -> calculat(e).
  if (FRAME_STEMS.has(stemmed)) return undefined;
  return SYNONYMS.get(stemmed) ?? stemmed;
}

export type GuardResult = { ok: true } | { ok: false; reason: keyof PromptFeatures };

// Maps, not object literals: a lookup of "constructor" in an object finds Object.prototype's.
const NUMBER_WORDS = new Map<string, number>(
  Object.entries({
    zero: 0, one: 1, two: 2, three: 3, four: 4, five: 5, six: 6, seven: 7, eight: 8, nine: 9, ten: 10,
    eleven: 11, twelve: 12, thirteen: 13, fourteen: 14, fifteen: 15, sixteen: 16, seventeen: 17,
    eighteen: 18, nineteen: 19, twenty: 20, thirty: 30, forty: 40, fifty: 50, sixty: 60, seventy: 70,
    eighty: 80, ninety: 90, hundred: 100, thousand: 1000, million: 1e6, billion: 1e9, trillion: 1e12,
    dozen: 12, half: 0.5, twice: 2, double: 2, triple: 3, once: 1,
  }),
);
const ORDINAL_WORDS = new Map<string, number>(
  Object.entries({
    first: 1, second: 2, third: 3, fourth: 4, fifth: 5, sixth: 6, seventh: 7, eighth: 8, ninth: 9,
    tenth: 10, eleventh: 11, twelfth: 12, twentieth: 20, hundredth: 100,
  }),
);

// Negation words; any word ending in n't (isn't, can't, a lone n't) counts by its ending.
const NEGATIONS = new Set([
  'not', 'no', 'never', 'without', 'none', 'nothing', 'nobody', 'nowhere', 'neither', 'nor',
  'cannot', 'non', 'ne', 'pas', 'nicht', 'kein', 'keine', 'nunca', 'jamais', 'nie', 'niet',
]);

// Canonical unit per spelling; order matters ("5 km to miles" is not "5 miles to km").
const UNITS = lexicon({
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
});

// Contrast lexicon: words whose swap for a near neighbour flips the answer. Synonyms share a key; a
// group holds only words that lead to the same answer (the tallest animal is not the largest, the
// youngest president not the latest, encoding is not encryption, appending is not inserting), and a
// comparative is not its superlative ("a better laptop" is not "the best laptop").
const POLAR = lexicon({
  max: 'largest biggest greatest maximum max', most: 'most', highest: 'highest tallest', longest: 'longest',
  heaviest: 'heaviest', deepest: 'deepest',
  min: 'smallest tiniest minimum min', least: 'least fewest', lowest: 'lowest', shortest: 'shortest',
  lightest: 'lightest', shallowest: 'shallowest',
  fastest: 'fastest quickest', faster: 'faster quicker', slowest: 'slowest', slower: 'slower', best: 'best',
  better: 'better', worst: 'worst', worse: 'worse', earliest: 'earliest', oldest: 'oldest', last: 'latest newest', youngest: 'youngest', before: 'before prior earlier',
  after: 'after later', above: 'above over', below: 'below under beneath', more: 'more', larger: 'greater larger bigger',
  higher: 'higher', less: 'less fewer', smaller: 'smaller', lower: 'lower',
  up: 'increase raise', grow: 'grow', down: 'decrease reduce shrink', upgrade: 'upgrade', downgrade: 'downgrade',
  hot: 'hot', hotter: 'hotter', hottest: 'hottest', warm: 'warm', warmer: 'warmer', warmest: 'warmest', cold: 'cold',
  colder: 'colder', coldest: 'coldest', cool: 'cool', cooler: 'cooler', coolest: 'coolest',
  north: 'north northern', south: 'south southern', east: 'east eastern',
  west: 'west western', left: 'left', right: 'right', buy: 'buy purchase', sell: 'sell', add: 'add append',
  insert: 'insert', remove: 'remove delete', drop: 'drop', erase: 'erase wipe', enable: 'enable activate', disable: 'disable deactivate',
  open: 'open', close: 'close', import: 'import', export: 'export', encrypt: 'encrypt', encode: 'encode',
  decrypt: 'decrypt', decode: 'decode',
  compress: 'compress zip', decompress: 'decompress unzip', pro: 'advantages pros benefits', con: 'disadvantages cons drawbacks',
  risk: 'risks', cheap: 'cheap', cheaper: 'cheaper', cheapest: 'cheapest', expensive: 'expensive costly', priciest: 'priciest', true: 'true', false: 'false',
  start: 'start begin', end: 'stop end', finish: 'finish', input: 'input', output: 'output', upload: 'upload',
  download: 'download', push: 'push', pull: 'pull', win: 'win', lose: 'lose', yesterday: 'yesterday', today: 'today',
  tomorrow: 'tomorrow', past: 'past', future: 'future', male: 'male men man', female: 'female women woman',
  positive: 'positive', negative: 'negative', legal: 'legal', illegal: 'illegal', safe: 'safe', unsafe: 'unsafe dangerous',
  healthy: 'healthy', unhealthy: 'unhealthy',
  monday: 'monday', tuesday: 'tuesday', wednesday: 'wednesday', thursday: 'thursday', friday: 'friday', saturday: 'saturday',
  sunday: 'sunday', january: 'january', february: 'february', march: 'march', april: 'april', june: 'june', july: 'july',
  august: 'august', september: 'september', october: 'october', november: 'november', december: 'december',
  spring: 'spring', summer: 'summer', autumn: 'autumn fall', winter: 'winter', morning: 'morning', evening: 'evening',
  night: 'night', cat: 'cat cats', dog: 'dog dogs', mother: 'mother mom mum', father: 'father dad', brother: 'brother',
  sister: 'sister', synchronous: 'synchronous sync', asynchronous: 'asynchronous async', client: 'client', server: 'server',
  frontend: 'frontend', backend: 'backend', read: 'read', send: 'send', receive: 'receive',
  import_: 'importing', export_: 'exporting', inner: 'inner', outer: 'outer', union: 'union', intersection: 'intersection',
  ascending: 'ascending', descending: 'descending', horizontal: 'horizontal horizontally', vertical: 'vertical vertically',
});

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

/** A normalised number with the minus sign it carries in the text; zero has no sign. */
function signed(n: string, minus: boolean): string {
  return minus && n !== '0' ? `-${n}` : n;
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
const OPERATOR_SYMBOLS = new Map<string, string>(
  Object.entries({
    '+': '+', '-': '-', '−': '-', '–': '-', '*': '*', '×': '*', '·': '*', '/': '/', '÷': '/', '^': '^', '**': '^',
    '<': '<', '>': '>', '<=': '<=', '>=': '>=', '≤': '<=', '≥': '>=', '=': '=', '==': '=', '!=': '!=', '≠': '!=',
    '<>': '!=',
  }),
);
// Word operators count between two number operands only ("5 plus 3", not "plus size"); `by` and
// `to the power of` are read as part of the operator.
const OPERATOR_WORDS = new Map<string, string>(
  Object.entries({
    plus: '+', minus: '-', times: '*', x: '*', multiplied: '*', divided: '/', mod: '%', modulo: '%', equals: '=', equal: '=',
    power: '^', raised: '^',
  }),
);
const MATH_TOKEN = /\d+(?:[.,]\d+)*|[\p{L}\p{M}]+|\*\*|<=|>=|==|!=|<>|[-+−–*×·/÷^<>=≤≥≠]|[()[\]]|\S/gu;
const MINUS = new Set(['-', '−', '–']);
// Whether a text may hold an operator at all: one of the symbols, a bracket, or an operator word as a
// whole letter run (as MATH_TOKEN cuts it). Most prompts have none and skip the token scan.
const MAY_HAVE_OPERATOR = new RegExp(
  `[-+−–*×·/÷^<>=≤≥≠()[\\]]|(?<![\\p{L}\\p{M}])(?:${[...OPERATOR_WORDS.keys()].join('|')})(?![\\p{L}\\p{M}])`,
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
  return DIGIT_START.test(t.text) || NUMBER_WORDS.has(t.text.toLowerCase());
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
    const symbol = OPERATOR_SYMBOLS.get(t.text);
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
    const word = OPERATOR_WORDS.get(t.text.toLowerCase());
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

// Order constructions (PromptFeatures.order). `to` is a direction only after `from`, after a
// direction word in the same clause ("convert", "migrate", "ship", "letter"…) or between two names
// ("EST to PST"); otherwise it is an infinitive ("how to reset").
const TO_MARKERS = new Set(['to', 'into', 'onto', 'towards', 'toward']);
const DIRECTION_WORDS = new Set(
  (
    'convert conversion converter translate translation port migrate migration switch move transfer cast map ' +
    'rewrite turn redirect send copy merge rebase upgrade downgrade export import upload download ship shipping ' +
    'deliver delivery fly flight travel drive commute route forward sync compile transpile save push pull ' +
    'email mail letter message note reply text'
  )
    .split(' ')
    .map((w) => contentWord(w) ?? w),
);
// Names people type in lower case on both sides of a bare "X to Y" ("english to spanish", "csv to json").
const LOWERCASE_NAMES = new Set(
  ('english spanish french german italian portuguese dutch russian chinese mandarin japanese korean arabic hindi ' +
    'urdu turkish polish greek hebrew swedish norwegian danish finnish vietnamese thai indonesian ' +
    'python javascript typescript java kotlin swift rust golang ruby php perl scala haskell c c++ c# sql bash ' +
    'json yaml xml csv tsv html markdown pdf word excel docx xlsx png jpg jpeg gif webp svg mp3 mp4 wav ' +
    'binary decimal hex hexadecimal octal celsius fahrenheit kelvin utc gmt est pst cet').split(' '),
);
// Transparent inside a run of names ("this Python code", "my bank account"): they neither end it nor join it.
const DETERMINERS = new Set('a an the this that these those my your our their his her its some any'.split(' '));
const AUXILIARIES = new Set('is are was were am does do did can could should would will has have had'.split(' '));
// A yes/no question about the speaker or the listener has no subject worth ordering.
const PRONOUNS = new Set("i you we it they he she there this that these those i'm you're it's".split(' '));
// Tense of the prompt's auxiliaries: "who is the CEO" asks for now, "who was the CEO" for before.
const PRESENT = new Set(
  "is are am does do isn't aren't doesn't don't what's who's where's when's how's that's it's there's".split(' '),
);
const PAST = new Set("was were did wasn't weren't didn't".split(' '));
const LIST_VERB_AFTER = new Set(['please', 'pls', 'kindly', 'you', 'and', 'then', 'just', 'also']);
// "left" meaning remaining: "how many days are left".
const LEFT_REMAINING_AFTER = new Set(['is', 'are', 'was', 'were', 'have', 'has', 'had', 'anything', 'nothing', "what's"]);
const RIGHT_NOT_DIRECTION = new Set(['now', 'away', 'way']);
const TEMPERATURE_UNITS = new Set(['c', 'f', 'k']);

// Characters of code symbols and of the punctuation between words, for the scan of the gaps between tokens.
const GAP_SYMBOL = new Uint8Array(128);
for (const ch of '=!<>&|?:~^*+-/\\@.,;') GAP_SYMBOL[ch.charCodeAt(0)] = 1;
const GAP_PROSE = new Uint8Array(128);
// Markdown emphasis counts as prose punctuation: "**Note:**".
for (const ch of '.?!:;,-*') GAP_PROSE[ch.charCodeAt(0)] = 1;
const GAP_BOUNDARY = new Uint8Array(128);
for (const ch of '.?!:;,') GAP_BOUNDARY[ch.charCodeAt(0)] = 1;
const ARROW = 0x2192; // →
const FLAG_BOUNDARY = 1;
const FLAG_ARROW = 2;

/**
 * Scans the text between two words: clause boundaries (. ? ! : ; , or a newline), arrows (->, =>, →)
 * and code symbols. A run of symbol characters is a code symbol when it has two or more characters
 * and is not sentence punctuation: not only dots, dashes or asterisks, and not only punctuation
 * glued to the word before it ("what?!", "wait...").
 */
function scanGap(text: string, from: number, to: number, symbols: string[]): number {
  let flags = 0;
  let i = from;
  while (i < to) {
    const ch = text.charCodeAt(i);
    if (ch === 10) {
      flags |= FLAG_BOUNDARY;
      i++;
      continue;
    }
    if (ch === ARROW) {
      flags |= FLAG_ARROW;
      i++;
      continue;
    }
    if (ch >= 128 || GAP_SYMBOL[ch] === 0) {
      i++;
      continue;
    }
    let j = i + 1;
    let prose = GAP_PROSE[ch] === 1;
    let boundary = GAP_BOUNDARY[ch] === 1;
    let same = true;
    while (j < to) {
      const c = text.charCodeAt(j);
      if (c >= 128 || GAP_SYMBOL[c] === 0) break;
      if (GAP_PROSE[c] === 0) prose = false;
      if (GAP_BOUNDARY[c] === 1) boundary = true;
      if (c !== ch) same = false;
      j++;
    }
    const glued = i === from && from > 0;
    if (j - i === 1) {
      if (boundary) flags |= FLAG_BOUNDARY;
    } else if ((ch === 45 || ch === 61) && j - i === 2 && text.charCodeAt(i + 1) === 62) {
      flags |= FLAG_ARROW; // -> or =>
    } else if ((prose && glued) || (same && (ch === 46 || ch === 45 || ch === 42))) {
      if (boundary) flags |= FLAG_BOUNDARY;
    } else {
      symbols.push(text.slice(i, j));
    }
    i = j;
  }
  return flags;
}

// Words whose meaning the next word decides; only these (and a clause's first word) look ahead.
const LOOKS_AHEAD = new Set([
  // The first words of PHRASES ("turn" of "turn on").
  ...[...PHRASES.keys()].map((phrase) => phrase.slice(0, phrase.indexOf(' '))),
  ...TO_MARKERS, 'in', 'sort', 'kind', 'short', 'right', 'best', 'teach', 'list', 'degree', 'degrees',
]);

/**
 * Order state of one extraction, kept at module level and reset per call (extraction is synchronous)
 * so a call allocates no closures: the run of names just before the current word (`run`, the source of
 * "X to Y"), the names since the clause began or the last marker (`segment`, the left side of "X than
 * Y" and "X before Y"), and the side given to the names after a marker (`side`).
 */
const O = {
  tags: [] as string[],
  run: [] as string[],
  runTagged: false,
  segment: [] as string[],
  side: '',
  sideTagged: 0,
  sideSkipped: 0,
  fromSeen: false,
  directionSeen: false,
  targetSeen: false,
  // The run before a "from": a target at the clause's end unless one followed ("get downtown from the airport").
  fromLeft: [] as string[],
  // Yes/no question ("is X a Y?", "does X cause Y?"): -1 at a clause's first word, 0 none, 1 before
  // its subject (the first name after the auxiliary), 2 after it.
  question: -1,
};

function addUnique(list: string[], v: string): void {
  if (!list.includes(v)) list.push(v);
}

function tagAll(words: readonly string[], role: string): void {
  for (const w of words) addUnique(O.tags, `${role}:${w}`);
}

/** A clause ends: the run before a `from` that no target followed is the target; then a new clause. */
function endClause(): void {
  if (O.fromLeft.length > 0 && !O.targetSeen) tagAll(O.fromLeft, 'dt');
  startClause();
}

/** Clears the clause state (tags nothing). */
function startClause(): void {
  O.fromLeft.length = 0;
  O.run.length = 0;
  O.segment.length = 0;
  O.runTagged = false;
  O.side = '';
  O.fromSeen = false;
  O.directionSeen = false;
  O.targetSeen = false;
  O.question = -1;
}

/** A marker word: the words before it take `left` (from the run or the segment), those after it `right`. */
function marker(left: string, fromRun: boolean, right: string): void {
  if (left) {
    if (!fromRun) tagAll(O.segment, left);
    else if (!O.runTagged) tagAll(O.run, left);
  }
  O.side = right;
  O.sideTagged = 0;
  O.sideSkipped = 0;
  O.run.length = 0;
  O.runTagged = false;
  O.segment.length = 0;
}

/** A word that is not a name: ends the run, and a side that has its names. */
function breakRun(): void {
  O.run.length = 0;
  O.runTagged = false;
  if (O.side && (O.sideTagged > 0 || ++O.sideSkipped > 2)) O.side = '';
}

function anchor(a: string): void {
  if (O.side) {
    addUnique(O.tags, `${O.side}:${a}`);
    O.sideTagged++;
    O.runTagged = true;
  }
  O.run.push(a);
  O.segment.push(a);
  if (O.question === 1) {
    addUnique(O.tags, `qs:${a}`);
    O.question = 2;
  } else if (O.question === 2) addUnique(O.tags, `qo:${a}`);
}

/**
 * Whether a prompt's capitals mark nothing: at least three words with letters and most of them all
 * capitals (shouted), or at least four and nearly all capitalised (Title Case).
 */
function capitalsCarryNothing(words: RegExpExecArray[]): boolean {
  let lettered = 0;
  let caps = 0;
  let initial = 0;
  for (const m of words) {
    const w = m[0];
    if (!HAS_LETTER.test(w)) continue;
    lettered++;
    if (STARTS_UPPER.test(w)) {
      initial++;
      if (w.length > 1 && ALL_CAPS.test(w)) caps++;
    }
  }
  return (lettered >= 3 && caps >= 0.7 * lettered) || (lettered >= 4 && initial >= 0.85 * lettered);
}

export function extractFeatures(text: string): CurrentFeatures {
  const numbers: string[] = [];
  const units: string[] = [];
  const entities: string[] = [];
  const polar: string[] = [];
  const quoted: string[] = [];
  const request: string[] = [];
  const form: string[] = [];
  const symbols: string[] = [];
  const content: string[] = [];
  let negations = 0;
  let present = false;
  let past = false;
  // A fresh array each call: the last call returned its own as `order`, and that one is the caller's
  // (indexed with a cache entry), never to be written again.
  O.tags = [];
  startClause();

  for (const m of text.matchAll(QUOTED)) {
    const q = (m[1] ?? m[2] ?? m[3] ?? m[4] ?? m[5] ?? '').trim().toLowerCase();
    if (q) addUnique(quoted, q);
  }

  const { operators, negative, operatorWords } = scanOperators(text);

  const matches = Array.from(text.matchAll(WORD));
  // A prompt written all in capitals or in Title Case says nothing by its capitals: "HOW DO I RESET MY
  // ROUTER" names no more than "how do i reset my router" (every word would read as a name).
  const caseless = capitalsCarryNothing(matches);
  const lowerWords: string[] = [];
  let prevEnd = 0;
  let prev = '';
  let prevForm = false;
  let skip = false;
  for (let i = 0; i < matches.length; i++) {
    const m = matches[i] as RegExpExecArray;
    const at = m.index;
    const flags = scanGap(text, prevEnd, at, symbols);
    prevEnd = at + m[0].length;
    if (flags & FLAG_BOUNDARY) endClause();
    if (flags & FLAG_ARROW) marker('ds', true, 'dt');
    let w = m[0];
    if (w.includes('’')) w = w.replace(CURLY_APOSTROPHE, "'");
    const atStart = opensSentence(text, at);
    // Trailing sentence punctuation glued on by the pattern ("2.5." or "U.S.") stays with abbreviations only.
    if (w.endsWith('.') && !ABBREVIATION.test(w)) w = w.slice(0, -1);
    let lower = w.toLowerCase();
    lowerWords.push(lower);
    const before = prev;
    prev = lower;
    const afterForm = prevForm;
    prevForm = false;
    if (skip) {
      skip = false;
      continue;
    }
    const next = O.question === -1 || LOOKS_AHEAD.has(lower) ? matches[i + 1]?.[0] : undefined;
    const nextLower = next?.toLowerCase() ?? '';
    if (O.question === -1) O.question = AUXILIARIES.has(lower) && !PRONOUNS.has(nextLower) ? 1 : 0;
    if (NUMERIC.test(w)) {
      // Not signed(): the word as written is compared with '0', so "-0.0" and "-00" keep their sign
      // ("-0"); changing that would change the features of FEATURES_VERSION 3.
      numbers.push(negative.has(at) && w !== '0' ? `-${normaliseNumber(w)}` : normaliseNumber(w));
      breakRun();
      continue;
    }
    // Mixed expressions like 2+2, 3x5, 10/2, 1e6, 3rd, 5km: keep digit runs and their unit suffix.
    if (HAS_DIGIT.test(w)) {
      breakRun();
      const ord = ORDINAL.exec(w);
      if (ord) {
        numbers.push(`#${ord[1]}`);
        continue;
      }
      const withUnit = WITH_UNIT.exec(w);
      const suffixUnit = withUnit ? UNITS.get((withUnit[2] as string).toLowerCase()) : undefined;
      if (suffixUnit) {
        const n = normaliseNumber((withUnit as RegExpExecArray)[1] as string);
        numbers.push(signed(n, negative.has(at)));
        units.push(suffixUnit);
        continue;
      }
      if (lower === 'eli5') {
        addUnique(form, 'simple');
        continue;
      }
      for (const d of w.matchAll(DIGIT_RUNS)) {
        const n = normaliseNumber(d[0]);
        numbers.push(signed(n, negative.has(at + d.index)));
      }
      // An identifier with digits (gpt-4, python3, e2e) is also a name.
      if (HAS_LETTER.test(w)) {
        const id = SYNONYMS.get(lower) ?? lower;
        addUnique(entities, id);
        anchor(id);
      }
      continue;
    }
    // An operator word between numbers ("5 plus 3") is in `operators`, not a content word.
    if (operatorWords.has(at)) {
      breakRun();
      continue;
    }
    const numberWord = NUMBER_WORDS.get(lower);
    if (numberWord !== undefined) {
      numbers.push(String(numberWord));
      breakRun();
      continue;
    }
    const ordinalWord = ORDINAL_WORDS.get(lower);
    if (ordinalWord !== undefined) {
      numbers.push(`#${ordinalWord}`);
      breakRun();
      continue;
    }
    if (NEGATIONS.has(lower) || lower.endsWith("n't")) negations++;
    if (PRESENT.has(lower)) present = true;
    else if (PAST.has(lower)) past = true;

    if (next !== undefined) {
      // Two-word verbs and the few words whose neighbour decides what they mean.
      const phrase = PHRASES.get(`${lower} ${nextLower}`);
      if (phrase) {
        lower = phrase;
        skip = true;
      } else if ((lower === 'sort' || lower === 'kind') && nextLower === 'of') {
        skip = true;
        breakRun();
        continue;
      } else if (
        (lower === 'short' && nextLower === 'for') ||
        (lower === 'right' && RIGHT_NOT_DIRECTION.has(nextLower)) ||
        (lower === 'best' && (nextLower === 'way' || nextLower === 'ways'))
      ) {
        breakRun();
        continue;
      }
    }
    if (
      (lower === 'left' && LEFT_REMAINING_AFTER.has(before)) ||
      // "in simple terms", "in plain words" say no more than "simply".
      (afterForm && (lower === 'terms' || lower === 'words'))
    ) {
      breakRun();
      continue;
    }

    // Order markers.
    if (lower === 'from') {
      O.fromSeen = true;
      if (O.run.length > 0 && !O.runTagged) O.fromLeft = O.run.slice();
      marker('', true, 'ds');
      continue;
    }
    if (TO_MARKERS.has(lower) || lower === 'in') {
      const nameNext =
        next !== undefined && next !== 'I' && (STARTS_UPPER.test(next) || HAS_DIGIT.test(next) || LOWERCASE_NAMES.has(nextLower));
      if (lower === 'in') {
        // "rewrite this Java code in Kotlin", "translate this in Spanish": the target.
        if (O.directionSeen && !O.targetSeen && nameNext && O.run.length > 0) {
          marker('ds', true, 'dt');
          O.targetSeen = true;
          continue;
        }
      } else if (lower !== 'to' || O.fromSeen || O.directionSeen || (O.run.length > 0 && nameNext)) {
        marker('ds', true, 'dt');
        O.targetSeen = true;
        continue;
      }
    } else if (lower === 'than' || lower === 'instead' || (lower === 'over' && O.segment.length > 0)) {
      marker('ca', false, 'cb');
      if (lower === 'over') addUnique(polar, 'above');
      continue;
    } else if (lower === 'without' || lower === 'per') {
      marker('wa', false, 'wb');
      addUnique(content, lower);
      continue;
    } else if (lower === 'before' || lower === 'after') {
      if (lower === 'before') marker('tp', false, 'tq');
      else marker('tq', false, 'tp');
      addUnique(polar, lower);
      addUnique(content, stem(lower));
      continue;
    }

    // Request verbs and the answer's form are not content words.
    const req =
      lower === 'list'
        ? atStart || LIST_VERB_AFTER.has(before) || (nextLower === 'of' && (before === 'a' || before === 'the'))
          ? 'list'
          : undefined
        : lower === 'teach' && (nextLower === 'me' || nextLower === 'us')
          ? 'explain'
          : REQUEST.get(lower);
    if (req) {
      addUnique(request, req);
      breakRun();
      continue;
    }
    const capitalised = !caseless && STARTS_UPPER.test(w);
    const fm = FORM.get(lower);
    // Capitalised inside a sentence it is a name ("the Basic plan", "Advanced Settings").
    if (fm && !(capitalised && !atStart)) {
      addUnique(form, fm);
      prevForm = true;
      continue;
    }

    const isUnit = UNITS.get(lower);
    // "100 degrees Fahrenheit" is 100 °F: the degree is part of the temperature unit.
    if (isUnit && !(isUnit === 'degree' && TEMPERATURE_UNITS.has(UNITS.get(nextLower) ?? ''))) units.push(isUnit);
    const cw = isUnit ? undefined : contentWord(lower);
    if (cw) addUnique(content, cw);
    const p = POLAR.get(lower);
    if (p) addUnique(polar, p);
    if (cw && DIRECTION_WORDS.has(cw)) O.directionSeen = true;
    const code = CODE_PUNCT.test(w.slice(1)) || CAMEL.test(w);
    const allCaps = !caseless && w.length > 1 && ALL_CAPS.test(w);
    // A capital opening a sentence says nothing, so only capitals elsewhere mark names.
    let entity: string | undefined;
    if (code || allCaps || (capitalised && !atStart && !STARTERS.has(lower.replace(FROM_APOSTROPHE, '')))) {
      if (!isUnit && !p) addUnique(entities, (entity = SYNONYMS.get(lower) ?? lower));
    }
    // A name's own spelling where it has one: "HTTPS" is not "HTTP", though both stem to http.
    const name = entity ?? cw;
    if (name) anchor(name);
    else if (!DETERMINERS.has(lower)) breakRun();
  }
  scanGap(text, prevEnd, text.length, symbols);
  endClause();
  const script = scriptOf(text);
  const language = script === 'latin' ? `latin:${guessLatinLanguage(lowerWords)}` : script;
  return {
    version: FEATURES_VERSION,
    numbers,
    operators,
    symbols: symbols.sort(),
    quoted: quoted.sort(),
    entities: entities.sort(),
    order: O.tags.sort(),
    tense: present === past ? '' : present ? 'present' : 'past',
    negations,
    units,
    polar: polar.sort(),
    language,
    request: request.sort(),
    form: form.sort(),
    content: content.sort(),
  };
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether two `role:word` entries name the same family and word (`ds:x` and `dt:x`). */
function sameFamilyWord(x: string, y: string): boolean {
  if (x.length !== y.length || x.charCodeAt(0) !== y.charCodeAt(0)) return false;
  for (let i = 2; i < x.length; i++) if (x.charCodeAt(i) !== y.charCodeAt(i)) return false;
  return true;
}

/**
 * Order agrees unless a word that both prompts place in the same construction is on different sides
 * ("from English to German" / "from German to English", "Python than Java" / "Java than Python").
 * A construction on one side only says nothing ("convert X to Y" / "X as Y"): the content guard
 * already compares the words.
 */
function orderCompatible(a: readonly string[], b: readonly string[]): boolean {
  if (a.length === 0 || b.length === 0) return true;
  // Every word of `xs` that `ys` places in the same construction, `ys` places on the same side too.
  const covers = (xs: readonly string[], ys: readonly string[]) =>
    xs.every((x) => ys.includes(x) || !ys.some((y) => sameFamilyWord(x, y)));
  return covers(a, b) && covers(b, a);
}

/**
 * Whether a cached prompt's features allow serving its answer for a new prompt. Everything must
 * match exactly except: the language, where an undetermined Latin-script guess matches any Latin
 * one; the request verbs, compared only when both prompts name one; and order, where only a word
 * placed on different sides refuses. Features extracted by other rules (another FEATURES_VERSION,
 * or none: entries stored before versions) never match.
 */
export function featuresAgree(a: PromptFeatures, b: PromptFeatures): GuardResult {
  if (!isCurrent(a) || !isCurrent(b)) return { ok: false, reason: 'version' };
  if (!sameList(a.numbers, b.numbers)) return { ok: false, reason: 'numbers' };
  if (!sameList(a.operators, b.operators)) return { ok: false, reason: 'operators' };
  if (!sameList(a.symbols, b.symbols)) return { ok: false, reason: 'symbols' };
  if (!sameList(a.quoted, b.quoted)) return { ok: false, reason: 'quoted' };
  if (!sameList(a.entities, b.entities)) return { ok: false, reason: 'entities' };
  if (!orderCompatible(a.order, b.order)) return { ok: false, reason: 'order' };
  if (a.tense && b.tense && a.tense !== b.tense) return { ok: false, reason: 'tense' };
  if (a.negations !== b.negations) return { ok: false, reason: 'negations' };
  if (!sameList(a.units, b.units)) return { ok: false, reason: 'units' };
  if (!sameList(a.polar, b.polar)) return { ok: false, reason: 'polar' };
  if (a.language !== b.language) {
    const und = a.language === 'latin:und' || b.language === 'latin:und';
    if (!(und && a.language.startsWith('latin') && b.language.startsWith('latin'))) return { ok: false, reason: 'language' };
  }
  if (a.request.length > 0 && b.request.length > 0 && !sameList(a.request, b.request)) return { ok: false, reason: 'request' };
  if (!sameList(a.form, b.form)) return { ok: false, reason: 'form' };
  // The same content words (sorted, without repeats: the same set is the same list). A word on one
  // side only is either a substitution ("a poem about the ocean" / "about the desert") or an added
  // qualifier ("recipe for pancakes" / "*vegan* recipe for pancakes"), and embeddings rate both as
  // close. Politeness and filler words never become content words (FRAME_WORDS), so they may come and go.
  if (!sameList(a.content, b.content)) return { ok: false, reason: 'content' };
  return { ok: true };
}
