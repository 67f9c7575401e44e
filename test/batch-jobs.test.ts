// The Batch API end to end with the official `openai` SDK, on PGlite and on Postgres: upload a JSONL
// file, create, retrieve, list and cancel batches, read the output and error files, receive the
// signed completion webhook. Then the durability promise: a gateway killed with SIGKILL mid-batch,
// and another started on the same database finishes it with no line lost or recorded twice.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import OpenAI, { toFile } from 'openai';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { countPromptTokens } from '../src/providers/tokens.js';
import { verifyWebhook } from '../src/server/webhooks/signature.js';
import { startChildGateway } from './helpers/child-gateway.js';
import { FaultUpstream } from './helpers/fault-upstream.js';
import { startTestGateway } from './helpers/gateway.js';
import { dropSchema, POSTGRES_URL, postgresAvailable, runId } from './helpers/services.js';
import { WebhookReceiver } from './helpers/webhook-receiver.js';
import { pollUntil as waitFor } from './helpers/wait.js';

const pgUp = await postgresAvailable();
const SECRET = `whsec_${randomBytes(24).toString('base64')}`;
/** The main gateways' `batch_jobs.max_file_bytes`: small, so the upload limit is tested at its edge. */
const MAX_FILE_BYTES = 64 * 1024;
const models = [
  { name: 'gpt-4o-mini', deployments: [{ provider: 'sim', model: 'gpt-4o-mini' }] },
  { name: 'slow', deployments: [{ provider: 'slow', model: 'slow' }] },
];
const providers = { sim: { type: 'simulator', options: { latency_ms: 2 } }, slow: { type: 'simulator', options: { latency_ms: 300 } } };

function line(custom_id: string, body: Record<string, unknown>, url = '/v1/chat/completions'): string {
  return JSON.stringify({ custom_id, method: 'POST', url, body });
}

const backends = [
  { name: 'PGlite', available: true, shared: false },
  { name: 'Postgres', available: pgUp, shared: true },
];

