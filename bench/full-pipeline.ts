// Issue 10's overhead benchmark: the gateway with every capability configured, against the same
// upstream stand-in called directly and through a minimal pass-through proxy, in one run.
// Saturation throughput (autocannon), added latency at a fixed 1,000 req/s, a sweep of offered
// loads (for bench/plot.ts), and the cache-hit path against the miss path. Targets on a 2-core box:
// gateway >= 0.7 × proxy throughput; p99 added latency <= 2 ms at 1,000 req/s; hit path >= 2 × miss.
//
// Usage: npm run build && tsx bench/full-pipeline.ts [--seconds 8] [--rate 1000]
//          [--sweep 250,500,1000,2000,4000] [--sweep-seconds 5] [--workers 1] [--redis redis://…]
//          [--database postgres://…]
//          [--extra-config more.yaml] [--out bench/results/full-pipeline.json]
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
import { chatBody, openLoop, summarize, type ShotResult } from './lib/mixed-load.js';
import { ROOT, startProcess, type Proc } from './lib/processes.js';

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
  return startProcess(['dist/cli/main.js', 'serve', '--config', file, '--port', '0', '--workers', String(workers)], { LOG_LEVEL: 'info', ...opts.env }, ready);
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

export function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

const ms = (v: number) => `${v.toFixed(3)} ms`;

