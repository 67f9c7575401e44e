// Runs one batch line through the gateway exactly as the matching HTTP route would (same
// validation, same pipeline, the job owner's identity), and turns the answer or the error into the
// output line's `response`: {status_code, request_id, body}.
import type { Logger } from 'pino';
import type { ChatRequest } from '../../canonical/chat.js';
import { collectStream } from '../../canonical/convert.js';
import { defaultRequestOptions, newFacts, type RequestContext } from '../../gateway/context.js';
import type { Tenant } from '../../gateway/context.js';
import type { Gateway } from '../../gateway/gateway.js';
import { exemptFromRateLimits } from '../../limits/admission.js';
import { openAiErrorBody, toGatewayError } from '../../server/errors.js';
import { chatRenderer, parseChatBody } from '../../server/routes/openai.js';
import { embeddingSchema } from '../../server/routes/openai-schema.js';
import { validationError } from '../../server/validation.js';
import { ledgerEntry } from '../../server/ledger-hook.js';
import type { LedgerEntry } from '../../store/ledger.js';
import type { ItemExecutor } from './runner.js';
import type { ItemOutcome } from './store.js';

/**
 * `record` receives one ledger entry per line that ran (answered or failed; not one handed back at a
 * shutdown), as the ledger hook records each HTTP request: batch spend shows in /v1/spend and seeds
 * budgets after a restart like any other. `checkTenant` runs before each line and throws (the line
 * fails with that error) when the batch's tenant may no longer spend: a revoked or expired API key.
 */
export function gatewayItemExecutor(gateway: Gateway, log: Logger, record?: (entry: LedgerEntry) => void, checkTenant?: (tenant: Tenant) => Promise<void>): ItemExecutor {
  return async (item, signal) => {
    const at = new Date();
    const ctx: RequestContext = {
      id: `${item.batch_id}-${item.line}`,
      startedAt: performance.now(),
      endpoint: 'batch',
      tenant: item.tenant,
      signal,
      log: log.child({ batch: item.batch_id, line: item.line }),
      options: defaultRequestOptions(),
      facts: newFacts(),
      headers: {},
    };
    // The runner paces lines (batch_jobs.concurrency): no rate limit counts or refuses them; budgets do.
    exemptFromRateLimits(ctx);
    const account = (status: number, errorCode: string | null) => record?.(ledgerEntry(ctx, at, status, errorCode, item.body.model));
    try {
      // The key that created the batch may have been revoked or expired since: its lines stop spending.
      await checkTenant?.(item.tenant);
      const body = item.endpoint === '/v1/embeddings' ? await embed(gateway, ctx, item.body) : await chat(gateway, ctx, item.body);
      account(200, null);
      return success(ctx, body);
    } catch (err) {
      // Stopping: the line is not failed, it goes back to the queue.
      if (signal.aborted) return undefined;
      const e = toGatewayError(err);
      account(e.status, e.code);
      return { status: 'failed', statusCode: e.status, response: { status_code: e.status, request_id: ctx.id, body: openAiErrorBody(e) } };
    }
  };
}

async function chat(gateway: Gateway, ctx: RequestContext, raw: Record<string, unknown>): Promise<unknown> {
  const { req: parsed, ext, legacyAnswer } = parseChatBody(raw);
  if (ext.difficulty) ctx.options.difficulty = ext.difficulty.toLowerCase();
  if (ext.priority) ctx.options.priority = ext.priority;
  if (ext.session_id) ctx.options.sessionId = ext.session_id;
  const req = { ...parsed, stream: false } as ChatRequest;
  delete req.stream_options;
  const outcome = await gateway.handleChat(ctx, req);
  // Rendered as the chat route renders a JSON answer.
  return chatRenderer(false, legacyAnswer).json(outcome.kind === 'result' ? outcome.result : await collectStream(outcome.stream));
}

async function embed(gateway: Gateway, ctx: RequestContext, raw: Record<string, unknown>): Promise<unknown> {
  const parsed = embeddingSchema.safeParse(raw);
  if (!parsed.success) throw validationError(parsed.error, raw);
  const result = await gateway.embed(ctx, parsed.data);
  if (parsed.data.encoding_format !== 'base64') return result;
  return { ...result, data: result.data.map((d) => ({ ...d, embedding: Array.isArray(d.embedding) ? Buffer.from(new Float32Array(d.embedding).buffer).toString('base64') : d.embedding })) };
}

function success(ctx: RequestContext, body: unknown): ItemOutcome {
  return { status: 'succeeded', statusCode: 200, response: { status_code: 200, request_id: ctx.id, body } };
}
