// Connecting to a Postgres that never answers (a host dropping packets, a wrong port held by something
// else) fails within the connect timeout instead of hanging start-up, a ledger flush or a key lookup
// for the operating system's TCP timeout.
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSql } from './sql.js';

let silent: Server;
let port = 0;
const sockets: Socket[] = [];

beforeAll(async () => {
  // Accepts the TCP connection and never says a word: the startup handshake never completes.
  silent = createServer((s) => void sockets.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  port = (silent.address() as { port: number }).port;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => silent.close(() => r()));
});

describe('openSql on a Postgres that never answers', () => {
  for (const schema of [undefined, 'connect_timeout_test']) {
    it(`gives up after the connect timeout${schema ? ' (with a schema to create)' : ''}`, async () => {
      const err = await openSql({ url: `postgres://postgres@127.0.0.1:${port}/test`, pglitePath: '', schema, connectTimeoutMs: 300 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/timeout/i);
    }, 20_000); // without a connect timeout it waits for the OS's (minutes): this test's own timeout fails it
  }
});
