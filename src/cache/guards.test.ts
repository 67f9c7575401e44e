import { describe, expect, it } from 'vitest';
import { extractFeatures, featuresAgree } from './guards.js';

function agree(a: string, b: string) {
  return featuresAgree(extractFeatures(a), extractFeatures(b));
}

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
    ['How do I reset my password?', 'What are the steps to change my password?'],
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

  it('treats an entry stored without operators as having none', () => {
    const { operators: _, ...old } = extractFeatures('What is 2+2?');
    expect(featuresAgree(extractFeatures('What is 2-2?'), old)).toEqual({ ok: false, reason: 'operators' });
    expect(featuresAgree(extractFeatures('How many days are in 2 weeks?'), { ...extractFeatures('How many days are in 2 weeks?'), operators: undefined })).toEqual({ ok: true });
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
    expect(extractFeatures('How do I delete my accounts?').content).toEqual(['account', 'remove']);
  });
});
