// The per-request context that travels beside the canonical payload through every stage: who asked,
// what they asked for beyond the OpenAI body, and the facts gathered on the way (who answered, what it
// cost), which the route adapters surface as x-inferenceflow-* headers and in seed response bodies.
import type { Context as TraceContext } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { addUsage, type Usage } from '../canonical/chat.js';
import type { CancelSignal } from '../providers/cancel.js';

export type TenantKind = 'anonymous' | 'token' | 'key' | 'jwt';

export interface Tenant {
  /** Stable id used to namespace caches, limits and the ledger. */
  id: string;
  kind: TenantKind;
  keyId?: string;
  userId?: string;
  teamId?: string;
  /** Model names this identity may use; undefined means any. */
  allowedModels?: string[];
  metadata?: Record<string, unknown>;
  /** Limits attached to this identity (an API key's row, or JWT claims). */
  limits?: TenantLimits;
}

export interface TenantLimits {
  rpm?: number;
  tpm?: number;
  maxConcurrency?: number;
  budgetUsd?: number;
  budgetPeriod?: 'day' | 'month';
}

export const ANONYMOUS: Tenant = Object.freeze({ id: 'anonymous', kind: 'anonymous' }) as Tenant;

export type Priority = 'low' | 'normal' | 'high';
export type CacheKind = 'miss' | 'exact' | 'semantic' | 'bypass';

/** Gateway options a request carries beside the OpenAI body (extension fields and headers). */
export interface RequestOptions {
  priority: Priority;
  difficulty?: string;
  sessionId?: string;
  /** Cache-Control directives and the bypass header, parsed. */
  cache: { noCache: boolean; noStore: boolean; maxAgeS?: number };
  /** Free-form metadata (seed 002 `metadata`). */
  metadata?: Record<string, unknown>;
  /** How test-time scaling combines passes (`x-inferenceflow-aggregation` or a seed body field). */
  aggregation?: string;
  /**
   * A later call of a request made of several (a legacy completion with several prompts): the
   * request was already counted by the request-rate limits, so its calls reserve tokens only.
   */
  requestCounted?: boolean;
}

export interface ResponseFacts {
  provider?: string;
  model?: string;
  deployment?: string;
  /** Gateway-measured upstream latency summed over attempts, ms (streams: to the first chunk). */
  latencyMs?: number;
  costUsd: number;
  usage?: Usage;
  /**
   * Tokens spent by calls whose answers were dropped (a hedge race's loser: its prompt, or all of
   * it when it answered too). In `costUsd` already, not in `usage` (the answer's); token limits add them.
   */
  discardedTokens?: number;
  cache?: CacheKind;
  similarity?: number;
  /** On a cache hit: what the original call cost, i.e. what this answer saved. */
  savedUsd?: number;
  route?: string;
  /** The model group that answered in place of the one asked for (a fallback); the cache keeps no such answer. */
  fallbackGroup?: string;
  passes?: number;
  /** What test-time scaling did (level, its source, aggregation, votes), for seed response metadata. */
  scaling?: Record<string, unknown>;
  attempts: number;
  /** Extra response headers a stage wants sent (rate-limit state), on success and stream alike. */
  headers?: Record<string, string>;
}

/**
 * Work a request still owes after its response is over: admission settling what it reserved, which
 * for a stream happens when the stream ends — after the socket's `close` when the client left
 * mid-stream. Whoever records the request (the ledger) waits for it, so the record shows what the
 * limits and budgets were charged. Shared by every context derived from the request's.
 */
export class Settlements {
  private pending: Set<Promise<unknown>> | undefined = undefined;

  /** Tracks `work` until it settles (it must not be left pending forever). */
  track(work: Promise<unknown>): void {
    const pending = (this.pending ??= new Set());
    pending.add(work);
    const drop = () => pending.delete(work);
    work.then(drop, drop);
  }

  /** undefined when nothing is owed; else resolves once everything tracked, also meanwhile, has settled. */
  done(): Promise<void> | undefined {
    if (!this.pending?.size) return undefined;
    const pending = this.pending;
    return (async () => {
      while (pending.size > 0) await Promise.allSettled([...pending]);
    })();
  }
}

/**
 * How long a request's ledger row, log line and metrics wait for its settlement before they are
 * written with the facts as they are. Settling is a Redis round trip once the stream has ended or its
 * client left; this bounds a request whose stream nobody ends (and shutdown), so no row is ever lost
 * to a wait.
 */
export const SETTLEMENT_WAIT_MS = 5_000;

/**
 * Resolves once what `ctx` still owes (a stream's settlement after its client left) has settled, or
 * after `capMs` with `onLate` called; undefined when nothing is owed, so the caller goes on at once.
 */
