// Seed 002's load test: 1,000 concurrent clients streaming chat completions through the gateway,
// against an upstream with a realistic latency (first byte after a few hundred ms, then words
// streamed). Targets: P95 under 2 s, at least 99.9% success.
//
// Judged as bench/k6/load-test.js judges it: k6's threshold `http_req_duration p(95)<2000` is over
// every request of the run — the ramp included, failed requests included at the time they took — so
// the verdict here is the whole run's P95 (from bench/lib/mixed-load.ts's summarize, which counts
// failures at their elapsed time) and the whole run's success rate. The steady part (requests sent
// after the ramp, once every client has had its first answer) is printed too, as a diagnosis, not as
// the verdict: judged on it alone, a run whose late-joining clients waited many seconds would pass.
//
// The default ramp is k6's (RAMP 30s, HOLD 1m): clients join evenly over 30 s, then all of them send
// for 60 more (--seconds 90). A shorter --seconds without --ramp keeps k6's proportion (the ramp a
// third of the run, so `--seconds 10` ramps over 3.3 s). Two differences remain: k6 then ramps down
// over 15 s (gracefulRampDown 10s), whose lighter requests count in its P95 and which this run does
// not have (so this verdict is, if anything, stricter); and k6 gives a request 30 s before it fails
// it, this client 60 s.
//
// Usage: npm run build && tsx bench/concurrent-1000.ts [--clients 1000] [--seconds 90] [--ramp 30]
//          [--latency 300] [--word-delay 20] [--workers 1] [--redis redis://…] [--database postgres://…]
//          [--mesh] [--mesh-workers 1] [--out bench/results/concurrent-1000.json]
// --mesh: the same load through the inference mesh: gateway (provider type `mesh`) → ingress stream →
// mesh router → node stream → mesh worker (`--backend openai`) → the upstream, and each chunk back over
// the gateway's callback stream. Needs Redis (--redis, default redis://127.0.0.1:6379); the workers
// share the clients between them as their concurrency.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createRedis, hashTagged, isClusterUrl, scanKeys } from '../src/store/redis.js';
import { flag, numberFlag } from './lib/args.js';
import { BENCH_TOKEN, machine, startPipelineGateway, writeResults } from './full-pipeline.js';
import { chatBody, closedLoop, summarize, type ShotResult } from './lib/mixed-load.js';
import { startProcess, type Proc } from './lib/processes.js';

