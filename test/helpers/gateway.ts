// Starts a real gateway on an ephemeral loopback port for integration tests, built by the same code
// path as `inferenceflow serve` (config -> gateway -> Fastify app), with a silent logger.
import { buildConfig } from '../../src/config/load.js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import type { ProviderAdapter } from '../../src/providers/types.js';
import { createLogger } from '../../src/telemetry/logger.js';

export interface TestGatewayOptions {
  config?: Record<string, unknown>;
  env?: Record<string, string | undefined>;
  providers?: Map<string, ProviderAdapter>;
}

export async function startTestGateway(opts: TestGatewayOptions = {}): Promise<RunningServer> {
  // Batch jobs (and with them the embedded database) are off unless a test configures them: every
  // test gateway opening the same PGlite file would collide, and opening one takes seconds.
  const loaded = buildConfig({ batch_jobs: { enabled: false }, ...opts.config }, opts.env ?? {});
  return startServer({ loaded, host: '127.0.0.1', port: 0, logger: createLogger('silent'), providers: opts.providers });
}
