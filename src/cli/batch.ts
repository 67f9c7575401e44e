// `inferenceflow batch input.jsonl -o output.jsonl`: runs an OpenAI-Batch-format file through a
// gateway (`--url`, or one started in this process from the config) with a progress bar,
// `--concurrency` requests in flight and `--resume` to continue an interrupted run.
import { Command } from 'commander';
import cliProgress from 'cli-progress';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../telemetry/logger.js';
import { nonNegativeInt, positiveInt } from './args.js';
import { fileExists, runBatchFile } from './batch-file.js';
import { startServer, type RunningServer } from './serve.js';

interface BatchCliOptions {
  output: string;
  errors?: string;
  url?: string;
  apiKey?: string;
  concurrency: number;
  resume?: boolean;
  retries: number;
  config?: string;
  progress: boolean;
}

export function batchCommand(): Command {
  return new Command('batch')
    .description('run a JSONL file of requests (OpenAI Batch input format) and write the answers as JSONL')
    .argument('<input>', 'input .jsonl: one {"custom_id", "method": "POST", "url", "body"} per line')
    .requiredOption('-o, --output <file>', 'output .jsonl (answers, in the order they finish)')
    .option('-e, --errors <file>', 'failed lines (default <output>.errors.jsonl)')
    .option('-u, --url <url>', 'gateway URL (or INFERENCEFLOW_URL); unset: start one in this process from the config')
    .option('-k, --api-key <key>', 'bearer token (or INFERENCEFLOW_API_KEY / OVERSHOOT_API_KEY)')
    .option('-n, --concurrency <n>', 'requests in flight at once', positiveInt, 8)
    .option('-r, --resume', 'keep the output files and skip the lines they already hold')
    .option('--retries <n>', 'tries after the first on 429, 5xx or network errors', nonNegativeInt, 3)
    .option('-c, --config <file>', 'config for the in-process gateway (or INFERENCEFLOW_CONFIG)')
    .option('--no-progress', 'no progress bar (a summary line only)')
    .action(async (input: string, opts: BatchCliOptions) => {
      if (!(await fileExists(input))) throw new Error(`no such input file: ${input}`);
      if (!opts.resume && (await fileExists(opts.output))) throw new Error(`${opts.output} exists: pass --resume to continue it, or choose another --output`);
      let local: RunningServer | undefined;
      let url = opts.url ?? process.env.INFERENCEFLOW_URL;
      // A variable set empty is unset, as everywhere else: INFERENCEFLOW_API_KEY='' does not hide OVERSHOOT_API_KEY.
      const apiKey = opts.apiKey ?? (process.env.INFERENCEFLOW_API_KEY || undefined) ?? (process.env.OVERSHOOT_API_KEY || undefined);
      if (!url) {
        const loaded = await loadConfig({ file: opts.config });
        const { config } = loaded;
        // A private gateway for this run: it must not take the embedded database (a running
        // `inferenceflow serve` may hold it, and two processes on one PGlite file corrupt it). Use
        // --url to go through (and be accounted by) a server.
        config.batch_jobs.enabled = false;
        config.ledger.enabled = false;
        if (!config.database.url) {
          // The admin token (API keys) and the webhook secret would open it too; the private gateway
          // needs neither, unless the key this run sends is an API key, which only the database knows.
          if (config.auth.admin_token && apiKey?.startsWith(config.auth.api_keys.prefix)) {
            throw new Error(
              `an API key (${config.auth.api_keys.prefix}…) is checked against the embedded database ${config.database.pglite_path}, which a running \`inferenceflow serve\` may hold: pass --url (or INFERENCEFLOW_URL) to go through that server, or set DATABASE_URL`,
            );
          }
          delete config.auth.admin_token;
          // Outgoing webhooks (budget alerts) keep signing with it; only the ingest route goes.
          const secret = config.webhooks.secret;
          config.webhooks.endpoints = config.webhooks.endpoints.map((e) => ({ ...e, secret: e.secret ?? secret }));
          delete config.webhooks.secret;
        }
        local = await startServer({ loaded, host: '127.0.0.1', port: 0, logger: createLogger('warn') });
        url = local.url;
      }
      const bar = opts.progress && process.stderr.isTTY ? new cliProgress.SingleBar({ format: 'batch [{bar}] {value}/{total} | failed {failed} | eta {eta_formatted}', stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic) : undefined;
      let started = false;
      try {
        const summary = await runBatchFile({
          input,
          output: opts.output,
          errors: opts.errors,
          url,
          apiKey,
          concurrency: opts.concurrency,
          resume: opts.resume === true,
          retries: opts.retries,
          onProgress: (done, total, failed) => {
            if (!bar) return;
            if (!started) {
              bar.start(total, done, { failed });
              started = true;
            } else bar.update(done, { failed });
          },
        });
        bar?.stop();
        console.error(`inferenceflow batch: ${summary.succeeded} succeeded, ${summary.failed} failed, ${summary.skipped} already done of ${summary.total} -> ${summary.output}${summary.failed ? ` (errors: ${summary.errors})` : ''}`);
        if (summary.failed > 0) process.exitCode = 2;
      } finally {
        bar?.stop();
        await local?.close();
      }
    });
}
