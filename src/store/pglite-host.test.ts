// The embedded database's worker logic, run in this thread: the requests sql.ts sends it, and the
// transaction protocol that keeps one PGlite transaction open across several of them.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPglite, pgliteHandler, PgliteHost } from './pglite-host.js';

let host: PgliteHost;

beforeAll(async () => {
  host = new PgliteHost(await openPglite('memory://', 'host_test'));
  await host.handle({ op: 'query', text: `CREATE TABLE items (id int PRIMARY KEY, at timestamptz, doc jsonb)` });
});
afterAll(async () => {
  await host.close();
});

const rows = (text: string, params?: unknown[], tx?: number) => host.handle({ op: 'query', text, ...(params ? { params } : {}), ...(tx ? { tx } : {}) }) as Promise<Record<string, unknown>[]>;

describe('PgliteHost queries', () => {
  it('answers rows with PGlite’s parsers, or as drizzle’s driver asks for them', async () => {
    const at = new Date('2025-01-02T03:04:05.678Z');
    await rows(`INSERT INTO items VALUES (1, $1, $2)`, [at, { a: [1, 'x'] }]);
    expect(await rows(`SELECT id, at, doc FROM items WHERE id = 1`)).toEqual([{ id: 1, at, doc: { a: [1, 'x'] } }]);
    // The schema asked for at open is where unqualified names go.
    expect(await rows(`SELECT current_schema() AS s`)).toEqual([{ s: 'host_test' }]);

    const arrays = await host.handle({ op: 'query', text: `SELECT id, at, doc FROM items WHERE id = $1`, params: [1], rows: 'arrays' });
    expect(arrays).toEqual([[1, '2025-01-02 03:04:05.678+00', { a: [1, 'x'] }]]);
    const objects = await host.handle({ op: 'query', text: `SELECT at FROM items WHERE id = 1`, rows: 'drizzle-objects' });
    expect(objects).toEqual([{ at: '2025-01-02 03:04:05.678+00' }]);
  });

  it('refuses a request it does not know', async () => {
    await expect(host.handle({ op: 'drop' } as never)).rejects.toThrow(/unknown database request "drop"/);
  });
});

describe('PgliteHost transactions', () => {
  it('keeps one transaction open across requests and commits it', async () => {
    const tx = (await host.handle({ op: 'begin' })) as number;
    await rows(`INSERT INTO items (id) VALUES (10)`, undefined, tx);
    expect(await rows(`SELECT id FROM items WHERE id = 10`, undefined, tx)).toEqual([{ id: 10 }]);
    await host.handle({ op: 'commit', tx });
    expect(await rows(`SELECT id FROM items WHERE id = 10`)).toEqual([{ id: 10 }]);
    // Over: its id no longer reaches it.
    await expect(rows(`SELECT 1`, undefined, tx)).rejects.toThrow(`transaction ${tx} is not open`);
    await expect(host.handle({ op: 'commit', tx })).rejects.toThrow(/not open/);
  });

  it('rolls back on request, and untagged queries wait for the transaction instead of joining it', async () => {
    const tx = (await host.handle({ op: 'begin' })) as number;
    await rows(`INSERT INTO items (id) VALUES (20)`, undefined, tx);
    let outsideDone = false;
    const outside = rows(`SELECT count(*)::int AS n FROM items WHERE id IN (20, 21)`).finally(() => (outsideDone = true));
    const outsideWrite = rows(`INSERT INTO items (id) VALUES (21)`);
    await new Promise((r) => setTimeout(r, 50));
    expect(outsideDone).toBe(false); // held by PGlite's transaction mutex
    await host.handle({ op: 'rollback', tx });
    expect(await outside).toEqual([{ n: 0 }]); // never saw the uncommitted row
    await outsideWrite;
    expect(await rows(`SELECT id FROM items WHERE id IN (20, 21)`)).toEqual([{ id: 21 }]); // not rolled back with it
  });

  it('answers a second begin only once the first transaction is over', async () => {
    const first = (await host.handle({ op: 'begin' })) as number;
    let secondId: number | undefined;
    const second = host.handle({ op: 'begin' }).then((id) => (secondId = id as number));
    await new Promise((r) => setTimeout(r, 50));
    expect(secondId).toBeUndefined();
    await host.handle({ op: 'commit', tx: first });
    await second;
    expect(secondId).toBe(first + 1);
    await host.handle({ op: 'commit', tx: secondId! });
  });

  it('reports a commit PGlite refuses', async () => {
    await rows(`CREATE TABLE deferred (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED)`);
    const tx = (await host.handle({ op: 'begin' })) as number;
    await rows(`INSERT INTO deferred VALUES (1), (1)`, undefined, tx);
    await expect(host.handle({ op: 'commit', tx })).rejects.toMatchObject({ code: '23505' });
    expect(await rows(`SELECT count(*)::int AS n FROM deferred`)).toEqual([{ n: 0 }]);
  });
});

describe('the worker’s handler', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pglite-host-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('opens a data directory (creating its parent), serves it, closes it; a reopen finds the data', async () => {
    const path = join(dir, 'nested', 'db');
    const handle = pgliteHandler();
    await expect(handle({ op: 'query', text: 'SELECT 1' })).rejects.toThrow(/not open/);
    await handle({ op: 'open', path });
    await expect(handle({ op: 'open', path })).rejects.toThrow(/already open/);
    await handle({ op: 'query', text: `CREATE TABLE kept (v text)` });
    await handle({ op: 'query', text: `INSERT INTO kept VALUES ($1)`, params: ['durable'] });
    // A transaction left open is rolled back by close, not committed.
    const tx = await handle({ op: 'begin' });
    await handle({ op: 'query', text: `INSERT INTO kept VALUES ('uncommitted')`, tx });
    await handle({ op: 'close' });
    await handle({ op: 'close' });
    await expect(handle({ op: 'query', text: 'SELECT 1' })).rejects.toThrow(/closed/);
    await expect(handle({ op: 'begin' })).rejects.toThrow(/closed/);

    const again = pgliteHandler();
    await again({ op: 'open', path });
    expect(await again({ op: 'query', text: `SELECT v FROM kept` })).toEqual([{ v: 'durable' }]);
    await again({ op: 'close' });
  });
});
