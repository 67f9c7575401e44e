// The outbox's stop() promises no new delivery attempt. The loop awaits several queries between its
// checks of `running` (the hourly prune, then deliverDue's give-up query and its claim): a stop that
// lands during any of them must not go on to claim and send. Each case holds one query until stop()
// has been called, so where the stop lands is fixed, not raced. PGlite, no network.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BATCH_JOB_MIGRATIONS } from '../src/batching/jobs/migrations.js';
import { WebhookOutbox } from '../src/batching/jobs/outbox.js';
import { applyMigrations } from '../src/store/migrations.js';
import { openSql, type SqlDatabase } from '../src/store/sql.js';
import { createLogger } from '../src/telemetry/logger.js';
import { recordingNotifier } from './helpers/notifier.js';
import { runId } from './helpers/services.js';
import { pollUntil } from './helpers/wait.js';

const log = createLogger('silent');

/** `sql` with the first query matching `pattern` held until `release()`; `reached` resolves when it is. */
function holdQuery(sql: SqlDatabase, pattern: RegExp): { sql: SqlDatabase; reached: Promise<void>; release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let reach!: () => void;
  const reached = new Promise<void>((r) => (reach = r));
  let held = false;
  const query = async <T,>(text: string, params?: unknown[]): Promise<T[]> => {
    if (!held && pattern.test(text)) {
      held = true;
      reach();
      await gate;
    }
    return sql.query<T>(text, params);
  };
  const wrapped = new Proxy(sql, { get: (target, key, receiver) => (key === 'query' ? query : Reflect.get(target, key, receiver)) });
  return { sql: wrapped, reached, release };
}

describe('WebhookOutbox.stop() during a query of the loop', () => {
  let sql: SqlDatabase;
  beforeAll(async () => {
    sql = await openSql({ pglitePath: 'memory://' });
    await applyMigrations(sql, BATCH_JOB_MIGRATIONS);
  });
  afterAll(async () => {
    await sql?.close();
  });

  /** A due pending event for a URL of its own; returns the URL and the row's id. */
  const dueEvent = async () => {
    const url = `http://127.0.0.1:9/${runId()}`;
    const id = `msg_${runId()}`;
    const now = Date.now();
    await sql.query(`INSERT INTO batch_webhook_outbox (id, url, batch_id, type, body, next_attempt_at, created_at) VALUES ($1, $2, 'b', 'batch.completed', '{}', $3, $4)`, [id, url, now, now / 1000]);
    return { url, id };
  };
  const row = async (id: string) => (await sql.query<{ status: string; attempts: number; lease_owner: string | null }>(`SELECT status, attempts, lease_owner FROM batch_webhook_outbox WHERE id = $1`, [id]))[0];

  const cases = [
    { during: 'the prune', pattern: /^DELETE FROM batch_webhook_outbox/ },
    { during: "deliverDue's give-up query", pattern: /SET status = 'failed'/ },
    { during: 'the claim', pattern: /SET lease_owner = \$1, next_attempt_at = \$2, attempts = attempts \+ 1/ },
  ];
  for (const { during, pattern } of cases) {
    it(`sends nothing when the stop lands during ${during}, and leaves the event due for the next process`, async () => {
      const { url, id } = await dueEvent();
      const notifier = recordingNotifier(url);
      const held = holdQuery(sql, pattern);
      const box = new WebhookOutbox(held.sql, notifier, { log, owner: 'stopping', idleMs: 60_000 });
      box.start();
      await held.reached;
      const stopped = box.stop();
      held.release();
      await stopped;
      expect(notifier.sent).toEqual([]);
      expect(await row(id)).toEqual({ status: 'pending', attempts: 0, lease_owner: null });
    });
  }

  it('delivers a due event when no stop intervenes (the harness itself holds nothing back)', async () => {
    const { url, id } = await dueEvent();
    const notifier = recordingNotifier(url);
    const held = holdQuery(sql, /SET lease_owner = \$1, next_attempt_at = \$2, attempts = attempts \+ 1/);
    const box = new WebhookOutbox(held.sql, notifier, { log, owner: 'running', idleMs: 60_000 });
    box.start();
    await held.reached;
    held.release();
    await pollUntil(async () => (await row(id))?.status === 'delivered', 'the event to be delivered');
    await box.stop();
    expect(notifier.sent.map((a) => a.id)).toEqual([id]);
    expect(await row(id)).toMatchObject({ status: 'delivered', attempts: 1, lease_owner: null });
  });
});
