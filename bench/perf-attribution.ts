// Where the gateway's CPU goes, beside the parsing floor's (bench/lib/parsing-floor.ts), measured by
// Linux `perf` rather than V8's sampling profiler: the V8 profiler samples wall time and its own cost
// differs by process (it slowed the bare floor 40% and the gateway 13% here), so the shares it gives
// two processes do not compare; `perf` samples CPU time, kernel included, with node's
// `--perf-basic-prof` naming the JIT's frames. Each process serves the same non-streaming chat load
// (autocannon at saturation) against the same upstream stand-in while `perf record` samples it; every
// sample of its main thread goes to the innermost frame that is JavaScript — a gateway file (dist/),
// a package, a Node module — or, with none, to GC, libuv or the kernel. Printed per request, so the
// two columns compare (perf's own overhead is in both). Throughput here is not the benchmark's: see
// gateway-overhead.ts for that.
// Needs `perf` (Debian: linux-perf) allowed to sample one's own processes (kernel.perf_event_paranoid
// at most 2). Not in `npm run bench`'s default list.
// Usage: npm run build && tsx bench/perf-attribution.ts [--seconds 8] [--connections 50] [--frequency 999] [--top 30]
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';
import { numberFlag } from './lib/args.js';
import { cpuTimeMs } from './lib/proc-stats.js';
import { IMAGE_NODE_OPTIONS, startProcess, type Proc } from './lib/processes.js';
import { startGatewayProcess } from './gateway-overhead.js';

const args = process.argv.slice(2);
const SECONDS = numberFlag(args, 'seconds', 8);
const CONNECTIONS = numberFlag(args, 'connections', 50);
const FREQUENCY = numberFlag(args, 'frequency', 999);
const TOP = numberFlag(args, 'top', 30);

const chatBody = JSON.stringify({ model: 'bench', messages: [{ role: 'user', content: 'Say something short.' }], max_tokens: 32 });

/** Who a sample's CPU belongs to, from its stack (innermost frame first), as `perf script` prints it. */
function ownerOf(frames: readonly string[]): string {
  for (const f of frames) {
    const js = /JS:[*^~+]?\S* (\S+)/.exec(f);
    if (!js) continue;
    const url = js[1] as string;
    const dist = /\/dist\/(.+?):\d+(?::\d+)?$/.exec(url);
    if (dist) return `gateway ${dist[1]}`;
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
    if (pkg) return `package ${pkg[1]}`;
    if (url.startsWith('node:')) return `node ${url.slice(5).split(':')[0]}`;
    if (url.includes('/bench/')) return 'the floor (bench/lib)';
    return 'other JavaScript';
  }
  const all = frames.join(' ');
  if (/Scaveng|MarkCompact|Heap::|GCTracer|ConcurrentMarking/.test(all)) return '(garbage collection)';
  if (frames[0]?.includes('[kernel.kallsyms]')) return all.includes('uv_') ? '(kernel, from libuv: sockets, epoll)' : '(kernel)';
  if (all.includes('uv_')) return '(libuv)';
  return '(other native)';
}

interface Attribution {
  requests: number;
  cpuUsPerRequest: number;
  /** Main-thread samples by owner. */
  owners: Map<string, number>;
  samples: number;
}

/** Reads `perf script` output: one sample per block (a header line with the thread id, then its frames). */
async function attribute(file: string, mainTid: number): Promise<{ owners: Map<string, number>; samples: number }> {
  const perf = spawn('perf', ['script', '-i', file, '-F', 'tid,ip,sym,dso'], { stdio: ['ignore', 'pipe', 'ignore'] });
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
    if (!line.trim()) flush();
    else if (/^\s/.test(line)) frames.push(line.trim());
    else tid = Number(line.trim().split(/\s+/)[0]);
  }
  flush();
  return { owners, samples };
}

async function measure(name: string, proc: Proc, url: string, dir: string): Promise<Attribution> {
  const pid = proc.child.pid as number;
  const load = (duration: number) => autocannon({ url, method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody, connections: CONNECTIONS, duration });
  await load(4); // warm-up: the JIT has compiled the request path before anything is sampled
  const file = join(dir, `${name}.data`);
  const rec = spawn('perf', ['record', '-F', String(FREQUENCY), '-g', '-o', file, '-p', String(pid)], { stdio: 'ignore' });
  const cpu0 = await cpuTimeMs(pid);
  const r = await load(SECONDS);
  const cpu1 = await cpuTimeMs(pid);
  rec.kill('SIGINT');
  await new Promise((resolve) => rec.once('exit', resolve));
  const requests = r.requests.total;
  if (r.non2xx || r.errors) throw new Error(`${name}: ${r.non2xx + r.errors} of ${requests} requests failed`);
  return { requests, cpuUsPerRequest: ((cpu1 - cpu0) * 1000) / requests, ...(await attribute(file, pid)) };
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
  let floor: Proc | undefined;
  let gateway: Proc | undefined;
  try {
    floor = await startProcess(['bench/lib/parsing-floor.ts', '0', upstreamUrl], { NODE_OPTIONS: '--perf-basic-prof' });
    gateway = await startGatewayProcess(upstream.port, 'cache: { enabled: false }\nledger: { enabled: false }\n', 1, { NODE_OPTIONS: `${IMAGE_NODE_OPTIONS} --perf-basic-prof` });
    const floorRun = await measure('floor', floor, `http://127.0.0.1:${floor.port}/v1/chat/completions`, dir);
    const gatewayRun = await measure('gateway', gateway, `http://127.0.0.1:${gateway.port}/v1/chat/completions`, dir);

    const perRequest = (a: Attribution, owner: string) => ((a.owners.get(owner) ?? 0) / FREQUENCY / a.requests) * 1e6;
    const total = (a: Attribution) => (a.samples / FREQUENCY / a.requests) * 1e6;
    console.log(`perf at ${FREQUENCY} Hz, ${SECONDS} s of autocannon (${CONNECTIONS} connections) per process; main thread, µs per request (perf's overhead included)`);
    console.log(`  CPU per request (/proc, every thread): floor ${floorRun.cpuUsPerRequest.toFixed(0)} µs, gateway ${gatewayRun.cpuUsPerRequest.toFixed(0)} µs`);
    console.log(`  main thread sampled: floor ${total(floorRun).toFixed(1)} µs, gateway ${total(gatewayRun).toFixed(1)} µs (${floorRun.requests} and ${gatewayRun.requests} requests)\n`);
    const owners = [...new Set([...floorRun.owners.keys(), ...gatewayRun.owners.keys()])];
    owners.sort((a, b) => perRequest(gatewayRun, b) - perRequest(gatewayRun, a));
    console.log(`  ${'owner (innermost JavaScript frame)'.padEnd(52)}  floor  gateway`);
    for (const o of owners.slice(0, TOP)) {
      console.log(`  ${o.padEnd(52)} ${perRequest(floorRun, o).toFixed(1).padStart(6)} ${perRequest(gatewayRun, o).toFixed(1).padStart(8)}`);
    }
    const gatewayOwn = owners.filter((o) => o.startsWith('gateway ')).reduce((n, o) => n + perRequest(gatewayRun, o), 0);
    console.log(`\n  the gateway's own files (dist/) together: ${gatewayOwn.toFixed(1)} µs per request`);
  } finally {
    gateway?.stop();
    floor?.stop();
    upstream.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1]?.endsWith('perf-attribution.ts')) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
