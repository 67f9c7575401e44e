// The pass-through proxy or the parsing floor as N processes sharing one port (node:cluster, each
// worker accepting its own connections as the gateway's do), for bench/gateway-overhead.ts --workers:
// `tsx bench/lib/cluster.ts <N> <proxy|floor> <upstream-url>` prints `READY <port>` once all listen.
import cluster from 'node:cluster';
import { startProxy } from './proxy.js';
import { startParsingFloor } from './parsing-floor.js';

const [count, kind, upstream] = [Number(process.argv[2] ?? 2), process.argv[3] ?? 'proxy', process.argv[4] ?? 'http://127.0.0.1:9999'];

if (cluster.isPrimary) {
  // Workers accept their own connections, as `inferenceflow serve --workers` does. Every worker asks
  // for port 0 at the same address, which the primary answers with one shared handle: one port.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  const ports = new Set<number>();
  let ready = 0;
  for (let i = 0; i < count; i++) {
    cluster.fork().on('message', (p: number) => {
      ports.add(p);
      if (++ready < count) return;
      if (ports.size !== 1) throw new Error(`the workers listen on ${[...ports].join(', ')}, not one port`);
      console.log(`READY ${p}`);
    });
  }
} else {
  const server = await (kind === 'floor' ? startParsingFloor(0, upstream) : startProxy(0, upstream));
  const addr = server.address();
  process.send?.(typeof addr === 'object' && addr ? addr.port : 0);
}
