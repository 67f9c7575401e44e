// Wires the Batch API for assemble.ts: the SQL store (shared when given, else opened here: Postgres
// at DATABASE_URL or the embedded PGlite file), its migration, the runner that resumes unfinished
// jobs at start-up, the signed completion webhook (stored in an outbox, delivered by the runner) and the routes.
import type { FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { LedgerWriter } from '../../store/ledger.js';
import type { Config } from '../../config/schema.js';
import type { Tenant } from '../../gateway/context.js';
import type { Gateway, ManagedResource } from '../../gateway/gateway.js';
import type { ApiKeyStore } from '../../limits/keys.js';
import { WebhookSender } from '../../server/webhooks/sender.js';
import { applyMigrations } from '../../store/migrations.js';
import { openSql, type SqlDatabase } from '../../store/sql.js';
import { gatewayItemExecutor } from './execute-item.js';
import { BATCH_JOB_MIGRATIONS } from './migrations.js';
import { batchRoutes, renderBatch } from './routes.js';
import { BatchRunner, type CompletionNotifier } from './runner.js';
import { BatchStore } from './store.js';

export interface BatchJobs {
  store: BatchStore;
  runner: BatchRunner;
  plugin: { plugin: FastifyPluginAsync<Record<string, unknown>>; options: Record<string, unknown> };
  resource: ManagedResource;
}

export interface BatchJobsDeps {
  config: Config;
  log: Logger;
  gateway: Gateway;
  /** An already open database to share (the tenancy store); otherwise one is opened here. */
  sql?: SqlDatabase;
  /** A sender to share; otherwise one is made from `batch_jobs.webhook`. */
  notifier?: CompletionNotifier;
  /** The spend ledger: every line that runs is recorded, as every HTTP request is. */
  ledger?: LedgerWriter;
  /** API keys: a line whose batch was created with a key revoked or expired since fails instead of running. */
  keys?: Pick<ApiKeyStore, 'ensureActive'>;
}

/** The check each batch line passes before it runs: a batch created with an API key stops spending once the key is revoked or expires. */
export function keyStillValid(keys: Pick<ApiKeyStore, 'ensureActive'>): (tenant: Tenant) => Promise<void> {
  return async (tenant) => {
    if (tenant.kind === 'key' && tenant.keyId) await keys.ensureActive(tenant.keyId);
  };
}

export async function assembleBatchJobs({ config, log, gateway, sql, notifier, ledger, keys }: BatchJobsDeps): Promise<BatchJobs | undefined> {
  const cfg = config.batch_jobs;
  if (!cfg.enabled) return undefined;
  const db = sql ?? (await openSql({ url: config.database.url, pglitePath: config.database.pglite_path, schema: config.database.schema }));
  await applyMigrations(db, BATCH_JOB_MIGRATIONS);

  let sender: WebhookSender | undefined;
  if (!notifier && cfg.webhook) {
    const secret = cfg.webhook.secret ?? (cfg.webhook.secret_env ? process.env[cfg.webhook.secret_env] : undefined);
    if (!secret) throw new Error('batch_jobs.webhook: set `secret` or `secret_env` (the Standard Webhooks signing secret)');
    sender = new WebhookSender({ endpoints: [{ url: cfg.webhook.url, secret, events: [] }], log, maxAttempts: cfg.webhook.max_attempts, initialBackoffMs: 500, timeoutMs: 10_000 });
  }
  const store = new BatchStore(db);
  const runner = new BatchRunner(store, gatewayItemExecutor(gateway, log, ledger ? (entry) => ledger.record(entry) : undefined, keys ? keyStillValid(keys) : undefined), {
    concurrency: cfg.concurrency,
    leaseMs: cfg.lease_ms,
    pollMs: cfg.poll_ms,
    filePartBytes: cfg.file_part_bytes,
    maxAttempts: cfg.max_attempts,
    log,
    notifier: notifier ?? sender,
    describe: renderBatch,
  });
  runner.start();
  return {
    store,
    runner,
    plugin: { plugin: batchRoutes as unknown as FastifyPluginAsync<Record<string, unknown>>, options: { store, runner, config: cfg } },
    resource: {
      name: 'batch-jobs',
      check: async () => (await db.query('SELECT 1')).length === 1,
      // At the start of a shutdown: stop claiming lines, abort the running ones and hand them back
      // (another replica, or this one restarted, runs them) while the database is still open.
      stop: () => runner.stop(),
      close: async () => {
        await runner.stop();
        await sender?.close();
        if (!sql) await db.close();
      },
    },
  };
}
