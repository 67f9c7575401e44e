// `serve --workers 2` as a user runs it, scraped the way Prometheus scrapes it: every scrape of
// /metrics, /v1/metrics and the PROMETHEUS_PORT listener reports the whole cluster (counters and
// histograms summed over both workers), whichever worker accepted the scrape. A worker that hangs
// does not hang the scrape: it answers after the collection timeout, with that worker's last report.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** METRICS_TOKEN: the scrapes present it (the API has no auth on loopback and ignores it). */
const TOKEN = 'cluster-metrics-token';

interface Answer {
  status: number;
  worker: string;
  contentType: string;
  text: string;
}

/** One request; on its own connection (so the cluster may hand it to any worker) unless an agent is given. */
function send(url: string, opts: { method?: string; body?: object; agent?: Agent; token?: string | null } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = opts.body ? { 'content-type': 'application/json' } : {};
    const token = opts.token === undefined ? TOKEN : opts.token;
    if (token) headers.authorization = `Bearer ${token}`;
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

/** The sum of a metric's samples whose labels include every pair in `match`. */
function total(text: string, name: string, match: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(match).every(([k, v]) => labels[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

describe('serve --workers 2: one scrape, the whole cluster', () => {
  const K = 14;
  const route = '/v1/chat/completions';
  let child: ChildProcess;
  let url: string;
  let metricsUrl: string;
  let pids: number[];
  let stdout = '';
  let exited: Promise<number | null>;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'if-cluster-metrics-'));
    const config = join(dir, 'gateway.yaml');
    // No providers: the built-in simulator answers. The embedded PGlite database is single-process.
    writeFileSync(config, 'ledger: { enabled: false }\nbatch_jobs: { enabled: false }\n');
    const metricsPort = await freePort();
    metricsUrl = `http://127.0.0.1:${metricsPort}`;
    const env: Record<string, string | undefined> = { ...process.env, LOG_LEVEL: 'info', PROMETHEUS_PORT: String(metricsPort), METRICS_TOKEN: TOKEN };
    for (const name of ['TRUTHGPT_API_TOKEN', 'REDIS_URL', 'DATABASE_URL', 'INFERENCEFLOW_WORKERS']) delete env[name];
    child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--config', config, '--host', '127.0.0.1', '--port', '0', '--workers', '2'], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    const ready = await new Promise<{ url: string; workers: number[] }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the cluster did not listen within 45 s:\n${stdout.slice(-2000)}`)), 45_000);
      child.stdout?.on('data', (d: Buffer) => {
        stdout += d.toString();
        for (const raw of stdout.split('\n')) {
          if (!raw.includes('inferenceflow cluster listening')) continue;
          clearTimeout(timer);
          resolve(JSON.parse(raw) as { url: string; workers: number[] });
        }
      });
    });
    url = ready.url;
    pids = ready.workers;
    // K requests, each on its own connection: both workers answer some of them.
    const answeredBy = new Set<string>();
    for (let i = 0; i < K; i++) {
      const res = await send(`${url}${route}`, { method: 'POST', body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `Hello ${i}` }] } });
      expect(res.status).toBe(200);
      answeredBy.add(res.worker);
    }
    expect([...answeredBy].sort()).toEqual(pids.map(String).sort());
  }, 90_000);

  afterAll(async () => {
    for (const pid of pids ?? []) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // gone already
      }
    }
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
  });

  it('announces the API port, not the PROMETHEUS_PORT listener', () => {
    expect(url).not.toBe(metricsUrl);
  });

  it('reports every request on every scrape of /metrics, whichever worker takes it', async () => {
    const scrapedBy = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const res = await send(`${url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
      scrapedBy.add(res.worker);
      expect(total(res.text, 'inference_requests_total', { route, status: '200' }), `scrape ${i} by worker ${res.worker}`).toBe(K);
      expect(total(res.text, 'inference_request_duration_ms_count', { route })).toBe(K);
      expect(total(res.text, 'inference_request_duration_ms_bucket', { route, le: '+Inf' })).toBe(K);
      // Process metrics are per worker, named by a stable slot.
      expect(total(res.text, 'process_resident_memory_bytes', { worker: '0' })).toBeGreaterThan(0);
      expect(total(res.text, 'process_resident_memory_bytes', { worker: '1' })).toBeGreaterThan(0);
      expect(total(res.text, 'inference_metrics_workers', { state: 'answered' })).toBe(2);
    }
    // Both workers took scrapes, so this was not one worker answering every time.
    expect([...scrapedBy].sort()).toEqual(pids.map(String).sort());
  });

  it('still wants METRICS_TOKEN on every path', async () => {
    expect((await send(`${url}/metrics`, { token: null })).status).toBe(401);
    expect((await send(`${url}/v1/metrics`, { token: 'wrong-token-here' })).status).toBe(401);
    expect((await send(`${metricsUrl}/metrics`, { token: null })).status).toBe(401);
  });

  it('reports the same on /v1/metrics and on the PROMETHEUS_PORT listener', async () => {
    for (let i = 0; i < 6; i++) {
      const v1 = await send(`${url}/v1/metrics`);
      expect(v1.status).toBe(200);
      expect(total(v1.text, 'inference_requests_total', { route, status: '200' })).toBe(K);
      const separate = await send(`${metricsUrl}/metrics`);
      expect(separate.status).toBe(200);
      expect(separate.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(total(separate.text, 'inference_requests_total', { route, status: '200' })).toBe(K);
    }
  });

  it('answers a scrape while the other worker hangs, with that worker’s last report', async () => {
    // A kept-alive connection that is known to reach one worker; the other one is then stopped.
    let agent: Agent | undefined;
    let live = '';
    for (let i = 0; i < 20 && !agent; i++) {
      const candidate = new Agent({ keepAlive: true, maxSockets: 1 });
      const res = await send(`${url}/health`, { agent: candidate });
      if (res.worker === String(pids[0])) {
        agent = candidate;
        live = res.worker;
      } else candidate.destroy();
    }
    expect(agent, 'a connection to the first worker').toBeDefined();
    const hung = pids[1] as number;
    process.kill(hung, 'SIGSTOP');
    try {
      const res = await send(`${url}/metrics`, { agent });
      expect(res.status).toBe(200);
      expect(res.worker).toBe(live);
      expect(total(res.text, 'inference_requests_total', { route, status: '200' })).toBe(K);
      expect(total(res.text, 'inference_metrics_workers', { state: 'answered' })).toBe(1);
      expect(total(res.text, 'inference_metrics_workers', { state: 'stale' })).toBe(1);
    } finally {
      process.kill(hung, 'SIGCONT');
      agent?.destroy();
    }
  }, 30_000);
});
