import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../telemetry/logger.js';
import { LedgerWriter, type LedgerEntry } from './ledger.js';
import { openSql, type SqlDatabase } from './sql.js';

const log = createLogger('silent');
const dir = await mkdtemp(join(tmpdir(), 'ledger-spool-'));
const db = await openSql({ pglitePath: 'memory://' });
afterAll(async () => {
  await db.close();
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
  it('a NUL character in a client-sent model name or a fractional token count does not block the rows queued after it', async () => {
    const w = new LedgerWriter(db, log, { flushIntervalMs: 600_000, batchSize: 100 });
    // A client can send any JSON string as `model` (a passthrough name is recorded as sent), and an
    // OpenAI-compatible upstream can report usage that is not a whole number.
    w.record({ ...entry('poison-nul'), model: 'gpt\u0000x', userId: 'u\u0000' });
    w.record({ ...entry('poison-fraction'), promptTokens: 1.5, completionTokens: 2.25 });
    w.record({ ...entry('poison-nonfinite'), costUsd: Number.NaN, latencyMs: Number.POSITIVE_INFINITY });
    w.record(entry('poison-after'));
    await w.flush();
    expect(w.pending).toBe(0);
    await w.close();
    const rows = await db.query<{ request_id: string; model: string | null; user_id: string | null; prompt_tokens: number; completion_tokens: number; cost_usd: number; latency_ms: number }>(
      `SELECT request_id, model, user_id, prompt_tokens, completion_tokens, cost_usd, latency_ms FROM ledger WHERE request_id LIKE 'poison-%' ORDER BY request_id`,
    );
    expect(rows.map((r) => r.request_id)).toEqual(['poison-after', 'poison-fraction', 'poison-nonfinite', 'poison-nul']);
    const byId = Object.fromEntries(rows.map((r) => [r.request_id, r]));
    expect(byId['poison-nul']).toMatchObject({ model: 'gpt\uFFFDx', user_id: 'u\uFFFD' });
    expect(byId['poison-fraction']).toMatchObject({ prompt_tokens: 2, completion_tokens: 2 });
    expect(byId['poison-nonfinite']).toMatchObject({ cost_usd: 0, latency_ms: 0 });
  });
});
