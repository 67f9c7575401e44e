// Throughput of the local (llama.cpp) provider: N requests through one context with N sequences,
// all at once (llama.cpp batches them into one evaluation per step), against the same N requests one
// at a time. Short by default; prints one table and a JSON line with the machine's facts.
//
//   npx tsx bench/local-batching.ts [--requests 8] [--tokens 64] [--rounds 3] [--threads 1] [--models-dir DIR]
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ChatRequest } from '../src/canonical/chat.js';
import { createLocalProvider, type LocalProvider } from '../src/providers/local.js';
import type { CallOptions } from '../src/providers/types.js';

const MODEL = 'stories260K';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '8' },
    tokens: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '1' },
    'models-dir': { type: 'string' },
  },
});
const requests = Number(values.requests);
const maxTokens = Number(values.tokens);
const rounds = Number(values.rounds);
const threads = Number(values.threads);

/** `<clone>/../shared/models/stories260K`, or one level further up from a git worktree. */
function defaultModelsDir(): string | undefined {
  let dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  for (let i = 0; i < 3; i++) {
    dir = path.dirname(dir);
    const candidate = path.join(dir, 'shared', 'models', MODEL);
    if (existsSync(path.join(candidate, `${MODEL}.gguf`))) return candidate;
  }
  return undefined;
}

const modelsDir = values['models-dir'] ?? defaultModelsDir();
if (!modelsDir) {
  console.error(`no ${MODEL}.gguf found beside the repository; pass --models-dir`);
  process.exit(1);
}

const PROMPTS = ['Once upon a time', 'The little dog', 'Lily wanted to', 'One day, a bird', 'The sun was', 'Tom had a', 'A big red ball', 'The cat and'];

function requestFor(i: number): ChatRequest {
  return {
    model: MODEL,
    messages: [{ role: 'user', content: PROMPTS[i % PROMPTS.length]! }],
    temperature: 0.8,
    seed: i,
    max_tokens: maxTokens,
  };
}

const callOptions = (): CallOptions => ({ signal: new AbortController().signal, timeoutMs: 120_000, requestId: 'bench' });

interface Run {
  ms: number;
  tokens: number;
}

async function oneAtATime(provider: LocalProvider): Promise<Run> {
  const start = performance.now();
  let tokens = 0;
  for (let i = 0; i < requests; i++) tokens += (await provider.chat(requestFor(i), callOptions())).usage.completion_tokens;
  return { ms: performance.now() - start, tokens };
}

async function allAtOnce(provider: LocalProvider): Promise<Run> {
  const start = performance.now();
  const results = await Promise.all(Array.from({ length: requests }, (_, i) => provider.chat(requestFor(i), callOptions())));
  return { ms: performance.now() - start, tokens: results.reduce((sum, r) => sum + r.usage.completion_tokens, 0) };
}

function median(runs: Run[]): Run {
  return [...runs].sort((a, b) => a.ms - b.ms)[Math.floor(runs.length / 2)]!;
}

const provider = await createLocalProvider('bench-local', {
  type: 'local',
  options: { models_dir: modelsDir, threads, context_size: 512, max_sequences: requests },
});
try {
  await provider.chat(requestFor(0), callOptions()); // load the model and create the sequences' context
  const sequential: Run[] = [];
  const batched: Run[] = [];
  for (let r = 0; r < rounds; r++) {
    sequential.push(await oneAtATime(provider));
    batched.push(await allAtOnce(provider));
  }
  const rows = [
    ['one at a time', median(sequential)],
    [`${requests} at once`, median(batched)],
  ] as const;
  console.log(`local provider, ${MODEL}, ${requests} requests x max ${maxTokens} tokens, threads ${threads}, median of ${rounds} rounds`);
  console.log('mode              wall ms   tokens   tokens/s   requests/s');
  for (const [label, run] of rows) {
    const seconds = run.ms / 1000;
    console.log(
      `${label.padEnd(16)} ${run.ms.toFixed(0).padStart(8)} ${String(run.tokens).padStart(8)} ${(run.tokens / seconds).toFixed(0).padStart(10)} ${(requests / seconds).toFixed(1).padStart(12)}`,
    );
  }
  const speedup = (rows[1][1].tokens / rows[1][1].ms) / (rows[0][1].tokens / rows[0][1].ms);
  console.log(`batched throughput: ${speedup.toFixed(2)}x tokens/s`);
  console.log(
    JSON.stringify({
      bench: 'local-batching',
      requests,
      maxTokens,
      threads,
      sequential: median(sequential),
      batched: median(batched),
      speedup: Number(speedup.toFixed(2)),
      machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, loadavg: os.loadavg().map((l) => Number(l.toFixed(2))) },
    }),
  );
} finally {
  await provider.close();
}
