// The OpenAI Batch API: `POST /v1/files` (multipart JSONL upload), file retrieval and content,
// `POST /v1/batches`, `GET /v1/batches[/{id}]`, `POST /v1/batches/{id}/cancel`. Files and jobs
// belong to the identity that created them; another identity gets 404. The official `openai` SDK
// drives these routes unmodified (test/batch-jobs.test.ts).
import { isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ANONYMOUS, type Tenant } from '../../gateway/context.js';
import { GatewayError } from '../../server/errors.js';
import { validationError } from '../../server/validation.js';
import { describeRoute } from '../../server/routes/docs.js';
import type { BatchJobsConfig } from '../config.js';
import { BATCH_ENDPOINTS, parseBatchInput } from './input.js';
import { storableText } from '../../store/sql.js';
import { MultipartError, multipartBoundary, parseMultipart } from './multipart.js';
import type { BatchRunner } from './runner.js';
import type { BatchRow, BatchStore, FileRow, RequestCounts } from './store.js';

export interface BatchRouteOptions {
  store: BatchStore;
  runner: BatchRunner;
  config: BatchJobsConfig;
}

const createBatchSchema = z
  .object({
    input_file_id: z.string().min(1),
    endpoint: z.enum(BATCH_ENDPOINTS),
    completion_window: z.literal('24h'),
    // No NUL character (`\u0000`) or unpaired surrogate: the jsonb column cannot store either.
    metadata: z
      .record(z.string().max(64).refine(storableText, 'must not hold a NUL character or an unpaired surrogate'), z.string().max(512).refine(storableText, 'must not hold a NUL character or an unpaired surrogate'))
      .nullable()
      .optional(),
    output_expires_after: z.object({ anchor: z.literal('created_at'), seconds: z.number().int().min(1) }).strict().optional(),
  })
  .strict();

/** OpenAPI documentation for a Batch API route; `{id}` routes declare their path parameter. */
function doc(summary: string, opts: { body?: z.ZodType; id?: boolean } = {}) {
  const d = describeRoute({ summary, tags: ['batch'], ...(opts.body ? { body: opts.body } : {}) });
  if (opts.id) d.schema = { ...d.schema, params: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] } };
  return d;
}

/** Allowance over `max_file_bytes` for an upload's multipart boundaries, part headers and `purpose` field. */
const MULTIPART_ENVELOPE_BYTES = 64 * 1024;

const listQuery = z.object({ limit: z.coerce.number().int().min(1).max(100).default(20), after: z.string().optional() });

/** OpenAI's file list: up to 10,000 a page (also the default), newest first unless `order=asc`. */
const fileListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(10_000).default(10_000),
  after: z.string().min(1).optional(),
  order: z.enum(['asc', 'desc']).default('desc'),
  purpose: z.string().min(1).optional(),
});

