// `inferenceflow batch`: a JSONL file through a gateway with bounded concurrency, answers appended as
// they arrive, failures to the errors file, and --resume skipping what an earlier run recorded (a
// torn last line included). One run goes through the real CLI with an in-process gateway.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBatchFile } from '../src/cli/batch-file.js';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

let server: RunningServer;
let dir: string;
const ROOT = new URL('../', import.meta.url).pathname;

beforeAll(async () => {
  server = await startTestGateway();
  dir = await mkdtemp(join(tmpdir(), 'cli-batch-'));
});
afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

const chat = (id: string, body: Record<string, unknown> = {}) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body: { model: 'm', messages: [{ role: 'user', content: `question ${id}` }], ...body } });

async function readLines(path: string): Promise<{ custom_id: string; response: { status_code: number; body: { choices?: { message: { content: string } }[] } } }[]> {
  return (await readFile(path, 'utf8')).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

describe('runBatchFile', () => {
  it('answers every line once, failures in the errors file', async () => {
    const input = join(dir, 'a.jsonl');
    await writeFile(input, [chat('1'), chat('2'), chat('bad', { temperature: 7 }), chat('4'), JSON.stringify({ custom_id: 'e', method: 'POST', url: '/v1/embeddings', body: { model: 'm', input: 'x' } })].join('\n'));
    const progress: number[] = [];
    const summary = await runBatchFile({ input, output: join(dir, 'a.out.jsonl'), url: server.url, concurrency: 3, resume: false, retries: 0, onProgress: (done) => progress.push(done) });
    expect(summary).toMatchObject({ total: 5, succeeded: 4, failed: 1, skipped: 0 });
    const out = await readLines(join(dir, 'a.out.jsonl'));
    expect(out.map((l) => l.custom_id).sort()).toEqual(['1', '2', '4', 'e']);
    expect(out.find((l) => l.custom_id === '2')?.response.body.choices?.[0]?.message.content).toContain('question 2');
    const errors = await readLines(join(dir, 'a.out.errors.jsonl'));
    expect(errors.map((l) => [l.custom_id, l.response.status_code])).toEqual([['bad', 400]]);
    expect(progress.at(-1)).toBe(5);
  });

  it('resumes: lines already recorded are not sent again, a torn last line is redone', async () => {
    const input = join(dir, 'b.jsonl');
    await writeFile(input, Array.from({ length: 8 }, (_, i) => chat(`r${i}`)).join('\n'));
    const output = join(dir, 'b.out.jsonl');
    const first = await runBatchFile({ input, output, url: server.url, concurrency: 2, resume: false, retries: 0 });
    expect(first.succeeded).toBe(8);
    // Keep three whole lines and half of a fourth, as a killed run would leave them.
    const kept = (await readFile(output, 'utf8')).split('\n');
    await writeFile(output, `${kept.slice(0, 3).join('\n')}\n${(kept[3] as string).slice(0, 20)}`);
    const sent: string[] = [];
    const counting: typeof fetch = async (url, init) => {
      sent.push(JSON.parse(String(init?.body)).messages[0].content);
      return fetch(url, init);
    };
    const resumed = await runBatchFile({ input, output, url: server.url, concurrency: 2, resume: true, retries: 0, fetch: counting });
    expect(resumed).toMatchObject({ skipped: 3, succeeded: 5 });
    expect(sent).toHaveLength(5);
    const ids = (await readLines(output)).map((l) => l.custom_id);
    expect(ids.sort()).toEqual(Array.from({ length: 8 }, (_, i) => `r${i}`).sort());
  });

  it('writes records larger than a write chunk (512 KiB) whole at concurrency above 1', async () => {
    const input = join(dir, 'big.jsonl');
    const ids = Array.from({ length: 6 }, (_, i) => `big${i}`);
    await writeFile(input, ids.map((id) => chat(id)).join('\n'));
    // Every answer at once, each about 700 KB of its own letter: concurrent appends of one handle
    // would interleave their 512 KiB pieces.
    const big: typeof fetch = async (_url, init) => {
      const n = Number(/question big(\d)/.exec(String(init?.body))?.[1]);
      const text = String.fromCharCode(97 + n).repeat(700_000);
      return new Response(JSON.stringify({ text }), { status: n === 5 ? 500 : 200, headers: { 'content-type': 'application/json' } });
    };
    const output = join(dir, 'big.out.jsonl');
    const summary = await runBatchFile({ input, output, url: 'http://gateway.invalid', concurrency: 4, resume: false, retries: 0, fetch: big });
    expect(summary).toMatchObject({ succeeded: 5, failed: 1 });
    const lines = (await readFile(output, 'utf8')).split('\n').filter(Boolean);
    expect(lines).toHaveLength(5);
    for (const l of lines) {
      const rec = JSON.parse(l) as { custom_id: string; response: { body: { text: string } } };
      const letter = String.fromCharCode(97 + Number(rec.custom_id.slice(3)));
      expect(rec.response.body.text).toBe(letter.repeat(700_000));
    }
  });

  it('refuses a malformed input file with the line named', async () => {
    const input = join(dir, 'c.jsonl');
    await writeFile(input, `${chat('x')}\n${JSON.stringify({ custom_id: 'x', url: '/v1/chat/completions', body: {} })}\n`);
    await expect(runBatchFile({ input, output: join(dir, 'c.out.jsonl'), url: server.url, concurrency: 1, resume: false, retries: 0 })).rejects.toThrow(/c\.jsonl:2: custom_id "x" appears twice/);
  });
});

describe('the inferenceflow batch command', () => {
  it('runs a file through an in-process gateway on the simulator', async () => {
    const input = join(dir, 'cli.jsonl');
    await writeFile(input, [chat('c1'), chat('c2'), chat('c3')].join('\n'));
    const output = join(dir, 'cli.out.jsonl');
    const { stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'batch', input, '-o', output, '--concurrency', '2'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'silent' },
    });
    expect(stderr).toContain('3 succeeded, 0 failed');
    expect((await readLines(output)).map((l) => l.custom_id).sort()).toEqual(['c1', 'c2', 'c3']);
  }, 120_000);
});
