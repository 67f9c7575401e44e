// Issue 10's overhead benchmark: the gateway with every capability configured, against the same
// upstream stand-in called directly and through a minimal pass-through proxy, in one run.
// Saturation throughput (autocannon), added latency at a fixed 1,000 req/s, a sweep of offered
// loads (for bench/plot.ts), and the cache-hit path against the miss path. Targets on a 2-core box:
// gateway >= 0.7 × proxy throughput; p99 added latency <= 2 ms at 1,000 req/s; hit path >= 2 × miss.
//
// Usage: npm run build && tsx bench/full-pipeline.ts [--seconds 8] [--rate 1000] [--rounds 1]
//          [--sweep 250,500,1000,2000,4000] [--sweep-seconds 5] [--workers 1] [--redis redis://…]
//          [--database postgres://…]
//          [--extra-config more.yaml] [--out bench/results/full-pipeline.json]
// --rounds N > 1 adds N - 1 more saturation rounds of proxy then gateway and judges the median
// gateway / proxy ratio (bench/lib/rounds.ts, as gateway-overhead.ts does): this VM's speed drifts
// 2× within minutes, so one proxy run and one gateway run after it can flatter or wrong either side.
//
// MISSES ARE MISSES: the gateway's cache keeps every answer of the run, so each phase (warm-up, each
// saturation round, the fixed-rate run, each sweep step; per target) has its own prompt prefix, and
// every phase's `x-inferenceflow-cache` answers are counted and printed. A phase meant to be all
// misses that got a hit (exact or semantic) makes the run fail (exit 1, "INVALID RUN") after the
// results are written: its throughput and latency would be the cache's, not the pipeline's; so does
// a cache-hit phase with under 99% hits while the cache is on. Before
// this, every phase numbered its prompts from 0 with one run id, so the fixed run and each sweep step
// replayed the warm-up's and each other's prompts as cache hits.
// Fixed-rate and sweep latency counts from each request's intended send time, failures included at
// their elapsed time (bench/lib/mixed-load.ts); the load generator's send lag is printed beside it.
//
// WHAT IS SWITCHED ON (PIPELINE_SECTIONS below; pass --extra-config to try more):
//   [on]  auth: bearer token (auth.tokens) — an API key from the key store is the same path after lookup
//   [on]  rate_limiting: a per-caller request limit far above the offered load (counted, never refused);
//         budgets (default on)
//   [on]  cache: exact + semantic (static embedder, threshold 0.85); `memory`, or `redis` with --redis
//   [on]  monitoring: Prometheus metrics; tracing sampled at 10% (parentbased_traceidratio) and exported
//         over OTLP/HTTP to a sink this script starts (accepts and drops spans)
//   [on]  ledger: one record per request, in PGlite in a temporary folder, or Postgres with --database
//   [on]  capacity: traffic recorder feeding the autoscaler; request log line per request (info)
//   [on]  routing: its defaults (circuit breaker, retries within the retry budget, request dedup)
// Several workers need --database postgres://… (the embedded PGlite file is single-process).
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import autocannon from 'autocannon';
import { percentile } from './lib/load.js';
import { cacheCounts, cacheHits, chatBody, openLoop, summarize, type Shot, type ShotResult } from './lib/mixed-load.js';
import { ROOT, startProcess, type Proc } from './lib/processes.js';
import { flag, numberFlag } from './lib/args.js';
import { alternateRounds, median, printRounds, ratioSummary } from './lib/rounds.js';

export const BENCH_TOKEN = 'bench-token-0123456789';
/** Reads the admin routes (`/v1/cache/stats`); the load itself uses BENCH_TOKEN. */
export const BENCH_ADMIN_TOKEN = 'bench-admin-token-0123456789';
const OTLP_SINK = '__OTLP_SINK__';

