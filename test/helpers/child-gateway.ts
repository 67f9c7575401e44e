// Runs one gateway in a child process for multi-process tests (shared Redis state, graceful
// shutdown). Config comes as JSON in GATEWAY_CONFIG; with FAULT_URL set, provider `fault` is the
// test-only adapter for the fault-injecting upstream. Prints {"url": …} once listening; SIGTERM
// drains like `inferenceflow serve` and exits 0.
import { startServer } from '../../src/cli/serve.js';
import { buildConfig } from '../../src/config/load.js';
import type { ProviderAdapter } from '../../src/providers/types.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { createFaultTestProvider } from './fault-provider.js';

const config = JSON.parse(process.env.GATEWAY_CONFIG ?? '{}') as Record<string, unknown>;
const faultUrl = process.env.FAULT_URL;
let providers: Map<string, ProviderAdapter> | undefined;
if (faultUrl) providers = new Map([['fault', createFaultTestProvider('fault', faultUrl)]]);

const logger = createLogger((process.env.CHILD_LOG_LEVEL ?? 'silent') as 'silent', process.stderr);
const server = await startServer({ loaded: buildConfig(config, {}), host: '127.0.0.1', port: 0, logger, providers });
process.stdout.write(`${JSON.stringify({ url: server.url })}\n`);

process.once('SIGTERM', () => {
  server.close().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`shutdown failed: ${String(err)}\n`);
      process.exit(1);
    },
  );
});
