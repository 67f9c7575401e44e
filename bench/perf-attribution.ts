// Where the gateway's CPU goes, beside the parsing floor's (bench/lib/parsing-floor.ts), measured by
// Linux `perf` rather than V8's sampling profiler: the V8 profiler samples wall time and its own cost
// differs by process (it slowed the bare floor 40% and the gateway 13% here), so the shares it gives
// two processes do not compare; `perf` samples CPU time, kernel included, with node's
// `--perf-basic-prof` naming the JIT's frames. Each process serves the same non-streaming chat load
// (autocannon at saturation) against the same upstream stand-in while `perf record` samples it; every
// sample of its main thread goes to garbage collection or the kernel when those are its innermost
// frames (a scavenge counts as GC, not as the code whose allocation triggered it), else to its
// innermost JavaScript frame's owner — a gateway file (dist/), a package, a Node module — else to
// libuv. Both processes run with the image's young generation. Printed per request, so the two
// columns compare (perf's own overhead is in both); one run each, so on a drifting VM compare shares
// within a column as much as across. Throughput here is not the benchmark's: see gateway-overhead.ts.
// Needs `perf` (Debian: linux-perf) allowed to sample one's own processes (kernel.perf_event_paranoid
// at most 2). Not in `npm run bench`'s default list.
// Usage: npm run build && tsx bench/perf-attribution.ts [--seconds 8] [--connections 50] [--frequency 999] [--top 30]
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { numberFlag } from './lib/args.js';
import { IMAGE_NODE_OPTIONS, startProcess, type Proc } from './lib/processes.js';
import { CORE_PATH_CONFIG, saturate, startGatewayProcess } from './gateway-overhead.js';

const args = process.argv.slice(2);
const SECONDS = numberFlag(args, 'seconds', 8);
const CONNECTIONS = numberFlag(args, 'connections', 50);
const FREQUENCY = numberFlag(args, 'frequency', 999);
const TOP = numberFlag(args, 'top', 30);

/** A frame of a collector: the sample is GC's, whichever JavaScript allocated and triggered it. */
const GC_FRAME = /Scaveng|MarkCompact|Heap::|GCTracer|ConcurrentMarking|Sweeper/;

/**
 * Who a sample's CPU belongs to, from its stack (innermost frame first), as `perf script` prints it:
 * garbage collection or the kernel when they are the innermost frames up to the first JavaScript
 * frame, else that JavaScript frame's owner.
 */
function ownerOf(frames: readonly string[]): string {
  const jsAt = frames.findIndex((f) => f.includes(' JS:'));
  const native = jsAt < 0 ? frames : frames.slice(0, jsAt);
  if (native.some((f) => GC_FRAME.test(f))) return '(garbage collection)';
  if (frames[0]?.includes('[kernel.kallsyms]')) return frames.some((f) => f.includes('uv_')) ? '(kernel, from libuv: sockets, epoll)' : '(kernel)';
  const js = jsAt < 0 ? undefined : /JS:[*^~+]?\S* (\S+)/.exec(frames[jsAt] as string);
  if (!js) return frames.some((f) => f.includes('uv_')) ? '(libuv)' : '(other native)';
  const url = js[1] as string;
  const dist = /\/dist\/(.+?):\d+(?::\d+)?$/.exec(url);
  if (dist) return `gateway ${dist[1]}`;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return `package ${pkg[1]}`;
  if (url.startsWith('node:')) return `node ${url.slice(5).split(':')[0]}`;
  if (url.includes('/bench/')) return 'the floor (bench/lib)';
  return 'other JavaScript';
}

interface Attribution {
  requests: number;
  cpuUsPerRequest: number;
  /** Main-thread samples by owner. */
  owners: Map<string, number>;
  samples: number;
}

/**
 * Reads `perf script` output: one sample per block, a header line holding the thread id (perf pads
 * it with spaces) and then its frames, each ending in its object in brackets.
 */
