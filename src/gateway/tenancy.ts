// Wires the tenancy capability for assemble.ts: the SQL store and ledger, API keys, JWT, the
// composite authenticator, the shared or local limiter, budgets, outgoing webhooks, the admission
// stage and the admin, spend and webhook-ingest routes. Kept here so assemble.ts stays a list.
import type { FastifyPluginAsync, FastifyPluginOptions } from 'fastify';
import type { RedisClient } from '../store/redis.js';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { createAdmissionStage, type AdmissionOptions } from '../limits/admission.js';
import { BudgetManager, FailoverBudgetStore, MemoryBudgetStore, RedisBudgetStore, type BudgetStore } from '../limits/budgets.js';
import { ApiKeyStore } from '../limits/keys.js';
import { FailoverLimiterStore, MemoryLimiterStore, RedisLimiterStore, type LimiterStore } from '../limits/sliding-window.js';
import type { Price } from '../providers/pricing.js';
import { createCompositeAuthenticator, type Authenticator } from '../server/auth.js';
import { createJwtVerifier } from '../server/jwt-auth.js';
import { ledgerHook } from '../server/ledger-hook.js';
import { adminKeyRoutes } from '../server/routes/admin-keys.js';
import { spendRoutes } from '../server/routes/spend.js';
import { memoryReplayGuard, redisReplayGuard, webhookIngestRoutes } from '../server/webhooks/ingest.js';
import { WebhookSender } from '../server/webhooks/sender.js';
import { LedgerWriter, spentSince } from '../store/ledger.js';
import { openSql, type SqlDatabase } from '../store/sql.js';
import type { ManagedResource } from './gateway.js';
import type { ChatStage } from './pipeline.js';

type Plugin = { plugin: FastifyPluginAsync<Record<string, unknown>>; options?: Record<string, unknown> };

export interface Tenancy {
  authenticator: Authenticator;
  /** Outermost chat stage: rate limits and budgets. */
  admission: ChatStage;
  plugins: Plugin[];
  resources: ManagedResource[];
  sql?: SqlDatabase;
  ledger?: LedgerWriter;
  keys?: ApiKeyStore;
  /** Signed outgoing webhooks (budget alerts now; batch completion later). */
  webhooks: WebhookSender;
}

export interface TenancyDeps {
  config: Config;
  log: Logger;
  redis?: RedisClient;
  /**
   * Highest price among a model's deployments, for cost estimates before routing; with `deployment`,
   * that deployment's price when known (what a stream without a usage chunk is charged at).
   */
  priceOf(model: string, deployment?: string): Price | undefined;
  /** What a request may use upstream under test-time scaling (its plan's passes and judge). */
  plannedUsage?: AdmissionOptions['plannedUsage'];
  /** Told the usage and cost admission estimated for a stream without a usage chunk (the metrics count it). */
  onUsageEstimated?: AdmissionOptions['onUsageEstimated'];
  onRefused?: AdmissionOptions['onRefused'];
  /** Whether a model's group hedges (its calls are reserved twice). */
  hedges?: AdmissionOptions['hedges'];
  /** Whether a call with `n` choices may be sent as one upstream call per choice (the prompt is reserved n times). */
  promptPerChoice?: AdmissionOptions['promptPerChoice'];
}

function plugin<T extends FastifyPluginOptions>(p: FastifyPluginAsync<T>, options: T): Plugin {
  return { plugin: p as unknown as Plugin['plugin'], options: options as unknown as Record<string, unknown> };
}

/** Whether this configuration opens the SQL database (ledger, admin key store, webhook deliveries). */
export function needsDatabase(config: Config): boolean {
  return config.ledger.enabled || Boolean(config.auth.admin_token) || Boolean(config.webhooks.secret);
}

