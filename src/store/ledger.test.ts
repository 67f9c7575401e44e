import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { dropSchema, POSTGRES_URL, postgresAvailable, runId } from '../../test/helpers/services.js';
import { createLogger } from '../telemetry/logger.js';
import { LedgerWriter, type LedgerEntry } from './ledger.js';
import { openSql, type SqlDatabase } from './sql.js';

const log = createLogger('silent');
const dir = await mkdtemp(join(tmpdir(), 'ledger-spool-'));
const db = await openSql({ pglitePath: 'memory://' });
// The real Postgres too (a schema of its own, dropped afterwards): it must be there under CI=true.
const pgSchema = `ledger_${runId()}`;
const pgDb = (await postgresAvailable()) ? await openSql({ url: POSTGRES_URL, pglitePath: '', schema: pgSchema }) : undefined;
afterAll(async () => {
  await db.close();
  if (pgDb) {
    await pgDb.close();
    await dropSchema(pgSchema);
  }
  await rm(dir, { recursive: true, force: true });
});

/** A database that is down: every write fails. */
const down = { kind: 'postgres', query: async () => Promise.reject(new Error('connection refused')) } as unknown as SqlDatabase;

function entry(requestId: string): LedgerEntry {
  return { requestId, ts: new Date(), tenantId: 't', tenantKind: 'token', endpoint: 'chat', status: 200, costUsd: 0.001, promptTokens: 3, completionTokens: 4 };
}

