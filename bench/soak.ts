// Issue 10's soak: a steady rate of mixed traffic for minutes — plain answers, streams, repeated
// prompts (cache hits once the cache is on) and 5% injected upstream failures — while the gateway's
// resident memory, open descriptors and event-loop delay are sampled. Verdicts:
// - RSS growth <= 10%: the median of the first minute after warm-up against the last minute's median;
// - event-loop delay p99 <= 20 ms: the delay beyond the histogram's 10 ms sampling interval (what
//   /debug/process reports; the raw tick-to-tick p99 of an idle loop is ~10 ms), from the warm-up's
//   end to the end of the load, on the worst worker — and every worker (the gateway's children in
//   /proc) must have been reached for the warm-up reset and for the final reading, with a window as
//   long as the time since that reset, or the verdict fails;
// - no growth in open descriptors: the last minute's median against the first minute's median after
//   warm-up (peaks printed beside them);
// - success >= 99.9% of every request of the run that was not meant to fail, warm-up included (the
//   warm-up's and the rest's rates printed apart);
// - every request accounted for (answered, and one ledger record each).
// Latency percentiles count failed and timed-out requests at the time they took to fail, from each
// request's intended send time (bench/lib/mixed-load.ts); successes-only percentiles printed beside.
//
// Usage: npm run build && tsx bench/soak.ts [--minutes 10] [--rate 1000] [--warmup 60]
//          [--sample 5] [--latency 20] [--word-delay 5] [--workers 1] [--redis redis://…] [--database postgres://…]
//          [--connections 256] (client connections: a request waiting for one counts in its latency;
//          a thousand new connections at once would overflow the listen backlog and time out)
//          [--cache-max-bytes N] (the cache's budget; default the product's 256 MiB. The cache grows
//          until it reaches it — a soak that is to show no leak should fill it during warm-up; each
//          sample prints the cache's entries and bytes, so growth can be set against the cache's own)
//          [--out bench/results/soak.json]
// The gateway reports its own event-loop delay and memory on GET /debug/process; RSS and
// descriptors are also read from /proc/<pid> for the process and its cluster workers. /debug/process
// describes whichever worker answered, and with `serve --workers N` workers accept connections
// themselves (scheduling policy `none`), unevenly: a busy worker gets to `accept` less often. So the
// bench asks on several fresh connections at once until every worker pid it sees in /proc answered.
import { request as httpRequest } from 'node:http';
import { flag, numberFlag } from './lib/args.js';
import { BENCH_ADMIN_TOKEN, BENCH_TOKEN, machine, startPipelineGateway, writeResults } from './full-pipeline.js';
import { chatBody, openLoop, summarize, type Shot, type ShotResult } from './lib/mixed-load.js';
import { startProcess } from './lib/processes.js';
import { median } from './lib/rounds.js';
import { fdKinds, sampleTree, type FdKinds } from './lib/proc-stats.js';
import { FAIL_MARKER } from './lib/upstream.js';

interface ProcessStats {
  pid: number;
  rss_bytes: number;
  open_fds: number | null;
  /** Beyond the sampling interval (`resolution_ms`); `raw`: tick to tick, as Node's histogram holds it. */
  event_loop_delay_ms: { window_s: number; resolution_ms?: number; p50: number; p99: number; max: number; samples: number; raw?: { p99: number } };
}

interface Sample {
  t: number;
  rssBytes: number;
  fds: number;
  /** The same descriptors by kind (client, upstream, redis, postgres, … — proc-stats.ts fdKinds). */
  fdKinds: FdKinds;
  /** Cumulative since warm-up, worst worker that answered; beyond the 10 ms sampling interval. */
  lagP99Ms: number;
  lagMaxMs: number;
  /** The same p99 as the histogram holds it (tick to tick, the interval included). */
  lagRawP99Ms: number;
  /** Workers whose /debug/process answered for this sample, of those in /proc. */
  workersAnswered: number;
  workersSeen: number;
  /** The response cache's entries and counted bytes (shared with Redis), when it answered. */
  cacheEntries: number | null;
  cacheBytes: number | null;
  /** Completed requests per second since the previous sample. */
  rps: number;
  failedSinceLast: number;
}

/**
 * One authenticated GET on a fresh connection (so with several workers successive calls reach
 * different ones); the JSON body of a 200, else undefined.
 */
