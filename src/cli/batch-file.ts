// Runs a JSONL file of requests (OpenAI Batch input lines: {custom_id, method, url, body}) against a
// gateway with bounded concurrency, appending each answer to the output file (errors to the errors
// file) as it arrives, so an interrupted run resumes where it stopped: lines already recorded in
// either file are skipped. 429, 5xx and network failures are retried with backoff first.
import { createReadStream } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { BATCH_ENDPOINTS } from '../batching/jobs/input.js';

export interface BatchFileOptions {
  input: string;
  output: string;
  /** Failed lines (non-2xx after retries); default `<output>.errors.jsonl`. */
  errors?: string;
  /** Gateway base URL. */
  url: string;
  apiKey?: string;
  concurrency: number;
  /** Keep existing output/errors files and skip the lines they hold. */
  resume: boolean;
  retries: number;
  fetch?: typeof fetch;
  /** Progress callback: lines done (including skipped), total, failures so far. */
  onProgress?: (done: number, total: number, failed: number) => void;
}

export interface BatchFileSummary {
  total: number;
  skipped: number;
  succeeded: number;
  failed: number;
  output: string;
  errors: string;
}

interface Line {
  custom_id: string;
  url: string;
  body: unknown;
}

export async function runBatchFile(opts: BatchFileOptions): Promise<BatchFileSummary> {
  const errorsPath = opts.errors ?? opts.output.replace(/(\.jsonl)?$/, '.errors.jsonl');
  const lines = await readInput(opts.input);
  const done = opts.resume ? new Set([...(await recordedIds(opts.output)), ...(await recordedIds(errorsPath))]) : new Set<string>();
  const todo = lines.filter((l) => !done.has(l.custom_id));
  const outFile = await open(opts.output, opts.resume ? 'a' : 'w');
  const errFile = await open(errorsPath, opts.resume ? 'a' : 'w').catch(async (e: unknown) => {
    await outFile.close();
    throw e;
  });
  const out = new SerialAppender(outFile);
  const err = new SerialAppender(errFile);
  const doFetch = opts.fetch ?? fetch;
  let succeeded = 0;
  let failed = 0;
  const progress = () => opts.onProgress?.(lines.length - todo.length + succeeded + failed, lines.length, failed);
  progress();
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: Math.max(1, Math.min(opts.concurrency, todo.length)) }, async () => {
        while (next < todo.length) {
          const line = todo[next++] as Line;
          const { status, requestId, body } = await call(doFetch, opts, line);
          const record = `${JSON.stringify({ id: `batch_req_${line.custom_id}`, custom_id: line.custom_id, response: { status_code: status, request_id: requestId, body }, error: null })}\n`;
          if (status >= 200 && status < 300) {
            await out.append(record);
            succeeded++;
          } else {
            await err.append(record);
            failed++;
          }
          progress();
        }
      }),
    );
  } finally {
    // A failed worker ends the run while others may still be writing: let their writes end first.
    await Promise.all([out.settled(), err.settled()]);
    await outFile.close();
    await errFile.close();
  }
  return { total: lines.length, skipped: lines.length - todo.length, succeeded, failed, output: opts.output, errors: errorsPath };
}

/**
 * One writer per results file: records are appended one after another. Concurrent appendFile calls
 * on one handle interleave, since each writes a record larger than its chunk size (512 KiB) in
 * several writes. After a failed write every later append fails too (nothing is written after a torn
 * record).
 */
export class SerialAppender {
  private tail: Promise<void> = Promise.resolve();

  constructor(private readonly file: Pick<FileHandle, 'appendFile'>) {}

  append(record: string): Promise<void> {
    this.tail = this.tail.then(() => this.file.appendFile(record));
    return this.tail;
  }

  /** Resolves once every append made so far has ended, however it ended. */
  settled(): Promise<void> {
    return this.tail.then(
      () => undefined,
      () => undefined,
    );
  }
}