async function main() {
  const args = process.argv.slice(2);
  const num = (name: string, def: number) => numberFlag(args, name, def);
  const CLIENTS = num('clients', 1000);
  const SECONDS = num('seconds', 90);
  // k6's 30 s ramp before its 1 min hold: a third of the run (header comment).
  const RAMP = num('ramp', Math.min(30, SECONDS / 3));
  const LATENCY = num('latency', 300);
  const WORD_DELAY = num('word-delay', 20);
  const WORKERS = num('workers', 1);
  const MESH = args.includes('--mesh');
  const MESH_WORKERS = num('mesh-workers', 1);
  const OUT = flag(args, 'out') ?? `bench/results/concurrent-1000${MESH ? '-mesh' : ''}.json`;

  // Through the mesh: a router and mesh worker processes whose OpenAI-compatible backend is the same
  // upstream; the gateway's `bench` model is served by the `mesh` provider over Redis Streams.
  const redisUrl = flag(args, 'redis');
  const meshRedis = redisUrl ?? 'redis://127.0.0.1:6379';
  const meshPrefix = `ifmesh-bench:${randomBytes(4).toString('hex')}:`;
  const procs: Proc[] = [];
  try {
    const upstream = await startProcess(['bench/lib/upstream.ts', '0', String(WORD_DELAY), String(LATENCY)]);
    procs.push(upstream);
    if (MESH) {
      // Info level: the start-up line is what startProcess waits for; nothing is logged per request.
      const shared = ['--redis-url', meshRedis, '--key-prefix', meshPrefix, '--log-level', 'info'];
      for (let n = 1; n <= MESH_WORKERS; n++) {
        procs.push(
          await startProcess(
            ['dist/cli/main.js', 'worker', '--node-id', `bench-node-${n}`, '--backend', 'openai', '--base-url', `http://127.0.0.1:${upstream.port}/v1`, '--api-key', 'bench', '--max-concurrency', String(Math.ceil(CLIENTS / MESH_WORKERS)), ...shared],
            {},
            /mesh worker started/,
          ),
        );
      }
      procs.push(await startProcess(['dist/cli/main.js', 'router', '--router-id', 'bench-router', ...shared], {}, /mesh router started/));
    }
    const gateway = await startPipelineGateway({
      upstreamPort: upstream.port,
      workers: WORKERS,
      redisUrl,
      databaseUrl: flag(args, 'database'),
      ...(MESH ? { mesh: { redisUrl: meshRedis, keyPrefix: meshPrefix } } : {}),
    });
    procs.unshift(gateway);
    const target = { url: `http://127.0.0.1:${gateway.port}/v1/chat/completions`, headers: { authorization: `Bearer ${BENCH_TOKEN}` } };
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
    // The verdict is the whole run's (as k6's). Steady, printed beside it: requests sent once every
    // client is in, i.e. after the ramp and after the last client got its first answer. A saturated
    // process accepts one connection per event-loop turn (libuv >= 1.45), so clients that connect
    // into a busy gateway can wait many seconds for their first answer while the others go on.
    const firstAnswer = new Map<number, number>();
    for (const r of results) if (r.client !== undefined && r.ok) firstAnswer.set(r.client, Math.min(firstAnswer.get(r.client) ?? Infinity, r.at));
    const allIn = firstAnswer.size === CLIENTS ? Math.max(...firstAnswer.values()) : Infinity;
    const steadyFrom = Math.max(RAMP, allIn);
    const steady = results.filter((r) => r.at - r.latencyUs / 1e6 >= steadyFrom);
    const all = summarize(results, elapsedS);
    const s = summarize(steady, Math.max(0.001, SECONDS - steadyFrom));
    // k6's thresholds: http_req_duration p(95) < 2000 over the whole run, and >= 99.9% succeeding.
    const p95Pass = all.count > 0 && all.p95Ms < 2000;
    const successPass = all.successRate >= 0.999;
    const errors = new Map<string, number>();
    for (const r of results) if (!r.ok) errors.set(r.error ?? `HTTP ${r.status}`, (errors.get(r.error ?? `HTTP ${r.status}`) ?? 0) + 1);

    console.log(`\nmachine: ${machine()}; gateway workers: ${WORKERS}${MESH ? '; through the mesh' : ''}`);
    console.log(`upstream: first byte after ${LATENCY} ms, then 10 words ${WORD_DELAY} ms apart (streamed)`);
    console.log(`${CLIENTS} concurrent clients for ${SECONDS} s (ramp ${Number(RAMP.toFixed(1))} s): ${all.count} requests, ${all.rps.toFixed(0)} req/s`);
    console.log(
      `  whole run (the verdict, as k6's): ${all.count} requests  p50 ${all.p50Ms.toFixed(0)} ms  p95 ${all.p95Ms.toFixed(0)} ms  p99 ${all.p99Ms.toFixed(0)} ms (${all.failed} failed, counted at the time they took; successes only p95 ${all.okP95Ms.toFixed(0)} ms)`,
    );
    console.log(`  every client had its first answer ${Number.isFinite(allIn) ? `after ${allIn.toFixed(1)} s` : `— never: ${CLIENTS - firstAnswer.size} clients got none`}`);
    console.log(
      `  steady part (sent after ${steadyFrom.toFixed(1)} s, every client in; not the verdict): ${s.count} requests  p50 ${s.p50Ms.toFixed(0)} ms  p95 ${s.p95Ms.toFixed(0)} ms  p99 ${s.p99Ms.toFixed(0)} ms  first byte p50 ${s.ttfbP50Ms.toFixed(0)} ms`,
    );
    console.log(`  P95 ${all.p95Ms.toFixed(0)} ms over the whole run (steady ${s.count > 0 ? `${s.p95Ms.toFixed(0)} ms` : 'none'}) (target < 2000 ms) ${p95Pass ? 'PASS' : 'FAIL'}`);
    console.log(`  success ${(all.successRate * 100).toFixed(3)}% (target >= 99.9%) ${successPass ? 'PASS' : 'FAIL'}`);
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
      verdict: { on: 'whole run (k6: http_req_duration p(95) over every request)', p95Ms: all.p95Ms, p95Pass, successRate: all.successRate, successPass, pass: p95Pass && successPass },
      allClientsAnsweredAfterS: Number.isFinite(allIn) ? allIn : null,
      steadyFromS: steadyFrom,
      steady: s,
      failures: Object.fromEntries(errors),
    });
  } finally {
    // Stopped and gone before the keys are deleted, so no last heartbeat writes them again.
    await Promise.all(procs.map((p) => (p.child.exitCode === null && p.child.signalCode === null ? (p.stop(), once(p.child, 'exit')) : undefined)));
    if (MESH) await deleteMeshKeys(meshRedis, meshPrefix);
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

/** The mesh streams and keys this run made (hash-tagged on a cluster), so repeated runs leave nothing behind. */
async function deleteMeshKeys(url: string, prefix: string): Promise<void> {
  const redis = createRedis(url, 'bench-cleanup');
  try {
    const keys = await scanKeys(redis, `${isClusterUrl(url) ? hashTagged(prefix) : prefix}*`);
    for (const key of keys) await redis.del(key);
  } finally {
    redis.disconnect();
  }
}
