// GET /v1/spend: the ledger summed by key, user, team, model, provider or tenant over a time range.
// The admin token sees everyone; any other caller sees only its own spend (its key, else its user).
import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { Authenticator } from '../auth.js';
import type { LedgerWriter } from '../../store/ledger.js';
import { querySpend, SPEND_GROUPS, type SpendGroup } from '../../store/ledger.js';
import type { SqlDatabase } from '../../store/sql.js';
import { boundedDatetime } from '../../limits/keys.js';
import { GatewayError } from '../errors.js';
import { validationError } from '../validation.js';
import { adminTokenCheck } from './admin-keys.js';

export interface SpendRouteOptions {
  sql: SqlDatabase;
  ledger: LedgerWriter;
  authenticator: Authenticator;
  adminToken?: string;
}

const querySchema = z
  .object({
    group_by: z.enum(Object.keys(SPEND_GROUPS) as [SpendGroup, ...SpendGroup[]]).default('key'),
    start: boundedDatetime.optional(),
    end: boundedDatetime.optional(),
  })
  .strict();

/** The earliest time the database takes: the default start (end − 30 days) stops there. */
const EARLIEST = Date.parse('0001-01-01T00:00:00Z');

export const spendRoutes: FastifyPluginAsync<SpendRouteOptions> = async (app, opts) => {
  const isAdmin = adminTokenCheck(opts.adminToken);
  // The tenant authenticator is skipped: the admin token, or else the caller's own credential, is checked here.
  app.get('/v1/spend', { config: { skipAuth: true } }, async (request) => {
    const admin = isAdmin(request);
    const tenant = admin ? undefined : await opts.authenticator.authenticate({ headers: request.headers, ip: request.ip });
    // Its access-log line names the caller, as other routes' do.
    if (tenant) request.tenant = tenant;
    const parsed = querySchema.safeParse(request.query);
    if (!parsed.success) throw validationError(parsed.error, request.query);
    const end = parsed.data.end ? new Date(parsed.data.end) : new Date();
    const start = parsed.data.start ? new Date(parsed.data.start) : new Date(Math.max(EARLIEST, end.getTime() - 30 * 86_400_000));
    // Both given the wrong way round is a mistake; a start alone a little ahead of this clock (a
    // client's skew) is an empty range.
    if (parsed.data.start && parsed.data.end && start > end) throw new GatewayError('invalid_value', { param: 'start', message: `Invalid value for 'start': it must not be after 'end' (${end.toISOString()}).` });
    // Read-your-writes on this replica: rows still waiting for their request's settlement, then
    // what is queued, go in first.
    await opts.ledger.recorded();
    await opts.ledger.flush().catch(() => undefined);
    // A caller sees its own spend: its key's, else its tenant's (narrowed to its user). Never a user id
    // alone: a JWT's subject is unique only within its tenant, and API keys of another tenant can
    // carry the same user id.
    const filter = tenant ? (tenant.keyId ? { keyId: tenant.keyId } : { tenantId: tenant.id, ...(tenant.userId ? { userId: tenant.userId } : {}) }) : undefined;
    const data = await querySpend(opts.sql, { groupBy: parsed.data.group_by, start, end, filter });
    const total = data.reduce(
      (t, r) => ({ requests: t.requests + r.requests, prompt_tokens: t.prompt_tokens + r.prompt_tokens, completion_tokens: t.completion_tokens + r.completion_tokens, cost_usd: t.cost_usd + r.cost_usd }),
      { requests: 0, prompt_tokens: 0, completion_tokens: 0, cost_usd: 0 },
    );
    return { object: 'spend', group_by: parsed.data.group_by, start: start.toISOString(), end: end.toISOString(), data, total };
  });
};
