// The requester's side of the mesh: publishes requests to the ingress stream and reads answers from
// one callback stream per requester process (one blocking connection, whatever the concurrency),
// handing each request its events in order. Used by the gateway's `mesh` provider and by tests.
import type { CancelSignal } from '../providers/cancel.js';
import { randomBytes, randomUUID } from 'node:crypto';
import { isClusterUrl, type RedisClient } from '../store/redis.js';
import type { Logger } from 'pino';
import type { ChatRequest } from '../canonical/chat.js';
import { backoffMs, connectOrFail, createMeshRedis, sleep, type StreamReply } from './connection.js';
import { decodeEvent, encodeRequest, entryData, FIELD, isFinalEvent, meshKeys, type MeshEvent, type MeshKeys, type MeshRequest } from './contracts.js';
import { markAbandoned } from './delivery.js';

export interface MeshClientOptions {
  redisUrl: string;
  keyPrefix: string;
  /** Names this requester's callback stream; random by default. */
  requesterId?: string;
  log?: Logger;
  /** How long after a request's deadline its call is given up (the router's own timeout answer may come), ms. */
  deadlineGraceMs?: number;
}

export interface SubmitOptions {
  stream: boolean;
  /** Epoch ms. */
  deadline: number;
  /** The requester's id for the request (informational: the mesh id is always a fresh UUID). */
  requestId?: string;
  /** When aborted the request is marked done so no node starts it; events stop. */
  signal?: CancelSignal;
  /**
   * How long publishing may wait for Redis, ms (default and at most: until the deadline). Past it, or
   * when `signal` aborts first, submit() rejects and the request is marked abandoned.
   */
  publishTimeoutMs?: number;
}

/** Events of one request, in order; ends after its final event (or when the deadline passes). */
export class MeshCall implements AsyncIterable<MeshEvent> {
  private readonly items: MeshEvent[] = [];
  private ended = false;
  /** Whether the request's final event arrived (the request is over on the mesh too). */
  private answered = false;
  private wake: (() => void) | undefined;

  constructor(
    readonly request: MeshRequest,
    /** Called when iteration stops, however it stops; `answered` is whether the final event arrived. */
    private readonly onEnd: (answered: boolean) => void,
  ) {}

  push(e: MeshEvent): void {
    if (this.ended) return;
    this.items.push(e);
    if (isFinalEvent(e)) this.ended = this.answered = true;
    this.notify();
  }

