// The batch-job runner on real SQL (PGlite and Postgres): every line runs and is recorded once,
// output and error files come out in line order, a crashed worker's lines are taken over after its
// lease while lines it recorded never run again, cancel stops queued lines, one webhook per job.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BATCH_JOB_MIGRATIONS } from '../src/batching/jobs/migrations.js';
import { BatchRunner, type ItemExecutor } from '../src/batching/jobs/runner.js';
import { BatchStore, type BatchRow, type ClaimedItem, type ItemInput } from '../src/batching/jobs/store.js';
import { ANONYMOUS, type Tenant } from '../src/gateway/context.js';
import { applyMigrations } from '../src/store/migrations.js';
import { openSql, type SqlDatabase } from '../src/store/sql.js';
import { createLogger } from '../src/telemetry/logger.js';
import { recordingNotifier } from './helpers/notifier.js';
import { dropSchema, POSTGRES_URL, postgresAvailable, runId } from './helpers/services.js';
import { pollUntil as until } from './helpers/wait.js';

const log = createLogger('silent');
const pgUp = await postgresAvailable();
const schema = `batch_runner_${runId()}`;

const backends = [
  { name: 'PGlite', available: true, open: () => openSql({ pglitePath: 'memory://' }) },
  { name: 'Postgres', available: pgUp, open: () => openSql({ url: POSTGRES_URL, pglitePath: '', schema }) },
];

afterAll(async () => {
  if (pgUp) await dropSchema(schema);
});

function items(n: number): ItemInput[] {
  return Array.from({ length: n }, (_, i) => ({ line: i + 1, custom_id: `req-${i + 1}`, body: { n: i + 1 } }));
}

/** A backend's database with the batch tables, and a store over it. */
async function openStore(backend: { open(): Promise<SqlDatabase> }): Promise<{ sql: SqlDatabase; store: BatchStore }> {
  const sql = await backend.open();
  await applyMigrations(sql, BATCH_JOB_MIGRATIONS);
  return { sql, store: new BatchStore(sql) };
}

const ok = (line: number) => ({ status: 'succeeded' as const, statusCode: 200, response: { status_code: 200, request_id: `r${line}`, body: { line } } });

