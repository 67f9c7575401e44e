// Starts a real gateway on an ephemeral loopback port for integration tests, built by the same code
// path as `inferenceflow serve` (config -> gateway -> Fastify app), with a silent logger.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SpanExporter } from '@opentelemetry/sdk-trace-node';
import { buildConfig } from '../../src/config/load.js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import type { ChatRequest, ChatResult } from '../../src/canonical/chat.js';
import { createSimulatorProvider, type SimulatorProvider } from '../../src/providers/simulator.js';
import type { CallOptions, ProviderAdapter } from '../../src/providers/types.js';
import { createLogger, type Logger } from '../../src/telemetry/logger.js';

export interface TestGatewayOptions {
  config?: Record<string, unknown>;
  env?: Record<string, string | undefined>;
  providers?: Map<string, ProviderAdapter>;
  /** Span exporter for tracing tests (tracing is otherwise on with no exporter). */
  spanExporter?: SpanExporter;
  /** A logger to capture request lines (default: silent). */
  logger?: Logger;
}

export async function startTestGateway(opts: TestGatewayOptions = {}): Promise<RunningServer> {
  // The ledger and batch jobs (and with them the embedded database) are off unless a test configures
  // them: every test gateway opening the same PGlite file would collide, and opening one takes seconds.
  // The response cache is off too unless a test turns it on, so repeated prompts reach the provider.
  const config: Record<string, unknown> = { ledger: { enabled: false }, cache: { enabled: false }, batch_jobs: { enabled: false }, ...opts.config };
  // A test that turns the database or the ledger on (an admin token does) gets its own PGlite file
  // and spool in a directory of its own, not the checkout's ./data: PGlite takes one process per
  // file (two test files at once aborted one), and a spool found there is replayed by every start.
  const dir = mkdtempSync(join(tmpdir(), 'inferenceflow-test-gateway-'));
  const database = (config.database ?? {}) as Record<string, unknown>;
  if (database.pglite_path === undefined) config.database = { ...database, pglite_path: join(dir, 'db.pglite') };
  const ledger = config.ledger as Record<string, unknown>;
  if (ledger.spool_path === undefined) config.ledger = { ...ledger, spool_path: join(dir, 'ledger-spool.jsonl') };
  const loaded = buildConfig(config, opts.env ?? {});
  let server: RunningServer;
  try {
    server = await startServer({ loaded, host: '127.0.0.1', port: 0, logger: opts.logger ?? createLogger('silent'), providers: opts.providers, spanExporter: opts.spanExporter });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const close = server.close.bind(server);
  server.close = async () => {
    try {
      await close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  return server;
}

/**
 * The simulator `name` (with `simOptions`) as a custom adapter for `providers`: typed `ollama`, an
 * upstream without native `n`, so scaled passes are separate calls. Its non-streaming chat is `chat`,
 * given the simulator to answer with; streaming and embeddings are the simulator's.
 */
export function simulatorAdapter(name: string, chat: (req: ChatRequest, opts: CallOptions, sim: SimulatorProvider) => Promise<ChatResult>, simOptions: Record<string, unknown> = {}): ProviderAdapter {
  const sim = createSimulatorProvider(name, simOptions);
  return {
    name,
    type: 'ollama',
    chat: (req, opts) => chat(req, opts, sim),
    streamChat: (req, opts) => sim.streamChat(req, opts),
    embed: (req, opts) => sim.embed(req, opts),
    ready: async () => true,
    close: async () => undefined,
  };
}
