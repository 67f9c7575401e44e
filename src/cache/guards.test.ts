import { describe, expect, it } from 'vitest';
import { extractFeatures, featuresAgree, FEATURES_VERSION, isCurrent } from './guards.js';

function agree(a: string, b: string) {
  return featuresAgree(extractFeatures(a), extractFeatures(b));
}

describe('prompts whose capitals mark nothing', () => {
  it.each([
    ['HOW DO I RESET MY ROUTER', 'how do i reset my router'],
    ['How Do I Reset My Router', 'how do i reset my router'],
    ['WHAT IS THE CAPITAL OF FRANCE?', 'WHAT IS THE CAPITAL OF FRANCE'],
  ])('%s / %s agree: every word would otherwise read as a name', (a, b) => {
    expect(agree(a, b)).toEqual({ ok: true });
  });

  it.each([
    ['HOW DO I INSTALL PYTHON ON WINDOWS', 'HOW DO I INSTALL PYTHON ON UBUNTU'],
    ['How Do I Install Python On Windows', 'How Do I Install Python On Ubuntu'],
    ['HOW DO I RESET MY ROUTER', 'HOW DO I DELETE MY ROUTER'],
  ])('%s / %s still disagree on what they ask', (a, b) => {
    expect(agree(a, b).ok).toBe(false);
  });

  it('keeps names in ordinary prompts, and an acronym among lower-case words', () => {
    expect(extractFeatures('How do I install Python on Windows?').entities).toEqual(['python', 'windows']);
    expect(extractFeatures('what does the HTTP header do').entities).toContain('http');
  });
});

describe('semantic cache guards', () => {
  it.each([
    ['What is 2+2?', 'What is 3+5?', 'numbers'],
    ['What is 10 - 3?', 'What is 3 - 10?', 'numbers'],
    ['How many days are in two weeks?', 'How many days are in three weeks?', 'numbers'],
    ['Who won the 2018 World Cup?', 'Who won the 2022 World Cup?', 'numbers'],
    ['Tell me about the history of Rome.', 'Tell me about the history of Athens.', 'entities'],
    ['How do I install Python on Windows?', 'How do I install Python on Ubuntu?', 'entities'],
    ['What does "ephemeral" mean?', 'What does "ubiquitous" mean?', 'quoted'],
    ['Is coffee bad for your health?', 'Is coffee not bad for your health?', 'negations'],
    ["Why doesn't my code compile?", 'Why does my code compile?', 'negations'],
    ['Convert 5 km to miles', 'Convert 5 miles to km', 'units'],
    ['How much is 100 USD in EUR?', 'How much is 100 EUR in USD?', 'units'],
    ['What is the largest planet?', 'What is the smallest planet?', 'polar'],
    ['What are the advantages of remote work?', 'What are the disadvantages of remote work?', 'polar'],
    ['Quelle est la capitale de la France ?', 'What is the capital of France?', 'language'],
    ['Как дела?', 'How are you?', 'language'],
  ])('%s / %s disagree on %s', (a, b, reason) => {
    expect(agree(a, b)).toEqual({ ok: false, reason });
  });

  it.each([
    ['What is the capital of France?', "What's the capital of France?"],
    ['How do I change my password?', 'What are the steps to change my password?'],
    ['What is 2 + 2?', 'Calculate 2+2'],
    ['How many days are in two weeks?', 'Number of days in 2 weeks?'],
    ['Which planet is the biggest?', "What's the largest planet?"],
    ['Explain how photosynthesis works.', 'Can you explain photosynthesis?'],
    ['How do I install Python 3.12 on Ubuntu?', 'Steps to install Python 3.12 on Ubuntu'],
  ])('%s / %s agree', (a, b) => {
    expect(agree(a, b)).toEqual({ ok: true });
  });

  it('normalises numbers and ignores capitals that open a sentence', () => {
    const f = extractFeatures('Is 1,000 more than 999.50? Then explain.');
    expect(f.numbers).toEqual(['1000', '999.5']);
    expect(f.entities).toEqual([]);
    expect(f.polar).toEqual(['more']);
    expect(extractFeatures('Use the fooBar() helper in my_module.py').entities).toEqual(['foobar', 'my_module.py']);
  });
});