function getJson<T>(port: number, path: string, token = BENCH_TOKEN): Promise<T | undefined> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false, headers: { authorization: `Bearer ${token}`, connection: 'close' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        try {
          resolve(res.statusCode === 200 ? (JSON.parse(text) as T) : undefined);
        } catch {
          resolve(undefined);
        }
      });
    });
    req.on('error', () => resolve(undefined));
    req.setTimeout(5_000, () => req.destroy());
    req.end();
  });
}

/**
 * The ledger's count for this run's token since `since`. Each worker writes its own records in
 * batches and flushes its queue when asked for spend, so ask on fresh connections (which reach every
 * worker in turn) until the count reaches `sent`, or 30 s have passed.
 */
async function ledgerCount(port: number, since: string, sent: number): Promise<number | undefined> {
  let last: number | undefined;
  const deadline = performance.now() + 30_000;
  while (performance.now() < deadline) {
    const spend = await getJson<{ total: { requests: number } }>(port, `/v1/spend?group_by=tenant&start=${encodeURIComponent(since)}`);
    last = spend?.total.requests ?? last;
    if (last !== undefined && last >= sent) return last;
    await new Promise((r) => setTimeout(r, 500));
  }
  return last;
}

const processStats = (port: number, reset: boolean) => getJson<ProcessStats>(port, `/debug/process${reset ? '?reset=true' : ''}`);

/** The processes that serve: the cluster workers (the primary's children in /proc), or the one process. */
async function servingPids(pid: number, workers: number): Promise<number[]> {
  if (workers <= 1) return [pid];
  return (await sampleTree(pid)).map((p) => p.pid).filter((p) => p !== pid);
}

/**
 * Asks /debug/process on fresh connections, a few at a time, until every pid in `pids` answered or
 * `timeoutMs` passed; each pid's latest answer and when it came (performance.now()). With `reset`,
 * a worker asked twice restarts its window at the later answer, which `at` then holds.
 */
async function probeWorkers(port: number, pids: readonly number[], reset: boolean, timeoutMs: number): Promise<Map<number, { stats: ProcessStats; at: number }>> {
  const byPid = new Map<number, { stats: ProcessStats; at: number }>();
  const deadline = performance.now() + timeoutMs;
  const missing = () => pids.filter((p) => !byPid.has(p)).length;
  while (missing() > 0 && performance.now() < deadline) {
    const answers = await Promise.all(Array.from({ length: Math.min(8, 2 * missing()) }, () => processStats(port, reset).then((stats) => ({ stats, at: performance.now() }))));
    for (const a of answers) if (a.stats) byPid.set(a.stats.pid, { stats: a.stats, at: a.at });
  }
  return byPid;
}