/** The config sections of every capability on main; add each landed capability's section here. */
export const PIPELINE_SECTIONS = `
auth:
  tokens: [${BENCH_TOKEN}]
  admin_token: ${BENCH_ADMIN_TOKEN}
logging:
  level: info
rate_limiting:
  enabled: true
  requests: 1000000000
  window_s: 60
cache:
  enabled: true
  backend: __CACHE_BACKEND__
  semantic: { enabled: true, threshold: 0.85, embedder: static }
monitoring:
  metrics: { enabled: true }
  tracing: { enabled: true, otlp_endpoint: "__OTLP_SINK__/v1/traces", sampler: parentbased_traceidratio, sampler_arg: 0.1 }
ledger:
  enabled: true
  spool_path: __DATA_DIR__/ledger-spool.jsonl
`;

export interface PipelineGatewayOptions {
  upstreamPort: number;
  workers?: number;
  redisUrl?: string;
  /** postgres://… for the ledger; unset: PGlite in a temporary folder. */
  databaseUrl?: string;
  /** More YAML appended to the config (a capability being tried before it is added above). */
  extraConfig?: string;
  otlpSink?: string;
  /** Serve `bench` through the inference mesh (provider type `mesh`) instead of calling the upstream. */
  mesh?: { redisUrl: string; keyPrefix: string };
  /** Environment for the gateway process (overrides, e.g. CACHE_MAX_BYTES). */
  env?: Record<string, string>;
  /** The entry point to run (bench/build-ab.ts runs another checkout's); default this checkout's dist/. */
  main?: string;
}

/** Starts `inferenceflow serve` (built, from dist/) with the full pipeline in front of the upstream. */
export async function startPipelineGateway(opts: PipelineGatewayOptions): Promise<Proc> {
  const dir = mkdtempSync(join(tmpdir(), 'if-pipeline-'));
  const file = join(dir, 'pipeline.yaml');
  const workers = opts.workers ?? 1;
  const yaml = `providers:
  upstream: ${
    opts.mesh
      ? `{ type: mesh, options: { redis_url: "${opts.mesh.redisUrl}", key_prefix: "${opts.mesh.keyPrefix}" } }`
      : `{ type: openai, base_url: "http://127.0.0.1:${opts.upstreamPort}/v1", api_key: bench, max_connections: 512 }`
  }
models:
  - name: bench
    deployments:
      - { provider: upstream, model: bench-model }
${opts.redisUrl ? `redis:\n  url: ${opts.redisUrl}\n  key_prefix: "bench:${process.pid}:"\n` : ''}database:
  ${opts.databaseUrl ? `url: ${opts.databaseUrl}` : `pglite_path: ${join(dir, 'ledger.pglite')}`}
${PIPELINE_SECTIONS}
${opts.extraConfig ?? ''}`
    .replaceAll(OTLP_SINK, opts.otlpSink ?? 'http://127.0.0.1:4318')
    .replaceAll('__CACHE_BACKEND__', opts.redisUrl ? 'redis' : 'memory')
    .replaceAll('__DATA_DIR__', dir);
  writeFileSync(file, yaml);
  const ready = workers > 1 ? /"url":"http:\/\/127\.0\.0\.1:(\d+)","workers"/ : /"url":"http:\/\/127\.0\.0\.1:(\d+)"/;
  return startProcess([opts.main ?? 'dist/cli/main.js', 'serve', '--config', file, '--port', '0', '--workers', String(workers)], { LOG_LEVEL: 'info', ...opts.env }, ready);
}

/** Accepts OTLP/HTTP trace exports and drops them, so tracing costs what it costs in production. */
export function startOtlpSink(): Promise<{ url: string; close(): void }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      resolve({ url: `http://127.0.0.1:${port}`, close: () => server.close() });
    }),
  );
}

export function machine(): string {
  return `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, node ${process.version}`;
}

export function writeResults(path: string, data: unknown): void {
  const abs = path.startsWith('/') ? path : join(ROOT, path);
  mkdirSync(dirname(abs), { recursive: true });
  writeFileSync(abs, `${JSON.stringify(data, null, 2)}\n`);
  console.log(`\nresults written to ${path}`);
}

