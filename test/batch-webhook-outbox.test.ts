// The completion webhook is durable: stored in an outbox in the transaction that sets a job's final
// status, delivered from there with backoff, marked delivered only after a 2xx, given up after
// max_attempts or a refusing 4xx, and sent by a new runner (or a new gateway after SIGKILL) when the
// process that stored it died first — at least once, always under the same `webhook-id`. A real
// receiver in-process, real SQL (PGlite and Postgres).
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { BATCH_JOB_MIGRATIONS } from '../src/batching/jobs/migrations.js';
import { WebhookOutbox } from '../src/batching/jobs/outbox.js';
import { renderBatch } from '../src/batching/jobs/routes.js';
import { BatchRunner, type CompletionNotifier } from '../src/batching/jobs/runner.js';
import { BatchStore } from '../src/batching/jobs/store.js';
import { ANONYMOUS } from '../src/gateway/context.js';
import { WebhookSender } from '../src/server/webhooks/sender.js';
import { verifyWebhook } from '../src/server/webhooks/signature.js';
import { applyMigrations } from '../src/store/migrations.js';
import { openSql, type SqlDatabase } from '../src/store/sql.js';
import { createLogger } from '../src/telemetry/logger.js';
import { startChildGateway } from './helpers/child-gateway.js';
import { startTestGateway } from './helpers/gateway.js';
import { dropSchema, POSTGRES_URL, postgresAvailable, runId } from './helpers/services.js';
import { WebhookReceiver as Receiver } from './helpers/webhook-receiver.js';
import { pollUntil as until } from './helpers/wait.js';

const log = createLogger('silent');
const pgUp = await postgresAvailable();
const SECRET = `whsec_${Buffer.from('outbox test secret, 32 bytes long!').toString('base64')}`;

const ok = (line: number) => ({ status: 'succeeded' as const, statusCode: 200, response: { status_code: 200, request_id: `r${line}`, body: { line } } });
const sender = (url: string, maxAttempts = 5) => new WebhookSender({ endpoints: [{ url, secret: SECRET, events: [] }], log, maxAttempts, initialBackoffMs: 20, timeoutMs: 2_000 });

const backends = [
  { name: 'PGlite', available: true, open: () => openSql({ pglitePath: 'memory://' }) },
  { name: 'Postgres', available: pgUp, open: (schema: string) => openSql({ url: POSTGRES_URL, pglitePath: '', schema }) },
];

