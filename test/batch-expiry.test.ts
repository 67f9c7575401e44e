// A batch whose completion window passes before it finishes, through the official `openai` SDK on
// PGlite and on Postgres: it ends `expired` with `expired_at`, the lines answered before the end are
// in the output file, every other line is in the error file as OpenAI writes it
// ({response: null, error: {code: "batch_expired"}}), the counts add up, and the signed
// `batch.expired` webhook arrives. The window is shortened with `batch_jobs.completion_window_ms`;
// the API still says "24h".
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { verifyWebhook } from '../src/server/webhooks/signature.js';
import { startTestGateway } from './helpers/gateway.js';
import { dropSchema, POSTGRES_URL, postgresAvailable, runId } from './helpers/services.js';
import { WebhookReceiver } from './helpers/webhook-receiver.js';
import { pollUntil as waitFor } from './helpers/wait.js';

const pgUp = await postgresAvailable();
const SECRET = `whsec_${randomBytes(24).toString('base64')}`;
const WINDOW_MS = 2_000;

interface Line {
  id: string;
  custom_id: string;
  response: { status_code: number; body: unknown } | null;
  error: { code: string; message: string } | null;
}

const backends = [
  { name: 'PGlite', available: true, shared: false },
  { name: 'Postgres', available: pgUp, shared: true },
];

for (const backend of backends) {
  describe.skipIf(!backend.available)(`batch expiry on ${backend.name}`, () => {
    const schema = `batch_expiry_${runId()}`;
    let dir: string;
    let server: RunningServer;
    const receiver = new WebhookReceiver();

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'batch-expiry-'));
      receiver.answer = 200;
      await receiver.start();
      server = await startTestGateway({
        config: {
          // Slow enough that 30 lines one at a time cannot finish inside the window.
          providers: { slow: { type: 'simulator', options: { latency_ms: 250 } } },
          models: [{ name: 'slow', deployments: [{ provider: 'slow', model: 'slow' }] }],
          database: backend.shared ? { url: POSTGRES_URL, schema } : { pglite_path: join(dir, 'db') },
          batch_jobs: {
            enabled: true,
            concurrency: 1,
            poll_ms: 50,
            lease_ms: 5_000,
            completion_window_ms: WINDOW_MS,
            webhook: { url: receiver.url, secret: SECRET },
          },
        },
      });
    });
    afterAll(async () => {
      await server?.close();
      await receiver.close();
      if (backend.shared) await dropSchema(schema);
      await rm(dir, { recursive: true, force: true });
    });

    it('ends expired: answered lines in the output file, the rest as batch_expired in the error file, and a batch.expired webhook', async () => {
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const ids = Array.from({ length: 30 }, (_, i) => `x-${i}`);
      const jsonl = ids.map((custom_id, i) => JSON.stringify({ custom_id, method: 'POST', url: '/v1/chat/completions', body: { model: 'slow', messages: [{ role: 'user', content: `question ${i}` }] } })).join('\n');
      const file = await client.files.create({ file: await toFile(Buffer.from(`${jsonl}\n`), 'expiry.jsonl'), purpose: 'batch' });
      const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
      expect(created.completion_window).toBe('24h');
      // The window counts from created_at (whole seconds), as OpenAI's expires_at does.
      expect(created.expires_at).toBe(created.created_at + WINDOW_MS / 1000);

      const done = await waitFor(async () => {
        const b = await client.batches.retrieve(created.id);
        return b.status === 'expired' ? b : undefined;
      }, 'the batch to expire');
      expect(done.expired_at).toBeGreaterThanOrEqual(done.expires_at as number);
      expect(done.completed_at).toBeNull();

      const output = await lines(client, done.output_file_id);
      const errors = await lines(client, done.error_file_id);
      expect(output.length).toBeGreaterThan(0);
      expect(errors.length).toBeGreaterThan(0);
      for (const o of output) expect(o).toMatchObject({ response: { status_code: 200 }, error: null });
      for (const e of errors) expect(e).toEqual({ id: expect.stringMatching(/^batch_req_/), custom_id: expect.any(String), response: null, error: { code: 'batch_expired', message: expect.any(String) } });
      // Every line is in exactly one file, each file in input order.
      expect([...output, ...errors].map((l) => l.custom_id).sort()).toEqual([...ids].sort());
      expect(output.map((l) => ids.indexOf(l.custom_id))).toEqual([...output.map((l) => ids.indexOf(l.custom_id))].sort((a, b) => a - b));
      expect(errors.map((l) => ids.indexOf(l.custom_id))).toEqual([...errors.map((l) => ids.indexOf(l.custom_id))].sort((a, b) => a - b));
      expect(done.request_counts).toEqual({ total: 30, completed: output.length, failed: errors.length });

      const hook = await waitFor(async () => receiver.for(created.id)[0], 'the expiry webhook');
      expect(verifyWebhook(SECRET, hook.headers, hook.body).ok).toBe(true);
      expect(JSON.parse(hook.body)).toMatchObject({ type: 'batch.expired', data: { id: created.id, status: 'expired', expired_at: done.expired_at, request_counts: done.request_counts } });

      // An expired batch cannot be cancelled, and stays expired.
      await expect(client.batches.cancel(created.id)).rejects.toMatchObject({ status: 400 });
      expect((await client.batches.retrieve(created.id)).status).toBe('expired');
    }, 60_000);
  });
}

async function lines(client: OpenAI, fileId: string | null | undefined): Promise<Line[]> {
  if (!fileId) return [];
  const text = await (await client.files.content(fileId)).text();
  return text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
}