describe('ledger spool', () => {
  it('workers sharing a spool path each write their own file at shutdown, and the next start replays them all', async () => {
    const spoolPath = join(dir, 'shared', 'spool.jsonl');
    const workers = [1, 2, 3].map(() => new LedgerWriter(down, log, { flushIntervalMs: 600_000, batchSize: 100, spoolPath }));
    workers.forEach((w, i) => {
      for (let n = 0; n < 200; n++) w.record(entry(`w${i}-${n}`));
    });
    await Promise.all(workers.map((w) => w.close()));
    const files = await readdir(join(dir, 'shared'));
    expect(files.filter((f) => f.startsWith('spool.jsonl.'))).toHaveLength(3);

    const next = new LedgerWriter(db, log, { flushIntervalMs: 600_000, batchSize: 100, spoolPath });
    expect(await next.replaySpool()).toBe(600);
    await next.close();
    const rows = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ledger WHERE request_id LIKE 'w%'`);
    expect(Number(rows[0]?.n)).toBe(600);
    expect(await readdir(join(dir, 'shared'))).toEqual([]);
  }, 30_000);

  it('a line that does not parse costs that line only; the older single spool file is replayed too', async () => {
    const spoolPath = join(dir, 'old', 'spool.jsonl');
    const w = new LedgerWriter(down, log, { flushIntervalMs: 600_000, batchSize: 100, spoolPath });
    w.record(entry('legacy-1'));
    w.record(entry('legacy-2'));
    await w.close();
    const [written] = await readdir(join(dir, 'old'));
    // An older version's file at spool_path itself, with a torn line in the middle.
    const good = JSON.stringify({ ...entry('legacy-3'), id: randomUUID() });
    await writeFile(spoolPath, `${good}\n{"requestId":"torn",\n${JSON.stringify({ ...entry('legacy-4'), id: randomUUID() })}\n`);
    expect(written?.startsWith('spool.jsonl.')).toBe(true);
    const next = new LedgerWriter(db, log, { flushIntervalMs: 600_000, batchSize: 100, spoolPath });
    expect(await next.replaySpool()).toBe(4);
    await next.close();
    const rows = await db.query<{ request_id: string }>(`SELECT request_id FROM ledger WHERE request_id LIKE 'legacy-%' ORDER BY request_id`);
    expect(rows.map((r) => r.request_id)).toEqual(['legacy-1', 'legacy-2', 'legacy-3', 'legacy-4']);
  });
});

describe('ledger rows the database would refuse', () => {
  it('a NUL character or an unpaired surrogate in a client-sent model name, or a fractional token count, does not block the rows queued after it', async () => {
    const w = new LedgerWriter(db, log, { flushIntervalMs: 600_000, batchSize: 100 });
    // A client can send any JSON string as `model` (a passthrough name is recorded as sent), and an
    // OpenAI-compatible upstream can report usage that is not a whole number.
    w.record({ ...entry('poison-nul'), model: 'gpt\u0000x', userId: 'u\u0000' });
    w.record({ ...entry('poison-surrogate'), model: 'gpt\ud800x' });
    w.record({ ...entry('poison-fraction'), promptTokens: 1.5, completionTokens: 2.25 });
    w.record({ ...entry('poison-nonfinite'), costUsd: Number.NaN, latencyMs: Number.POSITIVE_INFINITY });
    w.record(entry('poison-after'));
    await w.flush();
    expect(w.pending).toBe(0);
    await w.close();
    const rows = await db.query<{ request_id: string; model: string | null; user_id: string | null; prompt_tokens: number; completion_tokens: number; cost_usd: number; latency_ms: number }>(
      `SELECT request_id, model, user_id, prompt_tokens, completion_tokens, cost_usd, latency_ms FROM ledger WHERE request_id LIKE 'poison-%' ORDER BY request_id`,
    );
    expect(rows.map((r) => r.request_id)).toEqual(['poison-after', 'poison-fraction', 'poison-nonfinite', 'poison-nul', 'poison-surrogate']);
    const byId = Object.fromEntries(rows.map((r) => [r.request_id, r]));
    expect(byId['poison-nul']).toMatchObject({ model: 'gpt\uFFFDx', user_id: 'u\uFFFD' });
    expect(byId['poison-surrogate']).toMatchObject({ model: 'gpt\uFFFDx' });
    expect(byId['poison-fraction']).toMatchObject({ prompt_tokens: 2, completion_tokens: 2 });
    expect(byId['poison-nonfinite']).toMatchObject({ cost_usd: 0, latency_ms: 0 });
  });
});

/** The lines of a dead-letter file, parsed. */
async function deadLetters(path: string): Promise<Array<LedgerEntry & { refused: { code?: string; reason: string } }>> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LedgerEntry & { refused: { code?: string; reason: string } });
}

const backends = [
  { name: 'PGlite', db: (): SqlDatabase | undefined => db },
  { name: 'Postgres', db: (): SqlDatabase | undefined => pgDb },
];

for (const backend of backends) {
  describe.skipIf(!backend.db())(`ledger rows ${backend.name} refuses for reasons the sanitiser does not know`, () => {
    it('are set aside (dead-letter file, counted); every other row of their batch and every row after it is written', async () => {
      const sql = backend.db()!;
      const tag = `dl-${runId()}`;
      const spoolPath = join(dir, `dl-${backend.name}`, 'spool.jsonl');
      const w = new LedgerWriter(sql, log, { flushIntervalMs: 600_000, batchSize: 8, spoolPath });
      for (let n = 0; n < 5; n++) w.record(entry(`${tag}-good-${n}`));
      // A status beyond Postgres's integer (the gateway's own value, not clamped: a bug): SQLSTATE 22003.
      w.record({ ...entry(`${tag}-bad-range`), status: 3_000_000_000 });
      for (let n = 5; n < 10; n++) w.record(entry(`${tag}-good-${n}`));
      // A row without a tenant, which the NOT NULL column refuses (23502).
      w.record({ ...entry(`${tag}-bad-null`), tenantId: null as unknown as string });
      for (let n = 10; n < 20; n++) w.record(entry(`${tag}-good-${n}`));
      await w.flush();
      expect(w.pending).toBe(0);
      expect(w.rejected).toBe(2);
      expect(w.written).toBe(20);
      await w.close();
      const rows = await sql.query<{ request_id: string }>(`SELECT request_id FROM ledger WHERE request_id LIKE $1 ORDER BY request_id`, [`${tag}-%`]);
      expect(rows.map((r) => r.request_id).sort()).toEqual(Array.from({ length: 20 }, (_, n) => `${tag}-good-${n}`).sort());

      const refused = await deadLetters(`${spoolPath}-rejected.jsonl`);
      expect(refused.map((r) => r.requestId).sort()).toEqual([`${tag}-bad-null`, `${tag}-bad-range`]);
      const range = refused.find((r) => r.requestId === `${tag}-bad-range`)!;
      expect(range).toMatchObject({ status: 3_000_000_000, refused: { code: '22003' } });
      expect(range.refused.reason).toMatch(/out of range/);
      expect(refused.find((r) => r.requestId === `${tag}-bad-null`)).toMatchObject({ refused: { code: '23502' } });
      // Nothing was left to spool: the refused rows do not come back at the next start.
      expect((await readdir(join(dir, `dl-${backend.name}`))).sort()).toEqual(['spool.jsonl-rejected.jsonl']);
    });

    it('a spool file holding a refused row is replayed whole but that row; the dead-letter file is never replayed', async () => {
      const sql = backend.db()!;
      const tag = `dls-${runId()}`;
      const spoolPath = join(dir, `dls-${backend.name}`, 'spool.jsonl');
      const down1 = new LedgerWriter(down, log, { flushIntervalMs: 600_000, batchSize: 100, spoolPath });
      down1.record(entry(`${tag}-a`));
      down1.record({ ...entry(`${tag}-bad`), status: -3_000_000_000 });
      down1.record(entry(`${tag}-b`));
      await down1.close();

      const next = new LedgerWriter(sql, log, { flushIntervalMs: 600_000, batchSize: 100, spoolPath });
      expect(await next.replaySpool()).toBe(3);
      await next.close();
      expect(next.rejected).toBe(1);
      const rows = await sql.query<{ request_id: string }>(`SELECT request_id FROM ledger WHERE request_id LIKE $1 ORDER BY request_id`, [`${tag}-%`]);
      expect(rows.map((r) => r.request_id)).toEqual([`${tag}-a`, `${tag}-b`]);
      expect(await readdir(join(dir, `dls-${backend.name}`))).toEqual(['spool.jsonl-rejected.jsonl']);

      const again = new LedgerWriter(sql, log, { flushIntervalMs: 600_000, batchSize: 100, spoolPath });
      expect(await again.replaySpool()).toBe(0);
      await again.close();
      expect((await deadLetters(`${spoolPath}-rejected.jsonl`)).map((r) => r.requestId)).toEqual([`${tag}-bad`]);
    });
  });
}

/** `sql` whose next statement runs but whose answer is lost: the commit lands, the caller sees a dropped connection. */
function answerLostOnce(sql: SqlDatabase): SqlDatabase {
  let lose = true;
  return {
    kind: sql.kind,
    query: async (text: string, params?: unknown[]) => {
      const rows = await sql.query(text, params);
      if (lose) {
        lose = false;
        throw Object.assign(new Error('Connection terminated unexpectedly'), { code: '08006' });
      }
      return rows;
    },
  } as unknown as SqlDatabase;
}

for (const backend of backends) {
  describe.skipIf(!backend.db())(`ledger row counts on ${backend.name}`, () => {
    it('a batch retried after a write that landed but whose answer was lost counts its rows as duplicate, not written', async () => {
      const sql = backend.db()!;
      const tag = `lost-${runId()}`;
      const w = new LedgerWriter(answerLostOnce(sql), log, { flushIntervalMs: 600_000, batchSize: 100 });
      for (let n = 0; n < 5; n++) w.record(entry(`${tag}-${n}`));
      await expect(w.flush()).rejects.toThrow('Connection terminated');
      expect(w.pending).toBe(5); // no answer: kept for the retry
      await w.flush();
      expect(w.pending).toBe(0);
      const [row] = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM ledger WHERE request_id LIKE $1`, [`${tag}-%`]);
      expect(row?.n).toBe(5);
      // The retry inserted nothing: the rows were there already. `written` counts what a statement
      // was confirmed to insert; every row is counted once, as one or the other.
      expect([w.written, w.duplicate]).toEqual([0, 5]);
      await w.close();
    });

    it('a spool file replayed again (a replay cut short after some of its rows went in) counts only its new rows as written', async () => {
      const sql = backend.db()!;
      const tag = `again-${runId()}`;
      const spoolPath = join(dir, `again-${backend.name}`, 'spool.jsonl');
      const rows = Array.from({ length: 5 }, (_, n) => ({ ...entry(`${tag}-${n}`), id: randomUUID() }));
      // A process replaying this file wrote its first three rows, then died before deleting it.
      const first = new LedgerWriter(sql, log, { flushIntervalMs: 600_000, batchSize: 100 });
      for (const r of rows.slice(0, 3)) first.record(r);
      await first.close();
      expect(first.written).toBe(3);
      await mkdir(join(dir, `again-${backend.name}`), { recursive: true });
      await writeFile(`${spoolPath}.replaying-999999-deadbeef`, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');

      const next = new LedgerWriter(sql, log, { flushIntervalMs: 600_000, batchSize: 100, spoolPath });
      expect(await next.replaySpool()).toBe(5);
      await next.close();
      expect([next.written, next.duplicate]).toEqual([2, 3]);
      // Over both processes, `written` is the rows the table holds: none counted twice.
      const [row] = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM ledger WHERE request_id LIKE $1`, [`${tag}-%`]);
      expect(first.written + next.written).toBe(row?.n);
    });

    it('a token count beyond the integer column is clamped into it: the row and its cost are written, not set aside', async () => {
      const sql = backend.db()!;
      const tag = `clamp-${runId()}`;
      const spoolPath = join(dir, `clamp-${backend.name}`, 'spool.jsonl');
      const w = new LedgerWriter(sql, log, { flushIntervalMs: 600_000, batchSize: 100, spoolPath });
      // An upstream's usage is not checked: a count past Postgres's integer, or below zero.
      w.record({ ...entry(`${tag}-huge`), promptTokens: 3_000_000_000, completionTokens: 1e300, costUsd: 0.25 });
      w.record({ ...entry(`${tag}-negative`), promptTokens: -3_000_000_000, completionTokens: -7, costUsd: 0.5 });
      w.record(entry(`${tag}-after`));
      await w.flush();
      expect([w.pending, w.written, w.rejected]).toEqual([0, 3, 0]);
      await w.close();
      const stored = await sql.query<{ request_id: string; prompt_tokens: number; completion_tokens: number; cost_usd: number }>(
        `SELECT request_id, prompt_tokens, completion_tokens, cost_usd FROM ledger WHERE request_id LIKE $1 ORDER BY request_id`,
        [`${tag}-%`],
      );
      expect(stored).toEqual([
        { request_id: `${tag}-after`, prompt_tokens: 3, completion_tokens: 4, cost_usd: 0.001 },
        { request_id: `${tag}-huge`, prompt_tokens: 2_147_483_647, completion_tokens: 2_147_483_647, cost_usd: 0.25 },
        { request_id: `${tag}-negative`, prompt_tokens: 0, completion_tokens: 0, cost_usd: 0.5 },
      ]);
      // Nothing was set aside: no dead-letter file.
      expect(await readdir(join(dir, `clamp-${backend.name}`)).catch(() => [])).toEqual([]);
    });
  });
}

describe('ledger write failures that are not the rows\' fault', () => {
  it('a connection error (no data-error SQLSTATE) keeps every row queued and sets none aside', async () => {
    const spoolPath = join(dir, 'conn', 'spool.jsonl');
    for (const code of ['08006', '57P01', '53300', 'ECONNREFUSED', undefined]) {
      const failing = { kind: 'postgres', query: async () => Promise.reject(Object.assign(new Error('terminating connection'), { code })) } as unknown as SqlDatabase;
      const w = new LedgerWriter(failing, log, { flushIntervalMs: 600_000, batchSize: 2, spoolPath });
      for (let n = 0; n < 5; n++) w.record(entry(`conn-${n}`));
      await expect(w.flush()).rejects.toThrow('terminating connection');
      expect(w.pending).toBe(5);
      expect(w.rejected).toBe(0);
    }
    expect(await readdir(join(dir, 'conn')).catch(() => [])).toEqual([]);
  });

  it('while the database is down, traffic does not start a write per batch of requests: the timer retries', async () => {
    let attempts = 0;
    const failing = { kind: 'postgres', query: async () => (attempts++, Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))) } as unknown as SqlDatabase;
    const w = new LedgerWriter(failing, log, { flushIntervalMs: 600_000, batchSize: 2, spoolPath: join(dir, 'storm', 'spool.jsonl') });
    w.record(entry('storm-0'));
    w.record(entry('storm-1')); // a full batch: the first write, which fails
    await new Promise((r) => setTimeout(r, 20));
    expect(attempts).toBe(1);
    // 500 requests later (250 batches' worth), still the one attempt: the next is the timer's.
    for (let n = 2; n < 502; n++) {
      w.record(entry(`storm-${n}`));
      if (n % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 20));
    expect(attempts).toBe(1);
    expect(w.pending).toBe(502);
    await expect(w.flush()).rejects.toThrow('ECONNREFUSED');
    expect(attempts).toBe(2);
  });

  it('a connection lost while a refused batch is being split keeps the rows not yet written; the retry finishes the job', async () => {
    const tag = `split-${runId()}`;
    const spoolPath = join(dir, 'split', 'spool.jsonl');
    let calls = 0;
    let connected = true;
    // The real database, but the connection drops at the third statement (part-way through the split).
    const flaky = {
      kind: 'pglite',
      query: async (text: string, params?: unknown[]) => {
        if (++calls === 3) connected = false;
        if (!connected) throw Object.assign(new Error('connection lost'), { code: '08006' });
        return db.query(text, params);
      },
    } as unknown as SqlDatabase;
    const w = new LedgerWriter(flaky, log, { flushIntervalMs: 600_000, batchSize: 16, spoolPath });
    for (let n = 0; n < 16; n++) w.record(n === 13 ? { ...entry(`${tag}-bad`), status: 2 ** 40 } : entry(`${tag}-${String(n).padStart(2, '0')}`));
    await expect(w.flush()).rejects.toThrow('connection lost');
    expect(w.pending).toBe(8); // the first half was written before the connection dropped
    expect(w.rejected).toBe(0);
    connected = true;
    await w.flush();
    expect(w.pending).toBe(0);
    expect(w.rejected).toBe(1);
    await w.close();
    const rows = await db.query<{ request_id: string }>(`SELECT request_id FROM ledger WHERE request_id LIKE $1 ORDER BY request_id`, [`${tag}-%`]);
    expect(rows).toHaveLength(15);
    expect(rows.map((r) => r.request_id)).not.toContain(`${tag}-bad`);
    expect((await deadLetters(`${spoolPath}-rejected.jsonl`)).map((r) => r.requestId)).toEqual([`${tag}-bad`]);
  });
});

describe('ledger rows that cannot even be made into a statement', () => {
  it('a row whose time is not a date (a hand-edited spool line) is set aside, not retried forever', async () => {
    const tag = `baddate-${runId()}`;
    const spoolPath = join(dir, 'baddate', 'spool.jsonl');
    const w = new LedgerWriter(db, log, { flushIntervalMs: 600_000, batchSize: 100, spoolPath });
    w.record(entry(`${tag}-a`));
    w.record({ ...entry(`${tag}-bad`), ts: new Date('not a date') });
    w.record(entry(`${tag}-b`));
    await w.flush();
    expect([w.pending, w.rejected, w.written]).toEqual([0, 1, 2]);
    await w.close();
    const [line] = await deadLetters(`${spoolPath}-rejected.jsonl`);
    expect(line).toMatchObject({ requestId: `${tag}-bad`, ts: null });
    expect(line?.refused.reason).toMatch(/Invalid time value/);
  });
});

/** The spool files (not the dead-letter file, not a half-written one) in a directory, by name. */
async function spoolFiles(spoolDir: string): Promise<string[]> {
  return (await readdir(spoolDir).catch(() => [] as string[])).filter((f) => f.startsWith('spool.jsonl.')).sort();
}

/** How many rows the spool files in `spoolDir` hold, and how many distinct ids. */
async function spooledRows(spoolDir: string, files: string[]): Promise<{ rows: number; ids: Set<string> }> {
  const ids = new Set<string>();
  let rows = 0;
  for (const f of files) {
    for (const line of (await readFile(join(spoolDir, f), 'utf8')).split('\n').filter(Boolean)) {
      rows++;
      ids.add((JSON.parse(line) as { id: string }).id);
    }
  }
  return { rows, ids };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `sql` behind a switch: while `state.up` is false every statement fails as an unreachable server does. */
function switchable(sql: SqlDatabase, state: { up: boolean }): SqlDatabase {
  return {
    kind: sql.kind,
    query: async (text: string, params?: unknown[]) => {
      if (!state.up) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
      return sql.query(text, params);
    },
  } as unknown as SqlDatabase;
}

for (const backend of backends) {
  describe.skipIf(!backend.db())(`the ledger's queue during a ${backend.name} outage`, () => {
    it('stays at ledger.max_pending_rows, the oldest rows going to spool files; once the database answers every row reaches it exactly once, without a restart', async () => {
      const sql = backend.db()!;
      const tag = `bound-${runId()}`;
      const spoolDir = join(dir, `bound-${backend.name}`);
      const spoolPath = join(spoolDir, 'spool.jsonl');
      const state = { up: false };
      const w = new LedgerWriter(switchable(sql, state), log, { flushIntervalMs: 10, batchSize: 50, spoolPath, maxPendingRows: 100 });
      // Traffic during the outage: 1000 rows, 100 at a time, the writer's timer running in between.
      for (let n = 0; n < 1000; n++) {
        w.record(entry(`${tag}-${String(n).padStart(4, '0')}`));
        if (n % 100 === 99) await sleep(30);
      }
      await vi.waitFor(() => expect(w.pending).toBeLessThanOrEqual(100), { timeout: 5_000 });
      await vi.waitFor(() => expect(w.spooled + w.pending).toBe(1000), { timeout: 5_000 }); // a spill under way has written its file
      const files = await spoolFiles(spoolDir);
      expect(files.length).toBeGreaterThan(0);
      const spooled = await spooledRows(spoolDir, files);
      expect(spooled.rows + w.pending).toBe(1000);
      expect(spooled.ids.size).toBe(spooled.rows);
      expect(w.spooled).toBe(spooled.rows);
      expect(w.written).toBe(0);

      // Another process's spool file in the same place is not this one's to replay while running.
      const other = 'spool.jsonl.999999-1-abcdef01';
      await writeFile(join(spoolDir, other), `${JSON.stringify({ ...entry(`${tag}-other`), id: randomUUID() })}\n`);

      state.up = true;
      await vi.waitFor(async () => expect(await spoolFiles(spoolDir)).toEqual([other]), { timeout: 10_000 });
      expect(w.pending).toBe(0);
      const [row] = await sql.query<{ n: number; ids: number; requests: number }>(
        `SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids, count(DISTINCT request_id)::int AS requests FROM ledger WHERE request_id LIKE $1 AND request_id <> $2`,
        [`${tag}-%`, `${tag}-other`],
      );
      expect(row).toEqual({ n: 1000, ids: 1000, requests: 1000 });
      expect(w.written).toBe(1000);
      expect([w.rejected, w.dropped]).toEqual([0, 0]);
      await w.close();
      expect(await spoolFiles(spoolDir)).toEqual([other]);
    }, 30_000);
  });
}

describe("the ledger's queue without a spool path", () => {
  it('keeps the newest rows up to the bound and drops the oldest, counted and logged at error level', async () => {
    const tag = `drop-${runId()}`;
    const lines: Array<{ level: string; msg: string; dropped?: number }> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as (typeof lines)[number]);
        done();
      },
    });
    const state = { up: false };
    const w = new LedgerWriter(switchable(db, state), createLogger('error', sink), { flushIntervalMs: 10, batchSize: 50, spoolPath: '', maxPendingRows: 100 });
    for (let n = 0; n < 500; n++) {
      w.record(entry(`${tag}-${String(n).padStart(4, '0')}`));
      if (n % 100 === 99) await sleep(30);
    }
    await vi.waitFor(() => expect(w.pending).toBeLessThanOrEqual(100), { timeout: 5_000 });
    expect(w.dropped).toBe(500 - w.pending);
    state.up = true;
    await vi.waitFor(() => expect(w.pending).toBe(0), { timeout: 5_000 });
    await w.close();
    const rows = await db.query<{ request_id: string }>(`SELECT request_id FROM ledger WHERE request_id LIKE $1 ORDER BY request_id`, [`${tag}-%`]);
    // The newest rows are the ones kept: what was dropped is the oldest.
    expect(rows.map((r) => r.request_id)).toEqual(Array.from({ length: rows.length }, (_, i) => `${tag}-${String(500 - rows.length + i).padStart(4, '0')}`));
    expect(rows.length + w.dropped).toBe(500);
    expect(w.written).toBe(rows.length);
    const dropLog = lines.find((l) => l.level === 'error' && /dropped/.test(l.msg));
    expect(dropLog?.dropped).toBeGreaterThan(0);
  }, 30_000);
});

