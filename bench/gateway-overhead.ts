// Issue 2's benchmark: the gateway against the same upstream stand-in called directly and through a
// minimal Node pass-through proxy, in one run, with a fourth reference beside them: the parsing floor
// (bench/lib/parsing-floor.ts), the proxy plus the JSON work no OpenAI-compatible gateway can skip. Prints saturation throughput (autocannon), latency
// at a fixed 1,000 requests/s and streaming time to first byte, with the ratios and the overheads.
// Usage: npm run build && tsx bench/gateway-overhead.ts [--seconds 8] [--rate 1000] [--rounds 1]
// --rounds N > 1 adds N - 1 more saturation rounds of proxy then gateway and prints every round's
// ratio and the median, and runs the fixed-rate and time-to-first-byte steps N times in turn, judging
// their medians: the VM's speed drifts between runs (the proxy alone 8,400 to 11,800 req/s),
// so one pair of measurements can flatter or wrong either side (bench/lib/rounds.ts, shared with
// bench/full-pipeline.ts). Fixed-rate latency counts from each request's intended send time
// (bench/lib/load.ts), and the load generator's own send lag is printed beside it.
// --workers N (default 1) runs the gateway as `serve --workers N` and the proxy and the parsing floor
// as N processes each on one port (node:cluster), so the comparison stays process for process: with
// 1 it is the gateway's cost per process; with the core count it is the gateway as deployed with a
// shared database (several workers need one: --database postgres://…, else DATABASE_URL).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { numberFlag } from './lib/args.js';
import { fixedRate, percentile, type LoadResult } from './lib/load.js';
import { cpuTimeMs } from './lib/proc-stats.js';
import { startProcess, type Proc } from './lib/processes.js';
import { alternateRounds, median, printRounds, ratioSummary } from './lib/rounds.js';

const args = process.argv.slice(2);
const arg = (name: string, def: number) => numberFlag(args, name, def);
const SECONDS = arg('seconds', 8);
const RATE = arg('rate', 1000);
const ROUNDS = Math.max(1, arg('rounds', 1));
const CONNECTIONS = arg('connections', 50);
const WORKERS = Math.max(1, arg('workers', 1));
const DATABASE = args.includes('--database') ? args[args.indexOf('--database') + 1] : process.env.DATABASE_URL;

export const chatBody = JSON.stringify({ model: 'bench', messages: [{ role: 'user', content: 'Say something short.' }], max_tokens: 32 });
const streamBody = JSON.stringify({ model: 'bench', stream: true, messages: [{ role: 'user', content: 'Say something short.' }], max_tokens: 32 });

/**
 * Saturation throughput, and the CPU the process under test spent per request meanwhile (from
 * /proc): on a shared two-core VM whose speed drifts, CPU per request is the steadier measure of cost.
 */
export async function saturate(
  url: string,
  pid: number | undefined,
  seconds = SECONDS,
  connections = CONNECTIONS,
  /** Overrides of the request: other headers, or `requests` that vary each body (bench/build-ab.ts). */
  request: Partial<Parameters<typeof autocannon>[0]> = {},
): Promise<{ rps: number; requests: number; p50: number; p99: number; errors: number; cpuUsPerRequest: number }> {
  const before = pid === undefined ? 0 : await cpuTimeMs(pid);
  const r = await autocannon({ url, method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody, connections, duration: seconds, ...request });
  const cpuMs = pid === undefined ? NaN : (await cpuTimeMs(pid)) - before;
  const requests = r.requests.total;
  return { rps: r.requests.average, requests, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.non2xx, cpuUsPerRequest: (cpuMs * 1000) / Math.max(1, requests) };
}

/** Issue 2's core path: no response cache (every identical bench request would be a hit) and no ledger. */
export const CORE_PATH_CONFIG = 'cache: { enabled: false }\nledger: { enabled: false }\n';

/**
 * `workers` 1 (the default) keeps the issue-2 comparison: one gateway process against one proxy
 * process. `env` is added to the process's environment (bench/perf-attribution.ts sets NODE_OPTIONS);
 * `main` is the entry point to run (bench/build-ab.ts runs another checkout's).
 */
