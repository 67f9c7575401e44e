// The CLI's results files: one writer each, and what --resume reads back from them.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordedIds, runBatchFile, SerialAppender } from './batch-file.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'batch-file-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const record = (id: string) => `${JSON.stringify({ id: `batch_req_${id}`, custom_id: id, response: { status_code: 200, request_id: 'r', body: { text: 'x'.repeat(100) } }, error: null })}\n`;

describe('recordedIds (what --resume skips)', () => {
  it('reads the file line by line in small chunks, each line whole', async () => {
    const path = join(dir, 'many.jsonl');
    const ids = Array.from({ length: 50 }, (_, i) => `id-${i}`);
    await writeFile(path, ids.map(record).join(''));
    // 16-byte reads: every record spans many chunks.
    expect(await recordedIds(path, { chunkBytes: 16 })).toEqual(ids);
  });

  it('cuts a torn last line off, also when its start is many chunks back', async () => {
    const path = join(dir, 'torn.jsonl');
    const whole = record('a') + record('b');
    await writeFile(path, `${whole}${record('c').slice(0, 90)}`);
    expect(await recordedIds(path, { chunkBytes: 16 })).toEqual(['a', 'b']);
    expect(await readFile(path, 'utf8')).toBe(whole);
    // A file that is one torn line is emptied; a file that ends with its newline is left alone.
    await writeFile(path, record('d').slice(0, 50));
    expect(await recordedIds(path, { chunkBytes: 16 })).toEqual([]);
    expect(await readFile(path, 'utf8')).toBe('');
    await writeFile(path, whole);
    expect(await recordedIds(path, { chunkBytes: 16 })).toEqual(['a', 'b']);
    expect(await readFile(path, 'utf8')).toBe(whole);
  });

  it('takes a missing file for empty and fails loudly on any other error', async () => {
    expect(await recordedIds(join(dir, 'missing.jsonl'))).toEqual([]);
    const notAFile = join(dir, 'a-directory.jsonl');
    await mkdir(notAFile);
    await expect(recordedIds(notAFile)).rejects.toMatchObject({ code: 'EISDIR' });
  });
});

describe('SerialAppender', () => {
  it('writes appends one after another in call order, each only after the one before has ended', async () => {
    const writes: string[] = [];
    let active = 0;
    const file = {
      appendFile: async (data: string | Uint8Array) => {
        active++;
        expect(active).toBe(1);
        await new Promise((r) => setTimeout(r, 1));
        writes.push(String(data));
        active--;
      },
    };
    const w = new SerialAppender(file);
    await Promise.all(['1', '2', '3', '4'].map((r) => w.append(r)));
    expect(writes).toEqual(['1', '2', '3', '4']);
  });

  it('fails every append after a failed one and settles either way', async () => {
    const writes: string[] = [];
    const file = {
      appendFile: async (data: string | Uint8Array) => {
        if (data === 'bad') throw new Error('disk full');
        writes.push(String(data));
      },
    };
    const w = new SerialAppender(file);
    const results = await Promise.allSettled([w.append('ok'), w.append('bad'), w.append('after')]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected']);
    expect(writes).toEqual(['ok']);
    await expect(w.settled()).resolves.toBeUndefined();
  });
});

describe('runBatchFile input', () => {
  it('reads a file that starts with a UTF-8 byte-order mark (as Windows editors save it)', async () => {
    const input = join(dir, 'bom.jsonl');
    const line = (id: string) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body: { model: 'm', messages: [] } });
    await writeFile(input, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`${line('first')}\n${line('second')}\n`)]));
    const sent: string[] = [];
    const fetchStub = (async (_url: string, init: RequestInit) => {
      sent.push(String(init.body));
      return new Response(JSON.stringify({ ok: true }), { status: 200, headers: { 'x-request-id': 'r' } });
    }) as unknown as typeof fetch;
    const output = join(dir, 'bom-out.jsonl');
    const summary = await runBatchFile({ input, output, url: 'http://gateway.invalid', concurrency: 1, resume: false, retries: 0, fetch: fetchStub });
    expect(summary).toMatchObject({ total: 2, succeeded: 2, failed: 0 });
    expect(sent).toHaveLength(2);
    expect(await recordedIds(output)).toEqual(['first', 'second']);
  });

  it('still names line 1 when it is not JSON after the mark', async () => {
    const input = join(dir, 'bom-bad.jsonl');
    await writeFile(input, '\uFEFF{oops\n');
    await expect(runBatchFile({ input, output: join(dir, 'bom-bad-out.jsonl'), url: 'http://gateway.invalid', concurrency: 1, resume: false, retries: 0, fetch: (async () => new Response('{}')) as unknown as typeof fetch })).rejects.toThrow(
      `${input}:1: not valid JSON`,
    );
  });
});
