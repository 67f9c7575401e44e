// Test-time scaling against arithmetic: the simulator's noisy oracle answers "What is A+B?" right
// with probability p per pass (else one fixed wrong answer), so aggregation has exact expected values.
//  1. p = 0.6, 5 passes, majority vote: accuracy should match P(Binomial(5, 0.6) >= 3) = 0.68256.
//  2. p = 0.8, budget 16: adaptive (Beta stop rule at 0.95) vs a fixed 16-pass vote — passes spent
//     and accuracy. Runs in-process through the real scaling stage; no network, a few seconds.
// Run: npx tsx bench/tts-aggregation.ts [questions=2000] [seed=7]
import type { ChatRequest } from '../src/canonical/chat.js';
import { ANONYMOUS, defaultRequestOptions, newFacts, type RequestContext } from '../src/gateway/context.js';
import type { ChatHandler } from '../src/gateway/pipeline.js';
import { createSimulatorProvider, oracleKey } from '../src/providers/simulator.js';
import { testTimeScalingSchema } from '../src/scaling/config.js';
import { createScalingStage } from '../src/scaling/stage.js';
import { createLogger } from '../src/telemetry/logger.js';

const QUESTIONS = Number(process.argv[2] ?? 2000);
const SEED = Number(process.argv[3] ?? 7);
const log = createLogger('silent');

function binomialAtLeast(n: number, k: number, p: number): number {
  let sum = 0;
  for (let i = k; i <= n; i++) sum += choose(n, i) * p ** i * (1 - p) ** (n - i);
  return sum;
}
function choose(n: number, k: number): number {
  let c = 1;
  for (let i = 1; i <= k; i++) c = (c * (n - k + i)) / i;
  return c;
}

function questions(count: number, seed: number): string[] {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  return Array.from({ length: count }, () => `What is ${next() % 1000}+${next() % 1000}?`);
}

async function run(p: number, aggregation: string, passes: number): Promise<{ accuracy: number; meanPasses: number }> {
  const sim = createSimulatorProvider('sim', { oracle: { p, seed: SEED } });
  const terminal: ChatHandler = async (ctx, req) => ({ kind: 'result', result: await sim.chat(req, { signal: ctx.signal, timeoutMs: 10_000, requestId: ctx.id }) });
  const config = testTimeScalingSchema.parse({ difficulty_levels: { expert: { passes, max_tokens: 64, timeout_s: 60 } } });
  const stage = createScalingStage({ config });
  let right = 0;
  let spent = 0;
  for (const q of questions(QUESTIONS, SEED)) {
    const options = defaultRequestOptions();
    options.difficulty = 'expert';
    options.aggregation = aggregation;
    const ctx: RequestContext = { id: 'bench', startedAt: 0, endpoint: 'bench', tenant: ANONYMOUS, signal: new AbortController().signal, log, options, facts: newFacts(), headers: {} };
    const req: ChatRequest = { model: 'simulator', messages: [{ role: 'user', content: q }] };
    const out = await stage(ctx, req, terminal);
    if (out.kind !== 'result') throw new Error('expected a result');
    if ((ctx.facts.scaling?.answer as string) === oracleKey(q)?.right) right++;
    spent += ctx.facts.passes ?? 0;
  }
  return { accuracy: right / QUESTIONS, meanPasses: spent / QUESTIONS };
}

const se = (p: number) => Math.sqrt((p * (1 - p)) / QUESTIONS);

console.log(`test-time scaling on the noisy oracle — ${QUESTIONS} questions, seed ${SEED}`);
const expected1 = binomialAtLeast(5, 3, 0.6);
const r1 = await run(0.6, 'self_consistency', 5);
const z1 = (r1.accuracy - expected1) / se(expected1);
console.log(`\n1) p = 0.6, 5 passes, majority vote`);
console.log(`   accuracy ${r1.accuracy.toFixed(4)}  expected ${expected1.toFixed(4)} (binomial)  standard error ${se(expected1).toFixed(4)}  z = ${z1.toFixed(2)}  ${Math.abs(z1) <= 3 ? 'within sampling error' : 'OUTSIDE sampling error'}`);
console.log(`   single pass would score 0.6000`);

const fixed = await run(0.8, 'self_consistency', 16);
const adaptive = await run(0.8, 'adaptive', 16);
const saved = 1 - adaptive.meanPasses / fixed.meanPasses;
const drop = (fixed.accuracy - adaptive.accuracy) * 100;
console.log(`\n2) p = 0.8, budget 16 passes`);
console.log(`   fixed 16 vote : accuracy ${fixed.accuracy.toFixed(4)}  passes/question ${fixed.meanPasses.toFixed(2)}`);
console.log(`   adaptive      : accuracy ${adaptive.accuracy.toFixed(4)}  passes/question ${adaptive.meanPasses.toFixed(2)}`);
console.log(`   adaptive spends ${(saved * 100).toFixed(1)}% fewer passes (goal >= 40%) at ${drop.toFixed(2)} points lower accuracy (goal <= 1)  ${saved >= 0.4 && drop <= 1 ? 'OK' : 'MISSED'}`);