const ms = (v: number) => `${v.toFixed(3)} ms`;

/** The gateway's event-loop delay beyond its sampling interval over a phase, ms (`/debug/process`). */
interface LoopDelay {
  p50: number;
  p99: number;
  max: number;
  samples: number;
}

async function loopDelay(port: number, reset: boolean): Promise<LoopDelay | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/debug/process${reset ? '?reset=true' : ''}`, { headers: { authorization: `Bearer ${BENCH_TOKEN}` } });
    const body = (await res.json()) as { event_loop_delay_ms?: LoopDelay };
    if (!res.ok || !body.event_loop_delay_ms) throw new Error(`HTTP ${res.status}: ${JSON.stringify(body).slice(0, 200)}`);
    return body.event_loop_delay_ms;
  } catch (err) {
    console.error(`  !! /debug/process: ${(err as Error).message}`);
    return undefined;
  }
}

const loopText = (l: LoopDelay | undefined) => (l ? `  loop delay p99 ${l.p99.toFixed(1)} ms, max ${l.max.toFixed(1)} ms` : '');

/** One phase's `x-inferenceflow-cache` answers, against what the phase is meant to get. */
interface PhaseCache {
  phase: string;
  target: string;
  expect: 'miss' | 'hit';
  counts: Record<string, number>;
}

const countsText = (c: Record<string, number>) =>
  Object.entries(c)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');

async function main() {
  const args = process.argv.slice(2);
  const num = (name: string, def: number) => numberFlag(args, name, def);
  const SECONDS = num('seconds', 8);
  const RATE = num('rate', 1000);
  const ROUNDS = Math.max(1, num('rounds', 1));
  const CONNECTIONS = num('connections', 50);
  const SWEEP = (flag(args, 'sweep') ?? '250,500,1000,2000,4000').split(',').map(Number).filter((n) => n > 0);
  const SWEEP_SECONDS = num('sweep-seconds', 5);
  const WORKERS = num('workers', 1);
  const OUT = flag(args, 'out') ?? 'bench/results/full-pipeline.json';
  const extraFile = flag(args, 'extra-config');

  const sink = await startOtlpSink();
  const upstream = await startProcess(['bench/lib/upstream.ts', '0']);
  const proxy = await startProcess(['bench/lib/proxy.ts', '0', `http://127.0.0.1:${upstream.port}`]);
  const gateway = await startPipelineGateway({
    upstreamPort: upstream.port,
    workers: WORKERS,
    redisUrl: flag(args, 'redis'),
    databaseUrl: flag(args, 'database'),
    extraConfig: extraFile ? readFileSync(extraFile, 'utf8') : '',
    otlpSink: sink.url,
  });
  const auth = { authorization: `Bearer ${BENCH_TOKEN}` };
  const targets: Record<string, { url: string; headers: Record<string, string> }> = {
    direct: { url: `http://127.0.0.1:${upstream.port}/v1/chat/completions`, headers: {} },
    proxy: { url: `http://127.0.0.1:${proxy.port}/v1/chat/completions`, headers: {} },
    gateway: { url: `http://127.0.0.1:${gateway.port}/v1/chat/completions`, headers: auth },
  };
  // Unique prompts (cache misses): each phase its own prefix, so no phase replays another's prompts.
  const run = Date.now().toString(36);
  const prompt = (phase: string, i: number) => chatBody(`Say something short. ${run}-${phase}-${i}`, false);
  const missShots = (phase: string) => (i: number): Shot => ({ kind: 'miss', body: prompt(phase, i), stream: false });
  const hitBody = chatBody('Say something short, the same every time.', false);

  const phases: PhaseCache[] = [];
  /**
   * A gateway phase whose answers are not what it measures: a hit in a miss phase (its numbers are
   * the cache's), or under 99% hits in the hit phase once the cache is on (its "hit path" would be
   * partly the miss path).
   */
  let cacheOn = false;
  const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);
  const wrong = (p: PhaseCache) => p.target === 'gateway' && (p.expect === 'miss' ? cacheHits(p.counts) > 0 : cacheOn && cacheHits(p.counts) < 0.99 * total(p.counts));
  const record = (phase: string, target: string, expect: 'miss' | 'hit', counts: Record<string, number>) => {
    phases.push({ phase, target, expect, counts });
    if (wrong({ phase, target, expect, counts })) {
      console.error(`  !! ${phase}: ${countsText(counts)} in a phase meant to be all ${expect === 'miss' ? 'misses' : 'hits'} — its numbers are not what they are labelled`);
    }
  };

  try {
    // Warm-up (JIT, pools), with prompts of its own: it must not pre-store the measured phases' prompts.
    for (const [name, t] of Object.entries(targets)) {
      const results: ShotResult[] = [];
      await openLoop(t, 200, 2, missShots(`warm-${name}`), (r) => results.push(r));
      record('warm-up', name, 'miss', cacheCounts(results));
    }

    // `body` fixed, or a prompt phase for a fresh unique body per request (cache misses).
    const saturate = async (t: { url: string; headers: Record<string, string> }, body: string | { phase: string }) => {
      const counts: Record<string, number> = {};
      let n = 0;
      const onResponse = (_status: number, _body: string, _ctx: unknown, headers: Record<string, string | string[]>) => {
        const key = Object.keys(headers).find((k) => k.toLowerCase() === 'x-inferenceflow-cache');
        const v = key === undefined ? 'none' : String(headers[key]);
        counts[v] = (counts[v] ?? 0) + 1;
      };
      const requests =
        typeof body === 'string' ? [{ body, onResponse }] : [{ setupRequest: (req: { body?: string }) => ({ ...req, body: prompt(body.phase, n++) }), onResponse }];
      const r = await autocannon({
        url: t.url,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...t.headers },
        body: typeof body === 'string' ? body : undefined,
        requests,
        connections: CONNECTIONS,
        duration: SECONDS,
      });
      return { rps: r.requests.average, p50Ms: r.latency.p50, p97_5Ms: r.latency.p97_5, p99Ms: r.latency.p99, errors: r.errors + r.non2xx, cache: counts };
    };
    type Sat = Awaited<ReturnType<typeof saturate>>;
    const satRounds: Array<{ target: string; round: number } & Sat> = [];
    const roundOf: Record<string, number> = {};
    const saturateMisses = async (name: string) => {
      const round = (roundOf[name] = (roundOf[name] ?? 0) + 1);
      const phase = `sat-${name}-r${round}`;
      const r = await saturate(targets[name]!, { phase });
      record(`saturation round ${round}`, name, 'miss', r.cache);
      satRounds.push({ target: name, round, ...r });
      return r;
    };
    const sat: Record<string, Sat> = {};
    for (const name of Object.keys(targets)) sat[name] = await saturateMisses(name);
    const rounds = ratioSummary(await alternateRounds({ proxy: sat.proxy?.rps ?? 0, gateway: sat.gateway?.rps ?? 0 }, ROUNDS, async (t) => (await saturateMisses(t)).rps));

    // The cache-hit path: one prompt, answered once by the upstream, then (with the cache on) from the cache.
    const probe = await fetch(targets.gateway!.url, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: hitBody });
    await probe.text();
    const again = await fetch(targets.gateway!.url, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: hitBody });
    await again.text();
    const cacheState = again.headers.get('x-inferenceflow-cache') ?? 'off';
    // Any cache header means the cache is on: a repeat answered `miss` is a cache that does not hit,
    // which the hit phase's check (wrong()) is there to catch, not a cache switched off.
    cacheOn = cacheState !== 'off';
    const hit = await saturate(targets.gateway!, hitBody);
    record('cache-hit path', 'gateway', 'hit', hit.cache);

    /**
     * The gateway's own event-loop delay over a phase (`/debug/process`, beyond its 10 ms sampling
     * interval; with several workers, whichever one answers): what the gateway held every request
     * behind, apart from waiting for a core on this shared machine.
     */
    const loopWindow = async (name: string, run: () => Promise<void>): Promise<LoopDelay | undefined> => {
      if (name !== 'gateway') {
        await run();
        return undefined;
      }
      await loopDelay(gateway.port, true);
      await run();
      return loopDelay(gateway.port, false);
    };

    const fixed: Record<string, ReturnType<typeof summarize> & { raw: number[]; cache: Record<string, number>; loop?: LoopDelay }> = {};
    let fixedLoop: LoopDelay | undefined;
    for (const [name, t] of Object.entries(targets)) {
      const results: ShotResult[] = [];
      let elapsedS = 0;
      const loop = await loopWindow(name, async () => {
        ({ elapsedS } = await openLoop(t, RATE, SECONDS, missShots(`fixed-${name}`), (r) => results.push(r)));
      });
      if (loop) fixedLoop = loop;
      const cache = cacheCounts(results);
      record('fixed rate', name, 'miss', cache);
      // Every request's latency from its intended send time, failures at their elapsed time.
      fixed[name] = { ...summarize(results, elapsedS), raw: results.map((r) => r.latencyUs).sort((a, b) => a - b), cache, ...(loop ? { loop } : {}) };
    }

    const sweep: Array<{
      target: string;
      offered: number;
      achieved: number;
      ok: number;
      failed: number;
      p50Ms: number;
      p95Ms: number;
      p99Ms: number;
      sendLagP50Ms: number;
      sendLagP99Ms: number;
      cache: Record<string, number>;
      loop?: LoopDelay;
    }> = [];
    for (const offered of SWEEP) {
      for (const [name, t] of Object.entries(targets)) {
        const results: ShotResult[] = [];
        let elapsedS = 0;
        const loop = await loopWindow(name, async () => {
          ({ elapsedS } = await openLoop(t, offered, SWEEP_SECONDS, missShots(`sweep${offered}-${name}`), (r) => results.push(r)));
        });
        const s = summarize(results, elapsedS);
        const cache = cacheCounts(results);
        record(`sweep ${offered} req/s`, name, 'miss', cache);
        sweep.push({ target: name, offered, achieved: s.ok / elapsedS, ok: s.ok, failed: s.count - s.ok, p50Ms: s.p50Ms, p95Ms: s.p95Ms, p99Ms: s.p99Ms, sendLagP50Ms: s.sendLagP50Ms, sendLagP99Ms: s.sendLagP99Ms, cache, ...(loop ? { loop } : {}) });
        console.log(
          `  sweep ${String(offered).padStart(5)} req/s ${name.padEnd(8)} achieved ${(s.ok / elapsedS).toFixed(0).padStart(6)}  p50 ${ms(s.p50Ms)}  p99 ${ms(s.p99Ms)}  failed ${s.count - s.ok}  send lag p99 ${ms(s.sendLagP99Ms)}${name === 'gateway' ? `  cache: ${countsText(cache)}${loopText(loop)}` : ''}`,
        );
      }
    }

    console.log(`\nmachine: ${machine()}; gateway workers: ${WORKERS}`);
    console.log(`\nsaturation (autocannon, ${CONNECTIONS} connections, ${SECONDS} s, unique prompts):`);
    for (const [name, s] of Object.entries(sat)) console.log(`  ${name.padEnd(8)} ${s.rps.toFixed(0).padStart(7)} req/s   p50 ${s.p50Ms} ms  p97.5 ${s.p97_5Ms} ms  p99 ${s.p99Ms} ms  errors ${s.errors}`);
    printRounds(rounds);
    const ratio = rounds.median;
    const ratioWhat = rounds.rounds.length > 1 ? `median over ${rounds.rounds.length} alternating rounds` : 'one round; --rounds 5 for the median of alternating rounds';
    console.log(`  gateway / proxy throughput: ${ratio.toFixed(2)} (${ratioWhat}; target >= 0.70) ${ratio >= 0.7 ? 'PASS' : 'FAIL'}`);

    console.log(`\nfixed rate ${RATE} req/s for ${SECONDS} s (open loop, unique prompts, from the intended send time to last byte, failures included):`);
    for (const [name, r] of Object.entries(fixed)) {
      console.log(
        `  ${name.padEnd(8)} achieved ${r.rps.toFixed(0)} req/s  ok ${r.ok}  failed ${r.count - r.ok}  p50 ${ms(r.p50Ms)}  p95 ${ms(r.p95Ms)}  p99 ${ms(r.p99Ms)}  send lag p50 ${ms(r.sendLagP50Ms)} p99 ${ms(r.sendLagP99Ms)}`,
      );
    }
    const added = (p: number) => (percentile(fixed.gateway?.raw ?? [], p) - percentile(fixed.direct?.raw ?? [], p)) / 1000;
    const added99 = added(99);
    console.log(`  gateway added latency: p50 ${ms(added(50))}  p95 ${ms(added(95))}  p99 ${ms(added99)} (target p99 <= 2 ms) ${added99 <= 2 ? 'PASS' : 'FAIL'}`);
    if (fixedLoop) console.log(`  gateway event loop meanwhile:${loopText(fixedLoop)}`);

    // Against the gateway's median miss throughput over its saturation rounds (the first, with one).
    const gatewayMiss = median(rounds.rounds.map((r) => r.gateway ?? 0));
    const hitRatio = hit.rps / (gatewayMiss || 1);
    console.log(`\ncache-hit path (one prompt, x-inferenceflow-cache: ${cacheState}): ${hit.rps.toFixed(0)} req/s  p50 ${hit.p50Ms} ms  p99 ${hit.p99Ms} ms`);
    if (cacheState === 'off') console.log(`  hit / miss throughput: ${hitRatio.toFixed(2)} — the cache is not switched on in this build (see the list at the top)`);
    else if (cacheState === 'miss') console.log(`  hit / miss throughput: ${hitRatio.toFixed(2)} — the probe's repeat was a cache miss: the cache is on but did not answer it`);
    else console.log(`  hit / miss throughput: ${hitRatio.toFixed(2)} (target >= 2) ${hitRatio >= 2 ? 'PASS' : 'FAIL'}`);

    console.log('\nthe gateway\'s x-inferenceflow-cache answers per phase:');
    for (const p of phases.filter((x) => x.target === 'gateway')) {
      console.log(`  ${p.phase.padEnd(22)} expect ${p.expect.padEnd(4)}  ${countsText(p.counts)}${wrong(p) ? `  <-- NOT ALL ${p.expect.toUpperCase()}` : ''}`);
    }
    const invalid = phases.filter(wrong).map((p) => `${p.phase} (expected ${p.expect}): ${countsText(p.counts)}`);

    writeResults(OUT, {
      benchmark: 'full-pipeline',
      at: new Date().toISOString(),
      machine: machine(),
      workers: WORKERS,
      command: `tsx bench/full-pipeline.ts ${args.join(' ')}`.trim(),
      saturation: sat,
      saturationRounds: satRounds,
      throughputRatio: ratio,
      throughputRatios: { ratios: rounds.ratios, median: rounds.median, min: rounds.min, max: rounds.max },
      fixedRate: { rate: RATE, seconds: SECONDS, ...Object.fromEntries(Object.entries(fixed).map(([k, v]) => [k, { ...v, raw: undefined }])) },
      addedLatencyMs: { p50: added(50), p95: added(95), p99: added99 },
      cache: { state: cacheState, hit, hitOverMiss: hitRatio },
      cachePhases: phases,
      invalid,
      sweep,
    });
    if (invalid.length > 0) {
      throw new Error(`INVALID RUN: phases whose cache answers are not what they measure (${invalid.join('; ')})`);
    }
  } finally {
    gateway.stop();
    proxy.stop();
    upstream.stop();
    sink.close();
  }
}

if (process.argv[1]?.endsWith('full-pipeline.ts')) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
