// `inferenceflow batch`: which bearer token it sends, from the flag or the environment.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { batchCommand } from './batch.js';

let server: Server;
let url: string;
let dir: string;
const authorization: (string | undefined)[] = [];
const saved = { INFERENCEFLOW_API_KEY: process.env.INFERENCEFLOW_API_KEY, OVERSHOOT_API_KEY: process.env.OVERSHOOT_API_KEY };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cli-batch-key-'));
  server = createServer((req, res) => {
    authorization.push(req.headers.authorization);
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterEach(() => {
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await rm(dir, { recursive: true, force: true });
});

let runs = 0;
/** Runs `inferenceflow batch` over a one-line file against the recording server; the Authorization header it sent. */
async function sentAuthorization(env: Record<string, string | undefined>, args: string[] = []): Promise<string | undefined> {
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  const input = join(dir, `in-${++runs}.jsonl`);
  await writeFile(input, `${JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: { model: 'm', messages: [] } })}\n`);
  authorization.length = 0;
  const error = console.error;
  console.error = () => undefined;
  try {
    await batchCommand().exitOverride().parseAsync([input, '-o', join(dir, `out-${runs}.jsonl`), '--url', url, '--no-progress', ...args], { from: 'user' });
  } finally {
    console.error = error;
  }
  expect(authorization).toHaveLength(1);
  return authorization[0];
}

describe('inferenceflow batch bearer token', () => {
  it('takes OVERSHOOT_API_KEY when INFERENCEFLOW_API_KEY is set empty, as when it is unset', async () => {
    expect(await sentAuthorization({ INFERENCEFLOW_API_KEY: undefined, OVERSHOOT_API_KEY: 'sk-overshoot' })).toBe('Bearer sk-overshoot');
    expect(await sentAuthorization({ INFERENCEFLOW_API_KEY: '', OVERSHOOT_API_KEY: 'sk-overshoot' })).toBe('Bearer sk-overshoot');
  });

  it('INFERENCEFLOW_API_KEY wins over OVERSHOOT_API_KEY, --api-key over both; with all empty none is sent', async () => {
    expect(await sentAuthorization({ INFERENCEFLOW_API_KEY: 'sk-inferenceflow', OVERSHOOT_API_KEY: 'sk-overshoot' })).toBe('Bearer sk-inferenceflow');
    expect(await sentAuthorization({ INFERENCEFLOW_API_KEY: 'sk-inferenceflow', OVERSHOOT_API_KEY: 'sk-overshoot' }, ['--api-key', 'sk-flag'])).toBe('Bearer sk-flag');
    expect(await sentAuthorization({ INFERENCEFLOW_API_KEY: '', OVERSHOOT_API_KEY: '' })).toBeUndefined();
  });
});

describe('inferenceflow batch without --url', () => {
  const savedUrl = process.env.INFERENCEFLOW_URL;
  afterEach(() => {
    if (savedUrl === undefined) delete process.env.INFERENCEFLOW_URL;
    else process.env.INFERENCEFLOW_URL = savedUrl;
  });

  /** A config with an admin token and a webhook secret, the embedded database in a fresh folder; the run's error, if any. */
  async function runInProcess(args: string[] = []): Promise<{ pglite: string; output: string; error?: Error }> {
    delete process.env.INFERENCEFLOW_URL;
    delete process.env.INFERENCEFLOW_API_KEY;
    delete process.env.OVERSHOOT_API_KEY;
    const run = ++runs;
    const pglite = join(dir, `db-${run}`, 'inferenceflow.pglite');
    const config = join(dir, `config-${run}.yaml`);
    await writeFile(
      config,
      `auth: { admin_token: admin-token-0123456789abcdef }
webhooks: { secret: webhook-secret-0123456789, endpoints: [{ url: "http://127.0.0.1:9/hook" }] }
database: { pglite_path: ${JSON.stringify(pglite)} }
providers: { sim: { type: simulator } }
models: [{ name: m, deployments: [{ provider: sim, model: m }] }]
`,
    );
    const input = join(dir, `in-${run}.jsonl`);
    await writeFile(input, `${JSON.stringify({ custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: { model: 'm', messages: [{ role: 'user', content: 'hi' }] } })}\n`);
    const output = join(dir, `out-${run}.jsonl`);
    const error = console.error;
    console.error = () => undefined;
    try {
      await batchCommand().exitOverride().parseAsync([input, '-o', output, '--config', config, '--no-progress', ...args], { from: 'user' });
      return { pglite, output };
    } catch (err) {
      return { pglite, output, error: err as Error };
    } finally {
      console.error = error;
    }
  }

  it('runs on a private gateway that leaves the embedded database (which a running serve may hold) closed', async () => {
    const { pglite, output, error } = await runInProcess();
    expect(error).toBeUndefined();
    const lines = (await readFile(output, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { custom_id: string; response: { status_code: number } });
    expect(lines).toMatchObject([{ custom_id: 'a', response: { status_code: 200 } }]);
    expect(existsSync(dirname(pglite))).toBe(false);
  }, 60_000);

  it('refuses to check an API key against the embedded database: it says to pass --url or set DATABASE_URL', async () => {
    const { pglite, error } = await runInProcess(['--api-key', 'sk-if-0123456789abcdef']);
    expect(error?.message).toMatch(/pass --url .*or set DATABASE_URL/);
    expect(existsSync(dirname(pglite))).toBe(false);
  });
});
