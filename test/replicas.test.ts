// Separate gateway processes, as replicas run: two of them sharing Redis enforce ONE limit of 100
// requests per minute over 300 requests spread across both; and a gateway killed with SIGTERM under
// load has a ledger record for every request it answered.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSql } from '../src/store/sql.js';
import { startChildGateway, type ChildGateway } from './helpers/child-gateway.js';
import { REDIS_URL, dropRedisPrefix, redisAvailable, runId } from './helpers/services.js';

const TOKEN = 'replica-test-token-0123456789';
const hasRedis = await redisAvailable();

async function chat(url: string, requestId?: string): Promise<{ status: number; id?: string }> {
  try {
    const res = await request(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...(requestId ? { 'x-request-id': requestId } : {}) },
      body: JSON.stringify({ model: 'sim-model', messages: [{ role: 'user', content: 'hello' }] }),
    });
    await res.body.dump();
    return { status: res.statusCode, id: res.headers['x-request-id'] as string | undefined };
  } catch {
    return { status: 0 }; // connection refused or reset while shutting down
  }
}

/** Runs `tasks` with at most `width` in flight. */
async function pool<T>(tasks: (() => Promise<T>)[], width: number): Promise<T[]> {
  const out: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < tasks.length) {
        const i = next++;
        out[i] = await (tasks[i] as () => Promise<T>)();
      }
    }),
  );
  return out;
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'if-replicas-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!hasRedis)('two gateway processes sharing Redis', () => {
  const prefix = `test:${runId()}:`;
  let a: ChildGateway;
  let b: ChildGateway;
  beforeAll(async () => {
    const config = {
      auth: { tokens: [TOKEN] },
      redis: { url: REDIS_URL, key_prefix: prefix },
      rate_limiting: { requests: 100, window_s: 60 },
      ledger: { enabled: false },
    };
    [a, b] = await Promise.all([startChildGateway(dir, 'a', config), startChildGateway(dir, 'b', config)]);
  }, 120_000);
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await dropRedisPrefix(prefix);
  });

  it('admit exactly 100 of 300 requests spread over both', async () => {
    const results = await pool(
      Array.from({ length: 300 }, (_, i) => () => chat(i % 2 === 0 ? a.url : b.url)),
      20,
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(100);
    expect(results.filter((r) => r.status === 429)).toHaveLength(200);
  }, 60_000);
});

describe('SIGTERM under load', () => {
  it('leaves a ledger record for every request the gateway answered', async () => {
    const pglitePath = join(dir, 'ledger-db');
    const gw = await startChildGateway(dir, 'ledger', {
      auth: { tokens: [TOKEN] },
      database: { pglite_path: pglitePath },
      // A long interval: the records are still in memory when SIGTERM arrives.
      ledger: { enabled: true, flush_interval_ms: 600_000, batch_size: 1000, spool_path: join(dir, 'spool.jsonl') },
      providers: { sim: { type: 'simulator', options: { latency_ms: 300 } } },
      models: [{ name: 'sim-model', deployments: [{ provider: 'sim', model: 'sim-model' }] }],
    });
    const run = runId();
    const inFlight = Array.from({ length: 40 }, (_, i) => chat(gw.url, `${run}-${i}`));
    // Once the first answers are out, more are in flight: stop the gateway while more keep coming.
    const first = await Promise.race(inFlight);
    expect(first.status).toBe(200);
    const late = Array.from({ length: 20 }, (_, i) => chat(gw.url, `${run}-late-${i}`));
    gw.process.kill('SIGTERM');
    const results = [...(await Promise.all(inFlight)), ...(await Promise.all(late))];
    expect(await gw.exited).toBe(0);

    const answered = results.filter((r) => r.status === 200).map((r) => r.id as string);
    expect(answered.length).toBeGreaterThanOrEqual(40);
    const sql = await openSql({ pglitePath });
    try {
      const rows = await sql.query<{ request_id: string; status: number }>(`SELECT request_id, status FROM ledger WHERE request_id LIKE $1`, [`${run}-%`]);
      const recorded = new Set(rows.filter((r) => r.status === 200).map((r) => r.request_id));
      expect(answered.filter((id) => !recorded.has(id))).toEqual([]);
    } finally {
      await sql.close();
    }
  }, 180_000);
});