for (const backend of backends) {
  describe.skipIf(!backend.available)(`batch runner on ${backend.name}`, () => {
    let sql: SqlDatabase;
    let store: BatchStore;
    beforeAll(async () => ({ sql, store } = await openStore(backend)));
    afterAll(async () => {
      await sql?.close();
    });

    const create = (n: number) =>
      store.createBatch({ id: `batch_${runId()}`, tenant: ANONYMOUS, endpoint: '/v1/chat/completions', inputFileId: 'file-x', completionWindow: '24h', metadata: null, items: items(n) });
    const finished = (id: string) => until(async () => {
      const b = await store.getBatch(id);
      return b && (b.status === 'completed' || b.status === 'cancelled') ? b : undefined;
    }, `batch ${id} to finish`);

    it('runs every line once, writes output and error files in line order and notifies once', async () => {
      const job = await create(9);
      const runs: number[] = [];
      const notifier = recordingNotifier();
      const sent = notifier.sent;
      const exec: ItemExecutor = async (item) => {
        runs.push(item.line);
        return item.line % 3 === 0 ? { status: 'failed', statusCode: 400, response: { status_code: 400, request_id: 'x', body: { error: { code: 'invalid_value' } } } } : ok(item.line);
      };
      const runner = new BatchRunner(store, exec, { concurrency: 4, leaseMs: 5_000, pollMs: 20, log, notifier });
      runner.start();
      const done = await finished(job.id);
      // Every outbox row of the job delivered before the runner stops: a duplicate would have been sent by then.
      await until(async () => {
        const rows = await sql.query<{ status: string }>(`SELECT status FROM batch_webhook_outbox WHERE batch_id = $1`, [job.id]);
        return rows.length > 0 && rows.every((r) => r.status === 'delivered') ? true : undefined;
      }, 'the webhook to be delivered');
      await runner.stop();
      expect(done.status).toBe('completed');
      expect(runs.sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(await store.counts(job.id)).toEqual({ total: 9, completed: 6, failed: 3 });
      const out = (await store.fileContent(done.output_file_id as string, ANONYMOUS.id))?.trim().split('\n').map((l) => JSON.parse(l) as { custom_id: string; response: { status_code: number } });
      expect(out?.map((l) => l.custom_id)).toEqual(['req-1', 'req-2', 'req-4', 'req-5', 'req-7', 'req-8']);
      const errors = (await store.fileContent(done.error_file_id as string, ANONYMOUS.id))?.trim().split('\n').map((l) => JSON.parse(l) as { custom_id: string; response: { status_code: number } });
      expect(errors?.map((l) => [l.custom_id, l.response.status_code])).toEqual([['req-3', 400], ['req-6', 400], ['req-9', 400]]);
      expect(sent.map((s) => s.type)).toEqual(['batch.completed']);
      // The prompts and answers live in the files only: deleting those removes them.
      const rows = await sql.query<{ body: unknown; response: unknown }>(`SELECT body, response FROM batch_items WHERE batch_id = $1`, [job.id]);
      expect(rows.every((r) => JSON.stringify(r.body) === '{}' && r.response === null)).toBe(true);
    });

    it('writes output files in parts of about file_part_bytes and reads them back a part at a time', async () => {
      const job = await create(12);
      const outputId = `file-${job.id}-output`;
      // A part a finaliser that died midway left behind: the finaliser that completes the job drops it.
      await store.writeFilePart(outputId, 'dead-finaliser', 0, 'torn');
      const runner = new BatchRunner(store, async (item) => ok(item.line), { concurrency: 4, leaseMs: 5_000, pollMs: 20, log, filePartBytes: 200 });
      runner.start();
      const done = await finished(job.id);
      await runner.stop();
      expect(done.output_file_id).toBe(outputId);

      const parts = await sql.query<{ writer: string; content: string }>(`SELECT writer, content FROM batch_file_parts WHERE file_id = $1 ORDER BY part`, [outputId]);
      expect(new Set(parts.map((p) => p.writer)).size).toBe(1);
      expect(parts.length).toBeGreaterThanOrEqual(4);
      const longestLine = Math.max(...parts.flatMap((p) => p.content.split('\n').map((l) => Buffer.byteLength(l) + 1)));
      for (const p of parts) {
        // Whole lines only, and a part stops at the line that reaches the part size.
        expect(p.content.endsWith('\n')).toBe(true);
        expect(Buffer.byteLength(p.content)).toBeLessThan(200 + longestLine);
      }

      // Read back lazily: the file row, then one query per part as the reader asks for it.
      let queries = 0;
      const counting = new BatchStore({
        ...sql,
        query: <T>(text: string, params?: unknown[]) => {
          queries++;
          return sql.query<T>(text, params);
        },
      });
      const chunks = (await counting.fileChunks(outputId, ANONYMOUS.id)) as AsyncIterable<string>;
      const reader = chunks[Symbol.asyncIterator]();
      const got = [(await reader.next()).value as string];
      expect(queries).toBe(2);
      for (let r = await reader.next(); !r.done; r = await reader.next()) got.push(r.value);
      expect(got).toEqual(parts.map((p) => p.content));
      const lines = got.join('').trim().split('\n').map((l) => JSON.parse(l) as { custom_id: string });
      expect(lines.map((l) => l.custom_id)).toEqual(items(12).map((i) => i.custom_id));
      expect((await store.getFile(outputId, ANONYMOUS.id))?.bytes).toBe(Buffer.byteLength(got.join('')));

      // A finaliser that comes second adopts nothing; the files stand.
      expect((await store.complete(job.id, 'completed', 'late', { output: { id: outputId, bytes: 1 } }, [outputId])).adopted).toBe(false);
      expect(await store.fileContent(outputId, ANONYMOUS.id)).toBe(got.join(''));
      // Deleting the file deletes its parts.
      expect(await store.deleteFile(outputId, ANONYMOUS.id)).toBe(true);
      expect(await sql.query(`SELECT 1 FROM batch_file_parts WHERE file_id = $1`, [outputId])).toHaveLength(0);
    });

    it('takes over a crashed worker’s lines after its lease; lines it recorded never run again', async () => {
      const job = await create(10);
      const runsA: number[] = [];
      const hang = new Promise<never>(() => undefined);
      const runnerA = new BatchRunner(store, async (item) => {
        runsA.push(item.line);
        if (item.line > 5) return hang;
        return ok(item.line);
      }, { concurrency: 3, leaseMs: 400, pollMs: 20, log, owner: 'A' });
      runnerA.start();
      await until(async () => ((await store.counts(job.id)).completed === 5 && runsA.length === 8 ? true : undefined), 'worker A to record 5 lines and hold 3');
      await runnerA.abandon(); // as if the process were killed: leases are not handed back

      const runsB: number[] = [];
      const runnerB = new BatchRunner(store, async (item) => {
        runsB.push(item.line);
        return ok(item.line);
      }, { concurrency: 3, leaseMs: 400, pollMs: 20, log, owner: 'B' });
      runnerB.start();
      const done = await finished(job.id);
      await runnerB.stop();

      expect(runsB.sort((a, b) => a - b)).toEqual([6, 7, 8, 9, 10]);
      const out = (await store.fileContent(done.output_file_id as string, ANONYMOUS.id))?.trim().split('\n').map((l) => JSON.parse(l) as { custom_id: string });
      expect(out?.map((l) => l.custom_id)).toEqual(items(10).map((i) => i.custom_id));
      const attempts = await sql.query<{ line: number; attempts: number }>(`SELECT line, attempts FROM batch_items WHERE batch_id = $1 ORDER BY line`, [job.id]);
      expect(attempts.map((a) => a.attempts)).toEqual([1, 1, 1, 1, 1, 2, 2, 2, 1, 1]);
    });

    it('records an answer holding a NUL character (jsonb cannot store one): the job completes, the line runs once', async () => {
      const job = await create(3);
      const runs: number[] = [];
      const runner = new BatchRunner(store, async (item) => {
        runs.push(item.line);
        // A model's text with a NUL in it, and a literal backslash-u0000 that is ordinary text.
        return item.line === 2 ? { status: 'succeeded', statusCode: 200, response: { status_code: 200, request_id: 'r2', body: { text: 'a\u0000b \\u0000', ['k\u0000']: 1 } } } : ok(item.line);
      }, { concurrency: 2, leaseMs: 300, pollMs: 20, log });
      runner.start();
      const done = await finished(job.id);
      await runner.stop();
      expect(done.status).toBe('completed');
      expect(runs.sort((a, b) => a - b)).toEqual([1, 2, 3]);
      const out = (await store.fileContent(done.output_file_id as string, ANONYMOUS.id))?.trim().split('\n').map((l) => JSON.parse(l) as { custom_id: string; response: { body: Record<string, unknown> } });
      expect(out?.map((l) => l.custom_id)).toEqual(['req-1', 'req-2', 'req-3']);
      expect(out?.[1]?.response.body).toEqual({ text: 'a\ufffdb \\u0000', ['k\ufffd']: 1 });
    });

    it('records an answer holding an unpaired surrogate (jsonb refuses one): the job completes', async () => {
      const job = await create(2);
      const runner = new BatchRunner(store, async (item) => (item.line === 1 ? { status: 'succeeded', statusCode: 200, response: { status_code: 200, request_id: 'r1', body: { text: 'a\ud800b\udc00 \u{1F600} \\ud800' } } } : ok(item.line)), { concurrency: 2, leaseMs: 300, pollMs: 20, log });
      runner.start();
      const done = await finished(job.id);
      await runner.stop();
      expect(done.status).toBe('completed');
      const out = (await store.fileContent(done.output_file_id as string, ANONYMOUS.id))?.trim().split('\n').map((l) => JSON.parse(l) as { response: { body: { text?: string } } });
      expect(out?.[0]?.response.body.text).toBe('a\ufffdb\ufffd \u{1F600} \\ud800');
    });

    it('cancel drops queued lines, lets running ones finish, and ends cancelled with what was done', async () => {
      const job = await create(20);
      let release: () => void = () => undefined;
      const gate = new Promise<void>((r) => (release = r));
      let thirdStarted = false;
      const runner = new BatchRunner(store, async (item) => {
        if (item.line === 3) thirdStarted = true;
        if (item.line > 2) await gate;
        return ok(item.line);
      }, { concurrency: 1, leaseMs: 5_000, pollMs: 20, log });
      runner.start();
      await until(async () => ((await store.counts(job.id)).completed === 2 ? true : undefined), 'two lines');
      // Cancelled once line 3 is under way (on a slow machine the runner may not have taken it yet).
      await until(async () => (thirdStarted ? true : undefined), 'line 3 started');
      const cancelling = (await store.cancel(job.id, ANONYMOUS.id)) as BatchRow;
      expect(cancelling.status).toBe('cancelling');
      release();
      const done = await finished(job.id);
      await runner.stop();
      expect(done.status).toBe('cancelled');
      expect(done.cancelled_at).not.toBeNull();
      // Lines 1-2 done before the cancel, line 3 under way when it came; the other 17 never ran.
      expect(await store.counts(job.id)).toEqual({ total: 20, completed: 3, failed: 0 });
    });

    const fileLines = async (id: string | null) => (id ? ((await store.fileContent(id, ANONYMOUS.id)) ?? '').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string; custom_id: string; response: { status_code: number } | null; error: { code: string; message: string } | null }) : []);
    const ended = (id: string) => until(async () => {
      const b = await store.getBatch(id);
      return b && ['completed', 'cancelled', 'expired'].includes(b.status) ? b : undefined;
    }, `batch ${id} to end`);
    const expireNow = (id: string) => sql.query(`UPDATE batch_jobs SET expires_at = $2 WHERE id = $1`, [id, Date.now() / 1000 - 1]);

    it('expires a job whose window passes: the running line finishes, the others never run and land in the error file as batch_expired', async () => {
      const job = await create(6);
      let release: () => void = () => undefined;
      const gate = new Promise<void>((r) => (release = r));
      const runs: number[] = [];
      const notifier = recordingNotifier();
      const sent = notifier.sent;
      const runner = new BatchRunner(store, async (item) => {
        runs.push(item.line);
        if (item.line === 3) await gate;
        return ok(item.line);
      }, { concurrency: 1, leaseMs: 5_000, pollMs: 20, log, notifier, describe: (b) => ({ id: b.id, status: b.status }) });
      runner.start();
      await until(async () => ((await store.counts(job.id)).completed === 2 && runs.includes(3) ? true : undefined), 'two lines done and the third running');
      await expireNow(job.id);
      // The window is over while line 3 runs: the job is expiring until that line ends.
      const expiring = await until(async () => {
        const b = await store.getBatch(job.id);
        return b?.status === 'expiring' ? b : undefined;
      }, 'the job to be expiring');
      expect(expiring.expired_at).toBeNull();
      release();
      const done = await ended(job.id);
      await until(async () => (sent.length > 0 ? true : undefined), 'the webhook');
      await runner.stop();
      expect(done.status).toBe('expired');
      expect(done.expired_at).not.toBeNull();
      expect(done.completed_at).toBeNull();
      expect(runs).toEqual([1, 2, 3]);
      expect(await store.counts(job.id)).toEqual({ total: 6, completed: 3, failed: 3 });
      expect((await fileLines(done.output_file_id)).map((l) => [l.custom_id, l.response?.status_code, l.error])).toEqual([['req-1', 200, null], ['req-2', 200, null], ['req-3', 200, null]]);
      const prefix = `batch_req_${job.id.replace(/^batch_/, '')}_`;
      expect(await fileLines(done.error_file_id)).toEqual([4, 5, 6].map((n) => ({ id: `${prefix}${n}`, custom_id: `req-${n}`, response: null, error: { code: 'batch_expired', message: expect.any(String) } })));
      expect(sent.map(({ type, data }) => ({ type, data }))).toEqual([{ type: 'batch.expired', data: { id: job.id, status: 'expired' } }]);
    });

    it('expires a job once when two workers sweep it together, and a dead worker’s running line expires instead of running again', async () => {
      const job = await create(4);
      const hang = new Promise<never>(() => undefined);
      const runnerA = new BatchRunner(store, async (item) => (item.line === 1 ? ok(1) : hang), { concurrency: 20, leaseMs: 300, pollMs: 20, log, owner: 'A' });
      runnerA.start();
      await until(async () => ((await store.counts(job.id)).completed === 1 && Number((await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM batch_items WHERE batch_id = $1 AND status = 'running'`, [job.id]))[0]?.n) === 3 ? true : undefined), 'one line done, three running');
      await runnerA.abandon(); // killed with three lines under way
      await expireNow(job.id);
      const notifier = recordingNotifier();
      const sent = notifier.sent;
      const runs: number[] = [];
      // Both workers deliver to the same endpoint.
      const mk = (owner: string) => new BatchRunner(store, async (item) => {
        runs.push(item.line);
        return ok(item.line);
      }, { concurrency: 20, leaseMs: 300, pollMs: 20, log, owner, notifier });
      const [b, c] = [mk('B'), mk('C')];
      b.start();
      c.start();
      const done = await ended(job.id);
      // Let both sweep again: nothing changes once the job has expired.
      await new Promise((r) => setTimeout(r, 2_500));
      await Promise.all([b.stop(), c.stop()]);
      expect(done.status).toBe('expired');
      expect(runs).toEqual([]);
      expect(sent.map((s) => s.type)).toEqual(['batch.expired']);
      expect((await fileLines(done.error_file_id)).map((l) => [l.custom_id, l.error?.code])).toEqual([['req-2', 'batch_expired'], ['req-3', 'batch_expired'], ['req-4', 'batch_expired']]);
      expect(await store.getBatch(job.id)).toMatchObject({ status: 'expired', expired_at: done.expired_at });
    });

    it('a line whose result cannot be saved runs max_attempts times, then is failed as max_attempts_exceeded and the job completes', async () => {
      const job = await create(3);
      // A lasting refusal of one line's result (as Postgres refuses a jsonb over 255 MB): every other statement works.
      const refusing = new BatchStore({
        ...sql,
        query: <T>(text: string, params?: unknown[]) =>
          text.startsWith('UPDATE batch_items SET status = $4') && params?.[0] === job.id && params[1] === 2
            ? Promise.reject(new Error('total size of jsonb object elements exceeds the maximum of 268435455 bytes'))
            : sql.query<T>(text, params),
      });
      const runs: number[] = [];
      const runner = new BatchRunner(refusing, async (item) => {
        runs.push(item.line);
        return ok(item.line);
      }, { concurrency: 3, leaseMs: 300, pollMs: 20, log, maxAttempts: 3 });
      runner.start();
      const done = await ended(job.id);
      await runner.stop();
      expect(done.status).toBe('completed');
      expect(runs.filter((l) => l === 2)).toHaveLength(3);
      expect(await store.counts(job.id)).toEqual({ total: 3, completed: 2, failed: 1 });
      const [failed] = await fileLines(done.error_file_id);
      expect(failed).toMatchObject({ custom_id: 'req-2', response: null, error: { code: 'max_attempts_exceeded' } });
      // The message says how many runs and that saving failed — not the database's own error text,
      // which stays in the gateway's log and the line's last_error.
      expect(failed?.error?.message).toContain('3 times');
      expect(failed?.error?.message).toContain('could not save');
      expect(failed?.error?.message).not.toContain('exceeds the maximum');
      const [kept] = await sql.query<{ last_error: string }>(`SELECT last_error FROM batch_items WHERE batch_id = $1 AND line = 2`, [job.id]);
      expect(kept?.last_error).toContain('exceeds the maximum');
      expect((await fileLines(done.output_file_id)).map((l) => l.custom_id)).toEqual(['req-1', 'req-3']);
    });

    it('a line whose call takes its worker down every time is not run after max_attempts; the job completes', async () => {
      const job = await create(3);
      const hang = new Promise<never>(() => undefined);
      const crashing = (owner: string, runs: number[]) =>
        new BatchRunner(store, async (item) => {
          runs.push(item.line);
          return item.line === 1 ? hang : ok(item.line);
        }, { concurrency: 20, leaseMs: 300, pollMs: 20, log, owner, maxAttempts: 2 });
      const attemptsOf1 = async () => (await sql.query<{ attempts: number; status: string }>(`SELECT attempts, status FROM batch_items WHERE batch_id = $1 AND line = 1`, [job.id]))[0];
      // Two workers in turn take line 1 and die with it (killed: their leases stay until they end).
      for (const owner of ['A', 'B']) {
        const runs: number[] = [];
        const runner = crashing(owner, runs);
        runner.start();
        await until(async () => (runs.includes(1) ? true : undefined), `worker ${owner} to take line 1`);
        await runner.abandon();
      }
      expect(await attemptsOf1()).toEqual({ attempts: 2, status: 'running' });
      const runsC: number[] = [];
      const c = crashing('C', runsC);
      c.start();
      const done = await ended(job.id);
      await c.stop();
      expect(done.status).toBe('completed');
      expect(runsC).not.toContain(1);
      const [failed] = await fileLines(done.error_file_id);
      expect(failed).toMatchObject({ custom_id: 'req-1', response: null, error: { code: 'max_attempts_exceeded' } });
      expect(await store.counts(job.id)).toEqual({ total: 3, completed: 2, failed: 1 });
    });

    it("pages a tenant's batch list only by its own batch ids: another tenant's id as the cursor tells nothing", async () => {
      const mk = (tenantId: string) =>
        // Failed at creation: no open lines for the runners of the other tests to pick up.
        store.createBatch({ id: `batch_${runId()}`, tenant: { id: tenantId, kind: 'key' }, endpoint: '/v1/chat/completions', inputFileId: 'file-x', completionWindow: '24h', metadata: null, items: [], errors: { object: 'list', data: [] } });
      const a = `tenant-a-${runId()}`;
      const b = `tenant-b-${runId()}`;
      const aOld = await mk(a);
      await sql.query(`UPDATE batch_jobs SET created_at = created_at - 100 WHERE id = $1`, [aOld.id]);
      const bJob = await mk(b);
      await mk(a);
      // B's id (when it was created, whether it exists) must not shape A's answer: refused as an unknown id.
      expect(await store.listBatches(a, 10, bJob.id)).toBeUndefined();
      expect(await store.listBatches(a, 10, 'batch_unknown')).toBeUndefined();
      expect((await store.listBatches(b, 10, bJob.id))?.map((r) => r.id)).toEqual([]);
      // A's own cursor pages on: what is older than it.
      const all = (await store.listBatches(a, 10))?.map((r) => r.id);
      expect(all).toHaveLength(2);
      expect((await store.listBatches(a, 10, all?.[0]))?.map((r) => r.id)).toEqual([aOld.id]);
    });

    it("hands out a line of each running job in turn: a later, small job is not held behind a large one", async () => {
      const big = await create(60);
      const small = await create(2);
      // The big one a minute older.
      await sql.query(`UPDATE batch_jobs SET created_at = created_at - 60 WHERE id = $1`, [big.id]);
      const claimed = await store.claim(`fair-${runId()}`, 60_000, 4);
      const lines = (id: string) => claimed.filter((c) => c.batch_id === id).map((c) => c.line).sort((a, b) => a - b);
      expect(lines(small.id)).toEqual([1, 2]);
      expect(lines(big.id)).toEqual([1, 2]);
      await store.cancel(big.id, ANONYMOUS.id).catch(() => undefined);
      await store.cancel(small.id, ANONYMOUS.id).catch(() => undefined);
    });

    it('does not starve an older job part-way through for a newer one: each gets a share of every claim', async () => {
      const older = await create(100);
      await sql.query(`UPDATE batch_jobs SET created_at = created_at - 3600 WHERE id = $1`, [older.id]);
      await sql.query(`UPDATE batch_items SET status = 'succeeded' WHERE batch_id = $1 AND line <= 60`, [older.id]);
      const newer = await create(100);
      const got: Record<string, number> = {};
      for (let round = 0; round < 6; round++) {
        const claimed = await store.claim(`share-${runId()}`, 60_000, 10);
        for (const c of claimed) got[c.batch_id] = (got[c.batch_id] ?? 0) + 1;
        await sql.query(`UPDATE batch_items SET status = 'succeeded' WHERE status = 'running' AND batch_id IN ($1, $2)`, [older.id, newer.id]);
      }
      expect(got[older.id]).toBeGreaterThanOrEqual(20);
      expect(got[newer.id]).toBeGreaterThanOrEqual(20);
      await store.cancel(older.id, ANONYMOUS.id).catch(() => undefined);
      await store.cancel(newer.id, ANONYMOUS.id).catch(() => undefined);
    });

    it("keeps a job a live finaliser is still writing out of the sweep's stale list (it is touched while at work)", async () => {
      const job = await create(1);
      await sql.query(`UPDATE batch_items SET status = 'succeeded' WHERE batch_id = $1`, [job.id]);
      expect(await store.beginFinalizing(job.id)).toBeDefined();
      await sql.query(`UPDATE batch_jobs SET finalizing_at = finalizing_at - 120 WHERE id = $1`, [job.id]);
      expect(await store.staleFinalizing(60)).toContain(job.id);
      await store.touchFinalizing(job.id);
      expect(await store.staleFinalizing(60)).not.toContain(job.id);
    });

    it('a graceful stop hands leases back at once', async () => {
      const job = await create(3);
      const runner = new BatchRunner(store, async (_item, signal) => {
        if (!signal.aborted) await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
        return undefined;
      }, { concurrency: 3, leaseMs: 60_000, pollMs: 20, log });
      runner.start();
      await until(async () => {
        const rows = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM batch_items WHERE batch_id = $1 AND status = 'running'`, [job.id]);
        return Number(rows[0]?.n) === 3 ? true : undefined;
      }, 'three running lines');
      await runner.stop();
      const rows = await sql.query<{ status: string; attempts: number }>(`SELECT status, attempts FROM batch_items WHERE batch_id = $1`, [job.id]);
      expect(rows.map((r) => r.status)).toEqual(['pending', 'pending', 'pending']);
      // A run cut short by a shutdown is not one of the line's attempts.
      expect(rows.map((r) => r.attempts)).toEqual([0, 0, 0]);
    });

    it('a job cancelled while a stopping worker ran its lines still ends cancelled', async () => {
      const job = await create(3);
      // Worker A runs lines until it is stopped (a graceful shutdown aborts them).
      const runnerA = new BatchRunner(store, async (_item, signal) => {
        if (!signal.aborted) await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
        return undefined;
      }, { concurrency: 20, leaseMs: 60_000, pollMs: 20, log, owner: 'A' });
      runnerA.start();
      // (Concurrency above what earlier tests left queued in this database, so this job's lines run too.)
      await until(async () => (Number((await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM batch_items WHERE batch_id = $1 AND status = 'running'`, [job.id]))[0]?.n) === 3 ? true : undefined), 'three running lines');
      // The cancel arrives (at any replica) while they run; then A stops and hands its leases back.
      expect((await store.cancel(job.id, ANONYMOUS.id))?.status).toBe('cancelling');
      await runnerA.stop();
      const runnerB = new BatchRunner(store, async (item) => ok(item.line), { concurrency: 3, leaseMs: 60_000, pollMs: 20, log, owner: 'B' });
      runnerB.start();
      const done = await finished(job.id);
      await runnerB.stop();
      expect(done.status).toBe('cancelled');
      expect(await store.counts(job.id)).toEqual({ total: 3, completed: 0, failed: 0 });
    });

    it('a job cancelled while its worker was dead ends cancelled once the lease is over', async () => {
      const job = await create(2);
      const hang = new Promise<never>(() => undefined);
      const runnerA = new BatchRunner(store, async () => hang, { concurrency: 20, leaseMs: 300, pollMs: 20, log, owner: 'A' });
      runnerA.start();
      await until(async () => (Number((await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM batch_items WHERE batch_id = $1 AND status = 'running'`, [job.id]))[0]?.n) === 2 ? true : undefined), 'two running lines');
      await runnerA.abandon(); // killed: the leases stay until they end
      await store.cancel(job.id, ANONYMOUS.id);
      const runnerB = new BatchRunner(store, async (item) => ok(item.line), { concurrency: 20, leaseMs: 300, pollMs: 20, log, owner: 'B' });
      runnerB.start();
      const done = await finished(job.id);
      await runnerB.stop();
      expect(done.status).toBe('cancelled');
    });
  });
}