describe('operators and signs', () => {
  it.each([
    ['What is -5 + 3?', 'What is 5 + 3?', 'numbers'],
    ['What is 3 * -2?', 'What is 3 * 2?', 'numbers'],
    ['What is 2+2?', 'What is 2-2?', 'operators'],
    ['Is 7 > 5?', 'Is 7 < 5?', 'operators'],
    ['What is 2^10?', 'What is 2*10?', 'operators'],
    ['Is 5 <= 5?', 'Is 5 < 5?', 'operators'],
    ['What is (2 + 3) * 4?', 'What is 2 + (3 * 4)?', 'operators'],
    ['What is 5 plus 3?', 'What is 5 minus 3?', 'operators'],
  ])('%s / %s disagree on %s', (a, b, reason) => {
    expect(agree(a, b)).toEqual({ ok: false, reason });
  });

  it.each([
    ['What is 5 plus 3?', 'What is 5 + 3?'],
    ['What is 10 divided by 2?', 'What is 10/2?'],
    ['What is 2 to the power of 10?', 'What is 2^10?'],
    ['What is 3 × 4?', 'What is 3 * 4?'],
    ['What is 10 -5?', 'What is 10 - 5?'],
  ])('%s / %s agree', (a, b) => {
    expect(agree(a, b)).toEqual({ ok: true });
  });

  it('reads a minus as a sign only where no operand precedes it, and hyphens, dashes and arrows as no operator', () => {
    expect(extractFeatures('What is -5 + 3?')).toMatchObject({ numbers: ['-5', '3'], operators: ['+'] });
    expect(extractFeatures('Is (-2)^2 = 4?')).toMatchObject({ numbers: ['-2', '2', '4'], operators: ['(', ')', '^', '='] });
    expect(extractFeatures('What is 10-3?')).toMatchObject({ numbers: ['10', '3'], operators: ['-'] });
    expect(extractFeatures('Is gpt-4 a state-of-the-art model?').operators).toEqual([]);
    expect(extractFeatures('Python - how do I sort a list? A -> B').operators).toEqual([]);
    expect(extractFeatures('Is C++ faster than C?').operators).toEqual([]);
    expect(extractFeatures('How many times a day should I eat?').operators).toEqual([]);
  });
});

describe('content-word guard', () => {
  it.each([
    ['Write a poem about the ocean.', 'Write a poem about the desert.'],
    ['how do i install python on windows', 'how do i install python on mac'],
    ['How do I train my puppy?', 'How do I train my kitten?'],
  ])('refuses a swapped content word: %s / %s', (a, b) => {
    expect(agree(a, b)).toEqual({ ok: false, reason: 'content' });
  });

  it.each([
    ['Give me a recipe for pancakes.', 'Give me a vegan recipe for pancakes.'],
    ['Write a SQL query that selects all inactive users.', 'Write a SQL query that selects all users.'],
    ['List the prime numbers below 20.', 'List the odd prime numbers below 20.'],
    ['What are the side effects of ibuprofen?', 'What are the side effects of ibuprofen in pregnancy?'],
    ['Translate into French: apples and pears', 'Translate into French: apples'],
    ['What is the capital of France?', 'What is the capital city of France?'],
  ])('refuses a content word added on one side: %s / %s', (a, b) => {
    expect(agree(a, b)).toEqual({ ok: false, reason: 'content' });
    expect(agree(b, a)).toEqual({ ok: false, reason: 'content' });
  });

  it('allows politeness, filler and inflected request words on one side, and folds plurals, verb forms and listed synonyms', () => {
    expect(agree('Hi! What is the capital of Italy?', 'What is the capital of Italy?')).toEqual({ ok: true });
    expect(agree('Where is the Eiffel Tower located?', 'Where is the Eiffel Tower?')).toEqual({ ok: true });
    expect(agree('How long does it usually take to boil an egg?', 'How long does it take to boil an egg?')).toEqual({ ok: true });
    expect(agree('How many days does a leap year have?', 'How many days are in a leap year?')).toEqual({ ok: true });
    expect(agree('How is the area of a circle calculated?', 'How do I calculate the area of a circle?')).toEqual({ ok: true });
    expect(agree('How do vaccines work?', 'How does a vaccine work?')).toEqual({ ok: true });
    expect(agree('Why do leaves change color in the fall?', 'Why do leaves change colour in autumn?')).toEqual({ ok: true });
    // Plural folded, delete → remove by the synonym table, both stemmed: a fixed value, not one extraction against another.
    expect(extractFeatures('How do I delete my accounts?').content).toEqual(['account', 'remov']);
    expect(extractFeatures('How do I remove my account?').content).toEqual(['account', 'remov']);
  });
});

