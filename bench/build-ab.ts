// Two builds of the gateway against each other: this checkout's dist/ and another checkout's (an
// earlier commit: `git worktree add ../base <commit> && (cd ../base && ln -s "$PWD/../main/node_modules"
// node_modules && npx tsc -p tsconfig.build.json)`), at saturation on the core path of
// gateway-overhead (cache and ledger off), in rounds. On this VM a change of a few per cent is below
// the noise of one run, and three biases were found measuring this way: the process started second
// ran ~5% faster, the one measured second in a round too, and a slow phase of the machine can last a
// round. So each round starts both builds afresh, in alternating order, measures them in that order,
// and stops them; the verdict is the geometric mean of the rounds' ratios (an even number of rounds
// cancels the order). --pin puts each gateway on CPU 1 and the load generator and the upstream
// stand-in on CPU 0 (taskset), which steadies the numbers; both builds run with the image's node flags.
// --pipeline compares them with issue 10's full pipeline instead (full-pipeline.ts's configuration,
// every request a unique prompt, so a cache miss; the CPU counted is the whole process's, its worker
// threads included).
// Usage: npm run build && tsx bench/build-ab.ts --base ../base [--rounds 6] [--seconds 5] [--pin] [--pipeline]
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { flag, numberFlag } from './lib/args.js';
import { startProcess, type Proc } from './lib/processes.js';
import { median } from './lib/rounds.js';
import { CORE_PATH_CONFIG, saturate, startGatewayProcess } from './gateway-overhead.js';
import { BENCH_TOKEN, startOtlpSink, startPipelineGateway } from './full-pipeline.js';
import { chatBody } from './lib/mixed-load.js';

const args = process.argv.slice(2);
const BASE = flag(args, 'base');
const ROUNDS = Math.max(2, numberFlag(args, 'rounds', 6));
const SECONDS = numberFlag(args, 'seconds', 5);
const PIN = args.includes('--pin');
const PIPELINE = args.includes('--pipeline');

/** Saturation with a unique prompt per request (full pipeline: every one a cache miss). */
function saturateMisses(url: string, pid: number | undefined, seconds: number, tag: string): ReturnType<typeof saturate> {
  let n = 0;
  return saturate(url, pid, seconds, 50, {
    headers: { 'content-type': 'application/json', authorization: `Bearer ${BENCH_TOKEN}` },
    requests: [{ setupRequest: (req: { body?: string }) => ({ ...req, body: chatBody(`Say something short. ${tag}-${n++}`, false) }) }],
  });
}

type Build = 'base' | 'this';

function pin(pid: number | undefined, cpu: number): void {
  if (PIN && pid !== undefined) execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
}

async function main() {
  if (!BASE) {
    console.error('usage: tsx bench/build-ab.ts --base <other checkout, built> [--rounds 6] [--seconds 5] [--pin]');
    process.exit(2);
  }
  const upstream = await startProcess(['bench/lib/upstream.ts', '0']);
  const mains: Record<Build, string> = { base: resolve(BASE, 'dist/cli/main.js'), this: 'dist/cli/main.js' };
  const sink = PIPELINE ? await startOtlpSink() : undefined;
  const run = Date.now().toString(36);
  const start = async (b: Build): Promise<Proc> => {
    const p = sink
      ? await startPipelineGateway({ upstreamPort: upstream.port, otlpSink: sink.url, main: mains[b] })
      : await startGatewayProcess(upstream.port, CORE_PATH_CONFIG, 1, {}, mains[b]);
    pin(p.child.pid, 1);
    return p;
  };
  pin(upstream.child.pid, 0);
  pin(process.pid, 0);
  const rps: Record<Build, number[]> = { base: [], this: [] };
  const cpu: Record<Build, number[]> = { base: [], this: [] };
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const order: Build[] = r % 2 === 0 ? ['base', 'this'] : ['this', 'base'];
      const procs = new Map<Build, Proc>();
      try {
        for (const b of order) procs.set(b, await start(b));
        const url = (b: Build) => `http://127.0.0.1:${procs.get(b)?.port}/v1/chat/completions`;
        // Warm-up: the JIT has compiled both request paths before either is measured.
        const load = (b: Build, pid: number | undefined, seconds: number, phase: string) =>
          PIPELINE ? saturateMisses(url(b), pid, seconds, `${run}-${r}-${b}-${phase}`) : saturate(url(b), pid, seconds);
        for (const b of order) await load(b, undefined, 2, 'warm');
        for (const b of order) {
          const s = await load(b, procs.get(b)?.child.pid, SECONDS, 'measured');
          if (s.errors) throw new Error(`${b}: ${s.errors} of ${s.requests} requests failed`);
          rps[b].push(s.rps);
          cpu[b].push(s.cpuUsPerRequest);
        }
      } finally {
        for (const p of procs.values()) p.stop();
      }
      console.log(`  round ${r + 1} (${order.join(' then ')}): base ${rps.base[r]?.toFixed(0)} req/s, this ${rps.this[r]?.toFixed(0)} req/s = ${((rps.this[r] as number) / (rps.base[r] as number)).toFixed(3)}`);
    }
  } finally {
    upstream.stop();
    sink?.close();
  }
  const ratios = rps.this.map((x, i) => x / (rps.base[i] as number));
  const geomean = Math.exp(ratios.reduce((s, x) => s + Math.log(x), 0) / ratios.length);
  console.log(`\nbase ${resolve(BASE)} against this checkout, ${PIPELINE ? 'full pipeline (unique prompts), ' : ''}${ROUNDS} rounds of ${SECONDS} s${PIN ? ', pinned (gateway CPU 1, load and stand-in CPU 0)' : ''}:`);
  for (const b of ['base', 'this'] as const) {
    console.log(`  ${b.padEnd(4)}  median ${median(rps[b]).toFixed(0)} req/s, CPU ${median(cpu[b]).toFixed(1)} µs/request`);
  }
  console.log(`  this / base throughput: geometric mean of rounds ${geomean.toFixed(3)} (rounds ${ratios.map((x) => x.toFixed(3)).join(' ')})`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