export async function startGatewayProcess(upstreamPort: number, extraConfig = '', workers = 1, env: Record<string, string> = {}, main = 'dist/cli/main.js'): Promise<Proc> {
  const dir = mkdtempSync(join(tmpdir(), 'if-bench-'));
  const file = join(dir, 'bench.yaml');
  writeFileSync(
    file,
    `providers:
  upstream: { type: openai, base_url: "http://127.0.0.1:${upstreamPort}/v1", api_key: bench }
models:
  - name: bench
    deployments:
      - { provider: upstream, model: bench-model }
${extraConfig}`,
  );
  // With several workers, wait for the primary's line that says all of them are listening.
  const ready = workers > 1 ? /"url":"http:\/\/127\.0\.0\.1:(\d+)","workers"/ : /"url":"http:\/\/127\.0\.0\.1:(\d+)"/;
  // The config's folder goes when the process does (or fails to start).
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  const proc = await startProcess([main, 'serve', '--config', file, '--port', '0', '--workers', String(workers)], { LOG_LEVEL: 'info', ...env }, ready).catch((err: unknown) => {
    removeDir();
    throw err;
  });
  return {
    ...proc,
    stop: () => {
      proc.stop();
      removeDir();
    },
  };
}

function fmt(us: number): string {
  return `${(us / 1000).toFixed(3)} ms`;
}