export const batchRoutes: FastifyPluginAsync<BatchRouteOptions> = async (app, { store, runner, config }) => {
  // Uploads arrive as multipart/form-data; kept whole and parsed below. The limit is the file's
  // (max_file_bytes, checked on the file part) plus room for the multipart envelope around it.
  const bodyLimit = config.max_file_bytes + MULTIPART_ENVELOPE_BYTES;
  app.addContentTypeParser('multipart/form-data', { parseAs: 'buffer', bodyLimit }, (_req, body, done) => done(null, body));

  app.post('/v1/files', { ...doc('Upload a JSONL file (multipart/form-data: purpose=batch, file)'), bodyLimit }, async (request) => {
    const boundary = multipartBoundary(request.headers['content-type']);
    if (!boundary || !Buffer.isBuffer(request.body)) throw new GatewayError('unsupported_media_type', { message: 'Upload the file as multipart/form-data with fields `purpose` and `file`.' });
    let parts;
    try {
      parts = parseMultipart(request.body, boundary);
    } catch (err) {
      throw new GatewayError('invalid_request', { message: `The multipart body could not be read: ${(err as MultipartError).message}.` });
    }
    const purpose = parts.find((p) => p.name === 'purpose')?.data.toString('utf8').trim();
    const file = parts.find((p) => p.name === 'file');
    if (!purpose) throw new GatewayError('missing_required_parameter', { param: 'purpose', message: "Missing required parameter: 'purpose'." });
    if (purpose !== 'batch') throw new GatewayError('invalid_value', { param: 'purpose', message: `This gateway stores files for purpose "batch" only, not "${purpose}".` });
    if (!file) throw new GatewayError('missing_required_parameter', { param: 'file', message: "Missing required parameter: 'file'." });
    if (file.data.length > config.max_file_bytes) throw new GatewayError('payload_too_large', { param: 'file', message: `The file is ${file.data.length} bytes; this gateway accepts files of up to ${config.max_file_bytes}.` });
    // No JSONL text holds a raw NUL byte, and the database's text column cannot store one.
    if (file.data.includes(0)) throw new GatewayError('invalid_request', { param: 'file', message: 'The file holds a NUL (0x00) byte: upload a UTF-8 JSONL text file.' });
    // Stored as text: other bytes than UTF-8 would be replaced (U+FFFD), the lines run altered and the
    // content downloaded would differ from the upload and from its `bytes`.
    if (!isUtf8(file.data)) throw new GatewayError('invalid_request', { param: 'file', message: 'The file is not valid UTF-8: upload a UTF-8 JSONL text file.' });
    const row = await store.createFile({
      id: `file-${randomBytes(12).toString('hex')}`,
      tenant_id: tenantOf(request).id,
      purpose,
      // A NUL (possible through `filename*=UTF-8''…%00…`) cannot be stored in the text column.
      filename: (file.filename ?? 'upload.jsonl').replaceAll('\0', '').slice(0, 255),
      bytes: file.data.length,
      content: file.data.toString('utf8'),
    });
    return fileObject(row);
  });

  app.get('/v1/files', doc('List files'), async (request) => {
    const q = fileListQuery.safeParse(request.query);
    if (!q.success) throw validationError(q.error, request.query);
    const { limit, after, order, purpose } = q.data;
    // One more than the page, to know whether there is a next one.
    const rows = await store.listFiles(tenantOf(request).id, { limit: limit + 1, order, ...(after ? { after } : {}), ...(purpose ? { purpose } : {}) });
    // A cursor that is none of the caller's files (deleted since, or never theirs): an empty page would
    // end a client's pagination early without a word.
    if (!rows) throw new GatewayError('invalid_value', { param: 'after', message: `No such File object: ${after}. \`after\` is the id of a file of a previous page.` });
    const data = rows.slice(0, limit).map(fileObject);
    return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: rows.length > limit };
  });

  app.get<{ Params: { id: string } }>('/v1/files/:id', doc('Retrieve a file', { id: true }), async (request) => fileObject(await requireFile(store, request.params.id, tenantOf(request))));

  app.get<{ Params: { id: string } }>('/v1/files/:id/content', doc('Download a file', { id: true }), async (request, reply) => {
    // Streamed part by part: an output file can be larger than one string may be.
    const chunks = await store.fileChunks(request.params.id, tenantOf(request).id);
    if (!chunks) throw noSuchFile(request.params.id);
    reply.header('content-type', 'application/octet-stream');
    return reply.send(Readable.from(utf8(chunks)));
  });

  app.delete<{ Params: { id: string } }>('/v1/files/:id', doc('Delete a file', { id: true }), async (request) => {
    if (!(await store.deleteFile(request.params.id, tenantOf(request).id))) throw noSuchFile(request.params.id);
    return { id: request.params.id, object: 'file', deleted: true };
  });

  app.post('/v1/batches', doc('Create a batch', { body: createBatchSchema }), async (request) => {
    const parsed = createBatchSchema.safeParse(request.body);
    if (!parsed.success) throw validationError(parsed.error, request.body);
    const body = parsed.data;
    const tenant = tenantOf(request);
    const input = await requireFile(store, body.input_file_id, tenant, 'input_file_id');
    // An output or error file is no input (and may be larger than one string may be).
    if (input.purpose !== 'batch') throw new GatewayError('invalid_value', { param: 'input_file_id', message: `File ${input.id} has purpose "${input.purpose}"; a batch's input file is uploaded with purpose "batch".` });
    const content = (await store.fileContent(body.input_file_id, tenant.id)) ?? '';
    const { items, errors } = parseBatchInput(content, body.endpoint, config.max_requests);
    const job = await store.createBatch({
      id: `batch_${randomBytes(12).toString('hex')}`,
      tenant: storedTenant(tenant),
      endpoint: body.endpoint,
      inputFileId: body.input_file_id,
      completionWindow: body.completion_window,
      metadata: body.metadata ?? null,
      items,
      // The API accepts "24h" only; an operator (or a test) may shorten or lengthen it.
      ...(config.completion_window_ms ? { windowMs: config.completion_window_ms } : {}),
      ...(errors.length > 0 ? { errors: { object: 'list' as const, data: errors } } : {}),
      // A batch failed at creation stores its `batch.failed` webhook with it.
      ...(errors.length > 0 ? { events: runner.eventsFor('batch.failed') } : {}),
    });
    if (job.status === 'failed') runner.kickWebhooks();
    else runner.kick();
    return batchObject(store, job);
  });

  app.get('/v1/batches', doc('List batches'), async (request) => {
    const q = listQuery.safeParse(request.query);
    if (!q.success) throw validationError(q.error, request.query);
    const rows = await store.listBatches(tenantOf(request).id, q.data.limit + 1, q.data.after);
    // An unknown cursor would give an empty page, which ends a client's pagination early and silently.
    if (!rows) throw new GatewayError('invalid_value', { param: 'after', message: `No such Batch object: ${q.data.after}. \`after\` is the id of a batch of a previous page.` });
    const page = rows.slice(0, q.data.limit);
    const data = await Promise.all(page.map((r) => batchObject(store, r)));
    return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: rows.length > q.data.limit };
  });

  app.get<{ Params: { id: string } }>('/v1/batches/:id', doc('Retrieve a batch', { id: true }), async (request) => {
    const job = await store.getBatch(request.params.id, tenantOf(request).id);
    if (!job) throw noSuchBatch(request.params.id);
    return batchObject(store, job);
  });

  app.post<{ Params: { id: string } }>('/v1/batches/:id/cancel', doc('Cancel a batch', { id: true }), async (request) => {
    const tenant = tenantOf(request);
    const before = await store.getBatch(request.params.id, tenant.id);
    if (!before) throw noSuchBatch(request.params.id);
    if (!['validating', 'in_progress', 'cancelling', 'cancelled'].includes(before.status)) {
      throw new GatewayError('invalid_request', { message: `Cannot cancel a batch with status "${publicStatus(before.status)}".` });
    }
    await store.cancel(before.id, tenant.id);
    await runner.settle(before.id);
    return batchObject(store, (await store.getBatch(before.id, tenant.id)) as BatchRow);
  });
};