describe('version', () => {
  it('refuses entries whose features were extracted by other rules, or before rules had versions', () => {
    const now = extractFeatures('How do I reset my router?');
    expect(now.version).toBe(FEATURES_VERSION);
    const { version: _, ...unversioned } = now;
    expect(featuresAgree(now, unversioned)).toEqual({ ok: false, reason: 'version' });
    expect(featuresAgree(now, { ...now, version: FEATURES_VERSION - 1 })).toEqual({ ok: false, reason: 'version' });
    expect(featuresAgree(now, { ...now })).toEqual({ ok: true });
    // Old features are refused on either side, even against features of their own old version.
    const old = { ...now, version: FEATURES_VERSION - 1 };
    expect(featuresAgree(old, old)).toEqual({ ok: false, reason: 'version' });
    expect([isCurrent(now), isCurrent(unversioned), isCurrent(old)]).toEqual([true, false, false]);
  });
});

describe('order: direction, comparison, sequence', () => {
  it.each([
    ['Translate this sentence from English to German', 'Translate this sentence from German to English'],
    ['Convert this Python code to JavaScript', 'Convert this JavaScript code to Python'],
    ['How do I convert a string to an integer in Java?', 'How do I convert an integer to a string in Java?'],
    ['How do I migrate from MySQL to PostgreSQL?', 'How do I migrate from PostgreSQL to MySQL?'],
    ['How long is the flight from London to New York?', 'How long is the flight from New York to London?'],
    ['Write an email from a tenant to a landlord.', 'Write an email from a landlord to a tenant.'],
    ['How do I merge the develop branch into main?', 'How do I merge main into the develop branch?'],
    ['Convert 3pm EST to PST.', 'Convert 3pm PST to EST.'],
    ['english to spanish translation of hello', 'spanish to english translation of hello'],
    ['Rewrite this Java code in Kotlin.', 'Rewrite this Kotlin code in Java.'],
    ['Map A -> B', 'Map B -> A'],
    ['Do you ship to Mexico?', 'Do you ship from Mexico?'],
    ['How do I remove a user from a group?', 'How do I remove a group from a user?'],
    ['How many hours ahead is Tokyo from London?', 'How many hours ahead is London from Tokyo?'],
    ['Is Python faster than Java?', 'Is Java faster than Python?'],
    ['Is Canada bigger than Russia?', 'Is Russia bigger than Canada?'],
    ['Why choose PostgreSQL over MySQL?', 'Why choose MySQL over PostgreSQL?'],
    ['Should I use React instead of Angular?', 'Should I use Angular instead of React?'],
    ['Should I learn Python before JavaScript?', 'Should I learn JavaScript before Python?'],
    ['Did the French Revolution happen before the American Revolution?', 'Did the American Revolution happen before the French Revolution?'],
    ['Find customers without orders.', 'Find orders without customers.'],
    ['Is a square a rectangle?', 'Is a rectangle a square?'],
    ['Does stress cause insomnia?', 'Does insomnia cause stress?'],
  ])('refuses a reversal: %s / %s', (a, b) => {
    expect(agree(a, b)).toEqual({ ok: false, reason: 'order' });
  });

  it.each([
    ['Translate this sentence from English to German: I love reading.', 'Translate this sentence to German from English: I love reading.'],
    ['How do I get from the airport to downtown?', 'How do I get downtown from the airport?'],
    ['How do I convert a string to an integer in Python?', 'In Python, how do I convert a string into an integer?'],
    ['How do I move my contacts from iPhone to Android?', 'How do I move my iPhone contacts to Android?'],
    ['Which is faster, Python or Java?', 'Is Python faster than Java?'],
    ['What is the difference between TCP and UDP?', 'What is the difference between UDP and TCP?'],
    ['What should I eat before a workout?', 'Before a workout, what should I eat?'],
    ['How can I get my dog to stop barking?', 'How do I stop my dog from barking?'],
    ['How long does it take to boil an egg?', 'How long does it usually take to boil an egg?'],
  ])('keeps paraphrases with the same order, or order on one side only: %s / %s', (a, b) => {
    expect(agree(a, b)).toEqual({ ok: true });
  });

  it('reads an infinitive "to" as no direction, and tags sides only around markers', () => {
    expect(extractFeatures('How to reset my password').order).toEqual([]);
    expect(extractFeatures('I want to learn Python').order).toEqual([]);
    expect(extractFeatures('Convert this Python code to JavaScript').order).toEqual(['ds:code', 'ds:convert', 'ds:python', 'dt:javascript']);
    expect(extractFeatures('Translate from English to German, please').order).toEqual(['ds:english', 'dt:german']);
  });
});