export async function assembleTenancy({ config, log, redis, priceOf, plannedUsage, onUsageEstimated, onRefused, hedges, promptPerChoice }: TenancyDeps): Promise<Tenancy> {
  const resources: ManagedResource[] = [];
  const plugins: Plugin[] = [];
  const prefix = config.redis.key_prefix;
  const adminToken = config.auth.admin_token;

  // The database: opened once at start-up (PGlite takes seconds), only when something needs it.
  let sql: SqlDatabase | undefined;
  let ledger: LedgerWriter | undefined;
  if (needsDatabase(config)) {
    sql = await openSql({ url: config.database.url, pglitePath: config.database.pglite_path, schema: config.database.schema });
    const db = sql;
    if (config.ledger.enabled) {
      ledger = new LedgerWriter(db, log, {
        flushIntervalMs: config.ledger.flush_interval_ms,
        batchSize: config.ledger.batch_size,
        spoolPath: config.ledger.spool_path,
        maxPendingRows: config.ledger.max_pending_rows,
      });
      // A database that fails here leaves the file it was replaying as this process's own spool
      // (replayed once the database answers) and the others for the next start.
      await ledger.replaySpool().catch((err: unknown) => log.error({ err: (err as Error).message }, 'ledger: could not replay the spool files'));
      plugins.push(plugin(ledgerHook, { ledger }));
    }
    const writer = ledger;
    resources.push({
      name: 'database',
      check: async () => (await db.query('SELECT 1')).length === 1,
      // The ledger flushes before the connection closes: records admitted before SIGTERM are kept.
      close: async () => {
        await writer?.close();
        await db.close();
      },
    });
  }

  const keys = sql && adminToken ? new ApiKeyStore({ sql, prefix: config.auth.api_keys.prefix, cacheTtlMs: config.auth.api_keys.cache_ttl_ms, redis, redisPrefix: prefix }) : undefined;
  const jwt = config.auth.jwt ? await createJwtVerifier(config.auth.jwt) : undefined;
  const authenticator = createCompositeAuthenticator({ tokens: config.auth.tokens, keys, jwt });

  const webhooks = new WebhookSender({
    endpoints: config.webhooks.endpoints.map((e) => {
      const secret = e.secret ?? config.webhooks.secret;
      if (!secret) throw new Error(`webhooks.endpoints ${e.url}: no secret (set its \`secret\` or webhooks.secret / WEBHOOK_SECRET)`);
      return { url: e.url, secret, events: e.events };
    }),
    log,
    maxAttempts: config.webhooks.max_attempts,
    initialBackoffMs: config.webhooks.initial_backoff_ms,
    timeoutMs: config.webhooks.timeout_ms,
  });
  resources.push({ name: 'webhooks', check: async () => true, close: () => webhooks.close() });

  // Limits and budgets: shared through Redis when there is one, else in this process.
  const rl = config.rate_limiting;
  const useRedis = redis && rl.backend !== 'memory';
  if (rl.backend === 'redis' && !redis) throw new Error('rate_limiting.backend is redis but redis.url (REDIS_URL) is not set');
  const local = new MemoryLimiterStore();
  const limiter: LimiterStore = useRedis ? new FailoverLimiterStore(new RedisLimiterStore(redis, prefix), local, rl.on_redis_failure, log) : local;
  resources.push({ name: 'limiter', check: async () => true, close: async () => limiter.close?.() });
  const budgetStore: BudgetStore = useRedis ? new FailoverBudgetStore(new RedisBudgetStore(redis, prefix, log), new MemoryBudgetStore(), rl.on_redis_failure, log) : new MemoryBudgetStore();
  const db = sql;
  const budgets = config.budgets.enabled
    ? new BudgetManager({
        store: budgetStore,
        config: config.budgets,
        log,
        spentSince: db && ledger ? (scope, id, since, until) => spentSince(db, scope, id, since, until) : undefined,
        onAlert: async (alert) => {
          log.warn({ alert }, 'budget threshold crossed');
          // Delivered when a receiver took it (or none is configured): else sent again at the next crossing.
          const results = await Promise.all(webhooks.send('budget.threshold_crossed', alert));
          return results.length === 0 || results.some((r) => r.ok);
        },
      })
    : undefined;
  // At shutdown, budget releases and settles still owed to Redis are sent, for up to 2 s, before the client closes (registered first, it closes last).
  if (budgets && budgetStore.close) resources.push({ name: 'budgets', check: async () => true, close: async () => budgetStore.close?.() });
  const admission = createAdmissionStage({ limiter, config: rl, budgets, priceOf, plannedUsage, onUsageEstimated, onRefused, hedges, promptPerChoice });

  if (keys && adminToken) plugins.push(plugin(adminKeyRoutes, { keys, adminToken }));
  if (sql && ledger) plugins.push(plugin(spendRoutes, { sql, ledger, authenticator, adminToken }));
  if (config.webhooks.secret) {
    const replay = redis ? redisReplayGuard(redis, prefix) : memoryReplayGuard();
    plugins.push(plugin(webhookIngestRoutes, { secret: config.webhooks.secret, toleranceS: config.webhooks.tolerance_s, replay, sql }));
  }
  return { authenticator, admission, plugins, resources, sql, ledger, keys, webhooks };
}