async function main() {
  if (WORKERS > 1 && !DATABASE) throw new Error('--workers above 1 needs --database postgres://… (or DATABASE_URL): the embedded database is single-process');
  const upstream = await startProcess(['bench/lib/upstream.ts', '0']);
  const upstreamUrl = `http://127.0.0.1:${upstream.port}`;
  const proxy = await startProcess(WORKERS > 1 ? ['bench/lib/cluster.ts', String(WORKERS), 'proxy', upstreamUrl] : ['bench/lib/proxy.ts', '0', upstreamUrl]);
  const floor = await startProcess(WORKERS > 1 ? ['bench/lib/cluster.ts', String(WORKERS), 'floor', upstreamUrl] : ['bench/lib/parsing-floor.ts', '0', upstreamUrl]);
  // The core path of issue 2: no response cache (every identical bench request would be a hit) and no
  // ledger; routing, metrics and tracing at their defaults. bench/full-pipeline.ts switches everything on.
  const gateway = await startGatewayProcess(upstream.port, CORE_PATH_CONFIG, WORKERS, WORKERS > 1 ? { DATABASE_URL: DATABASE as string } : {});
  const targets = {
    direct: `http://127.0.0.1:${upstream.port}/v1/chat/completions`,
    proxy: `http://127.0.0.1:${proxy.port}/v1/chat/completions`,
    floor: `http://127.0.0.1:${floor.port}/v1/chat/completions`,
    gateway: `http://127.0.0.1:${gateway.port}/v1/chat/completions`,
  };
  try {
    // Warm up every path (JIT, pools), streams included: the TTFB step comes last, and a stream's
    // code (SSE parsing and writing) would otherwise meet the JIT only there.
    for (const [name, url] of Object.entries(targets)) {
      await fixedRate(url, chatBody, 200, 2);
      // The floor forwards JSON requests only: it is a reference for the saturation step.
      if (name !== 'floor') await fixedRate(url, streamBody, 200, 2);
    }

    const sat: Record<string, Awaited<ReturnType<typeof saturate>>> = {};
    const pids: Record<string, number | undefined> = { direct: upstream.child.pid, proxy: proxy.child.pid, floor: floor.child.pid, gateway: gateway.child.pid };
    for (const [name, url] of Object.entries(targets)) sat[name] = await saturate(url, pids[name]);
    // The floor alternates with the proxy and the gateway: its ratio is a median of rounds too.
    // Rounds after the first keep their CPU per request and errors too: the CPU ratio is judged over rounds as well.
    const later: Record<string, Awaited<ReturnType<typeof saturate>>[]> = { proxy: [], floor: [], gateway: [] };
    const measured = await alternateRounds({ proxy: sat.proxy?.rps ?? 0, floor: sat.floor?.rps ?? 0, gateway: sat.gateway?.rps ?? 0 }, ROUNDS, async (t) => {
      const s = await saturate(targets[t], pids[t]);
      later[t]?.push(s);
      return s.rps;
    });
    const rounds = ratioSummary(measured);
    const floorRounds = ratioSummary(measured, 'floor', 'proxy');
    const gatewayOverFloor = ratioSummary(measured, 'gateway', 'floor');

    // The latency steps alternate too: one 8 s run's p99 is its 80th-worst request, which one GC pause
    // or one stall of the VM decides, so with --rounds N each target runs N times in turn and the
    // verdicts are the medians of each round's overhead over that round's direct run.
    const streamRate = Math.min(RATE, 500);
    const fixedRounds: Record<string, LoadResult>[] = [];
    const ttfbRounds: { direct: LoadResult; gateway: LoadResult }[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const round: Record<string, LoadResult> = {};
      for (const [name, url] of Object.entries(targets)) round[name] = await fixedRate(url, chatBody, RATE, SECONDS);
      fixedRounds.push(round);
      ttfbRounds.push({ direct: await fixedRate(targets.direct, streamBody, streamRate, SECONDS), gateway: await fixedRate(targets.gateway, streamBody, streamRate, SECONDS) });
    }
    const fixed = fixedRounds[0] as Record<string, LoadResult>;
    const { direct: ttfbDirect, gateway: ttfbGateway } = ttfbRounds[0] as { direct: LoadResult; gateway: LoadResult };

    console.log(`\nmachine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}; ${WORKERS} process${WORKERS > 1 ? 'es' : ''} each for the gateway, the proxy and the floor`);
    console.log(`\nsaturation (autocannon, ${CONNECTIONS} connections, ${SECONDS} s, non-streaming):`);
    for (const [name, s] of Object.entries(sat)) {
      console.log(`  ${name.padEnd(8)} ${s.rps.toFixed(0).padStart(7)} req/s   p50 ${s.p50} ms  p99 ${s.p99} ms  errors ${s.errors}   CPU ${s.cpuUsPerRequest.toFixed(0)} µs/request`);
    }
    // With several rounds the lines above are round 1's; each verdict is on the median of the rounds
    // (of one round, that round).
    const multi = ROUNDS > 1;
    printRounds(rounds);
    console.log(`  gateway / proxy throughput${multi ? `, median of ${ROUNDS} rounds` : ''}: ${rounds.median.toFixed(2)} (target >= 0.70)`);
    const laterErrors = Object.values(later).flat().reduce((n, s) => n + s.errors, 0);
    if (laterErrors) console.log(`  errors in saturation rounds 2-${ROUNDS}: ${laterErrors}`);
    // The process's own CPU per request (direct: the stand-in's; proxy and gateway: theirs, not the stand-in's).
    const cpuRatios = [sat, ...Array.from({ length: ROUNDS - 1 }, (_, i) => ({ proxy: later.proxy?.[i], gateway: later.gateway?.[i] }))].map(
      (r) => (r.proxy?.cpuUsPerRequest ?? NaN) / (r.gateway?.cpuUsPerRequest ?? NaN),
    );
    console.log(
      `  proxy / gateway CPU per request: ${multi ? `median ${median(cpuRatios).toFixed(2)} (${cpuRatios.map((x) => x.toFixed(2)).join(' ')})` : (cpuRatios[0] ?? NaN).toFixed(2)} (the throughput ratio one core each would give)`,
    );
    // What parsing itself costs: the floor parses the request and the answer and writes both anew,
    // with no framework or features; the gateway's distance from it is the price of its own work.
    console.log(`  parsing floor / proxy throughput: median ${floorRounds.median.toFixed(2)} (min ${floorRounds.min.toFixed(2)}, max ${floorRounds.max.toFixed(2)}); gateway / parsing floor: median ${gatewayOverFloor.median.toFixed(2)}`);

    console.log(`\nfixed rate ${RATE} req/s for ${SECONDS} s (open loop, latency from the intended send time to last byte; send lag = how late the generator sent)${multi ? ', round 1' : ''}:`);
    for (const [name, r] of Object.entries(fixed)) {
      console.log(
        `  ${name.padEnd(8)} achieved ${r.achievedRps.toFixed(0)} req/s  ok ${r.ok}  failed ${r.failed}  p50 ${fmt(percentile(r.latencies, 50))}  p99 ${fmt(percentile(r.latencies, 99))}  send lag p50 ${fmt(percentile(r.sendLag, 50))} p99 ${fmt(percentile(r.sendLag, 99))}  max in flight ${r.maxInFlight}`,
      );
    }
    const addedOver = (r: Record<string, LoadResult>, name: string, p: number) => percentile(r[name]?.latencies ?? [], p) - percentile(r.direct?.latencies ?? [], p);
    console.log(`  gateway added latency: p50 ${fmt(addedOver(fixed, 'gateway', 50))}  p99 ${fmt(addedOver(fixed, 'gateway', 99))}`);
    // The same from the actual send: without the generator's own timer lag, which differs between
    // the runs being compared (see LoadResult.sinceSend; the line above is the verdict).
    const sinceSend = (name: string, p: number) => percentile(fixed[name]?.sinceSend ?? [], p);
    console.log(`    from the actual send: p50 ${fmt(sinceSend('gateway', 50) - sinceSend('direct', 50))}  p99 ${fmt(sinceSend('gateway', 99) - sinceSend('direct', 99))}`);
    console.log(`  parsing floor added latency: p99 ${fmt(addedOver(fixed, 'floor', 99))}`);
    // Each round's p99 over that round's direct run, for the gateway and for the two references.
    const added = (name: string) => fixedRounds.map((r) => addedOver(r, name, 99));
    if (multi) {
      console.log(`  p99 added over ${ROUNDS} alternating rounds (each over its round's direct run):`);
      for (const name of ['proxy', 'floor', 'gateway']) {
        const xs = added(name);
        console.log(`    ${name.padEnd(8)} median ${fmt(median(xs))}  (${xs.map((x) => (x / 1000).toFixed(2)).join(' ')} ms)`);
      }
      const failed = fixedRounds.slice(1).reduce((n, r) => n + Object.values(r).reduce((m, x) => m + x.failed, 0), 0);
      if (failed) console.log(`  failed requests in fixed-rate rounds 2-${ROUNDS}: ${failed}`);
    }
    console.log(`  gateway added latency p99${multi ? ', median of rounds' : ''}: ${fmt(median(added('gateway')))} (target <= 1 ms)`);

    console.log(`\nstreaming time to first byte at ${streamRate} req/s${multi ? ', round 1' : ''}: direct p50 ${fmt(percentile(ttfbDirect.ttfb, 50))}, gateway p50 ${fmt(percentile(ttfbGateway.ttfb, 50))}`);
    console.log(`  send lag p99: direct ${fmt(percentile(ttfbDirect.sendLag, 99))}, gateway ${fmt(percentile(ttfbGateway.sendLag, 99))}`);
    const over = (p: number) => ttfbRounds.map((r) => percentile(r.gateway.ttfb, p) - percentile(r.direct.ttfb, p));
    const [o50, o99] = [over(50), over(99)];
    const each = (xs: number[]) => (multi ? ` (${xs.map((x) => (x / 1000).toFixed(2)).join(' ')} ms)` : '');
    console.log(`  overhead${multi ? ` over ${ROUNDS} alternating rounds, medians` : ''}: p50 ${fmt(median(o50))}${each(o50)}, p99 ${fmt(median(o99))}${each(o99)} (target <= 1 ms)`);
  } finally {
    gateway.stop();
    floor.stop();
    proxy.stop();
    upstream.stop();
  }
}

if (process.argv[1]?.endsWith('gateway-overhead.ts')) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
