// `inferenceflow serve --workers 2` as a user runs it: one port answered by two processes, a worker
// that dies is replaced, and SIGTERM lets an in-flight stream finish before the cluster exits 0.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isolatedEnv } from './helpers/serve-cluster.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface LogLine {
  msg?: string;
  url?: string;
  workers?: number[];
  pid?: number;
  code?: number;
}

/** The cluster's stdout as parsed JSON lines, with a way to wait for a line. */
class LogWatcher {
  readonly lines: LogLine[] = [];
  private waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  private buf = '';
  constructor(stream: NodeJS.ReadableStream) {
    stream.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const raw = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        let line: LogLine;
        try {
          line = JSON.parse(raw) as LogLine;
        } catch {
          continue;
        }
        this.lines.push(line);
        this.waiters = this.waiters.filter((w) => (w.match(line) ? (w.resolve(line), false) : true));
      }
    });
  }
  wait(match: (l: LogLine) => boolean, what: string, ms = 45_000): Promise<LogLine> {
    const seen = this.lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no log line "${what}" within ${ms} ms; got: ${JSON.stringify(this.lines.slice(-10))}`)), ms);
      this.waiters.push({ match, resolve: (l) => (clearTimeout(timer), resolve(l)) });
    });
  }
}

/** One request on its own connection, so the cluster may hand it to any worker. */
function post(url: string, body: object): Promise<{ status: number; worker: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}/v1/chat/completions`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', connection: 'close' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, worker: String(res.headers['x-inferenceflow-worker'] ?? ''), text }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

const chat = (model: string, stream = false) => ({ model, stream, messages: [{ role: 'user', content: 'Say hello.' }] });

describe('serve --workers 2 with the embedded database', () => {
  it('refuses to start, naming DATABASE_URL, and exits 1', async () => {
    // It stops before opening anything, so the default database path is never touched.
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--port', '0', '--workers', '2'], {
      cwd: ROOT,
      env: isolatedEnv({ LOG_LEVEL: 'info', DATABASE_URL: '' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(1);
    expect(stderr).toMatch(/PGlite.*DATABASE_URL/);
  }, 60_000);
});

describe('serve --workers 2 with the autoscaler and no Redis', () => {
  it('refuses to start, naming REDIS_URL, and exits 1', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'if-workers-capacity-'));
    const config = join(dir, 'gateway.yaml');
    writeFileSync(config, 'ledger: { enabled: false }\nbatch_jobs: { enabled: false }\nscaling: { enabled: true }\n');
    const env: Record<string, string | undefined> = { ...process.env, LOG_LEVEL: 'info' };
    for (const name of ['REDIS_URL', 'REDIS_HOST', 'REDIS_PORT', 'REDIS_PASSWORD', 'REDIS_CLUSTER_NODES', 'INFERENCEFLOW_AUTOSCALER']) delete env[name];
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--config', config, '--port', '0', '--workers', '2'], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(1);
    expect(stderr).toMatch(/--workers 2: without Redis the autoscaler \(scaling\.enabled\).*REDIS_URL/);
  }, 60_000);
});

describe('serve --workers 2', () => {
  let child: ChildProcess;
  let logs: LogWatcher;
  let url: string;
  let pids: number[];
  let exited: Promise<number | null>;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'if-workers-'));
    const config = join(dir, 'gateway.yaml');
    writeFileSync(
      config,
      `providers:
  sim: { type: simulator }
  slow: { type: simulator, options: { tokens_per_second: 20 } }
models:
  - { name: fast, deployments: [{ provider: sim, model: fast }] }
  - { name: slow, deployments: [{ provider: slow, model: slow }] }
# The embedded PGlite database is single-process; several workers need Postgres (DATABASE_URL).
ledger: { enabled: false }
batch_jobs: { enabled: false }
`,
    );
    child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--config', config, '--port', '0', '--workers', '2'], {
      cwd: ROOT,
      env: isolatedEnv({ LOG_LEVEL: 'info' }),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    logs = new LogWatcher(child.stdout as NodeJS.ReadableStream);
    const ready = await logs.wait((l) => l.msg === 'inferenceflow cluster listening', 'cluster listening');
    url = ready.url as string;
    pids = ready.workers as number[];
  }, 60_000);

  afterAll(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });

  it('answers on one port from both worker processes', async () => {
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(new Set(pids).size).toBe(2);
    const seen = new Set<string>();
    for (let i = 0; i < 20 && seen.size < 2; i++) {
      const res = await post(url, chat('fast'));
      expect(res.status).toBe(200);
      seen.add(res.worker);
    }
    expect([...seen].sort()).toEqual(pids.map(String).sort());
  });

  it('closes a kept-alive connection after 100 requests, so long-lived clients spread over the workers again', async () => {
    const client = new Client(url, { pipelining: 1 });
    try {
      const connection: string[] = [];
      for (let i = 0; i < 101; i++) {
        const res = await client.request({ method: 'GET', path: '/health' });
        await res.body.dump();
        expect(res.statusCode).toBe(200);
        connection.push(String(res.headers.connection));
      }
      // The 100th answer closes its connection (every one before keeps it); the client reconnected for the 101st.
      expect(connection.slice(0, 99).every((c) => c === 'keep-alive')).toBe(true);
      expect(connection[99]).toBe('close');
      expect(connection[100]).toBe('keep-alive');
    } finally {
      await client.close();
    }
  });

  it('replaces a worker that dies, and keeps serving', async () => {
    const victim = pids[0] as number;
    process.kill(victim, 'SIGKILL');
    const replacement = await logs.wait((l) => l.msg === 'replacement worker listening', 'replacement worker listening');
    expect(replacement.pid).not.toBe(victim);
    const seen = new Set<string>();
    for (let i = 0; i < 20 && seen.size < 2; i++) {
      const res = await post(url, chat('fast'));
      expect(res.status).toBe(200);
      seen.add(res.worker);
    }
    expect(seen).toEqual(new Set([String(pids[1]), String(replacement.pid)]));
  }, 60_000);

  it('drains an in-flight stream on SIGTERM, then every process exits and the primary exits 0', async () => {
    // A slow stream (about a second of tokens) is under way when the signal arrives.
    const inflight = post(url, chat('slow', true));
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGTERM');
    const res = await inflight;
    expect(res.status).toBe(200);
    expect(res.text.trim().endsWith('data: [DONE]')).toBe(true);
    expect(await exited).toBe(0);
    expect(logs.lines.filter((l) => l.msg === 'worker exited').every((l) => l.code === 0)).toBe(true);
    await expect(post(url, chat('fast'))).rejects.toThrow();
  }, 60_000);
});
