// `inferenceflow serve --workers N` as a user runs it (the real CLI through tsx), for the tests that
// check what a request sees of the whole cluster (test/cluster-metrics.test.ts, cluster-stats.test.ts):
// start it, send requests each on its own connection (so the cluster may hand it to any worker),
// read Prometheus text, stop it — SIGCONT first, for a test that stopped a worker.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stopChild } from './child-gateway.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Answer {
  status: number;
  /** `x-inferenceflow-worker`: the pid of the worker that answered. */
  worker: string;
  contentType: string;
  text: string;
}

/**
 * One request; on its own connection (so the cluster may hand it to any worker) unless an agent is
 * given. `token` is sent as a bearer token when set.
 */
export function send(url: string, opts: { method?: string; body?: object; agent?: Agent; token?: string | null } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = opts.body ? { 'content-type': 'application/json' } : {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (!opts.agent) headers.connection = 'close';
    const req = httpRequest(url, { method: opts.method ?? 'GET', agent: opts.agent ?? false, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, worker: String(res.headers['x-inferenceflow-worker'] ?? ''), contentType: String(res.headers['content-type'] ?? ''), text }),
      );
    });
    req.on('error', reject);
    req.end(opts.body ? JSON.stringify(opts.body) : undefined);
  });
}

/**
 * A kept-alive connection known to reach the worker `pid` (tried up to 20 times, since the cluster
 * hands each new connection to any worker), for a test that then stops the other worker; undefined
 * when none reached it.
 */
export async function connectionTo(url: string, pid: number): Promise<Agent | undefined> {
  for (let i = 0; i < 20; i++) {
    const candidate = new Agent({ keepAlive: true, maxSockets: 1 });
    const res = await send(`${url}/health`, { agent: candidate });
    if (res.worker === String(pid)) return candidate;
    candidate.destroy();
  }
  return undefined;
}

/** The samples of one metric in a Prometheus text exposition, as `name{labels} value` lines. */
export function samples(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

/** The sum of a Prometheus metric's samples whose labels include every pair in `match`. */
export function total(text: string, name: string, match: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(match).every(([k, v]) => labels[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

/** A TCP port of 127.0.0.1 free right now (the OS picks one; the listener is closed before resolving). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export interface ServeCluster {
  /** The API's URL, as the primary announced it. */
  url: string;
  /** The workers' pids. */
  pids: number[];
  child: ChildProcess;
  /** SIGCONT to every worker (a test may have stopped one), then SIGTERM; SIGKILL after 15 s. */
  stop(): Promise<void>;
}

/**
 * Every way to name a Redis (CI exports REDIS_CLUSTER_NODES), a database, a token or a worker count:
 * a child gateway given one would share the response cache and the limits with every other test and
 * earlier runs under the default key prefix.
 */
const ISOLATED = ['TRUTHGPT_API_TOKEN', 'REDIS_URL', 'REDIS_HOST', 'REDIS_PORT', 'REDIS_CLUSTER_NODES', 'DATABASE_URL', 'INFERENCEFLOW_WORKERS'];

/** This process's environment without the ISOLATED variables, then `extra` (which may set them again). */
export function isolatedEnv(extra: Record<string, string> = {}): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const name of ISOLATED) delete env[name];
  return { ...env, ...extra };
}

/**
 * Starts `serve --workers <workers>` on a free port of 127.0.0.1 with the built-in simulator and no
 * database (the embedded PGlite file is single-process), and resolves once every worker listens.
 * `env` is added to this process's environment, from which auth, Redis (REDIS_URL, REDIS_HOST,
 * REDIS_CLUSTER_NODES), database and worker-count variables are removed.
 */
export async function startServeCluster(opts: { workers: number; env?: Record<string, string>; configYaml?: string; prefix?: string }): Promise<ServeCluster> {
  const dir = mkdtempSync(join(tmpdir(), opts.prefix ?? 'if-serve-cluster-'));
  const config = join(dir, 'gateway.yaml');
  writeFileSync(config, opts.configYaml ?? 'ledger: { enabled: false }\nbatch_jobs: { enabled: false }\n');
  const env = isolatedEnv({ LOG_LEVEL: 'info', ...opts.env });
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--config', config, '--host', '127.0.0.1', '--port', '0', '--workers', String(opts.workers)], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let stdout = '';
  let pids: number[] = [];
  const stop = async () => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // gone already
      }
    }
    await stopChild(child);
  };
  try {
    const ready = await new Promise<{ url: string; workers: number[] }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the cluster did not listen within 45 s:\n${stdout.slice(-2000)}`)), 45_000);
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`the cluster exited with ${code} before listening:\n${stdout.slice(-2000)}`));
      });
      // Read stdout to its end (a full pipe would block the cluster), but look only until it listens.
      let listening = false;
      child.stdout?.on('data', (d: Buffer) => {
        if (listening) return;
        stdout += d.toString();
        const line = stdout.split('\n').slice(0, -1).find((raw) => raw.includes('inferenceflow cluster listening')); // whole lines only
        if (!line) return;
        listening = true;
        clearTimeout(timer);
        resolve(JSON.parse(line) as { url: string; workers: number[] });
      });
    });
    pids = ready.workers;
    return { url: ready.url, pids, child, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
