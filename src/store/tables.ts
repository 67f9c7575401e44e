// The drizzle table definitions matching the SQL migrations (migrations.ts is the source of truth
// for the DDL; these give typed queries). Unqualified names, so a per-run schema on search_path works.
import { doublePrecision, integer, jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';

export const apiKeys = pgTable('api_keys', {
  id: text('id').primaryKey(),
  name: text('name').notNull().default(''),
  prefix: text('prefix').notNull(),
  hash: text('hash').notNull().unique(),
  userId: text('user_id'),
  teamId: text('team_id'),
  allowedModels: jsonb('allowed_models').$type<string[] | null>(),
  rpm: integer('rpm'),
  tpm: integer('tpm'),
  maxConcurrency: integer('max_concurrency'),
  budgetUsd: doublePrecision('budget_usd'),
  budgetPeriod: text('budget_period').$type<'day' | 'month' | null>(),
  metadata: jsonb('metadata').$type<Record<string, unknown> | null>(),
  ipAllowlist: jsonb('ip_allowlist').$type<string[] | null>(),
  expiresAt: timestamp('expires_at', { withTimezone: true }),
  revokedAt: timestamp('revoked_at', { withTimezone: true }),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

export const ledger = pgTable('ledger', {
  id: uuid('id').primaryKey(),
  requestId: text('request_id').notNull(),
  ts: timestamp('ts', { withTimezone: true }).notNull(),
  tenantId: text('tenant_id').notNull(),
  tenantKind: text('tenant_kind').notNull(),
  keyId: text('key_id'),
  userId: text('user_id'),
  teamId: text('team_id'),
  endpoint: text('endpoint').notNull(),
  model: text('model'),
  provider: text('provider'),
  deployment: text('deployment'),
  promptTokens: integer('prompt_tokens').notNull().default(0),
  completionTokens: integer('completion_tokens').notNull().default(0),
  costUsd: doublePrecision('cost_usd').notNull().default(0),
  latencyMs: doublePrecision('latency_ms').notNull().default(0),
  cache: text('cache'),
  status: integer('status').notNull(),
  errorCode: text('error_code'),
});

export const webhookEvents = pgTable('webhook_events', {
  id: text('id').primaryKey(),
  receivedAt: timestamp('received_at', { withTimezone: true }).notNull().defaultNow(),
  signedAt: timestamp('signed_at', { withTimezone: true }).notNull(),
  type: text('type'),
  payload: jsonb('payload').notNull(),
});

export type ApiKeyRow = typeof apiKeys.$inferSelect;
export type LedgerRow = typeof ledger.$inferInsert;
