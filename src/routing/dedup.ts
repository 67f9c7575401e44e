// Request deduplication (seed 002): identical in-flight requests of one tenant share one upstream
// call. A JSON answer is handed to every waiting client; a stream is fanned out, each client getting
// every chunk from the first (late joiners replay what was already sent). The shared call is
// cancelled only when every client has gone. Every client is billed the answer's cost, as if it had
// been called alone: dedup saves upstream load, it does not make a tenant's bill depend on timing.
import { hash } from 'node:crypto';
import type { ChatChunk, ChatRequest } from '../canonical/chat.js';
import { deriveContext, newFacts, type RequestContext, type ResponseFacts } from '../gateway/context.js';
import type { ChatOutcome } from '../gateway/pipeline.js';
import { Cancellation } from '../providers/cancel.js';
import { GatewayError } from '../server/errors.js';

/** Requests (by their facts) that make their own call whatever `dedup` says: test-time scaling's passes are independent samples. */
const alone = new WeakSet<ResponseFacts>();
export function callAlone(ctx: RequestContext): RequestContext {
  alone.add(ctx.facts);
  return ctx;
}

/** Whether `ctx` was marked to make its own call (the router then skips deduplication). */
export function callsAlone(ctx: RequestContext): boolean {
  return alone.has(ctx.facts);
}

export function dedupKey(ctx: RequestContext, req: ChatRequest): string {
  return hash('sha256', `${ctx.tenant.id}\u0000${JSON.stringify(req)}`, 'base64url');
}

/** Buffers one stream's chunks for any number of readers; pumps the source once. */
class Broadcast {
  private readonly chunks: ChatChunk[] = [];
  private ended = false;
  private error: unknown;
  private wake: (() => void)[] = [];

  constructor(
    source: AsyncIterable<ChatChunk>,
    private readonly onEnd: () => void,
  ) {
    void this.pump(source);
  }

  private async pump(source: AsyncIterable<ChatChunk>): Promise<void> {
    try {
      for await (const chunk of source) {
        this.chunks.push(chunk);
        this.notify();
      }
    } catch (err) {
      this.error = err;
    } finally {
      this.ended = true;
      this.notify();
      this.onEnd();
    }
  }

  private notify(): void {
    const w = this.wake;
    this.wake = [];
    for (const f of w) f();
  }

  /** A reader from the first chunk; `onLeave` runs once when it finishes or is abandoned. */
  reader(onLeave: (completed: boolean) => void): AsyncIterable<ChatChunk> {
    const self = this;
    return {
      async *[Symbol.asyncIterator]() {
        let i = 0;
        let completed = false;
        try {
          while (true) {
            if (i < self.chunks.length) {
              yield self.chunks[i++] as ChatChunk;
              continue;
            }
            if (self.ended) {
              if (self.error !== undefined) throw self.error;
              completed = true;
              return;
            }
            await new Promise<void>((resolve) => self.wake.push(resolve));
          }
        } finally {
          onLeave(completed);
        }
      },
    };
  }
}

interface SharedCall {
  cancel: Cancellation;
  subscribers: number;
  facts: ResponseFacts;
  outcome: Promise<{ kind: 'result'; outcome: ChatOutcome } | { kind: 'stream'; broadcast: Broadcast }>;
  settled: boolean;
}

/** Runs the one shared call; `cancel` fires when every client has gone. */
export type SharedRunner = (sharedCtx: RequestContext, cancel: Cancellation) => Promise<ChatOutcome>;

export class Deduplicator {
  private readonly inflight = new Map<string, SharedCall>();

  constructor(private readonly onJoin: (label: string, stream: boolean) => void = () => {}) {}

  get size(): number {
    return this.inflight.size;
  }