async function main() {
  const args = process.argv.slice(2);
  const num = (name: string, def: number) => Number(flag(args, name) ?? def);
  const SECONDS = num('seconds', 8);
  const RATE = num('rate', 1000);
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
  // Every prompt unique (cache misses) unless a test wants the same one again.
  const run = Date.now().toString(36);
  const unique = (i: number) => ({ kind: 'miss', body: chatBody(`Say something short. ${run}-${i}`, false), stream: false });
  let missCounter = 0;
  const nextMiss = () => chatBody(`Say something short. ${run}-ac-${missCounter++}`, false);
  const hitBody = chatBody('Say something short, the same every time.', false);

  try {
    for (const t of Object.values(targets)) await openLoop(t, 200, 2, unique, () => undefined); // warm-up (JIT, pools)

    // `body` fixed, or a function for a fresh body per request (unique prompts: cache misses).
    const saturate = async (t: { url: string; headers: Record<string, string> }, body: string | (() => string)) => {
      const requests = typeof body === 'function' ? [{ setupRequest: (req: { body?: string }) => ({ ...req, body: body() }) }] : undefined;
      const r = await autocannon({
        url: t.url,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...t.headers },
        body: typeof body === 'string' ? body : undefined,
        requests,
        connections: CONNECTIONS,
        duration: SECONDS,
      });
      return { rps: r.requests.average, p50Ms: r.latency.p50, p97_5Ms: r.latency.p97_5, p99Ms: r.latency.p99, errors: r.errors + r.non2xx };
    };
    const sat: Record<string, Awaited<ReturnType<typeof saturate>>> = {};
    for (const [name, t] of Object.entries(targets)) sat[name] = await saturate(t, nextMiss);

    // The cache-hit path: one prompt, answered once by the upstream, then (with the cache on) from the cache.
    const probe = await fetch(targets.gateway!.url, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: hitBody });
    await probe.text();
    const again = await fetch(targets.gateway!.url, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: hitBody });
    await again.text();
    const cacheState = again.headers.get('x-inferenceflow-cache') ?? 'off';
    const hit = await saturate(targets.gateway!, hitBody);

    const fixed: Record<string, ReturnType<typeof summarize> & { raw: number[] }> = {};
    for (const [name, t] of Object.entries(targets)) {
      const results: ShotResult[] = [];
      const { elapsedS } = await openLoop(t, RATE, SECONDS, unique, (r) => results.push(r));
      fixed[name] = { ...summarize(results, elapsedS), raw: results.filter((r) => r.ok).map((r) => r.latencyUs).sort((a, b) => a - b) };
    }

    const sweep: Array<{ target: string; offered: number; achieved: number; ok: number; failed: number; p50Ms: number; p95Ms: number; p99Ms: number }> = [];
    for (const offered of SWEEP) {
      for (const [name, t] of Object.entries(targets)) {
        const results: ShotResult[] = [];
        const { elapsedS } = await openLoop(t, offered, SWEEP_SECONDS, unique, (r) => results.push(r));
        const s = summarize(results, elapsedS);
        sweep.push({ target: name, offered, achieved: s.ok / elapsedS, ok: s.ok, failed: s.count - s.ok, p50Ms: s.p50Ms, p95Ms: s.p95Ms, p99Ms: s.p99Ms });
        console.log(`  sweep ${String(offered).padStart(5)} req/s ${name.padEnd(8)} achieved ${(s.ok / elapsedS).toFixed(0).padStart(6)}  p50 ${ms(s.p50Ms)}  p99 ${ms(s.p99Ms)}  failed ${s.count - s.ok}`);
      }
    }

    console.log(`\nmachine: ${machine()}; gateway workers: ${WORKERS}`);
    console.log(`\nsaturation (autocannon, ${CONNECTIONS} connections, ${SECONDS} s, unique prompts):`);
    for (const [name, s] of Object.entries(sat)) console.log(`  ${name.padEnd(8)} ${s.rps.toFixed(0).padStart(7)} req/s   p50 ${s.p50Ms} ms  p97.5 ${s.p97_5Ms} ms  p99 ${s.p99Ms} ms  errors ${s.errors}`);
    const ratio = (sat.gateway?.rps ?? 0) / (sat.proxy?.rps || 1);
    console.log(`  gateway / proxy throughput: ${ratio.toFixed(2)} (target >= 0.70) ${ratio >= 0.7 ? 'PASS' : 'FAIL'}`);

    console.log(`\nfixed rate ${RATE} req/s for ${SECONDS} s (open loop, unique prompts, latency to last byte):`);
    for (const [name, r] of Object.entries(fixed)) console.log(`  ${name.padEnd(8)} achieved ${r.rps.toFixed(0)} req/s  ok ${r.ok}  failed ${r.count - r.ok}  p50 ${ms(r.p50Ms)}  p95 ${ms(r.p95Ms)}  p99 ${ms(r.p99Ms)}`);
    const added = (p: number) => (percentile(fixed.gateway?.raw ?? [], p) - percentile(fixed.direct?.raw ?? [], p)) / 1000;
    const added99 = added(99);
    console.log(`  gateway added latency: p50 ${ms(added(50))}  p95 ${ms(added(95))}  p99 ${ms(added99)} (target p99 <= 2 ms) ${added99 <= 2 ? 'PASS' : 'FAIL'}`);

    const hitRatio = hit.rps / (sat.gateway?.rps || 1);
    console.log(`\ncache-hit path (one prompt, x-inferenceflow-cache: ${cacheState}): ${hit.rps.toFixed(0)} req/s  p50 ${hit.p50Ms} ms  p99 ${hit.p99Ms} ms`);
    if (cacheState === 'off' || cacheState === 'miss') console.log(`  hit / miss throughput: ${hitRatio.toFixed(2)} — the cache is not switched on in this build (see the list at the top)`);
    else console.log(`  hit / miss throughput: ${hitRatio.toFixed(2)} (target >= 2) ${hitRatio >= 2 ? 'PASS' : 'FAIL'}`);

    writeResults(OUT, {
      benchmark: 'full-pipeline',
      at: new Date().toISOString(),
      machine: machine(),
      workers: WORKERS,
      command: `tsx bench/full-pipeline.ts ${args.join(' ')}`.trim(),
      saturation: sat,
      throughputRatio: ratio,
      fixedRate: { rate: RATE, seconds: SECONDS, ...Object.fromEntries(Object.entries(fixed).map(([k, v]) => [k, { ...v, raw: undefined }])) },
      addedLatencyMs: { p50: added(50), p95: added(95), p99: added99 },
      cache: { state: cacheState, hit, hitOverMiss: hitRatio },
      sweep,
    });
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