async function* utf8(chunks: AsyncIterable<string>): AsyncGenerator<Buffer> {
  for await (const c of chunks) yield Buffer.from(c, 'utf8');
}

function tenantOf(request: FastifyRequest): Tenant {
  return request.tenant ?? ANONYMOUS;
}

/**
 * What a job remembers of its owner, so its lines run as them after a restart: identity, allowed
 * models and the key's budget (batch lines spend money like any request). Not the per-minute rates
 * or concurrency: the runner paces lines itself (`batch_jobs.concurrency`), as OpenAI's Batch API
 * has its own limits apart from a key's RPM — no rate limit applies to a line at all
 * (execute-item.ts exempts its context in admission).
 */
function storedTenant(t: Tenant): Tenant {
  const budget = t.limits?.budgetUsd !== undefined ? { budgetUsd: t.limits.budgetUsd, ...(t.limits.budgetPeriod ? { budgetPeriod: t.limits.budgetPeriod } : {}) } : undefined;
  return {
    id: t.id,
    kind: t.kind,
    ...(t.keyId ? { keyId: t.keyId } : {}),
    ...(t.userId ? { userId: t.userId } : {}),
    ...(t.teamId ? { teamId: t.teamId } : {}),
    ...(t.allowedModels ? { allowedModels: t.allowedModels } : {}),
    ...(budget ? { limits: budget } : {}),
  };
}

async function requireFile(store: BatchStore, id: string, tenant: Tenant, param = 'file_id'): Promise<FileRow> {
  const file = await store.getFile(id, tenant.id);
  if (!file) throw noSuchFile(id, param);
  return file;
}

function noSuchFile(id: string, param = 'file_id'): GatewayError {
  return new GatewayError('not_found', { param, message: `No such File object: ${id}` });
}

function noSuchBatch(id: string): GatewayError {
  return new GatewayError('not_found', { param: 'batch_id', message: `No such Batch object: ${id}` });
}

export function fileObject(f: FileRow): Record<string, unknown> {
  return { id: f.id, object: 'file', bytes: f.bytes, created_at: f.created_at, filename: f.filename, purpose: f.purpose, status: 'processed', expires_at: null, status_details: null };
}

export async function batchObject(store: BatchStore, b: BatchRow): Promise<Record<string, unknown> & { id: string }> {
  return renderBatch(b, b.status === 'failed' ? { total: 0, completed: 0, failed: 0 } : await store.counts(b.id));
}

/**
 * The status a job shows: its own, except `expiring` (window over, running lines finishing), which is
 * not among the eight statuses of OpenAI's Batch object and is shown as `finalizing` — no line will
 * start any more and the files are on their way — so a client with a closed enum of statuses can
 * read every batch object.
 */
export function publicStatus(status: BatchRow['status']): Exclude<BatchRow['status'], 'expiring'> {
  return status === 'expiring' ? 'finalizing' : status;
}

/** A job as the API shows it, from its row and request counts (also the completion webhook's `data`). */
export function renderBatch(b: BatchRow, counts: RequestCounts): Record<string, unknown> & { id: string } {
  const t = (v: number | null) => (v === null ? null : Math.floor(v));
  const expiring = b.status === 'expiring';
  return {
    id: b.id,
    object: 'batch',
    endpoint: b.endpoint,
    errors: b.errors,
    input_file_id: b.input_file_id,
    completion_window: b.completion_window,
    status: publicStatus(b.status),
    output_file_id: b.output_file_id,
    error_file_id: b.error_file_id,
    created_at: t(b.created_at),
    in_progress_at: t(b.in_progress_at),
    expires_at: t(b.expires_at),
    finalizing_at: t(expiring ? (b.finalizing_at ?? b.expiring_at) : b.finalizing_at),
    completed_at: t(b.completed_at),
    failed_at: t(b.failed_at),
    expired_at: t(b.expired_at),
    cancelling_at: t(b.cancelling_at),
    cancelled_at: t(b.cancelled_at),
    request_counts: counts,
    metadata: b.metadata,
  };
}