// BatchStore.claim on its own: one statement however many jobs are open, a fair share of each job,
// the rest in the same rotated order, and never one line to two workers. Its own database (the
// tests above leave queued lines behind), and every test ends its jobs, so each sees only its own.
const claimSchema = `batch_claim_${runId()}`;
const claimBackends = [
  { name: 'PGlite', available: true, open: () => openSql({ pglitePath: 'memory://' }) },
  { name: 'Postgres', available: pgUp, open: () => openSql({ url: POSTGRES_URL, pglitePath: '', schema: claimSchema }) },
];

afterAll(async () => {
  if (pgUp) await dropSchema(claimSchema);
});

/** `sql` with every statement it is given (also inside transactions) written down in `seen`. */
function countingSql(sql: SqlDatabase): { sql: SqlDatabase; seen: string[] } {
  const seen: string[] = [];
  const wrapped: SqlDatabase = {
    kind: sql.kind,
    db: sql.db,
    query: <T,>(text: string, params?: unknown[]) => {
      seen.push(text);
      return sql.query<T>(text, params);
    },
    transaction: (fn, opts) =>
      sql.transaction(
        (q) =>
          fn(<T,>(text: string, params?: unknown[]) => {
            seen.push(text);
            return q<T>(text, params);
          }),
        opts,
      ),
    close: () => sql.close(),
  };
  return { sql: wrapped, seen };
}

