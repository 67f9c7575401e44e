// `GET /v1/files` with OpenAI's list semantics, through the official `openai` SDK: `limit` (1–10,000,
// default 10,000), the `after` cursor, `order`, `purpose`, `has_more`, `first_id` and `last_id`; each
// tenant sees its own files only. On PGlite and Postgres; on Postgres also a tenant with more than
// 10,000 files, every one of which the SDK's auto-pagination reaches.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';
import { dropSchema, POSTGRES_URL, postgresAvailable, runId } from './helpers/services.js';

const pgUp = await postgresAvailable();
const TOKEN_A = 'tenant-a-token-for-the-files-list-test';
const TOKEN_B = 'tenant-b-token-for-the-files-list-test';

const backends = [
  { name: 'PGlite', available: true, shared: false },
  { name: 'Postgres', available: pgUp, shared: true },
];

function gatewayConfig(database: Record<string, unknown>): Record<string, unknown> {
  return { auth: { tokens: [TOKEN_A, TOKEN_B] }, database, batch_jobs: { enabled: true, poll_ms: 50 } };
}

for (const backend of backends) {
  describe.skipIf(!backend.available)(`GET /v1/files on ${backend.name}`, () => {
    const schema = `batch_files_${runId()}`;
    let dir: string;
    let server: RunningServer;
    let a: OpenAI;
    let b: OpenAI;
    const mine: string[] = [];
    let theirs: string;

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'batch-files-'));
      server = await startTestGateway({ config: gatewayConfig(backend.shared ? { url: POSTGRES_URL, schema } : { pglite_path: join(dir, 'db') }) });
      a = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: TOKEN_A, maxRetries: 0 });
      b = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: TOKEN_B, maxRetries: 0 });
      for (let i = 0; i < 5; i++) mine.push((await a.files.create({ file: await toFile(Buffer.from(`{"n":${i}}\n`), `a-${i}.jsonl`), purpose: 'batch' })).id);
      theirs = (await b.files.create({ file: await toFile(Buffer.from('{"n":0}\n'), 'b.jsonl'), purpose: 'batch' })).id;
    });
    afterAll(async () => {
      await server?.close();
      if (backend.shared) await dropSchema(schema);
      await rm(dir, { recursive: true, force: true });
    });

    it('pages newest first by default, and the SDK’s auto-pagination reaches every file of the tenant once', async () => {
      const first = await a.files.list({ limit: 2 });
      expect(first.data).toHaveLength(2);
      expect(first.has_more).toBe(true);
      const body = (await (await fetch(`${server.url}/v1/files?limit=2`, { headers: { authorization: `Bearer ${TOKEN_A}` } })).json()) as { object: string; data: { id: string }[]; first_id: string; last_id: string; has_more: boolean };
      expect(body).toMatchObject({ object: 'list', first_id: body.data[0]?.id, last_id: body.data[1]?.id, has_more: true });

      const seen: { id: string; created_at: number }[] = [];
      for await (const f of a.files.list({ limit: 2 })) seen.push(f);
      expect(seen.map((f) => f.id).sort()).toEqual([...mine].sort());
      // Newest first: created_at never rises along the list (uploads in one second share it).
      expect(seen.every((f, i) => i === 0 || (seen[i - 1] as { created_at: number }).created_at >= f.created_at)).toBe(true);
      const asc: string[] = [];
      for await (const f of a.files.list({ limit: 2, order: 'asc' })) asc.push(f.id);
      expect(asc).toEqual(seen.map((f) => f.id).reverse());
      // The last page says there is no more.
      const last = await a.files.list({ limit: 2, after: seen[2]?.id as string });
      expect(last.data.map((f) => f.id)).toEqual(seen.slice(3).map((f) => f.id));
      expect(last.has_more).toBe(false);
    });

    it('filters by purpose and keeps each tenant to its own files', async () => {
      expect((await a.files.list({ purpose: 'batch_output' })).data).toEqual([]);
      expect((await a.files.list({ purpose: 'batch' })).data.map((f) => f.id).sort()).toEqual([...mine].sort());
      expect((await b.files.list()).data.map((f) => f.id)).toEqual([theirs]);
    });

    it('refuses a cursor that is not one of the tenant’s files, and a limit outside 1–10,000, with 400', async () => {
      // Another tenant's file id is refused exactly as an unknown one: it tells nothing about that file.
      const unknown = await a.files.list({ after: 'file-unknown' }).catch((e: unknown) => e);
      const foreign = await a.files.list({ after: theirs }).catch((e: unknown) => e);
      expect(unknown).toMatchObject({ status: 400, code: 'invalid_value', param: 'after' });
      expect(foreign).toMatchObject({ status: 400, code: 'invalid_value', param: 'after' });
      expect((foreign as Error).message.replace(theirs, 'file-unknown')).toBe((unknown as Error).message);
      await expect(a.files.list({ limit: 0 })).rejects.toMatchObject({ status: 400, param: 'limit' });
      await expect(a.files.list({ limit: 10_001 })).rejects.toMatchObject({ status: 400, param: 'limit' });
      await expect(a.files.list({ order: 'sideways' as 'asc' })).rejects.toMatchObject({ status: 400, param: 'order' });
    });
  });
}

describe.skipIf(!pgUp)('GET /v1/files past 10,000 files (Postgres)', () => {
  const schema = `batch_files_many_${runId()}`;
  let server: RunningServer | undefined;
  afterAll(async () => {
    await server?.close();
    await dropSchema(schema);
  });

  it('lists 10,000 a page by default, and the SDK reaches all 10,005 of a tenant’s files in order', async () => {
    server = await startTestGateway({ config: gatewayConfig({ url: POSTGRES_URL, schema }) });
    const a = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: TOKEN_A, maxRetries: 0 });
    const tenant = (await a.files.create({ file: await toFile(Buffer.from('{}\n'), 'seed.jsonl'), purpose: 'batch' })).id;
    const db = new pg.Client({ connectionString: POSTGRES_URL });
    await db.connect();
    try {
      // 10,004 more files of the same tenant, many sharing a created_at (the cursor orders by id within one).
      await db.query(
        `INSERT INTO "${schema}".batch_files (id, tenant_id, purpose, filename, bytes, content, created_at)
         SELECT 'file-bulk-' || lpad(g::text, 5, '0'), f.tenant_id, 'batch', 'bulk.jsonl', 3, '{}' || chr(10), 1700000000 + (g % 7)
         FROM generate_series(1, 10004) g, (SELECT tenant_id FROM "${schema}".batch_files WHERE id = $1) f`,
        [tenant],
      );
    } finally {
      await db.end();
    }
    const page = await a.files.list();
    expect(page.data).toHaveLength(10_000);
    expect(page.has_more).toBe(true);

    const seen: { id: string; created_at: number }[] = [];
    for await (const f of a.files.list()) seen.push({ id: f.id, created_at: f.created_at });
    expect(seen).toHaveLength(10_005);
    expect(new Set(seen.map((f) => f.id)).size).toBe(10_005);
    expect(seen[0]?.id).toBe(tenant);
    // (created_at, id) descending across the page boundary.
    const outOfOrder = seen.filter((cur, i) => {
      const prev = seen[i - 1];
      return prev !== undefined && !(prev.created_at > cur.created_at || (prev.created_at === cur.created_at && prev.id > cur.id));
    });
    expect(outOfOrder).toEqual([]);
  }, 120_000);
});