for (const backend of backends) {
  describe.skipIf(!backend.available)(`Batch API on ${backend.name} through the openai SDK`, () => {
    const schema = `batch_api_${runId()}`;
    let dir: string;
    let server: RunningServer;
    let client: OpenAI;
    const receiver = new WebhookReceiver();

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'batch-api-'));
      await receiver.start();
      server = await startTestGateway({
        config: {
          providers,
          models,
          database: backend.shared ? { url: POSTGRES_URL, schema } : { pglite_path: join(dir, 'db') },
          // Tiny file parts: every output and error file below is written, stored and served in several.
          batch_jobs: { enabled: true, poll_ms: 50, lease_ms: 5_000, file_part_bytes: 256, max_file_bytes: MAX_FILE_BYTES, webhook: { url: receiver.url, secret: SECRET } },
        },
      });
      client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    });
    afterAll(async () => {
      await server?.close();
      await receiver.close();
      if (backend.shared) await dropSchema(schema);
      await rm(dir, { recursive: true, force: true });
    });

    async function upload(lines: string[]): Promise<string> {
      const file = await client.files.create({ file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'input.jsonl'), purpose: 'batch' });
      return file.id;
    }

    it('runs a batch: uploaded file, job to completion, output and error files, signed webhook', async () => {
      const lines = [
        line('q-1', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'first question' }] }),
        line('q-2', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'second question' }], max_tokens: 5 }),
        line('bad', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], temperature: 5 }),
        line('q-4', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'fourth question' }] }),
      ];
      const fileId = await upload(lines);
      const file = await client.files.retrieve(fileId);
      expect(file).toMatchObject({ id: fileId, object: 'file', purpose: 'batch', filename: 'input.jsonl' });
      expect(file.bytes).toBe(Buffer.byteLength(`${lines.join('\n')}\n`));

      const created = await client.batches.create({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { run: 'sdk' } });
      expect(created).toMatchObject({ object: 'batch', endpoint: '/v1/chat/completions', input_file_id: fileId, metadata: { run: 'sdk' } });
      expect(['in_progress', 'finalizing', 'completed']).toContain(created.status);

      const done = await waitFor(async () => {
        const b = await client.batches.retrieve(created.id);
        return b.status === 'completed' ? b : undefined;
      }, 'the batch to complete');
      expect(done.request_counts).toEqual({ total: 4, completed: 3, failed: 1 });
      expect(done.completed_at).toBeGreaterThanOrEqual(done.created_at);

      const outputText = await (await client.files.content(done.output_file_id as string)).text();
      // Longer than a part: streamed from several, whole and in order.
      expect(Buffer.byteLength(outputText)).toBeGreaterThan(3 * 256);
      expect((await client.files.retrieve(done.output_file_id as string)).bytes).toBe(Buffer.byteLength(outputText));
      const output = outputText.trim().split('\n').map((l) => JSON.parse(l) as { custom_id: string; response: { status_code: number; body: { choices: { message: { content: string } }[]; usage: { completion_tokens: number } } } });
      expect(output.map((o) => o.custom_id)).toEqual(['q-1', 'q-2', 'q-4']);
      expect(output[0]?.response.status_code).toBe(200);
      expect(output[0]?.response.body.choices[0]?.message.content).toContain('first question');
      expect(output[1]?.response.body.usage.completion_tokens).toBeLessThanOrEqual(5);
      const errors = (await (await client.files.content(done.error_file_id as string)).text()).trim().split('\n').map((l) => JSON.parse(l) as { custom_id: string; response: { status_code: number; body: { error: { param: string } } } });
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ custom_id: 'bad', response: { status_code: 400, body: { error: { param: 'temperature' } } } });

      const hook = await waitFor(async () => receiver.for(created.id)[0], 'the completion webhook');
      expect(verifyWebhook(SECRET, hook.headers, hook.body).ok).toBe(true);
      const event = JSON.parse(hook.body) as { type: string; data: { status: string; request_counts: unknown } };
      expect(event.type).toBe('batch.completed');
      expect(event.data).toMatchObject({ status: 'completed', request_counts: { total: 4, completed: 3, failed: 1 } });

      const list = await client.batches.list({ limit: 10 });
      expect(list.data.map((b) => b.id)).toContain(created.id);
      // A cursor that is not one of the caller's batches is refused, not answered with an empty page.
      await expect(client.batches.list({ after: 'batch_unknown' })).rejects.toMatchObject({ status: 400, code: 'invalid_value', param: 'after' });
    });

    it('runs an embeddings batch', async () => {
      const fileId = await upload([line('e-1', { model: 'gpt-4o-mini', input: 'hello' }, '/v1/embeddings'), line('e-2', { model: 'gpt-4o-mini', input: ['a', 'b'] }, '/v1/embeddings')]);
      const created = await client.batches.create({ input_file_id: fileId, endpoint: '/v1/embeddings', completion_window: '24h' });
      const done = await waitFor(async () => {
        const b = await client.batches.retrieve(created.id);
        return b.status === 'completed' ? b : undefined;
      }, 'the embeddings batch');
      const out = (await (await client.files.content(done.output_file_id as string)).text()).trim().split('\n').map((l) => JSON.parse(l) as { response: { body: { data: unknown[] } } });
      expect(out.map((o) => o.response.body.data.length)).toEqual([1, 2]);
    });

    it('cancels a running batch: queued lines never run and the job ends cancelled', async () => {
      const lines = Array.from({ length: 40 }, (_, i) => line(`s-${i}`, { model: 'slow', messages: [{ role: 'user', content: `q${i}` }] }));
      const created = await client.batches.create({ input_file_id: await upload(lines), endpoint: '/v1/chat/completions', completion_window: '24h' });
      await new Promise((r) => setTimeout(r, 400));
      const cancelling = await client.batches.cancel(created.id);
      expect(['cancelling', 'cancelled']).toContain(cancelling.status);
      const done = await waitFor(async () => {
        const b = await client.batches.retrieve(created.id);
        return b.status === 'cancelled' ? b : undefined;
      }, 'the cancel to finish');
      expect(done.cancelled_at).not.toBeNull();
      expect(done.request_counts?.completed).toBeLessThan(40);
      // The webhook leaves after the job is marked cancelled: wait for its first one, as the completion
      // test does. The job's one final event is the cancel, not a completion as well.
      const hook = await waitFor(async () => receiver.for(created.id)[0], 'the cancel webhook');
      expect((JSON.parse(hook.body) as { type: string }).type).toBe('batch.cancelled');
      // A wrong second event would leave the outbox later: wait past its idle sweep (2 s at poll_ms 50)
      // before saying none came.
      await new Promise((r) => setTimeout(r, 2_500));
      expect(receiver.for(created.id)).toHaveLength(1);
    });

    it('fails a batch whose input file is malformed, naming the line', async () => {
      const fileId = await upload([line('a', { model: 'm', messages: [] }), line('a', { model: 'm', messages: [] }), '{not json']);
      const b = await client.batches.create({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' });
      expect(b.status).toBe('failed');
      expect(b.errors?.data?.map((e) => [e.code, e.line])).toEqual([['duplicate_custom_id', 2], ['invalid_json_line', 3]]);
    });

    it('fails a batch whose line holds a \\u0000 escape, naming the line, instead of answering 500', async () => {
      const fileId = await upload([line('a', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }), line('b', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x\u0000y' }] })]);
      const b = await client.batches.create({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' });
      expect(b.status).toBe('failed');
      expect(b.errors?.data?.map((e) => [e.code, e.line])).toEqual([['invalid_request', 2]]);
    });

    it('documents the routes in the OpenAPI document with their path parameters', async () => {
      const doc = (await (await fetch(`${server.url}/docs/json`)).json()) as { paths: Record<string, Record<string, { parameters?: { name: string; in: string }[] }>> };
      expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/files', '/v1/files/{id}/content', '/v1/batches', '/v1/batches/{id}/cancel', '/v1/inference', '/v1/batch']));
      expect(doc.paths['/v1/batches/{id}']?.get?.parameters?.map((p) => [p.name, p.in])).toEqual([['id', 'path']]);
      const body = (doc.paths['/v1/batches']?.post as { requestBody?: { content: Record<string, { schema: object }> } } | undefined)?.requestBody?.content['application/json']?.schema;
      expect(() => new Ajv({ strict: false }).compile(body as object)).not.toThrow();
    });

    it('answers 404 for files and batches that do not exist, 400 for a bad purpose', async () => {
      await expect(client.batches.retrieve('batch_nope')).rejects.toMatchObject({ status: 404 });
      await expect(client.batches.create({ input_file_id: 'file-nope', endpoint: '/v1/chat/completions', completion_window: '24h' })).rejects.toMatchObject({ status: 404 });
      await expect(client.files.create({ file: await toFile(Buffer.from('x'), 'x.jsonl'), purpose: 'fine-tune' })).rejects.toMatchObject({ status: 400 });
      const outputFile = (await client.files.list({ purpose: 'batch_output' })).data[0];
      expect(outputFile).toBeDefined();
      await expect(client.batches.create({ input_file_id: outputFile?.id as string, endpoint: '/v1/chat/completions', completion_window: '24h' })).rejects.toMatchObject({ status: 400, param: 'input_file_id' });
      const fileId = await upload([line('z', { model: 'm', messages: [{ role: 'user', content: 'x' }] })]);
      expect(await client.files.delete(fileId)).toMatchObject({ id: fileId, deleted: true });
      await expect(client.files.retrieve(fileId)).rejects.toMatchObject({ status: 404 });
    });

    it('refuses an upload that is not UTF-8 with 400 instead of storing other bytes than were sent', async () => {
      // Latin-1 "é" (0xe9): stored as U+FFFD it would run altered prompts and download unlike the upload.
      const latin1 = Buffer.concat([Buffer.from(line('l', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'caf' }] }).slice(0, -5)), Buffer.from([0xe9]), Buffer.from('"}]}}\n')]);
      await expect(client.files.create({ file: await toFile(latin1, 'latin1.jsonl'), purpose: 'batch' })).rejects.toMatchObject({ status: 400, param: 'file' });
    });

    it('answers 400, not 500, for a NUL character in batch metadata or a file name', async () => {
      const fileId = await upload([line('m', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] })]);
      await expect(client.batches.create({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { k: 'a\u0000b' } })).rejects.toMatchObject({ status: 400 });
      await expect(client.batches.create({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { k: 'a\ud800b' } })).rejects.toMatchObject({ status: 400 });
      const b = 'nulname';
      const body = `--${b}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--${b}\r\nContent-Disposition: form-data; name="file"; filename*=UTF-8''in%00put.jsonl\r\n\r\n${line('n', { model: 'gpt-4o-mini', messages: [] })}\n\r\n--${b}--\r\n`;
      const res = await fetch(`${server.url}/v1/files`, { method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${b}` }, body });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { filename: string }).filename).toBe('input.jsonl');
    });

    it('accepts a file of exactly max_file_bytes (the multipart envelope not counted) and refuses one byte more with 413', async () => {
      const sized = (bytes: number) => {
        const first = `${line('big', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] })}\n`;
        return Buffer.from(first + ' '.repeat(bytes - first.length - 1) + '\n');
      };
      const file = await client.files.create({ file: await toFile(sized(MAX_FILE_BYTES), 'max.jsonl'), purpose: 'batch' });
      expect(file.bytes).toBe(MAX_FILE_BYTES);
      await expect(client.files.create({ file: await toFile(sized(MAX_FILE_BYTES + 1), 'over.jsonl'), purpose: 'batch' })).rejects.toMatchObject({ status: 413 });
    });

    it('refuses an upload holding a NUL byte with 400, not a server error', async () => {
      // No JSONL text holds a raw 0x00 byte, and a text column cannot store one.
      await expect(client.files.create({ file: await toFile(Buffer.from('{"custom_id":"a"}\u0000\n'), 'nul.jsonl'), purpose: 'batch' })).rejects.toMatchObject({ status: 400, param: 'file' });
    });
  });
}

describe.skipIf(!pgUp)('a batch survives its gateway being killed (Postgres)', () => {
  const schema = `batch_kill_${runId()}`;
  let dir: string;
  let survivor: RunningServer | undefined;
  afterAll(async () => {
    await survivor?.close();
    await dropSchema(schema);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('resumes after SIGKILL: every line answered once, lines recorded before the kill never run again', async () => {
    dir = await mkdtemp(join(tmpdir(), 'batch-kill-'));
    const config = {
      providers: { sim: { type: 'simulator', options: { latency_ms: 150 } } },
      models: [{ name: 'm', deployments: [{ provider: 'sim', model: 'm' }] }],
      database: { url: POSTGRES_URL, schema },
      ledger: { enabled: false },
      batch_jobs: { enabled: true, poll_ms: 50, lease_ms: 1_500, concurrency: 4 },
    };
    const child = await startChildGateway(dir, 'doomed', config);
    const lines = Array.from({ length: 40 }, (_, i) => line(`k-${i}`, { model: 'm', messages: [{ role: 'user', content: `question ${i}` }] }));
    const client = new OpenAI({ baseURL: `${child.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const file = await client.files.create({ file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'kill.jsonl'), purpose: 'batch' });
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });

    const db = new pg.Client({ connectionString: POSTGRES_URL });
    await db.connect();
    try {
      const q = `SELECT line, status, finished_at, attempts, response FROM "${schema}".batch_items WHERE batch_id = $1 ORDER BY line`;
      await waitFor(async () => {
        const { rows } = await db.query(q, [batch.id]);
        return rows.filter((r: { status: string }) => r.status === 'succeeded').length >= 8 ? true : undefined;
      }, 'some lines to finish before the kill');
      child.process.kill('SIGKILL');
      await child.exited;
      const before = (await db.query(q, [batch.id])).rows as { line: number; status: string; finished_at: number; response: unknown }[];
      const recorded = before.filter((r) => r.status === 'succeeded');
      expect(recorded.length).toBeLessThan(40);

      survivor = await startTestGateway({ config });
      const after = await waitFor(async () => {
        const res = await fetch(`${survivor?.url}/v1/batches/${batch.id}`);
        const b = (await res.json()) as { status: string; output_file_id: string; request_counts: { total: number; completed: number } };
        return b.status === 'completed' ? b : undefined;
      }, 'the survivor to finish the batch', 60_000);
      expect(after.request_counts).toMatchObject({ total: 40, completed: 40 });

      const output = (await (await fetch(`${survivor.url}/v1/files/${after.output_file_id}/content`)).text()).trim().split('\n').map((l) => JSON.parse(l) as { custom_id: string; response: unknown });
      expect(output.map((o) => o.custom_id)).toEqual(lines.map((_, i) => `k-${i}`));
      const final = (await db.query(q, [batch.id])).rows as { line: number; finished_at: number; attempts: number; response: unknown }[];
      for (const r of recorded) {
        const now = final.find((f) => f.line === r.line);
        // Recorded before the kill: same time, one attempt, and the same result in the output file
        // (the row keeps no copy of it once the job is complete).
        expect(now).toMatchObject({ finished_at: r.finished_at, attempts: 1 });
        expect(output[r.line - 1]?.response).toEqual(r.response);
      }
      expect(Math.max(...final.map((f) => f.attempts))).toBeLessThanOrEqual(2);
    } finally {
      await db.end();
    }
  }, 180_000);
});

