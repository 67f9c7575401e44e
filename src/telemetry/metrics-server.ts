// The separate metrics listener of seed 002 (`PROMETHEUS_PORT`): a bare node:http server answering
// GET /metrics on its own port, so Prometheus can scrape without touching the API port. It is a
// managed resource of the gateway: closed on shutdown with everything else.
import { hash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { presentedKey } from '../server/auth.js';
import type { GatewayMetrics } from './metrics.js';

export interface MetricsServer {
  readonly name: string;
  readonly port: number;
  check(): Promise<boolean>;
  close(): Promise<void>;
}

export async function startMetricsServer(metrics: GatewayMetrics, opts: { host: string; port: number; token?: string }): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || (path !== '/metrics' && path !== '/')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    if (!metricsAuthorized(opts.token, req.headers)) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('unauthorized\n');
      return;
    }
    metrics.render().then(
      (text) => res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(err as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    name: 'metrics-server',
    port: (server.address() as AddressInfo).port,
    check: async () => server.listening,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** True when the request may read metrics: no token configured, or the configured one presented. */
export function metricsAuthorized(token: string | undefined, headers: Record<string, string | string[] | undefined>): boolean {
  if (!token) return true;
  const presented = presentedKey(headers);
  if (!presented) return false;
  const a = hash('sha256', presented, 'buffer');
  const b = hash('sha256', token, 'buffer');
  return timingSafeEqual(a, b);
}