export function afterSettlement(ctx: Pick<RequestContext, 'settlements'>, capMs: number, onLate: () => void): Promise<void> | undefined {
  const owed = ctx.settlements?.done();
  if (!owed) return undefined;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      onLate();
      resolve();
    }, capMs);
  });
  return Promise.race([owed, late]).then(() => clearTimeout(timer));
}

export interface RequestContext {
  readonly id: string;
  /** performance.now() at arrival. */
  readonly startedAt: number;
  readonly endpoint: string;
  tenant: Tenant;
  /** Fires when the client goes away before its answer is complete. */
  readonly signal: CancelSignal;
  readonly log: Logger;
  readonly options: RequestOptions;
  readonly facts: ResponseFacts;
  readonly clientIp?: string;
  readonly headers: Record<string, string | string[] | undefined>;
  /** The OpenTelemetry context of the request's span; stage and attempt spans are its children. */
  readonly traceContext?: TraceContext;
  /** What the request owes after its response is over (contexts made without one owe nothing trackable). */
  readonly settlements?: Settlements;
}

/**
 * A request context whose child logger is made on first use: most requests never log, and a pino
 * child costs an allocation and a serialisation of its bindings.
 *
 * A class, not an object literal with a `get log()`: V8 builds a literal with an accessor on a slow
 * path (it comes out in dictionary mode), and measured, whatever such a literal's getter closure
 * captured (here the whole request: Fastify request and reply, headers, body) survived every
 * young-generation GC until the next full one. At 1,000 req/s that promoted ~1.1 MB per scavenge
 * and tripled each scavenge's pause; with a class, 50-75 KB (bench/RESULTS.md, "Where the p99 went").
 */
export class LazyLogContext implements RequestContext {
  readonly id: string;
  readonly startedAt: number;
  readonly endpoint: string;
  tenant: Tenant;
  readonly signal: CancelSignal;
  readonly options: RequestOptions;
  readonly facts: ResponseFacts;
  readonly clientIp?: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly traceContext?: TraceContext;
  readonly settlements: Settlements;
  private child: Logger | undefined = undefined;

  constructor(
    init: Omit<RequestContext, 'log'>,
    private readonly parentLog: Logger,
  ) {
    this.id = init.id;
    this.startedAt = init.startedAt;
    this.endpoint = init.endpoint;
    this.tenant = init.tenant;
    this.signal = init.signal;
    this.options = init.options;
    this.facts = init.facts;
    this.clientIp = init.clientIp;
    this.headers = init.headers;
    this.traceContext = init.traceContext;
    this.settlements = init.settlements ?? new Settlements();
  }

  get log(): Logger {
    return (this.child ??= this.parentLog.child({ reqId: this.id, tenant: this.tenant.id }));
  }

  /** A copy with `patch` applied that shares the logger if it was made already. */
  derive(patch: ContextPatch): LazyLogContext {
    // The spread carries the own fields (the getter stays on the prototype); the constructor reads
    // only the context's.
    const copy = new LazyLogContext({ ...this, ...patch }, this.parentLog);
    copy.child = this.child;
    return copy;
  }
}

export type ContextPatch = Partial<Pick<RequestContext, 'signal' | 'facts' | 'options'>>;

/** `ctx` with `patch` applied. Use this, not `{ ...ctx }`: a spread drops a class's `log` getter. */
export function deriveContext(ctx: RequestContext, patch: ContextPatch): RequestContext {
  return ctx instanceof LazyLogContext ? ctx.derive(patch) : { ...ctx, ...patch };
}

/** No Cache-Control directive and no bypass (nearly every request): one shared, frozen object. */
export const NO_CACHE_DIRECTIVES: RequestOptions['cache'] = Object.freeze({ noCache: false, noStore: false });

export function defaultRequestOptions(): RequestOptions {
  return { priority: 'normal', cache: NO_CACHE_DIRECTIVES };
}

export function newFacts(): ResponseFacts {
  return { costUsd: 0, attempts: 0 };
}

/** Adds what one of several calls made for a request spent into the request's facts: cost, attempts, upstream latency and usage. */
export function addSpend(total: ResponseFacts, f: ResponseFacts): void {
  total.costUsd += f.costUsd;
  total.attempts += f.attempts;
  if (f.latencyMs !== undefined) total.latencyMs = (total.latencyMs ?? 0) + f.latencyMs;
  if (f.usage) total.usage = total.usage ? addUsage(total.usage, f.usage) : { ...f.usage };
  if (f.discardedTokens) total.discardedTokens = (total.discardedTokens ?? 0) + f.discardedTokens;
}
