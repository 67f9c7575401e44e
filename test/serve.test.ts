// `inferenceflow serve` start-up rules: no auth means loopback only; with a token it may bind wider.
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildConfig } from '../src/config/load.js';
import { startServer } from '../src/cli/serve.js';
import { createLogger } from '../src/telemetry/logger.js';

// Its own embedded database file, so parallel test files never share ./data.
const database = { pglite_path: join(mkdtempSync(join(tmpdir(), 'if-serve-')), 'db.pglite') };

describe('serve', () => {
  it('refuses a non-loopback address without authentication', async () => {
    await expect(startServer({ loaded: buildConfig({ database }, {}), host: '0.0.0.0', port: 0, logger: createLogger('silent') })).rejects.toThrow(/without authentication/);
  });

  it('binds a non-loopback address once a token is configured', async () => {
    const server = await startServer({ loaded: buildConfig({ database }, { TRUTHGPT_API_TOKEN: 'a-long-token-1' }), host: '0.0.0.0', port: 0, logger: createLogger('silent') });
    try {
      expect(server.url).toMatch(/^http:\/\/0\.0\.0\.0:\d+$/);
    } finally {
      await server.close();
    }
  });

  it('serves /metrics on the API port when PROMETHEUS_PORT equals PORT (seed 002 sets both to 8000), instead of failing with EADDRINUSE', async () => {
    const port = await freePort();
    const server = await startServer({ loaded: buildConfig({ database }, { PORT: String(port), PROMETHEUS_PORT: String(port) }), logger: createLogger('silent') });
    try {
      expect(server.url).toBe(`http://127.0.0.1:${port}`);
      const res = await fetch(`${server.url}/metrics`);
      expect(res.status).toBe(200);
      expect(await res.text()).toMatch(/^# (HELP|TYPE) /m);
    } finally {
      await server.close();
    }
  });

  it('releases what it assembled, the metrics listener included, when the API port is taken', async () => {
    const blocker = await listen(0);
    const apiPort = (blocker.address() as { port: number }).port;
    const metricsPort = await freePort();
    try {
      await expect(
        startServer({ loaded: buildConfig({ database }, { PORT: String(apiPort), PROMETHEUS_PORT: String(metricsPort) }), logger: createLogger('silent') }),
      ).rejects.toThrow(/EADDRINUSE/);
      // The metrics port is free again: nothing of the failed start holds it.
      const again = await listen(metricsPort);
      await new Promise<void>((resolve) => again.close(() => resolve()));
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });
});

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

async function freePort(): Promise<number> {
  const server = await listen(0);
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
