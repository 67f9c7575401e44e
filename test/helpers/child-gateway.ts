// Runs `inferenceflow serve` as a separate process (the real CLI, through tsx) for tests that need
// several replicas or a real SIGTERM. Resolves once the gateway logs its URL.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';

export interface ChildGateway {
  url: string;
  process: ChildProcess;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  logs: string[];
  stop(): Promise<void>;
}

const ROOT = new URL('../../', import.meta.url).pathname;

export async function startChildGateway(dir: string, name: string, config: Record<string, unknown>, env: Record<string, string> = {}): Promise<ChildGateway> {
  const file = join(dir, `${name}.yaml`);
  // Each child gets its own embedded database file: PGlite is single-process, and parallel test
  // files starting gateways in one checkout would otherwise share ./data and crash.
  const database = { pglite_path: join(dir, `${name}.pglite`), ...(config.database as Record<string, unknown> | undefined) };
  await writeFile(file, stringify({ server: { host: '127.0.0.1', port: 0 }, logging: { level: 'info' }, ...config, database }));
  // One process unless a test asks for more: per-process state (breakers, limits without Redis) must be
  // deterministic here; test/serve-workers.test.ts covers --workers.
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'serve', '--config', file, '--workers', env.INFERENCEFLOW_WORKERS ?? '1'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    let buffer = '';
    const timer = setTimeout(() => reject(new Error(`gateway ${name} did not start:\n${logs.join('\n')}`)), 90_000);
    child.stdout?.on('data', (d: Buffer) => {
      buffer += d.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        logs.push(line);
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string };
          if (entry.msg === 'inferenceflow listening' && entry.url) {
            clearTimeout(timer);
            resolve(entry.url);
          }
        } catch {
          // not a log line
        }
      }
    });
    child.stderr?.on('data', (d: Buffer) => logs.push(d.toString()));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gateway ${name} exited with ${code}:\n${logs.join('\n')}`));
    });
  });
  return {
    url,
    process: child,
    exited,
    logs,
    /** SIGTERM, then SIGKILL after 15 s: a stuck child must not hold the test's hook to its timeout and outlive it. */
    async stop() {
      await stopChild(child);
    },
  };
}

/**
 * SIGTERM, then SIGKILL after `graceMs`; resolves once the child has exited. A child stuck on its way
 * out must not hold a test's hook to its timeout and then outlive the run.
 */
export async function stopChild(child: ChildProcess, graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
