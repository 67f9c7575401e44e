// Measures the difficulty estimator on the bundled labelled set (config/difficulty-examples.jsonl):
// prototypes come from the `train` split only; accuracy and the confusion matrix are reported on the
// held-out `test` split, for the features alone, the prototypes alone and the blend.
// Run: npx tsx scripts/difficulty-accuracy.ts [examples.jsonl]
import { readFile } from 'node:fs/promises';
import { DifficultyEstimator, parseLabelledExamples, type LabelledExample } from '../src/scaling/estimator.js';
import { LEVELS } from '../src/scaling/levels.js';

const file = process.argv[2] ?? new URL('../config/difficulty-examples.jsonl', import.meta.url).pathname;
const examples = parseLabelledExamples(await readFile(file, 'utf8'));
const train = examples.filter((e) => e.split !== 'test');
const test = examples.filter((e) => e.split === 'test');

function evaluate(name: string, estimator: DifficultyEstimator, set: LabelledExample[]): void {
  const confusion = LEVELS.map(() => LEVELS.map(() => 0));
  let right = 0;
  let withinOne = 0;
  for (const e of set) {
    const got = estimator.estimate(e.prompt).level;
    const gi = LEVELS.indexOf(got);
    const wi = LEVELS.indexOf(e.level);
    const row = confusion[wi] as number[];
    row[gi] = (row[gi] ?? 0) + 1;
    if (gi === wi) right++;
    if (Math.abs(gi - wi) <= 1) withinOne++;
  }
  console.log(`${name.padEnd(22)} exact ${((100 * right) / set.length).toFixed(1)}%  within one level ${((100 * withinOne) / set.length).toFixed(1)}%  (n=${set.length})`);
  console.log(`  rows = labelled, columns = estimated (${LEVELS.join(', ')})`);
  for (const [i, row] of confusion.entries()) console.log(`  ${String(LEVELS[i]).padEnd(7)} ${row.map((c) => String(c).padStart(3)).join(' ')}`);
}

console.log(`labelled set: ${file} — ${train.length} train, ${test.length} test`);
evaluate('features only (test)', new DifficultyEstimator([], {}), test);
evaluate('prototypes only (test)', new DifficultyEstimator(train, { prototypeWeight: 1 }), test);
evaluate('blend 0.25 (test)', new DifficultyEstimator(train, { prototypeWeight: 0.25 }), test);
evaluate('blend 0.25 (train)', new DifficultyEstimator(train, { prototypeWeight: 0.25 }), train);
