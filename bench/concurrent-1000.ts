// Seed 002's load test: 1,000 concurrent clients streaming chat completions through the gateway,
// against an upstream with a realistic latency (first byte after a few hundred ms, then words
// streamed). Targets: P95 under 2 s, at least 99.9% success. The clients join over a short ramp, as
// k6's does; the verdict is taken on the steady part after the ramp.
//
// Usage: npm run build && tsx bench/concurrent-1000.ts [--clients 1000] [--seconds 30] [--ramp 5]
//          [--latency 300] [--word-delay 20] [--workers 1] [--redis redis://…] [--database postgres://…] [--mesh]
//          [--out bench/results/concurrent-1000.json]
// --mesh: the same load through the inference mesh (gateway → Redis Streams → mesh worker → upstream).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BENCH_TOKEN, flag, machine, startPipelineGateway, writeResults } from './full-pipeline.js';
import { chatBody, closedLoop, summarize, type ShotResult } from './lib/mixed-load.js';
import { ROOT, startProcess } from './lib/processes.js';

async function main() {
  const args = process.argv.slice(2);
  const num = (name: string, def: number) => Number(flag(args, name) ?? def);
  const CLIENTS = num('clients', 1000);
  const SECONDS = num('seconds', 30);
  const RAMP = num('ramp', 5);
  const LATENCY = num('latency', 300);
  const WORD_DELAY = num('word-delay', 20);
  const WORKERS = num('workers', 1);
  const MESH = args.includes('--mesh');
  const OUT = flag(args, 'out') ?? `bench/results/concurrent-1000${MESH ? '-mesh' : ''}.json`;

  if (MESH && !existsSync(join(ROOT, 'src/mesh/router.ts'))) {
    // TODO(mesh): when src/mesh lands, start a mesh worker process serving `bench` from the upstream
    // below, configure the gateway's `bench` model to route through the mesh (Redis Streams), and
    // run the same closed loop. Everything else in this file stays the same.
    console.log('--mesh: the inference mesh is not in this build (src/mesh/ is missing); nothing to measure yet.');
    return;
  }

  const upstream = await startProcess(['bench/lib/upstream.ts', '0', String(WORD_DELAY), String(LATENCY)]);
  const gateway = await startPipelineGateway({ upstreamPort: upstream.port, workers: WORKERS, redisUrl: flag(args, 'redis'), databaseUrl: flag(args, 'database') });
  const target = { url: `http://127.0.0.1:${gateway.port}/v1/chat/completions`, headers: { authorization: `Bearer ${BENCH_TOKEN}` } };
  try {
    // A short warm-up on a few connections (JIT, upstream pool).
    await closedLoop(target, 20, 2, (i) => ({ kind: 'warm', body: chatBody(`warm-up ${i}`, true), stream: true }), () => undefined);

    const results: ShotResult[] = [];
    const run = Date.now().toString(36);
    const { elapsedS } = await closedLoop(
      target,
      CLIENTS,
      SECONDS,
      (i) => ({ kind: 'stream', body: chatBody(`Tell me a short story, please. ${run}-${i}`, true), stream: true }),
      (r) => results.push(r),
      RAMP,
    );
    const steady = results.filter((r) => r.at >= RAMP);
    const all = summarize(results, elapsedS);
    const s = summarize(steady, Math.max(0.001, elapsedS - RAMP));
    const errors = new Map<string, number>();
    for (const r of results) if (!r.ok) errors.set(r.error ?? `HTTP ${r.status}`, (errors.get(r.error ?? `HTTP ${r.status}`) ?? 0) + 1);

    console.log(`\nmachine: ${machine()}; gateway workers: ${WORKERS}${MESH ? '; through the mesh' : ''}`);
    console.log(`upstream: first byte after ${LATENCY} ms, then 10 words ${WORD_DELAY} ms apart (streamed)`);
    console.log(`${CLIENTS} concurrent clients for ${SECONDS} s (ramp ${RAMP} s): ${all.count} requests, ${all.rps.toFixed(0)} req/s`);
    console.log(`  steady part: ${s.count} requests  p50 ${s.p50Ms.toFixed(0)} ms  p95 ${s.p95Ms.toFixed(0)} ms  p99 ${s.p99Ms.toFixed(0)} ms  first byte p50 ${s.ttfbP50Ms.toFixed(0)} ms`);
    console.log(`  P95 ${s.p95Ms.toFixed(0)} ms (target < 2000 ms) ${s.p95Ms < 2000 ? 'PASS' : 'FAIL'}`);
    console.log(`  success ${(all.successRate * 100).toFixed(3)}% (target >= 99.9%) ${all.successRate >= 0.999 ? 'PASS' : 'FAIL'}`);
    for (const [e, n] of errors) console.log(`  failure: ${e} × ${n}`);

    writeResults(OUT, {
      benchmark: 'concurrent-1000',
      at: new Date().toISOString(),
      machine: machine(),
      workers: WORKERS,
      mesh: MESH,
      command: `tsx bench/concurrent-1000.ts ${args.join(' ')}`.trim(),
      upstream: { latencyMs: LATENCY, wordDelayMs: WORD_DELAY },
      clients: CLIENTS,
      seconds: SECONDS,
      rampS: RAMP,
      all,
      steady: s,
      failures: Object.fromEntries(errors),
    });
  } finally {
    gateway.stop();
    upstream.stop();
  }
}

if (process.argv[1]?.endsWith('concurrent-1000.ts')) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