for (const backend of backends) {
  describe.skipIf(!backend.available)(`completion webhook outbox on ${backend.name}`, () => {
    const schema = `batch_outbox_${runId()}`;
    let sql: SqlDatabase;
    let store: BatchStore;
    // One receiver for every test, each test under its own path of it (`hookUrl`; the receiver records
    // whatever the path): the outbox claims rows by URL, so a test's `deliverDue` sees only that test's
    // rows. Each test reads only its own job's deliveries (`receiver.for`).
    const receiver = new Receiver();
    let hookUrl = '';
    const runners: BatchRunner[] = [];
    beforeAll(async () => {
      sql = await backend.open(schema);
      await applyMigrations(sql, BATCH_JOB_MIGRATIONS);
      store = new BatchStore(sql);
      await receiver.start();
    });
    beforeEach(() => {
      hookUrl = `${receiver.url}/${runId()}`;
    });
    afterEach(async () => {
      await Promise.all(runners.splice(0).map((r) => r.stop()));
      receiver.answer = 204;
    });
    afterAll(async () => {
      await receiver.close();
      await sql?.close();
      if (backend.name === 'Postgres') await dropSchema(schema);
    });

    const create = () => store.createBatch({ id: `batch_${runId()}`, tenant: ANONYMOUS, endpoint: '/v1/chat/completions', inputFileId: 'file-x', completionWindow: '24h', metadata: null, items: [1, 2].map((n) => ({ line: n, custom_id: `req-${n}`, body: {} })) });
    const runner = (notifier: CompletionNotifier, opts: { owner?: string; webhookLeaseMs?: number } = {}) => {
      // The webhook's data is the batch as the API shows it, as the gateway sets the runner up.
      const r = new BatchRunner(store, async (item) => ok(item.line), { concurrency: 4, leaseMs: 5_000, pollMs: 20, log, notifier, describe: renderBatch, ...opts });
      runners.push(r);
      r.start();
      return r;
    };
    /** Another process's outbox over the same database: sends what is due once; returns how many it tried. */
    const deliverDue = (notifier: CompletionNotifier, owner: string) => new WebhookOutbox(sql, notifier, { log, owner, idleMs: 1_000 }).deliverDue();
    const outbox = (batchId: string) => sql.query<{ id: string; status: string; attempts: number; last_status: number | null; lease_owner: string | null }>(`SELECT id, status, attempts, last_status, lease_owner FROM batch_webhook_outbox WHERE batch_id = $1`, [batchId]);
    const finalStatus = (batchId: string) =>
      until(async () => {
        const b = await store.getBatch(batchId);
        return b && b.status === 'completed' ? b : undefined;
      }, 'the job to complete');
    /** A new job run to completion by a runner that sends its event to the receiver, which answers `answer`. */
    const completedJob = async (answer: number, maxAttempts?: number) => {
      receiver.answer = answer;
      const job = await create();
      runner(sender(hookUrl, maxAttempts));
      await finalStatus(job.id);
      return job;
    };
    /** The job's outbox row, once it has `status`. */
    const outboxStatus = (batchId: string, status: string) =>
      until(async () => {
        const [row] = await outbox(batchId);
        return row?.status === status ? row : undefined;
      }, `the outbox row to be ${status}`);

    it('stores the event with the final status and delivers it after retries, under one webhook-id, each attempt signed', async () => {
      const job = await completedJob(503, 10);
      // Stored with the final status: there is no moment when the job is completed and the event is not.
      expect(await outbox(job.id)).toHaveLength(1);
      await until(async () => (receiver.for(job.id).length >= 2 ? true : undefined), 'two refused attempts');
      receiver.answer = 200;
      const row = await outboxStatus(job.id, 'delivered');
      const got = receiver.for(job.id);
      expect(got.map((g) => g.status).slice(-1)).toEqual([200]);
      expect(new Set(got.map((g) => g.headers['webhook-id']))).toEqual(new Set([row.id]));
      for (const g of got) expect(verifyWebhook(SECRET, g.headers, g.body).ok).toBe(true);
      expect(JSON.parse(got[0]?.body as string)).toMatchObject({ type: 'batch.completed', data: { id: job.id, status: 'completed', request_counts: { total: 2, completed: 2, failed: 0 } } });
      expect(row).toMatchObject({ attempts: got.length, last_status: 200 });
      // Delivered: nothing is sent again, by this runner or another.
      expect(await deliverDue(sender(hookUrl), 'other')).toBe(0);
      expect(receiver.for(job.id)).toHaveLength(got.length);
    });

    it('stops at a 4xx the receiver refuses (not 408 or 429), and a restart does not send it again', async () => {
      const job = await completedJob(400);
      expect(await outboxStatus(job.id, 'failed')).toMatchObject({ attempts: 1, last_status: 400 });
      expect(receiver.for(job.id)).toHaveLength(1);
      receiver.answer = 204;
      expect(await deliverDue(sender(hookUrl), 'restarted')).toBe(0);
      expect(receiver.for(job.id)).toHaveLength(1);
    });

    it('tries max_attempts times at most, then gives up', async () => {
      const job = await completedJob(503, 3);
      await outboxStatus(job.id, 'failed');
      expect(receiver.for(job.id).map((g) => g.status)).toEqual([503, 503, 503]);
      expect(await deliverDue(sender(hookUrl, 3), 'restarted')).toBe(0);
      expect(receiver.for(job.id)).toHaveLength(3);
    });

    it('deletes delivered and given-up rows after the retention, never a pending one', async () => {
      const now = Date.now();
      const day = 24 * 3600_000;
      const insert = (id: string, status: string, ageMs: number) =>
        sql.query(`INSERT INTO batch_webhook_outbox (id, url, batch_id, type, body, status, next_attempt_at, created_at) VALUES ($1, 'http://x/hook', 'b', 'batch.completed', '{}', $2, $3, $4)`, [
          id,
          status,
          now,
          (now - ageMs) / 1000,
        ]);
      const tag = runId();
      await insert(`old-delivered-${tag}`, 'delivered', 8 * day);
      await insert(`old-failed-${tag}`, 'failed', 8 * day);
      await insert(`old-pending-${tag}`, 'pending', 30 * day);
      await insert(`new-delivered-${tag}`, 'delivered', 6 * day);
      const box = new WebhookOutbox(sql, sender('http://x/hook'), { log, owner: 'pruner', idleMs: 1_000 });
      expect(await box.prune(now)).toBe(2);
      const left = await sql.query<{ id: string }>(`SELECT id FROM batch_webhook_outbox WHERE id LIKE $1 ORDER BY id`, [`%-${tag}`]);
      expect(left.map((r) => r.id)).toEqual([`new-delivered-${tag}`, `old-pending-${tag}`]);
    });

    it('stops gracefully: a delivery that finishes within the grace is delivered; one that does not is cut short and handed back, that attempt not counted', async () => {
      // A receiver that records each arrival and holds its reply until the test releases it (`held`).
      const held: (() => void)[] = [];
      const slow = createServer((req, res) => {
        req.resume();
        held.push(() => res.writeHead(204).end());
      });
      await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
      const url = `http://127.0.0.1:${(slow.address() as { port: number }).port}/hook`;
      // The sender's own timeout is well beyond the outbox's 2 s grace: stop() is what ends the wait.
      const patient = new WebhookSender({ endpoints: [{ url, secret: SECRET, events: [] }], log, maxAttempts: 5, initialBackoffMs: 20, timeoutMs: 30_000 });
      /** Runs a new job to completion; returns it, its runner and the release of its delivery's reply, once that delivery has reached the receiver. */
      const runUntilSending = async () => {
        const arrival = held.length; // this job's delivery is the receiver's next arrival
        const job = await create();
        const r = runner(patient);
        await finalStatus(job.id);
        const release = await until(async () => held[arrival], 'the delivery to reach the receiver');
        return { job, r, release };
      };
      try {
        // Answered 500 ms into the stop, well within the grace: stop() waits for it.
        const quick = await runUntilSending();
        let released = false;
        const stopping = quick.r.stop();
        setTimeout(() => {
          released = true;
          quick.release();
        }, 500);
        await stopping;
        expect(released).toBe(true);
        expect((await outbox(quick.job.id))[0]).toMatchObject({ status: 'delivered', attempts: 1, last_status: 204 });

        // Never answered: cut short at the end of the grace and handed back.
        const hung = await runUntilSending();
        await hung.r.stop();
        expect((await outbox(hung.job.id))[0]).toMatchObject({ status: 'pending', attempts: 0, lease_owner: null });
      } finally {
        slow.closeAllConnections();
        await new Promise((r) => slow.close(r));
      }
    });

    it('is delivered by a new runner over the same database when the one that stored it died mid-delivery', async () => {
      const job = await create();
      // The first process dies while its delivery is under way: the POST never completes.
      const real = sender(hookUrl);
      const dying: CompletionNotifier = { targets: (t) => real.targets(t), backoffMs: (a) => real.backoffMs(a), maxAttempts: 5, timeoutMs: 2_000, attempt: () => new Promise<never>(() => undefined) };
      const a = new BatchRunner(store, async (item) => ok(item.line), { concurrency: 4, leaseMs: 5_000, pollMs: 20, log, notifier: dying, owner: 'A', webhookLeaseMs: 400 });
      a.start();
      await finalStatus(job.id);
      await until(async () => ((await outbox(job.id))[0]?.lease_owner === 'A' ? true : undefined), 'the first delivery to be under way');
      await a.abandon();
      expect(receiver.for(job.id)).toHaveLength(0);

      runner(sender(hookUrl), { owner: 'B', webhookLeaseMs: 400 });
      const row = await outboxStatus(job.id, 'delivered');
      const got = receiver.for(job.id);
      expect(got).toHaveLength(1);
      expect(got[0]?.headers['webhook-id']).toBe(row.id);
      expect(verifyWebhook(SECRET, got[0]?.headers ?? {}, got[0]?.body ?? '').ok).toBe(true);
    });
  });
}