describe('shutdown while the database does not answer', () => {
  /** A host gone silent: every query hangs (until the pool's query timeout, far beyond the test). */
  const silent = { kind: 'postgres', query: () => new Promise<never>(() => undefined) } as unknown as SqlDatabase;

  it('gives up on it after the close deadline and spools the whole queue, the rows being written included; the next start writes them once', async () => {
    const tag = `silent-${runId()}`;
    const spoolDir = join(dir, 'silent');
    const spoolPath = join(spoolDir, 'spool.jsonl');
    const w = new LedgerWriter(silent, log, { flushIntervalMs: 600_000, batchSize: 10, spoolPath });
    for (let n = 0; n < 25; n++) w.record(entry(`${tag}-${n}`)); // the first batch's write starts, and hangs
    await w.close(200);
    expect(w.pending).toBe(0);
    expect(w.spooled).toBe(25);
    const next = new LedgerWriter(db, log, { flushIntervalMs: 600_000, batchSize: 100, spoolPath });
    expect(await next.replaySpool()).toBe(25);
    await next.close();
    const rows = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ledger WHERE request_id LIKE $1`, [`${tag}-%`]);
    expect(Number(rows[0]?.n)).toBe(25);
  }, 30_000);

  it('without a spool path, the rows left are counted as dropped and logged whole at error level', async () => {
    const tag = `silent-nospool-${runId()}`;
    const lines: Array<{ level: number | string; msg: string; dropped?: number; rows?: Array<{ requestId: string }> }> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as (typeof lines)[number]);
        done();
      },
    });
    const w = new LedgerWriter(down, createLogger('error', sink), { flushIntervalMs: 600_000, batchSize: 100, spoolPath: '' });
    for (let n = 0; n < 10; n++) w.record(entry(`${tag}-${n}`));
    await w.close(5_000);
    expect(w.dropped).toBe(10);
    expect(w.pending).toBe(0);
    const lost = lines.find((l) => /at shutdown/.test(l.msg) && l.dropped === 10);
    expect(lost?.rows?.map((r) => r.requestId)).toEqual(Array.from({ length: 10 }, (_, n) => `${tag}-${n}`));
  }, 30_000);
});

describe('a start while the database is down', () => {
  it('keeps the spool files it claimed as its own and replays them once the database answers, without loading them into the queue', async () => {
    const tag = `startdown-${runId()}`;
    const spoolDir = join(dir, 'startdown');
    const spoolPath = join(spoolDir, 'spool.jsonl');
    const before = new LedgerWriter(down, log, { flushIntervalMs: 600_000, batchSize: 100, spoolPath });
    for (let n = 0; n < 300; n++) before.record(entry(`${tag}-${n}`));
    await before.close();
    expect(await spoolFiles(spoolDir)).toHaveLength(1);

    const state = { up: false };
    const w = new LedgerWriter(switchable(db, state), log, { flushIntervalMs: 10, batchSize: 100, spoolPath, maxPendingRows: 100 });
    await expect(w.replaySpool()).rejects.toThrow('ECONNREFUSED');
    expect(w.pending).toBe(0);
    const kept = await spoolFiles(spoolDir);
    expect((await spooledRows(spoolDir, kept)).rows).toBe(300);
    state.up = true;
    await vi.waitFor(async () => expect(await spoolFiles(spoolDir)).toEqual([]), { timeout: 10_000 });
    await w.close();
    const [row] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ledger WHERE request_id LIKE $1`, [`${tag}-%`]);
    expect(row?.n).toBe(300);
  }, 30_000);
});