  end(): void {
    this.ended = true;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<MeshEvent> {
    try {
      while (true) {
        const next = this.items.shift();
        if (next) {
          yield next;
          if (isFinalEvent(next)) return;
          continue;
        }
        if (this.ended) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    } finally {
      this.onEnd(this.answered);
    }
  }
}

/** How long one read of the callback stream blocks, ms. */
const READ_BLOCK_MS = 1_000;
/** Grace after a request's deadline for the router's own timeout answer to arrive. */
const DEADLINE_GRACE_MS = 2_000;
/** setTimeout's largest delay (a longer one fires at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A call this client still routes events to, with what must be undone when it is forgotten. */
interface Tracked {
  call: MeshCall;
  timer: NodeJS.Timeout;
  /** Ends the call, forgets it, and marks the request abandoned (the promise never rejects). */
  giveUp: (why: 'timed_out' | 'cancelled') => Promise<void>;
  signal?: CancelSignal;
  onAbort?: () => void;
}

export class MeshClient {
  readonly keys: MeshKeys;
  readonly callback: string;
  private commands!: RedisClient;
  private reader!: RedisClient;
  private readonly calls = new Map<string, Tracked>();
  private loop: Promise<void> | undefined;
  private closing = false;
  private lastId = '$';
  /** Ends the read in progress (close): disconnect() does not end one that waits for a connection that is down. */
  private interruptRead: (() => void) | undefined;

  constructor(private readonly opts: MeshClientOptions) {
    this.keys = meshKeys(opts.keyPrefix, isClusterUrl(opts.redisUrl));
    this.callback = this.keys.callbacks(opts.requesterId ?? `${process.pid}-${randomBytes(4).toString('hex')}`);
  }

  async connect(): Promise<void> {
    // Commands fail rather than wait out a Redis outage: callers have deadlines and may leave. The
    // reader may wait: its loop backs off and resumes by itself.
    this.commands = createMeshRedis(this.opts.redisUrl, 'client', { failFast: true });
    this.reader = createMeshRedis(this.opts.redisUrl, 'client:reader', { blockMs: READ_BLOCK_MS });
    await connectOrFail(this.commands);
    await connectOrFail(this.reader);
    for (const c of [this.commands, this.reader]) c.on('error', (err: Error) => this.opts.log?.debug({ err: err.message }, 'mesh client: redis connection error'));
    // Start reading from the stream's current end: anything earlier belongs to a previous life.
    const last = (await this.commands.xrevrange(this.callback, '+', '-', 'COUNT', 1)) as [string, string[]][];
    this.lastId = last[0]?.[0] ?? '0-0';
    this.loop = this.read();
  }

  get redis(): RedisClient {
    return this.commands;
  }

  get pending(): number {
    return this.calls.size;
  }

  /** Publishes a request; its events arrive on the returned call. */
  async submit(payload: ChatRequest, opts: SubmitOptions): Promise<MeshCall> {
    const now = Date.now();
    const req: MeshRequest = {
      // Never from the caller: the id keys the request's done-key and its events here, so one a
      // client could repeat would let its requests retire or answer each other.
      id: randomUUID(),
      model: payload.model,
      payload,
      stream: opts.stream,
      callback: this.callback,
      deadline: opts.deadline,
      attempt: 1,
      created: now,
      // The same deadline without this machine's clock: nodes count it on the mesh's.
      budget_ms: Math.max(0, opts.deadline - now),
      ...(opts.requestId !== undefined ? { request_id: opts.requestId } : {}),
    };
    // A consumer that stops before the answer is complete (a stream ended as interrupted, a reader
    // gone) gives the request up: otherwise a node would go on generating it for nobody.
    const call = new MeshCall(req, (answered) => (answered ? this.forget(req.id) : this.abandon(req.id)));
    // Given up at the deadline (plus grace) or on abort: the call ends, and is forgotten here even if
    // nobody iterates it to its end.
    const giveUp = (why: 'timed_out' | 'cancelled'): Promise<void> => {
      call.end();
      this.forget(req.id);
      return markAbandoned(this.commands, this.keys, req.id, why).catch(() => undefined);
    };
    const tracked: Tracked = { call, giveUp, timer: setTimeout(() => void giveUp('timed_out'), Math.max(0, opts.deadline - now) + (this.opts.deadlineGraceMs ?? DEADLINE_GRACE_MS)) };
    this.calls.set(req.id, tracked);
    if (opts.signal) {
      tracked.signal = opts.signal;
      tracked.onAbort = () => void giveUp('cancelled');
      opts.signal.addEventListener('abort', tracked.onAbort, { once: true });
    }
    if (opts.signal?.aborted) {
      // Cancelled before it left: never published (an aborted signal calls no listener).
      void giveUp('cancelled');
      return call;
    }
    try {
      await this.publish(req, opts.signal, Math.min(opts.publishTimeoutMs ?? Infinity, req.budget_ms ?? 0, MAX_TIMER_MS));
    } catch (err) {
      // Not published, or perhaps later (the XADD may still be queued for the connection): marked
      // abandoned behind it, so no node runs it. An abort has done so already.
      if (this.calls.has(req.id)) void giveUp('timed_out');
      throw err;
    }
    return call;
  }

  /**
   * XADD of a request, waited for at most `withinMs` and until `signal` aborts: while Redis is away
   * the command waits for the connection (a couple of reconnect attempts), its caller must not.
   */
  private async publish(req: MeshRequest, signal: CancelSignal | undefined, withinMs: number): Promise<void> {
    // Submits of one event-loop turn leave in one socket write (createRedis coalesces writes).
    const xadd = this.commands.xadd(this.keys.requests, '*', FIELD, encodeRequest(req));
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      await Promise.race([
        xadd,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`Redis did not take the request within ${withinMs} ms`)), withinMs);
          onAbort = () => reject(new Error('cancelled while waiting for Redis to take the request'));
          signal?.addEventListener('abort', onAbort, { once: true });
        }),
      ]);
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Gives a call up before its deadline (the requester stopped waiting): its events end, and the
   * request is marked done so no node starts it and a node running it stops.
   */
  abandon(id: string, why: 'timed_out' | 'cancelled' = 'cancelled'): void {
    void this.calls.get(id)?.giveUp(why);
  }

  private forget(id: string): void {
    const tracked = this.calls.get(id);
    if (!tracked) return;
    this.calls.delete(id);
    clearTimeout(tracked.timer);
    if (tracked.onAbort) tracked.signal?.removeEventListener('abort', tracked.onAbort);
  }

  private async read(): Promise<void> {
    let failures = 0;
    let reads = 0;
    while (!this.closing) {
      try {
        // A new promise per read (not one shared one): a race's reaction stays on its promises until they settle.
        const interrupted = new Promise<null>((resolve) => (this.interruptRead = () => resolve(null)));
        const reply = (await Promise.race([this.reader.xread('COUNT', 500, 'BLOCK', READ_BLOCK_MS, 'STREAMS', this.callback, this.lastId), interrupted])) as StreamReply;
        failures = 0;
        const entries = reply?.[0]?.[1] ?? [];
        for (const [id, fields] of entries) {
          this.lastId = id;
          const raw = entryData(fields);
          const event = raw === undefined ? undefined : decodeEvent(raw);
          if (event) this.calls.get(event.id)?.call.push(event);
        }
        // Events once read are not needed again: trim behind the reader now and then.
        if (entries.length && ++reads % 20 === 0) await this.commands.xtrim(this.callback, 'MINID', '~', this.lastId);
      } catch (err) {
        if (this.closing) break;
        failures++;
        this.opts.log?.warn({ err: (err as Error).message }, 'mesh client: reading the callback stream failed (retrying)');
        await sleep(backoffMs(failures));
      }
    }
  }

  /** Stops reading; requests still in flight are marked abandoned, so nodes stop (or never start) them. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const abandoned = [...this.calls.values()].map((tracked) => tracked.giveUp('cancelled'));
    this.reader.disconnect();
    this.interruptRead?.();
    await Promise.all(abandoned);
    await this.loop;
    await this.commands.del(this.callback).catch(() => undefined);
    await this.commands.quit().catch(() => this.commands.disconnect());
  }
}