async function readInput(path: string): Promise<Line[]> {
  const lines: Line[] = [];
  const seen = new Set<string>();
  let n = 0;
  for await (const line of createInterface({ input: createReadStream(path), crlfDelay: Infinity })) {
    n++;
    // A UTF-8 byte-order mark (as some Windows editors save a file) is no part of line 1's JSON.
    const text = n === 1 && line.startsWith('\uFEFF') ? line.slice(1) : line;
    if (!text.trim()) continue;
    let row: { custom_id?: unknown; method?: unknown; url?: unknown; body?: unknown };
    try {
      row = JSON.parse(text) as typeof row;
    } catch {
      throw new Error(`${path}:${n}: not valid JSON`);
    }
    if (typeof row.custom_id !== 'string' || !row.custom_id) throw new Error(`${path}:${n}: missing custom_id`);
    if (seen.has(row.custom_id)) throw new Error(`${path}:${n}: custom_id "${row.custom_id}" appears twice`);
    if (row.method !== undefined && row.method !== 'POST') throw new Error(`${path}:${n}: only POST lines can be run`);
    if (!(BATCH_ENDPOINTS as readonly unknown[]).includes(row.url)) throw new Error(`${path}:${n}: url must be one of ${BATCH_ENDPOINTS.join(', ')}`);
    seen.add(row.custom_id);
    lines.push({ custom_id: row.custom_id, url: row.url as string, body: row.body });
  }
  return lines;
}

/**
 * custom_ids already in a results file, read line by line (the file can be larger than one string
 * may be); a torn last line (an interrupted write) is cut off first. A missing file holds none; any
 * other failure to read it is thrown — taken for empty, it would have every line run again.
 * `chunkBytes` is the read size (tests make it tiny).
 */
export async function recordedIds(path: string, opts: { chunkBytes?: number } = {}): Promise<string[]> {
  const chunkBytes = opts.chunkBytes ?? 64 * 1024;
  let handle: FileHandle;
  try {
    handle = await open(path, 'r+');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const ids: string[] = [];
  try {
    await cutTornLine(handle, chunkBytes);
    const input = handle.createReadStream({ start: 0, highWaterMark: chunkBytes, autoClose: false });
    for await (const l of createInterface({ input, crlfDelay: Infinity })) {
      if (!l.trim()) continue;
      try {
        const id = (JSON.parse(l) as { custom_id?: unknown }).custom_id;
        if (typeof id === 'string') ids.push(id);
      } catch {
        // not a results line: ignored
      }
    }
  } finally {
    await handle.close();
  }
  return ids;
}

/** Truncates the file after its last newline, scanning back from the end `block` bytes at a time. */
async function cutTornLine(handle: FileHandle, block: number): Promise<void> {
  const { size } = await handle.stat();
  const buf = Buffer.alloc(block);
  for (let end = size; end > 0; ) {
    const start = Math.max(0, end - block);
    const { bytesRead } = await handle.read(buf, 0, end - start, start);
    const at = buf.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (at >= 0) {
      if (start + at + 1 < size) await handle.truncate(start + at + 1);
      return;
    }
    end = start;
  }
  if (size > 0) await handle.truncate(0);
}

async function call(doFetch: typeof fetch, opts: BatchFileOptions, line: Line): Promise<{ status: number; requestId: string; body: unknown }> {
  for (let attempt = 0; ; attempt++) {
    let status = 0;
    let requestId = '';
    let body: unknown;
    let retryAfter: string | null = null;
    try {
      const res = await doFetch(`${opts.url.replace(/\/+$/, '')}${line.url}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {}) },
        body: JSON.stringify(line.body),
      });
      status = res.status;
      requestId = res.headers.get('x-request-id') ?? '';
      retryAfter = res.headers.get('retry-after');
      const text = await res.text();
      try {
        body = JSON.parse(text);
      } catch {
        body = { error: { message: text.slice(0, 500), code: `http_${status}` } };
      }
    } catch (e) {
      body = { error: { message: (e as Error).message, code: 'network_error' } };
    }
    const retryable = status === 0 || status === 429 || status >= 500;
    if (!retryable || attempt >= opts.retries) return { status, requestId, body };
    const hinted = retryAfter && /^\d+$/.test(retryAfter) ? Number(retryAfter) * 1000 : 0;
    await new Promise((r) => setTimeout(r, Math.min(30_000, Math.max(hinted, 200 * 2 ** attempt))));
  }
}

/** Lines in a file (for the progress bar's total before the run starts). */
export async function fileExists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
