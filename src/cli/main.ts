#!/usr/bin/env node
// The `inferenceflow` command: serve the gateway (more subcommands join as their modules land).
import { Command, InvalidArgumentError } from 'commander';
import { ConfigError } from '../config/load.js';
import { registerMeshCommands } from './mesh.js';
import { keysCommand } from './keys.js';
import { batchCommand } from './batch.js';
import { serve, VERSION } from './serve.js';
import { portNumber } from './args.js';

function workers(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw new InvalidArgumentError('expected a number of processes, 1 or more');
  return n;
}

const program = new Command()
  .name('inferenceflow')
  .description('LLM inference gateway and distributed inference orchestrator')
  .version(VERSION);

program
  .command('serve')
  .description('run the gateway')
  .option('-c, --config <file>', 'YAML config file (or INFERENCEFLOW_CONFIG)')
  .option('--host <host>', 'address to bind (overrides HOST and the config)')
  .option('-p, --port <port>', 'port to listen on (overrides PORT and the config)', portNumber)
  .option('-w, --workers <n>', 'processes sharing the port (overrides INFERENCEFLOW_WORKERS; default: the usable core count)', workers)
  .action(async (opts: { config?: string; host?: string; port?: number; workers?: number }) => {
    await serve(opts);
  });

// Mesh node agent and router (src/mesh/).
registerMeshCommands(program);
program.addCommand(keysCommand());
// Batch files through a gateway (src/cli/batch.ts).
program.addCommand(batchCommand());

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ConfigError) console.error(`inferenceflow: ${err.message}`);
  else console.error(`inferenceflow: ${(err as Error).message ?? String(err)}`);
  process.exit(1);
});