describe('verbs grouped by outcome', () => {
  // Each leads to a different answer; none may be folded into another.
  const verbs = ['reset', 'update', 'restart', 'delete', 'deactivate', 'install', 'uninstall', 'cancel', 'renew', 'pause',
    'buy', 'sell', 'upgrade', 'downgrade', 'import', 'export', 'encrypt', 'decrypt', 'encode', 'decode', 'upload',
    'download', 'insert', 'append', 'swap', 'switch', 'finish', 'stop', 'start', 'lock', 'unlock', 'back up', 'restore'];
  const pairs = verbs.flatMap((v, i) => verbs.slice(i + 1).map((u) => [v, u]));
  it.each(pairs)('How do I %s my files? / How do I %s my files?', (v, u) => {
    expect(agree(`How do I ${v} my files?`, `How do I ${u} my files?`).ok).toBe(false);
  });

  it.each([
    ['How do I reset my router?', 'How do I update my router?'],
    ['How do I reset my password?', 'How do I change my password?'],
    ['How do I swap the values of two columns?', 'How do I update the values of two columns?'],
    ['How do I finish a Git rebase?', 'How do I stop a Git rebase?'],
    ['How do I end a novel?', 'How do I finish a novel?'],
    ['How do I back up my phone?', 'How do I back up my contacts?'],
    ["What's the fastest way to mail documents?", "What's the fastest way to email documents?"],
    ['How do I encode a string in Python?', 'How do I encrypt a string in Python?'],
    ['How do I append an item to a list?', 'How do I insert an item into a list?'],
    ['What is the tallest animal?', 'What is the largest animal?'],
    ['What is the deepest lake?', 'What is the largest lake?'],
    ['Who is the youngest president?', 'Who is the latest president?'],
    ['Does Jupiter have more moons than Saturn?', 'Does Jupiter have bigger moons than Saturn?'],
    ['Is it warm in Madrid in March?', 'Is it hot in Madrid in March?'],
    ['Who is the shortest NBA player?', 'Who is the lightest NBA player?'],
    ['How do I update my router?', 'How do I change my router?'],
    ['How do I edit my profile picture?', 'How do I change my profile picture?'],
    ['How do I reach the airport?', 'How do I contact the airport?'],
    ['How do I create a role in PostgreSQL?', 'How do I create a function in PostgreSQL?'],
    ['How do I drop a course?', 'How do I delete a course?'],
    ['Which laptop is better for gaming?', 'Which laptop is best for gaming?'],
    ['What is the oldest tree?', 'What is the earliest tree?'],
    ['What are the risks of coffee?', 'What are the drawbacks of coffee?'],
  ])('refuses verbs and contrast words that the old tables folded together: %s / %s', (a, b) => {
    expect(agree(a, b).ok).toBe(false);
  });

  it.each([
    ['How do I edit my profile?', 'How do I modify my profile?'],
    ['How do I delete my account?', 'How do I remove my account?'],
    ['How do I enable two-factor authentication?', 'How can I turn on two-factor authentication?'],
    ['How do I turn off notifications?', 'How do I disable notifications?'],
    ['How do I sign in to Gmail?', 'How do I log in to Gmail?'],
    ['Which planet is the biggest?', "What's the largest planet?"],
    ['How do I sort a dict by value in Python?', 'How do I sort a dictionary by value in Python?'],
    ['How do I reverse an array in JS?', 'How do I reverse an array in JavaScript?'],
  ])('keeps verbs and words that lead to the same answer together: %s / %s', (a, b) => {
    expect(agree(a, b)).toEqual({ ok: true });
  });
});