async function attribute(file: string, mainTid: number): Promise<{ owners: Map<string, number>; samples: number }> {
  const perf = spawn('perf', ['script', '-i', file, '-F', 'tid,ip,sym,dso'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  perf.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(perf, 'exit') as Promise<[number | null]>;
  const owners = new Map<string, number>();
  let samples = 0;
  let tid = -1;
  let frames: string[] = [];
  const flush = () => {
    if (tid === mainTid && frames.length) {
      const o = ownerOf(frames);
      owners.set(o, (owners.get(o) ?? 0) + 1);
      samples++;
    }
    frames = [];
    tid = -1;
  };
  for await (const line of createInterface({ input: perf.stdout })) {
    const header = /^\s*(\d+)\s*$/.exec(line);
    if (!line.trim()) flush();
    else if (header) tid = Number(header[1]);
    else frames.push(line.trim());
  }
  flush();
  const [code] = await exited;
  if (code !== 0) throw new Error(`perf script exited ${code}: ${stderr.slice(-500)}`);
  if (samples === 0) throw new Error(`perf recorded no sample of thread ${mainTid}: ${stderr.slice(-500)}`);
  return { owners, samples };
}

async function measure(name: string, proc: Proc, url: string, dir: string): Promise<Attribution> {
  const pid = proc.child.pid as number;
  await saturate(url, pid, 4, CONNECTIONS); // warm-up: the JIT has compiled the request path before anything is sampled
  const file = join(dir, `${name}.data`);
  const rec = spawn('perf', ['record', '-F', String(FREQUENCY), '-g', '-o', file, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  rec.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(rec, 'exit');
  const r = await saturate(url, pid, SECONDS, CONNECTIONS);
  // perf that could not sample (perf_event_paranoid, no such process) has exited already.
  if (rec.exitCode !== null) throw new Error(`perf record exited ${rec.exitCode}: ${stderr.slice(-500)}`);
  rec.kill('SIGINT');
  await exited;
  if (r.errors) throw new Error(`${name}: ${r.errors} of ${r.requests} requests failed`);
  return { requests: r.requests, cpuUsPerRequest: r.cpuUsPerRequest, ...(await attribute(file, pid)) };
}

async function main() {
  const version = spawnSync('perf', ['--version'], { encoding: 'utf8' });
  if (version.status !== 0) {
    console.error('perf is not installed (Debian: apt-get install linux-perf); this benchmark samples with it.');
    process.exit(2);
  }
  const dir = mkdtempSync(join(tmpdir(), 'if-perf-'));
  const upstream = await startProcess(['bench/lib/upstream.ts', '0']);
  const upstreamUrl = `http://127.0.0.1:${upstream.port}`;
  // Both with the image's young generation, so their garbage collection compares.
  const nodeOptions = `${IMAGE_NODE_OPTIONS} --perf-basic-prof`;
  let floor: Proc | undefined;
  let gateway: Proc | undefined;
  try {
    floor = await startProcess(['bench/lib/parsing-floor.ts', '0', upstreamUrl], { NODE_OPTIONS: nodeOptions });
    gateway = await startGatewayProcess(upstream.port, CORE_PATH_CONFIG, 1, { NODE_OPTIONS: nodeOptions });
    const floorRun = await measure('floor', floor, `http://127.0.0.1:${floor.port}/v1/chat/completions`, dir);
    const gatewayRun = await measure('gateway', gateway, `http://127.0.0.1:${gateway.port}/v1/chat/completions`, dir);

    const perRequest = (a: Attribution, owner: string) => ((a.owners.get(owner) ?? 0) / FREQUENCY / a.requests) * 1e6;
    const total = (a: Attribution) => (a.samples / FREQUENCY / a.requests) * 1e6;
    console.log(`perf at ${FREQUENCY} Hz, ${SECONDS} s of autocannon (${CONNECTIONS} connections) per process, one run each; main thread, µs per request (perf's overhead included)`);
    console.log(`  CPU per request (/proc, every thread): floor ${floorRun.cpuUsPerRequest.toFixed(0)} µs, gateway ${gatewayRun.cpuUsPerRequest.toFixed(0)} µs`);
    console.log(`  main thread sampled: floor ${total(floorRun).toFixed(1)} µs, gateway ${total(gatewayRun).toFixed(1)} µs (${floorRun.requests} and ${gatewayRun.requests} requests)\n`);
    const larger = (o: string) => Math.max(perRequest(floorRun, o), perRequest(gatewayRun, o));
    const owners = [...new Set([...floorRun.owners.keys(), ...gatewayRun.owners.keys()])].sort((a, b) => larger(b) - larger(a));
    console.log(`  ${'owner (GC, else the innermost JavaScript frame)'.padEnd(52)}  floor  gateway`);
    for (const o of owners.slice(0, TOP)) {
      console.log(`  ${o.padEnd(52)} ${perRequest(floorRun, o).toFixed(1).padStart(6)} ${perRequest(gatewayRun, o).toFixed(1).padStart(8)}`);
    }
    const gatewayOwn = owners.filter((o) => o.startsWith('gateway ')).reduce((n, o) => n + perRequest(gatewayRun, o), 0);
    console.log(`\n  the gateway's own files (dist/) together: ${gatewayOwn.toFixed(1)} µs per request`);
  } finally {
    const pids = [gateway?.child.pid, floor?.child.pid];
    gateway?.stop();
    floor?.stop();
    upstream.stop();
    rmSync(dir, { recursive: true, force: true });
    // --perf-basic-prof's symbol maps, one per process.
    for (const pid of pids) if (pid !== undefined) rmSync(`/tmp/perf-${pid}.map`, { force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