describe.skipIf(!pgUp)('a batch survives a graceful shutdown mid-run (Postgres)', () => {
  const schema = `batch_drain_${runId()}`;
  let next: RunningServer | undefined;
  const upstream = new FaultUpstream();
  afterAll(async () => {
    await next?.close();
    await upstream.close();
    await dropSchema(schema);
  });

  it('takes no new line once the shutdown begins, fails none, and the next gateway finishes the batch', async () => {
    // A real HTTP upstream: its keep-alive pool is closed at shutdown, as a hosted provider's is.
    await upstream.start();
    upstream.set('m', { kind: 'ok', delayMs: 600 });
    const config = {
      providers: { up: { type: 'openai', base_url: upstream.url, api_key: 'test' } },
      models: [{ name: 'm', deployments: [{ provider: 'up', model: 'm' }] }],
      database: { url: POSTGRES_URL, schema },
      ledger: { enabled: false },
      // A short drain deadline: batch lines must not hold a shutdown open, nor fail when it ends.
      server: { shutdown_timeout_ms: 2_000 },
      batch_jobs: { enabled: true, poll_ms: 50, lease_ms: 30_000, concurrency: 4 },
    };
    const first = await startTestGateway({ config });
    const lines = Array.from({ length: 30 }, (_, i) => line(`d-${i}`, { model: 'm', messages: [{ role: 'user', content: `question ${i}` }] }));
    const client = new OpenAI({ baseURL: `${first.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const file = await client.files.create({ file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'drain.jsonl'), purpose: 'batch' });
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const db = new pg.Client({ connectionString: POSTGRES_URL });
    await db.connect();
    try {
      const q = `SELECT status, lease_owner FROM "${schema}".batch_items WHERE batch_id = $1`;
      await waitFor(async () => {
        const { rows } = await db.query<{ status: string }>(q, [batch.id]);
        return rows.filter((r) => r.status === 'succeeded').length >= 4 && rows.some((r) => r.status === 'running') ? true : undefined;
      }, 'lines to be running');
      const succeeded = async () => (await db.query<{ status: string }>(q, [batch.id])).rows.filter((r) => r.status === 'succeeded').length;
      const before = await succeeded();
      await first.close();
      const { rows } = await db.query<{ status: string; lease_owner: string | null }>(q, [batch.id]);
      // Nothing failed and nothing is left leased to the stopped gateway (its leases were 30 s).
      expect(rows.filter((r) => r.status === 'failed')).toEqual([]);
      expect(rows.filter((r) => r.status === 'running')).toEqual([]);
      // No line was taken after the shutdown began: at most the four already running got recorded
      // (the runner used to keep claiming lines, which held the shutdown open for its whole deadline).
      expect(await succeeded()).toBeLessThanOrEqual(before + 4);

      next = await startTestGateway({ config });
      const done = await waitFor(async () => {
        const b = (await (await fetch(`${next?.url}/v1/batches/${batch.id}`)).json()) as { status: string; request_counts: { total: number; completed: number; failed: number } };
        return b.status === 'completed' ? b : undefined;
      }, 'the next gateway to finish the batch', 60_000);
      expect(done.request_counts).toMatchObject({ total: 30, completed: 30, failed: 0 });
    } finally {
      await db.end();
    }
  }, 120_000);
});

describe('batch lines spend like requests (PGlite)', () => {
  const ADMIN = 'admin-token-for-batch-tests-0123456789';
  const MESSAGES = [{ role: 'user' as const, content: 'How much does this cost?' }];
  // Input-priced only, so the estimate equals the actual cost: $0.10 a line.
  const PRICE_INPUT = (0.1 / countPromptTokens(MESSAGES)) * 1_000_000;
  let dir: string;
  let gw: RunningServer | undefined;
  afterAll(async () => {
    await gw?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("counts every line against the key's budget and records it in the ledger", async () => {
    dir = await mkdtemp(join(tmpdir(), 'batch-budget-'));
    gw = await startTestGateway({
      config: {
        auth: { admin_token: ADMIN },
        database: { pglite_path: join(dir, 'db') },
        ledger: { enabled: true, flush_interval_ms: 50 },
        cache: { enabled: false },
        providers: { sim: { type: 'simulator', options: { latency_ms: 2 } } },
        models: [{ name: 'metered', deployments: [{ provider: 'sim', model: 'metered', price: { input: PRICE_INPUT, output: 0 } }] }],
        batch_jobs: { enabled: true, poll_ms: 50, lease_ms: 5_000, concurrency: 4 },
      },
    });
    const created = (await (await fetch(`${gw.url}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'batcher', budget_usd: 0.3, budget_period: 'day' }) })).json()) as { key: string; id: string };
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: created.key, maxRetries: 0 });
    const lines = Array.from({ length: 6 }, (_, i) => line(`b-${i}`, { model: 'metered', messages: MESSAGES }));
    const file = await client.files.create({ file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'budget.jsonl'), purpose: 'batch' });
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const done = await waitFor(async () => {
      const b = await client.batches.retrieve(batch.id);
      return b.status === 'completed' ? b : undefined;
    }, 'the batch to finish');
    // $0.30 buys three lines; the others are refused as a direct request would be.
    expect(done.request_counts).toMatchObject({ total: 6, completed: 3, failed: 3 });
    const errors = (await (await client.files.content(done.error_file_id as string)).text()).trim().split('\n').map((l) => JSON.parse(l) as { response: { status_code: number; body: { error: { code: string } } } });
    expect(errors.map((e) => [e.response.status_code, e.response.body.error.code])).toEqual(Array(3).fill([402, 'budget_exceeded']));
    // And the key's spend shows every line, like any request.
    const spend = (await (await fetch(`${gw.url}/v1/spend?group_by=key`, { headers: { authorization: `Bearer ${created.key}` } })).json()) as { data: { group: string; requests: number; cost_usd: number }[] };
    expect(spend.data).toEqual([expect.objectContaining({ group: created.id, requests: 6 })]);
    expect(spend.data[0]?.cost_usd.toFixed(2)).toBe('0.30');
  }, 60_000);
});
