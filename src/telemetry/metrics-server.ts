// The separate metrics listener of seed 002 (`PROMETHEUS_PORT`): a bare node:http server answering
// GET /metrics on its own port, so Prometheus can scrape without touching the API port. It is a
// managed resource of the gateway: closed on shutdown with everything else. With `serve --workers N`
// every worker listens on it (the port is shared) and answers with the whole cluster's metrics. A mesh
// router serves its backlog metrics (src/mesh/metrics.ts) with the same listener.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { presentedTokenCheck } from '../server/auth.js';
import type { GatewayMetrics } from './metrics.js';

export interface MetricsServer {
  readonly name: string;
  readonly port: number;
  check(): Promise<boolean>;
  close(): Promise<void>;
}

export async function startMetricsServer(metrics: Pick<GatewayMetrics, 'render' | 'contentType'>, opts: { host: string; port: number; token?: string }): Promise<MetricsServer> {
  const authorized = metricsAuthorizer(opts.token);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || (path !== '/metrics' && path !== '/')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    if (!authorized(req.headers)) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('unauthorized\n');
      return;
    }
    metrics.render().then(
      (text) => res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' }).end(text),
      // 503 when a cluster's primary cannot answer for every worker (cluster-metrics.ts), else 500.
      (err: unknown) => res.writeHead((err as { status?: number }).status === 503 ? 503 : 500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(err as Error).message}\n`),
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

/**
 * The port of the separate metrics listener, or undefined when there is none: metrics off, no port
 * set, or the API's own port (both listen on `server.host`, and the API answers /metrics itself;
 * seed 002 sets PROMETHEUS_PORT and PORT both to 8000). Port 0 is a fresh port of its own.
 */
export function separateMetricsPort(metrics: { enabled: boolean; port?: number }, apiPort: number): number | undefined {
  if (!metrics.enabled || metrics.port === undefined) return undefined;
  return metrics.port !== 0 && metrics.port === apiPort ? undefined : metrics.port;
}

/** Whether a request may read metrics: always with no token configured, else when it presents that token. */
export function metricsAuthorizer(token: string | undefined): (headers: Record<string, string | string[] | undefined>) => boolean {
  const check = token ? presentedTokenCheck(token) : undefined;
  return (headers) => !check || check(headers);
}
