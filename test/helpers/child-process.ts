// Spawns test/helpers/child-gateway.ts with `node --import tsx` and waits for its URL.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface ChildGateway {
  url: string;
  proc: ChildProcess;
  exited: Promise<number | null>;
  stderr: () => string;
}

const SCRIPT = fileURLToPath(new URL('./child-gateway.ts', import.meta.url));

export async function spawnGateway(config: Record<string, unknown>, env: Record<string, string> = {}): Promise<ChildGateway> {
  const proc = spawn(process.execPath, ['--import', 'tsx', SCRIPT], {
    env: { ...process.env, ...env, GATEWAY_CONFIG: JSON.stringify(config) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`child gateway did not start: ${err}`)), 30_000);
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { url: string }).url);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`child gateway exited with ${code}: ${err}`));
    });
  });
  return { url, proc, exited, stderr: () => err };
}