describe('rows recorded after their settlement', () => {
  it('records the row when the settlement fails, and a row that cannot be made is logged and counted, not left as a rejection', async () => {
    const tag = `after-${runId()}`;
    const lines: Array<{ level: string; msg: string }> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as (typeof lines)[number]);
        done();
      },
    });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const w = new LedgerWriter(db, createLogger('warn', sink), { flushIntervalMs: 600_000, batchSize: 100, spoolPath: '' });
      w.recordAfter(Promise.resolve(), () => entry(`${tag}-settled`));
      w.recordAfter(Promise.reject(new Error('settlement failed')), () => entry(`${tag}-failed-settlement`));
      w.recordAfter(Promise.resolve(), () => {
        throw new Error('no row');
      });
      await w.recorded();
      await w.close();
      // A turn for an unhandled rejection to be reported, had there been one.
      await sleep(20);
      const rows = await db.query<{ request_id: string }>(`SELECT request_id FROM ledger WHERE request_id LIKE $1 ORDER BY request_id`, [`${tag}-%`]);
      expect(rows.map((r) => r.request_id)).toEqual([`${tag}-failed-settlement`, `${tag}-settled`]);
      expect(w.dropped).toBe(1);
      expect(unhandled).toEqual([]);
      expect(lines.some((l) => l.level === 'warn' && /settlement failed/.test(l.msg))).toBe(true);
      expect(lines.some((l) => l.level === 'error' && /could not be made/.test(l.msg))).toBe(true);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('the ledger indexes', () => {
  it('has one for each budget scope’s spend this period (key, user and team, by time): seeding a counter reads no other rows', async () => {
    await db.query(`SET enable_seqscan = off`);
    try {
      for (const [column, index] of [['key_id', 'ledger_key_ts'], ['user_id', 'ledger_user_ts'], ['team_id', 'ledger_team_ts']] as const) {
        const plan = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN SELECT sum(cost_usd) FROM ledger WHERE ${column} = 'x' AND ts >= now() - interval '30 days'`);
        expect(plan.map((r) => r['QUERY PLAN']).join('\n')).toContain(index);
      }
    } finally {
      await db.query(`SET enable_seqscan = on`);
    }
  });
});
