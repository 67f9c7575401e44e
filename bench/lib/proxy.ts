// The floor for any Node gateway: a pass-through proxy that forwards the body to the upstream over
// an undici keep-alive pool and pipes the answer back, with no parsing at all.
// Run as its own process: `tsx bench/lib/proxy.ts <port> <upstream-url>`.
import { createServer } from 'node:http';
import { Pool } from 'undici';

export function startProxy(port: number, upstream: string) {
  const pool = new Pool(upstream, { connections: 256, keepAliveTimeout: 60_000 });
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      pool
        .request({ method: 'POST', path: req.url ?? '/', headers: { 'content-type': 'application/json' }, body: Buffer.concat(parts) })
        .then(async (up) => {
          res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type'] ?? 'application/json') });
          for await (const piece of up.body) res.write(piece);
          res.end();
        })
        .catch(() => {
          res.writeHead(502);
          res.end();
        });
    });
  });
  server.keepAliveTimeout = 60_000;
  return new Promise<typeof server>((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

if (process.argv[1]?.endsWith('proxy.ts')) {
  void startProxy(Number(process.argv[2] ?? 0), process.argv[3] ?? 'http://127.0.0.1:9999').then((s) => {
    const addr = s.address();
    console.log(`READY ${typeof addr === 'object' && addr ? addr.port : 0}`);
  });
}
