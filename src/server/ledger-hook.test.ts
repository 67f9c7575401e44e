// The ledger hook on a real Fastify server: a request's row is written once its settlement has run
// (a stream abandoned by its client is settled after the socket closed), with 499 for a response that
// did not finish; at shutdown the rows still waiting are written before close returns; a settlement
// that never comes delays a row only for the bounded wait.
import Fastify, { type FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { ANONYMOUS, LazyLogContext, defaultRequestOptions, newFacts } from '../gateway/context.js';
import { Cancellation } from '../providers/cancel.js';
import { LedgerWriter, type LedgerEntry } from '../store/ledger.js';
import type { SqlDatabase } from '../store/sql.js';
import { createLogger } from '../telemetry/logger.js';
import { GatewayError } from './errors.js';
import { ledgerHook } from './ledger-hook.js';
import './request-context.js';
import { sendOutcome } from './respond.js';

const log = createLogger('silent');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

/**
 * A server whose /stream route starts an SSE response that never ends by itself, with a settlement
 * the test completes (`settle`), as admission does when the stream ends or its client leaves.
 */
/** The real writer's recordAfter and recorded, with the rows it records kept here instead of queued for the database. */
class CapturingLedger extends LedgerWriter {
  readonly rows: LedgerEntry[] = [];
  constructor() {
    super({} as SqlDatabase, log, { flushIntervalMs: 60_000, batchSize: 200 });
  }
  override record(entry: LedgerEntry): void {
    this.rows.push(entry);
  }
}

async function server(settlementWaitMs?: number) {
  const ledger = new CapturingLedger();
  const rows = ledger.rows;
  let settle: (() => void) | undefined;
  app = Fastify();
  await app.register(ledgerHook, { ledger, settlementWaitMs });
  app.get('/stream', async (req, reply) => {
    const ctx = new LazyLogContext({ id: req.id, startedAt: performance.now(), endpoint: 'chat', tenant: ANONYMOUS, signal: new Cancellation(), options: defaultRequestOptions(), facts: newFacts(), headers: {} }, log);
    req.ctx = ctx;
    ctx.facts.model = 'm';
    ctx.settlements.track(
      new Promise<void>((resolve) => {
        settle = () => {
          ctx.facts.usage = { prompt_tokens: 3, completion_tokens: 7, total_tokens: 10 };
          ctx.facts.costUsd = 0.007;
          resolve();
        };
      }),
    );
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream' });
    reply.raw.write('data: first\n\n');
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/stream`;
  /** Opens the stream, reads its first event, and hangs up. */
  const abandon = async () => {
    const controller = new AbortController();
    const res = await request(url, { signal: controller.signal });
    await res.body[Symbol.asyncIterator]().next();
    controller.abort();
    await sleep(50);
  };
  return { ledger, rows, abandon, settle: () => settle?.() };
}

describe('ledger hook', () => {
  it('writes the row of an abandoned stream once it is settled: 499 with the usage and cost it was charged', async () => {
    const s = await server();
    await s.abandon();
    expect(s.rows).toEqual([]);
    s.settle();
    await sleep(10);
    expect(s.rows).toHaveLength(1);
    expect(s.rows[0]).toMatchObject({ status: 499, errorCode: 'client_closed_request', promptTokens: 3, completionTokens: 7, costUsd: 0.007, model: 'm' });
  });

  it('lets a reader wait for the rows of answered requests still waiting for their settlement (GET /v1/spend does)', async () => {
    const s = await server();
    await s.abandon();
    let recorded = false;
    const reading = s.ledger.recorded().then(() => (recorded = true));
    await sleep(20);
    expect([recorded, s.rows.length]).toEqual([false, 0]);
    s.settle();
    await reading;
    expect(s.rows).toHaveLength(1);
    await s.ledger.recorded(); // nothing waiting: at once
  });

  it('writes rows still waiting for their settlement before close returns', async () => {
    const s = await server();
    await s.abandon();
    setTimeout(s.settle, 200);
    await app!.close();
    app = undefined;
    expect(s.rows).toHaveLength(1);
    expect(s.rows[0]).toMatchObject({ status: 499, costUsd: 0.007 });
  });

  it('writes the row as it stands when the settlement does not come within the wait', async () => {
    const s = await server(100);
    await s.abandon();
    await sleep(200);
    expect(s.rows).toHaveLength(1);
    expect(s.rows[0]).toMatchObject({ status: 499, completionTokens: 0, costUsd: 0 });
    s.settle();
    await sleep(10);
    expect(s.rows).toHaveLength(1);
  });

  it('records a stream that failed after it started with its error, not as a success', async () => {
    const ledger = new CapturingLedger();
    app = Fastify();
    await app.register(ledgerHook, { ledger });
    app.get('/fails', async (req, reply) => {
      const ctx = new LazyLogContext({ id: req.id, startedAt: performance.now(), endpoint: 'chat', tenant: ANONYMOUS, signal: new Cancellation(), options: defaultRequestOptions(), facts: newFacts(), headers: {} }, log);
      req.ctx = ctx;
      async function* chunks() {
        yield { id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta: { content: 'hel' }, finish_reason: null }] } as never;
        throw new GatewayError('upstream_error');
      }
      return sendOutcome(reply, ctx, { kind: 'stream', stream: chunks() }, true, {
        json: () => ({}),
        events: async function* (source) {
          for await (const c of source) yield { data: JSON.stringify(c) };
        },
        errorEvent: (e) => ({ event: 'error', data: e.code }),
      });
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const res = await request(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/fails`);
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toContain('event: error');
    await expect.poll(() => ledger.rows.length).toBe(1);
    expect(ledger.rows[0]).toMatchObject({ status: 502, errorCode: 'upstream_error' });
  });
});