for (const backend of claimBackends) {
  describe.skipIf(!backend.available)(`claiming batch lines on ${backend.name}`, () => {
    let sql: SqlDatabase;
    let store: BatchStore;
    let age = 0;
    beforeAll(async () => ({ sql, store } = await openStore(backend)));
    afterAll(async () => {
      await sql?.close();
    });
    // Every test's jobs are ended after it, so the next test sees none of them open.
    let made: string[] = [];
    afterEach(async () => {
      await sql.query(`UPDATE batch_items SET status = 'cancelled', lease_owner = NULL, lease_until = NULL WHERE batch_id = ANY($1::text[]) AND status IN ('pending', 'running')`, [made]);
      await sql.query(`UPDATE batch_jobs SET status = 'cancelled' WHERE id = ANY($1::text[])`, [made]);
      made = [];
    });

    /** A running job of `n` lines, created after every job made before it (created_at one second apart). */
    const create = async (n: number, o: { tenant?: Tenant; endpoint?: string } = {}) => {
      const job = await store.createBatch({ id: `batch_${runId()}`, tenant: o.tenant ?? ANONYMOUS, endpoint: o.endpoint ?? '/v1/chat/completions', inputFileId: 'file-x', completionWindow: '24h', metadata: null, items: items(n) });
      made.push(job.id);
      await sql.query(`UPDATE batch_jobs SET created_at = $2 WHERE id = $1`, [job.id, 1_000_000 + age++]);
      return job;
    };
    /** `n` jobs of `lines` lines, oldest first. */
    const createMany = async (n: number, lines: number) => {
      const jobs: BatchRow[] = [];
      for (let i = 0; i < n; i++) jobs.push(await create(lines));
      return jobs;
    };
    const linesOf = (claimed: ClaimedItem[], id: string) => claimed.filter((c) => c.batch_id === id).map((c) => c.line).sort((a, b) => a - b);

    it('claims with a fixed number of statements however many jobs are open (not one or two per job)', async () => {
      const one = await create(3);
      const counted1 = countingSql(sql);
      const got1 = await new BatchStore(counted1.sql).claim(`count1-${runId()}`, 60_000, 100);
      expect(linesOf(got1, one.id)).toEqual([1, 2, 3]);
      await sql.query(`UPDATE batch_jobs SET status = 'cancelled' WHERE id = $1`, [one.id]);

      await createMany(50, 3);
      const counted50 = countingSql(sql);
      const got50 = await new BatchStore(counted50.sql).claim(`count50-${runId()}`, 60_000, 120);
      // A share of ceil(120 / 50) = 3 of each job in turn fills the claim before the rest are reached.
      expect(got50).toHaveLength(120);
      expect(new Set(got50.map((c) => c.batch_id)).size).toBe(40);

      expect(counted50.seen.length).toBe(counted1.seen.length);
      expect(counted1.seen.length).toBeLessThanOrEqual(2);
    });

    it('gives each job its share, lowest lines first, the rest in the same rotated order, with each line’s endpoint and tenant', async () => {
      const tenant: Tenant = { id: `tenant-${runId()}`, kind: 'key', keyId: 'k1' };
      const a = await create(1, { tenant, endpoint: '/v1/embeddings' });
      const b = await create(10);
      const c = await create(10);
      const fresh = new BatchStore(sql); // its turn starts at the oldest job
      const first = await fresh.claim(`share-${runId()}`, 60_000, 9);
      // A share of 3 each (A has one line), then what is left from B, the next in order with lines.
      expect([linesOf(first, a.id), linesOf(first, b.id), linesOf(first, c.id)]).toEqual([[1], [1, 2, 3, 4, 5], [1, 2, 3]]);
      expect(first.find((x) => x.batch_id === a.id)).toMatchObject({ endpoint: '/v1/embeddings', tenant, custom_id: 'req-1', body: { n: 1 }, attempts: 1 });
      expect(first.find((x) => x.batch_id === b.id)).toMatchObject({ endpoint: '/v1/chat/completions', tenant: ANONYMOUS });
      // The next claim starts one job on (turn 1 of the two still open, B and C: C).
      const second = await fresh.claim(`share-${runId()}`, 60_000, 5);
      expect([linesOf(second, b.id), linesOf(second, c.id)]).toEqual([[6, 7], [4, 5, 6]]);
      // And on again: B first.
      const third = await fresh.claim(`share-${runId()}`, 60_000, 3);
      expect([linesOf(third, b.id), linesOf(third, c.id)]).toEqual([[8, 9], [7]]);
    });

    it('starts a claim one job further on each time: with a limit of 1, each of three jobs in turn', async () => {
      const jobs = [await create(5), await create(5), await create(5)];
      const fresh = new BatchStore(sql);
      const order: string[] = [];
      for (let i = 0; i < 6; i++) order.push(...(await fresh.claim(`turn-${runId()}`, 60_000, 1)).map((x) => x.batch_id));
      expect(order).toEqual([...jobs, ...jobs].map((j) => j.id));
    });

    it('with more jobs than the limit, takes the lowest open line of each of `limit` jobs from the turn’s job on', async () => {
      const jobs = await createMany(12, 5);
      const ids = jobs.map((j) => j.id);
      const fresh = new BatchStore(sql);
      const got: [number, number][][] = [];
      for (let i = 0; i < 3; i++) got.push((await fresh.claim(`many-${runId()}`, 60_000, 4)).map((x): [number, number] => [ids.indexOf(x.batch_id), x.line]).sort((x, y) => x[0] - y[0]));
      expect(got).toEqual([
        [[0, 1], [1, 1], [2, 1], [3, 1]],
        [[1, 2], [2, 2], [3, 2], [4, 1]],
        [[2, 3], [3, 3], [4, 2], [5, 1]],
      ]);
    });

    it('reclaims an ended lease only while the line has runs left; never a line under a live lease, of a job past its window or not running', async () => {
      const d = await create(4);
      const expired = await create(2);
      const cancelling = await create(2);
      const past = Date.now() - 1_000;
      await sql.query(`UPDATE batch_items SET status = 'running', lease_owner = 'dead', lease_until = $2, attempts = 1 WHERE batch_id = $1 AND line = 1`, [d.id, past]);
      await sql.query(`UPDATE batch_items SET status = 'running', lease_owner = 'dead', lease_until = $2, attempts = 3 WHERE batch_id = $1 AND line = 2`, [d.id, past]);
      await sql.query(`UPDATE batch_items SET status = 'running', lease_owner = 'alive', lease_until = $2, attempts = 1 WHERE batch_id = $1 AND line = 3`, [d.id, Date.now() + 60_000]);
      // Its window over, not yet swept to expiring; and a job being cancelled with lines still queued.
      await sql.query(`UPDATE batch_jobs SET expires_at = $2 WHERE id = $1`, [expired.id, Date.now() / 1000 - 1]);
      await sql.query(`UPDATE batch_jobs SET status = 'cancelling' WHERE id = $1`, [cancelling.id]);
      const owner = `reclaim-${runId()}`;
      const got = await store.claim(owner, 60_000, 10, 3);
      expect(got.map((x) => [x.batch_id, x.line, x.attempts]).sort()).toEqual([[d.id, 1, 2], [d.id, 4, 1]]);
      const rows = await sql.query<{ line: number; lease_owner: string; attempts: number }>(`SELECT line, lease_owner, attempts FROM batch_items WHERE batch_id = $1 ORDER BY line`, [d.id]);
      expect(rows.map((r) => [r.line, r.lease_owner, r.attempts])).toEqual([[1, owner, 2], [2, 'dead', 3], [3, 'alive', 1], [4, owner, 1]]);
      // With a higher maxAttempts, line 2 has a run left.
      expect((await store.claim(owner, 60_000, 10, 4)).map((x) => [x.batch_id, x.line, x.attempts])).toEqual([[d.id, 2, 4]]);
      expect(await store.claim(owner, 60_000, 10, 4)).toEqual([]);
    });

    // Postgres only (not skipped elsewhere, but not there): the embedded PGlite is one connection in
    // one process, so two of its stores never claim at the same moment.
    const concurrently = backend.name === 'Postgres' ? it : () => undefined;
    concurrently('fills a claim past the lines other workers are claiming at that moment', async () => {
      // Another replica's claims in flight: its transaction holds the lowest lines locked.
      const other = await backend.open();
      try {
        const job = await create(400);
        for (const held of [16, 100]) {
          let release: () => void = () => undefined;
          let locked: () => void = () => undefined;
          const holding = new Promise<void>((r) => (locked = r));
          const tx = other.transaction(async (q) => {
            await q(`SELECT line FROM batch_items WHERE batch_id = $1 AND status = 'pending' ORDER BY line LIMIT $2 FOR UPDATE`, [job.id, held]);
            locked();
            await new Promise<void>((r) => (release = r));
          });
          await holding;
          const got = await store.claim(`past-${held}-${runId()}`, 60_000, 8);
          release();
          await tx;
          // Eight lines, none of them held: the first window (16 lines) or the second (64) was all held.
          expect(got).toHaveLength(8);
          const open = await sql.query<{ line: number }>(`SELECT line FROM batch_items WHERE batch_id = $1 AND status = 'pending' ORDER BY line LIMIT $2`, [job.id, held]);
          expect(got.map((c) => c.line).filter((l) => open.some((o) => o.line === l))).toEqual([]);
        }
      } finally {
        await other.close();
      }
    });

    concurrently('never hands one line to two workers claiming at once (two replicas on one Postgres)', async () => {
      // A second replica: its own connection pool on the same schema.
      const other = await backend.open();
      try {
        const jobs = [await create(150), ...(await createMany(20, 8))];
        const total = 150 + 20 * 8;
        // Some lines of a worker that died: their leases over, each with runs left.
        await sql.query(`UPDATE batch_items SET status = 'running', lease_owner = 'dead', lease_until = $2, attempts = 1 WHERE batch_id = $1 AND line <= 20`, [jobs[0]?.id, Date.now() - 1_000]);
        const workers = [new BatchStore(sql), new BatchStore(sql), new BatchStore(other), new BatchStore(other)];
        const claimed: ClaimedItem[] = [];
        for (let round = 0; round < 200 && claimed.length < total; round++) {
          const got = await Promise.all(workers.map((w, i) => w.claim(`w${i}-${runId()}`, 60_000, [7, 13, 10, 16][i] as number)));
          claimed.push(...got.flat());
        }
        const keys = claimed.map((c) => `${c.batch_id}#${c.line}`);
        expect(new Set(keys).size).toBe(keys.length);
        expect(keys.length).toBe(total);
        // Each claim was one attempt, recorded once.
        const rows = await sql.query<{ n: number; attempts: number }>(
          `SELECT count(*)::int AS n, sum(attempts - CASE WHEN batch_id = $2 AND line <= 20 THEN 1 ELSE 0 END)::int AS attempts FROM batch_items WHERE batch_id = ANY($1::text[]) AND status = 'running'`,
          [jobs.map((j) => j.id), jobs[0]?.id],
        );
        expect(rows[0]).toEqual({ n: total, attempts: total });
      } finally {
        await other.close();
      }
    });
  });
}