  /** `label` names the request in the join event (its model). */
  async run(key: string, label: string, ctx: RequestContext, stream: boolean, runner: SharedRunner): Promise<ChatOutcome> {
    // A client that left during the stages before routing: its abort listener would never fire (an
    // aborted signal calls no new listener), so it would hold the shared call alive, or start one,
    // for nobody.
    if (ctx.signal.aborted) throw new GatewayError('client_closed_request');
    let call = this.inflight.get(key);
    const leader = !call;
    if (!call) call = this.start(key, ctx, runner);
    else this.onJoin(label, stream);
    const shared = call;
    shared.subscribers++;
    let left = false;
    const leave = () => {
      if (left) return;
      left = true;
      ctx.signal.removeEventListener('abort', onAbort);
      if (--shared.subscribers === 0 && !shared.settled) {
        shared.cancel.abort(ctx.signal.reason ?? new Error('every client went away'));
        // A new identical request starts a call of its own rather than join the cancelled one.
        if (this.inflight.get(key) === shared) this.inflight.delete(key);
      }
    };
    // A client that leaves before the answer is settled at once (499), as without dedup: not held
    // until the shared call ends (its concurrency slot and budget reservation with it), nor charged
    // for an answer it never got.
    let clientGone: (err: unknown) => void = () => undefined;
    const gone = new Promise<never>((_, reject) => (clientGone = reject));
    gone.catch(() => undefined);
    const onAbort = () => {
      leave();
      clientGone(new GatewayError('client_closed_request'));
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    let got: Awaited<SharedCall['outcome']>;
    try {
      got = await Promise.race([shared.outcome, gone]);
    } catch (err) {
      leave();
      throw err;
    }
    copyFacts(shared.facts, ctx.facts, leader);
    if (got.kind === 'result') {
      leave();
      if (!leader) ctx.facts.route = joinRoute(ctx.facts.route);
      return got.outcome;
    }
    if (!leader) ctx.facts.route = joinRoute(ctx.facts.route);
    return {
      kind: 'stream',
      stream: got.broadcast.reader((completed) => {
        // Final numbers (cost settles on the usage chunk) are known only now. A client that left
        // before them keeps what its own stream's accounting estimated from the text it was sent.
        copyFacts(shared.facts, ctx.facts, leader, !completed && shared.facts.usage === undefined);
        if (!leader) ctx.facts.route = joinRoute(ctx.facts.route);
        leave();
      }),
    };
  }

  private start(key: string, ctx: RequestContext, runner: SharedRunner): SharedCall {
    const cancel = new Cancellation();
    const facts = newFacts();
    const sharedCtx = deriveContext(ctx, { facts });
    const call: SharedCall = { cancel, subscribers: 0, facts, settled: false, outcome: undefined as never };
    const done = () => {
      call.settled = true;
      if (this.inflight.get(key) === call) this.inflight.delete(key);
    };
    call.outcome = runner(sharedCtx, cancel).then(
      (outcome) => {
        if (outcome.kind === 'result') {
          done();
          return { kind: 'result' as const, outcome };
        }
        return { kind: 'stream' as const, broadcast: new Broadcast(outcome.stream, done) };
      },
      (err: unknown) => {
        done();
        throw err;
      },
    );
    // Every subscriber awaits `outcome`; this keeps a failure with no subscriber left from being unhandled.
    call.outcome.catch(() => undefined);
    this.inflight.set(key, call);
    return call;
  }
}

function joinRoute(route: string | undefined): string {
  if (route?.endsWith('dedup=joined')) return route;
  return route ? `${route}; dedup=joined` : 'dedup=joined';
}

/**
 * `leader`: the client whose request made the upstream call (the others made no attempt).
 * `keepUsage`: leave `to`'s usage and cost as they are (a client gone before the shared usage was known).
 */
function copyFacts(from: ResponseFacts, to: ResponseFacts, leader: boolean, keepUsage = false): void {
  to.provider = from.provider;
  to.model = from.model;
  to.deployment = from.deployment;
  to.latencyMs = from.latencyMs;
  to.route = from.route;
  if (from.fallbackGroup !== undefined) to.fallbackGroup = from.fallbackGroup;
  to.attempts = leader ? from.attempts : 0;
  if (!keepUsage) {
    to.costUsd = from.costUsd;
    to.usage = from.usage;
  }
  if (from.discardedTokens !== undefined) to.discardedTokens = from.discardedTokens;
}