describe.skipIf(!pgUp)('the completion webhook survives its gateway being killed (Postgres)', () => {
  const schema = `batch_outbox_kill_${runId()}`;
  let dir: string;
  let survivor: RunningServer | undefined;
  const receiver = new Receiver();
  afterAll(async () => {
    await survivor?.close();
    await receiver.close();
    await dropSchema(schema);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('is sent by the next gateway after SIGKILL, under the webhook-id the first one used', async () => {
    dir = await mkdtemp(join(tmpdir(), 'batch-outbox-kill-'));
    await receiver.start();
    receiver.answer = 503; // the receiver is down while the first gateway lives
    const config = {
      providers: { sim: { type: 'simulator', options: { latency_ms: 2 } } },
      models: [{ name: 'm', deployments: [{ provider: 'sim', model: 'm' }] }],
      database: { url: POSTGRES_URL, schema },
      ledger: { enabled: false },
      batch_jobs: { enabled: true, poll_ms: 50, lease_ms: 5_000, webhook: { url: receiver.url, secret: SECRET, max_attempts: 20 } },
    };
    const child = await startChildGateway(dir, 'doomed', config);
    const line = (i: number) => JSON.stringify({ custom_id: `w-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'm', messages: [{ role: 'user', content: `q${i}` }] } });
    const client = new OpenAI({ baseURL: `${child.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const file = await client.files.create({ file: await toFile(Buffer.from(`${[1, 2, 3].map(line).join('\n')}\n`), 'hook.jsonl'), purpose: 'batch' });
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });

    const db = new pg.Client({ connectionString: POSTGRES_URL });
    await db.connect();
    try {
      await until(async () => (receiver.for(batch.id).length > 0 ? true : undefined), 'a first, refused attempt', 60_000);
      // Killed between attempts (a kill during one would leave that attempt's lease to run out first).
      await until(async () => {
        const { rows } = await db.query<{ lease_owner: string | null; attempts: number }>(`SELECT lease_owner, attempts FROM "${schema}".batch_webhook_outbox WHERE batch_id = $1`, [batch.id]);
        return rows[0] && rows[0].attempts > 0 && rows[0].lease_owner === null ? true : undefined;
      }, 'the refused attempt to be recorded');
      child.process.kill('SIGKILL');
      await child.exited;
      const refused = receiver.for(batch.id);
      expect(refused.every((g) => g.status === 503)).toBe(true);

      receiver.answer = 204;
      survivor = await startTestGateway({ config });
      const delivered = await until(async () => receiver.for(batch.id).find((g) => g.status === 204), 'the next gateway to deliver the webhook', 30_000);
      expect(delivered.headers['webhook-id']).toBe(refused[0]?.headers['webhook-id']);
      expect(verifyWebhook(SECRET, delivered.headers, delivered.body).ok).toBe(true);
      expect(JSON.parse(delivered.body)).toMatchObject({ type: 'batch.completed', data: { id: batch.id, status: 'completed', request_counts: { total: 3, completed: 3, failed: 0 } } });
      // Recorded as delivered once the receiver's answer is in.
      await until(async () => {
        const { rows } = await db.query<{ status: string }>(`SELECT status FROM "${schema}".batch_webhook_outbox WHERE batch_id = $1`, [batch.id]);
        return rows.length === 1 && rows[0]?.status === 'delivered' ? true : undefined;
      }, 'the delivery to be recorded');
    } finally {
      await db.end();
    }
  }, 180_000);
});
