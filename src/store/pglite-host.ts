// The embedded database's side of its worker thread (pglite-worker.ts is only the entry): PGlite is
// synchronous WASM, so a 200-row ledger flush run in the gateway's thread held every request behind
// it for 4–13 ms. Here it runs in a thread of its own, and sql.ts talks to it with the messages
// below. Kept apart from the entry so it runs (and is tested) in-thread as well.
//
// Transactions span several messages: 'begin' enters pg.transaction() and parks it on a promise,
// answering with an id once inside; queries carrying that id run on its `tx`; 'commit' or
// 'rollback' settles the parked promise and answers once PGlite has committed or rolled back.
// Untagged queries go through pg.query, which waits on PGlite's transaction mutex: they run before
// or after an open transaction, never inside it.
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PGlite, types, type QueryOptions, type Transaction } from '@electric-sql/pglite';

/**
 * How rows come back: `objects` with PGlite's default parsers (the raw `query`), or as drizzle's
 * PGlite driver asks for them — `arrays` (typed selects, mapped by column position) and
 * `drizzle-objects` (untyped `execute`) — with dates and intervals left as text for drizzle's
 * columns to map, so a drizzle row is the same as it was with PGlite in-process.
 */
export type RowShape = 'objects' | 'arrays' | 'drizzle-objects';

export type PgliteRequest =
  | { op: 'open'; path: string; schema?: string }
  | { op: 'query'; text: string; params?: unknown[]; rows?: RowShape; tx?: number }
  | { op: 'begin' }
  | { op: 'commit'; tx: number }
  | { op: 'rollback'; tx: number }
  | { op: 'close' };

const asText = (value: string) => value;
// The OIDs drizzle-orm/pglite's session leaves unparsed (its own columns map them).
const DRIZZLE_PARSERS = {
  [types.TIMESTAMP]: asText,
  [types.TIMESTAMPTZ]: asText,
  [types.INTERVAL]: asText,
  [types.DATE]: asText,
  1231: asText, // numeric[]
  1115: asText, // timestamp[]
  1185: asText, // timestamptz[]
  1187: asText, // interval[]
  1182: asText, // date[]
};

const QUERY_OPTIONS: Record<RowShape, QueryOptions | undefined> = {
  objects: undefined,
  arrays: { rowMode: 'array', parsers: DRIZZLE_PARSERS },
  'drizzle-objects': { rowMode: 'object', parsers: DRIZZLE_PARSERS },
};

/** Opens PGlite at `path` (`memory://` in memory, else a data directory), with `schema` on its search path. */
export async function openPglite(path: string, schema?: string): Promise<PGlite> {
  if (path !== 'memory://') await mkdir(dirname(path), { recursive: true });
  const pg = await PGlite.create(path === 'memory://' ? undefined : path);
  if (schema) {
    await pg.exec(`CREATE SCHEMA IF NOT EXISTS "${schema}"; SET search_path TO "${schema}"`);
  }
  return pg;
}

interface OpenTransaction {
  tx: Transaction;
  commit(): void;
  rollback(reason: unknown): void;
  /** Settles once PGlite has committed or rolled back (rejects with why a commit failed). */
  done: Promise<unknown>;
}

/** What a rollback asked for rejects the parked promise with, to tell it from a failure. */
const ROLLBACK = Symbol('rollback');

/** Answers requests on one open PGlite. */
export class PgliteHost {
  private nextTx = 1;
  private readonly open = new Map<number, OpenTransaction>();
  private closing: Promise<void> | undefined;

  constructor(readonly pg: PGlite) {}

  /** The rows of a query, the id of a transaction begun, or nothing. */
  handle(m: Exclude<PgliteRequest, { op: 'open' }>): Promise<unknown> {
    switch (m.op) {
      case 'query':
        return this.query(m);
      case 'begin':
        return this.begin();
      case 'commit':
        return this.end(m.tx, true);
      case 'rollback':
        return this.end(m.tx, false);
      case 'close':
        return this.close();
    }
    return Promise.reject(new Error(`unknown database request ${JSON.stringify((m as { op?: unknown }).op)}`));
  }

  private async query(m: Extract<PgliteRequest, { op: 'query' }>): Promise<unknown[]> {
    const options = QUERY_OPTIONS[m.rows ?? 'objects'];
    if (m.tx === undefined) return (await this.pg.query(m.text, m.params, options)).rows;
    const open = this.open.get(m.tx);
    if (!open) throw new Error(`transaction ${m.tx} is not open`);
    return (await open.tx.query(m.text, m.params, options)).rows;
  }

  private begin(): Promise<number> {
    const id = this.nextTx++;
    return new Promise<number>((resolve, reject) => {
      const done = this.pg.transaction(
        (tx) =>
          new Promise<void>((commit, rollback) => {
            this.open.set(id, { tx, commit, rollback, done });
            resolve(id);
          }),
      );
      // A BEGIN that failed (a closed database) refuses the request; once inside, this is a no-op
      // and the transaction's outcome is end()'s to report.
      done.catch(reject);
    });
  }

  private async end(id: number, commit: boolean): Promise<void> {
    const open = this.open.get(id);
    if (!open) throw new Error(`transaction ${id} is not open`);
    this.open.delete(id);
    if (commit) {
      open.commit();
      await open.done;
      return;
    }
    open.rollback(ROLLBACK);
    await open.done.catch((err: unknown) => {
      if (err !== ROLLBACK) throw err;
    });
  }

  /** Rolls back any transaction left open, then closes PGlite; once. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const id of [...this.open.keys()]) await this.end(id, false).catch(() => undefined);
      if (!this.pg.closed) await this.pg.close();
    })();
    return this.closing;
  }
}

/**
 * The worker's message handler: the first request opens the database ('open'), every later one is
 * answered by its PgliteHost.
 */
export function pgliteHandler(): (m: Record<string, unknown>) => Promise<unknown> {
  let host: PgliteHost | undefined;
  return async (message) => {
    const m = message as PgliteRequest;
    if (m.op !== 'open') {
      if (!host) throw new Error('the database is not open');
      return host.handle(m);
    }
    if (host) throw new Error('the database is already open');
    host = new PgliteHost(await openPglite(m.path, m.schema));
    return undefined;
  };
}