async function main() {
  const args = process.argv.slice(2);
  const num = (name: string, def: number) => numberFlag(args, name, def);
  const MINUTES = num('minutes', 10);
  const RATE = num('rate', 1000);
  const WARMUP = num('warmup', 60);
  const SAMPLE = num('sample', 5);
  const WORKERS = num('workers', 1);
  const OUT = flag(args, 'out') ?? 'bench/results/soak.json';
  const seconds = MINUTES * 60;

  const upstream = await startProcess(['bench/lib/upstream.ts', '0', String(num('word-delay', 5)), String(num('latency', 20))]);
  const cacheMaxBytes = flag(args, 'cache-max-bytes');
  const gateway = await startPipelineGateway({
    upstreamPort: upstream.port,
    workers: WORKERS,
    redisUrl: flag(args, 'redis'),
    databaseUrl: flag(args, 'database'),
    env: cacheMaxBytes ? { CACHE_MAX_BYTES: cacheMaxBytes } : {},
  });
  const pid = gateway.child.pid as number;
  // What each descriptor is, by the port at one end: the count follows connections, and these say which.
  const portNames = new Map<number, string>([
    [gateway.port, 'client'],
    [upstream.port, 'upstream'],
    ...(flag(args, 'redis') ? [[Number(new URL(flag(args, 'redis') as string).port || 6379), 'redis'] as [number, string]] : []),
    ...(flag(args, 'database') ? [[Number(new URL(flag(args, 'database') as string).port || 5432), 'postgres'] as [number, string]] : []),
  ]);
  const target = { url: `http://127.0.0.1:${gateway.port}/v1/chat/completions`, headers: { authorization: `Bearer ${BENCH_TOKEN}` }, connections: num('connections', 256) };

  // The mix, by request number: 5% injected failures, 30% streams, 25% repeats of 50 prompts
  // (cache hits once the cache is on), the rest plain unique prompts.
  const run = Date.now().toString(36);
  const shot = (i: number): Shot => {
    const slot = i % 20;
    if (slot === 0) return { kind: 'fail', body: chatBody(`${FAIL_MARKER} ${run}-${i}`, false), stream: false, expectFail: true };
    if (slot <= 6) return { kind: 'stream', body: chatBody(`Stream a short answer. ${run}-${i}`, true), stream: true };
    if (slot <= 11) return { kind: 'repeat', body: chatBody(`A question asked often, number ${i % 50}.`, false), stream: false };
    return { kind: 'plain', body: chatBody(`Say something short. ${run}-${i}`, false), stream: false };
  };

  const results: ShotResult[] = [];
  let completedAtLastSample = 0;
  let failedAtLastSample = 0;
  let failedTotal = 0;
  const samples: Sample[] = [];
  let warm = false;
  // Restarted just before the load begins, so samples (t) and results (`at`, from openLoop's own
  // start) share one clock: the warm-up split of both is the same WARMUP seconds.
  let started = performance.now();
  let lastSampleAt = started;

  // Each worker's warm-up reset: when its /debug/process window restarted (performance.now()).
  const resetAt = new Map<number, number>();
  let resetPids: number[] = [];
  let sampling = false;
  let sampler: NodeJS.Timeout | undefined;
  const sample = () => {
    // A slow sample (busy machine) must not overlap the next one.
    if (sampling) return;
    sampling = true;
    void (async () => {
      const t = (performance.now() - started) / 1000;
      if (!warm && t >= WARMUP) {
        warm = true;
        // A fresh event-loop window from here on, on every worker: asked until each has answered.
        resetPids = await servingPids(pid, WORKERS);
        for (const [p, a] of await probeWorkers(gateway.port, resetPids, true, 20_000)) resetAt.set(p, a.at);
        const missed = resetPids.filter((p) => !resetAt.has(p));
        if (missed.length > 0) console.error(`  !! warm-up reset: worker(s) ${missed.join(', ')} of ${resetPids.length} never answered /debug/process; the event-loop verdict will fail`);
        return;
      }
      const tree = await sampleTree(pid);
      // With workers the primary only supervises: count the workers (the primary's own RSS is small and flat).
      const procs = WORKERS > 1 ? tree.filter((p) => p.pid !== pid) : tree;
      const seen = WORKERS > 1 ? procs.map((p) => p.pid) : [pid];
      const stats = new Map([...(await probeWorkers(gateway.port, seen, false, 3_000))].map(([p, a]) => [p, a.stats]));
      const cacheStats = await getJson<{ entries: number; bytes: number }>(gateway.port, '/v1/cache/stats', BENCH_ADMIN_TOKEN);
      const kinds = await fdKinds(procs.map((p) => p.pid), portNames);
      const now = performance.now();
      const done = results.length;
      samples.push({
        t: (now - started) / 1000,
        rssBytes: procs.reduce((s, p) => s + p.rssBytes, 0),
        // Every descriptor is counted once, by kind (one read of each process's fd directory per sample).
        fds: Object.values(kinds).reduce((s, n) => s + n, 0),
        fdKinds: kinds,
        lagP99Ms: Math.max(0, ...[...stats.values()].map((s) => s.event_loop_delay_ms.p99)),
        lagMaxMs: Math.max(0, ...[...stats.values()].map((s) => s.event_loop_delay_ms.max)),
        lagRawP99Ms: Math.max(0, ...[...stats.values()].map((s) => s.event_loop_delay_ms.raw?.p99 ?? NaN).filter(Number.isFinite)),
        workersAnswered: [...stats.keys()].filter((p) => seen.includes(p)).length,
        workersSeen: seen.length,
        cacheEntries: cacheStats?.entries ?? null,
        cacheBytes: cacheStats?.bytes ?? null,
        rps: (done - completedAtLastSample) / ((now - lastSampleAt) / 1000),
        failedSinceLast: failedTotal - failedAtLastSample,
      });
      completedAtLastSample = done;
      failedAtLastSample = failedTotal;
      lastSampleAt = now;
      const s = samples[samples.length - 1] as Sample;
      if (samples.length % Math.max(1, Math.round(60 / SAMPLE)) === 0 || t < WARMUP + SAMPLE * 2) {
        console.log(
          `  t=${s.t.toFixed(0).padStart(4)} s  ${s.rps.toFixed(0).padStart(5)} req/s  rss ${(s.rssBytes / 2 ** 20).toFixed(1)} MiB  fds ${s.fds} ${JSON.stringify(s.fdKinds)}  loop p99 ${s.lagP99Ms.toFixed(1)} ms (${s.workersAnswered}/${s.workersSeen} workers)  cache ${s.cacheEntries ?? '?'} entries ${s.cacheBytes === null ? '?' : (s.cacheBytes / 2 ** 20).toFixed(1)} MiB  unexpected failures since last ${s.failedSinceLast}${warm ? '' : '  (warm-up)'}`,
        );
      }
    })().finally(() => (sampling = false));
  };

  try {
    console.log(`soak: ${RATE} req/s for ${MINUTES} min (warm-up ${WARMUP} s), gateway workers ${WORKERS}, machine ${machine()}`);
    // Starts each worker's event-loop histogram (the warm-up reset would start any it missed).
    await probeWorkers(gateway.port, await servingPids(pid, WORKERS), false, 10_000);
    // The ledger's clock, less a second of slack: every request of this run is after it.
    const runStart = new Date(Date.now() - 1000).toISOString();
    started = lastSampleAt = performance.now();
    // Sampling starts on the run's clock, after the probe (a tick during it would be stamped on the old one).
    sampler = setInterval(sample, SAMPLE * 1000);
    const { sent, elapsedS } = await openLoop(target, RATE, seconds, shot, (r) => {
      results.push(r);
      if (!(r.expectFail ? !r.ok && r.status !== 0 : r.ok)) failedTotal++;
    });
    clearInterval(sampler);
    // The event-loop verdict's reading: every worker, at the end of the load (the last sample may be
    // up to --sample seconds older and need not have reached every worker).
    const endPids = await servingPids(pid, WORKERS);
    const final = await probeWorkers(gateway.port, endPids, false, 30_000);
    const perWorker = endPids.map((p) => {
      const a = final.get(p);
      const reset = resetAt.get(p);
      const sinceResetS = a && reset !== undefined ? (a.at - reset) / 1000 : null;
      // The window must have started at the warm-up reset: not earlier (never reset: a warm-up
      // longer) nor later. Times are when the answers arrived, so allow for a slow answer.
      const windowOk = a !== undefined && sinceResetS !== null && Math.abs(a.stats.event_loop_delay_ms.window_s - sinceResetS) <= Math.max(2, 0.05 * sinceResetS);
      return {
        pid: p,
        reached: a !== undefined,
        reset: reset !== undefined,
        windowS: a?.stats.event_loop_delay_ms.window_s ?? null,
        sinceResetS,
        windowOk,
        samples: a?.stats.event_loop_delay_ms.samples ?? null,
        p99Ms: a?.stats.event_loop_delay_ms.p99 ?? null,
        maxMs: a?.stats.event_loop_delay_ms.max ?? null,
        rawP99Ms: a?.stats.event_loop_delay_ms.raw?.p99 ?? null,
      };
    });
    const workersOk = endPids.length === WORKERS && resetPids.length === WORKERS && resetPids.every((p) => endPids.includes(p)) && perWorker.every((w) => w.reached && w.reset && w.windowOk);

    const after = samples.filter((s) => s.t >= WARMUP);
    const windowN = Math.max(1, Math.round(60 / SAMPLE)); // a minute of samples
    const first = after.slice(0, windowN);
    const last = after.slice(-windowN);
    const rssBase = median(first.map((s) => s.rssBytes));
    const rssEnd = median(last.map((s) => s.rssBytes));
    const rssGrowth = rssEnd / rssBase - 1;
    // The median of the samples in which the cache answered; undefined when none did.
    const cacheAt = (xs: Sample[]) => {
      const answered = xs.flatMap((s) => (s.cacheBytes === null ? [] : [s.cacheBytes]));
      return answered.length ? median(answered) : undefined;
    };
    const mib = (b: number | undefined) => (b === undefined ? 'unknown (the cache stats never answered)' : `${(b / 2 ** 20).toFixed(1)} MiB`);
    // Descriptors come and go with connections: like with like, median to median (peaks printed too).
    const fdBase = median(first.map((s) => s.fds));
    const fdEnd = median(last.map((s) => s.fds));
    const fdBasePeak = Math.max(...first.map((s) => s.fds));
    const fdEndPeak = Math.max(...last.map((s) => s.fds));
    const lagP99 = Math.max(0, ...perWorker.map((w) => w.p99Ms ?? 0));
    const lagRawP99 = Math.max(0, ...perWorker.map((w) => w.rawP99Ms ?? 0));
    // Split by intended send time (completion less latency, which counts from it).
    const sentAt = (r: ShotResult) => r.at - r.latencyUs / 1e6;
    const warmup = results.filter((r) => sentAt(r) < WARMUP);
    const steady = results.filter((r) => sentAt(r) >= WARMUP);
    const sumAll = summarize(results, elapsedS);
    const sumWarm = summarize(warmup, Math.min(WARMUP, elapsedS));
    const sum = summarize(steady, Math.max(0.001, elapsedS - WARMUP));
    const byKind = new Map<string, number>();
    const cache = new Map<string, number>();
    for (const r of results) {
      byKind.set(r.kind, (byKind.get(r.kind) ?? 0) + 1);
      if (r.cache) cache.set(r.cache, (cache.get(r.cache) ?? 0) + 1);
    }
    const inLedger = await ledgerCount(gateway.port, runStart, sent);
    const accounted = results.length === sent && inLedger === sent;
    const failures = new Map<string, number>();
    for (const r of results) {
      if (r.expectFail ? !r.ok && r.status !== 0 : r.ok) continue;
      const why = `${r.kind}: ${r.error ?? `HTTP ${r.status}`}`;
      failures.set(why, (failures.get(why) ?? 0) + 1);
    }

    const verdicts = {
      rssGrowth: { value: rssGrowth, target: '<= 10%', pass: rssGrowth <= 0.1 },
      eventLoopP99Ms: {
        value: lagP99,
        rawP99Ms: lagRawP99,
        workers: perWorker,
        target: '<= 20 ms beyond the 10 ms sampling interval, worst worker, every worker reached and reset at warm-up',
        pass: workersOk && lagP99 <= 20,
      },
      // Connections come and go under load: "no growth" means the last minute's median is within a
      // few descriptors of the first minute's median after warm-up.
      openFds: {
        value: { base: fdBase, end: fdEnd, basePeak: fdBasePeak, endPeak: fdEndPeak },
        target: 'last-minute median <= first-minute median × 1.05 + 8',
        pass: fdEnd <= fdBase * 1.05 + 8,
      },
      successRate: {
        value: sumAll.successRate,
        warmup: sumWarm.successRate,
        afterWarmup: sum.successRate,
        target: '>= 99.9% of every request of the run, warm-up included (injected failures excluded)',
        pass: sumAll.successRate >= 0.999,
      },
      // Client side: every request sent came back with an answer or an error; ledger side: one record
      // per request (successes, injected failures, cache hits and streams alike) for the run's token.
      accounted: { value: { sent, answered: results.length, ledger: inLedger ?? null }, target: 'all', pass: accounted },
    };

    console.log(`\n${sent} requests in ${elapsedS.toFixed(0)} s (${(results.length / elapsedS).toFixed(0)} req/s achieved); mix ${JSON.stringify(Object.fromEntries(byKind))}; cache ${JSON.stringify(Object.fromEntries(cache)) || 'off'}`);
    console.log(
      `after warm-up: p50 ${sum.p50Ms.toFixed(2)} ms  p95 ${sum.p95Ms.toFixed(2)} ms  p99 ${sum.p99Ms.toFixed(2)} ms (every request not meant to fail, from its intended send time; ${sum.failed} failed or timed out, counted at the time they took)  successes only p99 ${sum.okP99Ms.toFixed(2)} ms  unexpected failures ${sum.unexpected}`,
    );
    console.log(`  load generator send lag p50 ${sumAll.sendLagP50Ms.toFixed(2)} ms  p99 ${sumAll.sendLagP99Ms.toFixed(2)} ms  max ${sumAll.sendLagMaxMs.toFixed(1)} ms (in the latencies above)`);
    console.log(`  RSS ${(rssBase / 2 ** 20).toFixed(1)} -> ${(rssEnd / 2 ** 20).toFixed(1)} MiB: growth ${(rssGrowth * 100).toFixed(1)}% (target <= 10%) ${verdicts.rssGrowth.pass ? 'PASS' : 'FAIL'}`);
    console.log(
      `  the cache (budget ${cacheMaxBytes ?? 'default'}) held ${mib(cacheAt(first))} -> ${mib(cacheAt(last))} over the same minutes (counted bytes; every worker indexes every entry)`,
    );
    for (const w of perWorker) {
      console.log(
        `  worker ${w.pid}: ${w.reached ? `window ${w.windowS} s (${w.sinceResetS === null ? 'never reset' : `${w.sinceResetS.toFixed(1)} s since its warm-up reset`}${w.windowOk ? '' : ' — MISMATCH'}), ${w.samples} ticks, loop delay p99 ${w.p99Ms?.toFixed(1)} ms beyond the interval (raw ${w.rawP99Ms?.toFixed(1) ?? '?'} ms), max ${w.maxMs?.toFixed(1)} ms` : 'NOT REACHED at the end'}`,
      );
    }
    if (!workersOk) console.log(`  !! not every worker was reached and reset (in /proc at the end: ${endPids.length}, reset at warm-up: ${resetAt.size} of ${resetPids.length}, expected ${WORKERS}): the event-loop verdict fails`);
    console.log(
      `  event-loop delay p99 ${lagP99.toFixed(1)} ms beyond the 10 ms sampling interval, worst of ${perWorker.length} workers (raw tick-to-tick ${lagRawP99.toFixed(1)} ms) (target <= 20 ms) ${verdicts.eventLoopP99Ms.pass ? 'PASS' : 'FAIL'}`,
    );
    console.log(`  open descriptors, median ${fdBase} (first minute) -> ${fdEnd} (last minute); peaks ${fdBasePeak} -> ${fdEndPeak} ${verdicts.openFds.pass ? 'PASS' : 'FAIL'}`);
    // Which kinds moved: each kind's median over the same minutes, and its range over the whole run after warm-up.
    const kindNames = [...new Set(after.flatMap((s) => Object.keys(s.fdKinds)))].sort();
    console.log(
      `    by kind, median first -> last minute (min-max after warm-up): ${kindNames
        .map((k) => {
          const of = (xs: Sample[]) => xs.map((s) => s.fdKinds[k] ?? 0);
          return `${k} ${median(of(first))} -> ${median(of(last))} (${Math.min(...of(after))}-${Math.max(...of(after))})`;
        })
        .join(', ')}`,
    );
    console.log(
      `  success ${(sumAll.successRate * 100).toFixed(3)}% of all ${sumAll.count} requests (warm-up ${(sumWarm.successRate * 100).toFixed(3)}% of ${sumWarm.count}, after ${(sum.successRate * 100).toFixed(3)}% of ${sum.count}) (target >= 99.9%) ${verdicts.successRate.pass ? 'PASS' : 'FAIL'}`,
    );
    console.log(`  accounted: ${results.length} of ${sent} answered; ${inLedger ?? 'no'} ledger records for the run ${accounted ? 'PASS' : 'FAIL'}`);
    for (const [why, n] of failures) console.log(`  failure: ${why} × ${n}`);
    if (after.length < 2 * windowN) console.log('  (a short run: the first and last minutes after warm-up overlap; use --minutes 10 for the real verdict)');

    writeResults(OUT, {
      benchmark: 'soak',
      at: new Date().toISOString(),
      machine: machine(),
      workers: WORKERS,
      command: `tsx bench/soak.ts ${args.join(' ')}`.trim(),
      rate: RATE,
      minutes: MINUTES,
      warmupS: WARMUP,
      // What samples[].lagP99Ms and the verdict hold: the delay beyond the sampling interval.
      eventLoopDelay: 'beyond-resolution',
      summary: sum,
      summaryAll: sumAll,
      summaryWarmup: sumWarm,
      mix: Object.fromEntries(byKind),
      cache: Object.fromEntries(cache),
      failures: Object.fromEntries(failures),
      verdicts,
      samples,
    });
  } finally {
    clearInterval(sampler);
    gateway.stop();
    upstream.stop();
  }
}

if (process.argv[1]?.endsWith('soak.ts')) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