describe('request verbs and the form of the answer', () => {
  it.each([
    ["What's the best way to learn French?", "What's the best way to teach French?", 'request'],
    ['Write a SQL query that finds duplicate emails.', 'Explain a SQL query that finds duplicate emails.', 'request'],
    ['Explain the causes of World War I.', 'Summarize the causes of World War I.', 'request'],
    ['List the planets in the solar system.', 'Describe the planets in the solar system.', 'request'],
    ['Calculate the compound interest on 1,000 dollars at 5% for 3 years.', 'Explain the compound interest on 1,000 dollars at 5% for 3 years.', 'request'],
    ['Give me a simple explanation of quantum physics.', 'Give me a detailed explanation of quantum physics.', 'form'],
    ['Explain recursion briefly.', 'Explain recursion in detail.', 'form'],
    ['Explain photosynthesis simply.', 'Explain photosynthesis.', 'form'],
    ['Give me an example of a metaphor.', 'Explain what a metaphor is.', 'form'],
    ['Explain chess to a beginner.', 'Explain chess to an expert.', 'form'],
    ['Write a short poem about the sea.', 'Write a poem about the sea.', 'form'],
  ])('%s / %s disagree on %s', (a, b, reason) => {
    expect(agree(a, b)).toEqual({ ok: false, reason });
  });

  it.each([
    ['Explain how photosynthesis works.', 'How does photosynthesis work?'],
    ['Describe the water cycle.', 'Explain the water cycle.'],
    ['Teach me the basics of chess.', 'Explain the basics of chess.'],
    ['Write a haiku about autumn leaves.', 'Compose a haiku about autumn leaves.'],
    ['Summarize the plot of Hamlet.', 'Give me a summary of the plot of Hamlet.'],
    ['Give me a list of healthy snacks.', 'List some healthy snacks.'],
    ['Explain black holes in simple terms.', 'Explain black holes simply.'],
    ['Explain recursion briefly.', 'Give me a brief explanation of recursion.'],
    ['What is machine learning?', 'Can you explain machine learning?'],
    ['What does HTTP stand for?', 'What is HTTP short for?'],
    ['How do I reverse a list in Python?', 'How can I reverse a Python list?'],
  ])('keeps requests that ask for the same answer: %s / %s', (a, b) => {
    expect(agree(a, b)).toEqual({ ok: true });
  });

  it('reads "list" as a request only where it is a verb, and a capitalised form word as a name', () => {
    expect(extractFeatures('List the planets').request).toEqual(['list']);
    expect(extractFeatures('How do I reverse a list in Python?').request).toEqual([]);
    expect(extractFeatures('How do I reverse a list in Python?').content).toContain('list');
    expect(extractFeatures('How much is the Basic plan?')).toMatchObject({ form: [], entities: ['basic'] });
  });

  it('makes similar, same, old, sort and call content words', () => {
    expect(agree('How are processes and threads similar?', 'How are processes and threads different?')).toEqual({ ok: false, reason: 'content' });
    expect(agree('How do I call a function in Python?', 'How do I name a function in Python?')).toEqual({ ok: false, reason: 'content' });
    expect(agree('What sort of database should I use?', 'What kind of database should I use?')).toEqual({ ok: true });
  });
});

describe('symbols, tense and filler', () => {
  it.each([
    ['What is the difference between == and === in JavaScript?', 'What is the difference between = and == in JavaScript?', 'symbols'],
    ['What does the && operator do in Bash?', 'What does the || operator do in Bash?', 'symbols'],
    ['What does the ?? operator do in C#?', 'What does the ?. operator do in C#?', 'symbols'],
    ['Who is the CEO of Twitter?', 'Who was the CEO of Twitter?', 'tense'],
  ])('%s / %s disagree on %s', (a, b, reason) => {
    expect(agree(a, b)).toEqual({ ok: false, reason });
  });

  it('ignores sentence punctuation, dashes and emphasis as symbols', () => {
    expect(extractFeatures('What?! Really... -- **Note:** is it true?').symbols).toEqual([]);
    expect(extractFeatures('What does a ?? b do, and x != y?').symbols).toEqual(['!=', '??']);
  });

  it.each([
    ['How do I check if a key exists in a dictionary?', 'How can I check whether a key exists in a dictionary?'],
    ['What time is it in Tokyo right now?', 'What time is it in Tokyo?'],
    ['How many days are left until Christmas?', 'How many days until Christmas?'],
    ['How do I make a cup of tea?', 'What is the best way to make a cup of tea?'],
    ['How long does shipping to Canada take?', 'How long does it take to ship to Canada?'],
    ['Write an email declining an invitation.', 'Write an email to decline an invitation.'],
    ['Convert 100 degrees Fahrenheit to Celsius.', 'Convert 100 Fahrenheit to Celsius.'],
  ])('allows filler and inflections the old rules refused: %s / %s', (a, b) => {
    expect(agree(a, b)).toEqual({ ok: true });
  });
});

describe('extraction state', () => {
  it('leaves the features it returned untouched by the next extraction', () => {
    const a = extractFeatures('Remove the Docker image from the registry, then go from Paris to Berlin');
    const copy = structuredClone(a);
    expect(a.order.length).toBeGreaterThan(0);
    extractFeatures('How do I get downtown from the airport? Is Rust faster than Go?');
    extractFeatures('Convert this Python script to TypeScript');
    expect(a).toEqual(copy);
  });
});
