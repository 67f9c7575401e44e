// `inferenceflow keys` on bad input: what it tells the operator when the flags or the answer are wrong.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keysCommand } from './keys.js';

let server: Server;
let url: string;
const seen: { method?: string; url?: string; body: string; authorization?: string }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, body, authorization: req.headers.authorization });
      if (req.url?.startsWith('/proxy')) {
        // Not the gateway: a proxy's or web server's HTML error page.
        res.writeHead(502, { 'content-type': 'text/html' }).end('<!DOCTYPE html><html><body>Bad Gateway</body></html>');
      } else if (req.url?.startsWith('/html')) {
        res.writeHead(200, { 'content-type': 'text/html' }).end('<!DOCTYPE html><html></html>');
      } else {
        res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'key_1', prefix: 'sk-if-abc', key: 'sk-if-abc123' }));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
});

/** Runs `inferenceflow keys …args`, with commander's exits and output captured. */
async function run(args: string[]): Promise<{ error?: Error; stderr: string }> {
  const cmd = keysCommand();
  let stderr = '';
  const quiet = (c: Command) => c.exitOverride().configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => undefined });
  quiet(cmd);
  cmd.commands.forEach(quiet);
  const log = console.log;
  console.log = () => undefined;
  try {
    await cmd.parseAsync(args, { from: 'user' });
    return { stderr };
  } catch (err) {
    return { error: err as Error, stderr };
  } finally {
    console.log = log;
  }
}

describe('inferenceflow keys on bad input', () => {
  it('names the HTTP status when the answer is not JSON (a proxy error page, the wrong URL)', async () => {
    const proxied = await run(['list', '--url', `${url}/proxy`, '--admin-token', 'admin-token-0123456789']);
    expect(proxied.error?.message).toMatch(/^502: /);
    expect(proxied.error?.message).toContain('Bad Gateway');
    const html = await run(['list', '--url', `${url}/html`, '--admin-token', 'admin-token-0123456789']);
    expect(html.error?.message).toMatch(/200.*not JSON|not JSON.*200/);
  });

  it('refuses --metadata that is not a JSON object, naming the flag, before calling the gateway', async () => {
    const before = seen.length;
    for (const bad of ['{bad', '[1, 2]', '"text"', 'null']) {
      const { error, stderr } = await run(['create', '--url', url, '--admin-token', 'admin-token-0123456789', '--metadata', bad]);
      expect(error).toBeDefined();
      expect(`${error?.message} ${stderr}`).toMatch(/--metadata/);
      expect(`${error?.message} ${stderr}`).toMatch(/JSON object/);
    }
    expect(seen.length).toBe(before);
    const ok = await run(['create', '--url', url, '--admin-token', 'admin-token-0123456789', '--metadata', '{"team":"x"}']);
    expect(ok.error).toBeUndefined();
    expect(JSON.parse(seen.at(-1)?.body ?? '{}')).toEqual({ metadata: { team: 'x' } });
  });
});

describe('inferenceflow keys create budget flags', () => {
  const create = (...args: string[]) => run(['create', '--url', url, '--admin-token', 'admin-token-0123456789', ...args]);

  it('refuses --budget-period without --budget, naming both flags, before calling the gateway', async () => {
    const before = seen.length;
    for (const period of ['day', 'month']) {
      const { error, stderr } = await create('--name', 'ci', '--budget-period', period);
      expect(error).toBeDefined();
      expect(`${error?.message} ${stderr}`).toMatch(/--budget-period/);
      expect(`${error?.message} ${stderr}`).toMatch(/--budget\b(?!-)/);
    }
    expect(seen.length).toBe(before);
  });

  it('sends the period with the budget (the gateway\'s default month when none is given); refuses a period but day or month', async () => {
    expect((await create('--budget', '5', '--budget-period', 'day')).error).toBeUndefined();
    expect(JSON.parse(seen.at(-1)?.body ?? '{}')).toEqual({ budget_usd: 5, budget_period: 'day' });
    expect((await create('--budget', '5')).error).toBeUndefined();
    expect(JSON.parse(seen.at(-1)?.body ?? '{}')).toMatchObject({ budget_usd: 5 });
    expect(JSON.parse(seen.at(-1)?.body ?? '{}').budget_period ?? 'month').toBe('month');
    expect((await create()).error).toBeUndefined();
    expect(JSON.parse(seen.at(-1)?.body ?? '{}')).toEqual({});
    const before = seen.length;
    const week = await create('--budget', '5', '--budget-period', 'week');
    expect(`${week.error?.message} ${week.stderr}`).toMatch(/--budget-period/);
    expect(seen.length).toBe(before);
  });
});

describe('inferenceflow keys environment', () => {
  it('INFERENCEFLOW_URL set empty means unset: --url defaults to the local gateway, not to ""', () => {
    const saved = process.env.INFERENCEFLOW_URL;
    try {
      process.env.INFERENCEFLOW_URL = '';
      const cmd = keysCommand();
      for (const sub of cmd.commands) expect(sub.getOptionValue('url')).toBe('http://127.0.0.1:8080');
      process.env.INFERENCEFLOW_URL = 'http://gateway.example:9000';
      expect(keysCommand().commands[0]?.getOptionValue('url')).toBe('http://gateway.example:9000');
    } finally {
      if (saved === undefined) delete process.env.INFERENCEFLOW_URL;
      else process.env.INFERENCEFLOW_URL = saved;
    }
  });
});

describe('inferenceflow keys admin token', () => {
  it('sends INFERENCEFLOW_ADMIN_TOKEN read from a secret file (a trailing newline) trimmed, as the gateway trims its own', async () => {
    const saved = process.env.INFERENCEFLOW_ADMIN_TOKEN;
    try {
      process.env.INFERENCEFLOW_ADMIN_TOKEN = 'admin-token-0123456789\n';
      const { error } = await run(['create', '--url', url]);
      expect(error).toBeUndefined();
      expect(seen.at(-1)?.authorization).toBe('Bearer admin-token-0123456789');
      // Only whitespace is no token at all.
      process.env.INFERENCEFLOW_ADMIN_TOKEN = ' \n';
      expect((await run(['list', '--url', url])).error?.message).toMatch(/no admin token/);
    } finally {
      if (saved === undefined) delete process.env.INFERENCEFLOW_ADMIN_TOKEN;
      else process.env.INFERENCEFLOW_ADMIN_TOKEN = saved;
    }
  });
});
