// Admission: the chat stage that runs first after authentication, before the cache and routing.
// It builds the request's limit rules (configured rules per key/user/session/IP/endpoint/model,
// the seed defaults per identity, the identity's own RPM/TPM/concurrency), reserves one request and
// the estimated tokens (real tokenizer prompt count plus max_tokens, for every call a test-time
// scaling plan may make) in one atomic check, reserves the estimated cost on the identity's budgets, and corrects both once usage is known — for a
// stream, when it ends or its client goes away. Rate-limit state goes out as headers on success and on 429.
import { randomUUID } from 'node:crypto';
import type { ChatChunk, ChatRequest, Usage } from '../canonical/chat.js';
import { contentText, requestedMaxTokens } from '../canonical/chat.js';
import type { LimitDimension, RateLimitingConfig } from '../config/schema.js';
import type { RequestContext, Tenant } from '../gateway/context.js';
import type { ChatHandler, ChatOutcome, ChatStage } from '../gateway/pipeline.js';
import { costUsd, type Price } from '../providers/pricing.js';
import { countTextTokens } from '../providers/tokens.js';
import { promptTokensOf } from '../routing/prompt-tokens.js';
import { GatewayError, type GatewayErrorOptions } from '../server/errors.js';
import { escapeText } from '../server/headers.js';
import type { PlannedUsage } from '../scaling/stage.js';
import type { BudgetLine, BudgetManager, BudgetReservation } from './budgets.js';
import type { LimitRule, LimiterStore, ReservationStore, RuleState } from './sliding-window.js';

export interface AdmissionOptions {
  limiter: LimiterStore;
  config: RateLimitingConfig;
  budgets?: BudgetManager;
  /**
   * What a request may use upstream under test-time scaling — every pass and the judge, each with
   * its model and tokens — or undefined when it runs once as sent (src/scaling/stage.ts plannedUsage).
   */
  plannedUsage?(ctx: RequestContext, req: ChatRequest, promptTokens: number): PlannedUsage[] | undefined;
  /**
   * Without `deployment`: the highest price among the model's deployments (a conservative estimate
   * before routing). With it: that deployment's price when it is known (the one that served the
   * request), else the highest.
   */
  priceOf(model: string, deployment?: string): Price | undefined;
  /**
   * Told when a stream's usage is estimated here because it ended without a usage chunk (client
   * gone, upstream cut): the estimated usage and the cost it added to the request. No upstream
   * reported these tokens, so no attempt recorded them — telemetry's `usageEstimated` records them
   * (inference_tokens_total, inference_cost_usd_total, /v1/stats cost) as the budget and ledger got them.
   */
  onUsageEstimated?(ctx: RequestContext, usage: Usage, costUsd: number): void;
  /** Told of every request a limit or budget refuses, with the kind of limit (inference_rate_limited_total). */
  onRefused?(limit: RefusingLimit): void;
  /**
   * Whether the model's group hedges (`hedging.enabled`): a hedged call may run twice, both costed,
   * so its tokens and cost are reserved twice (settled to what ran).
   */
  hedges?(model: string): boolean;
  /**
   * Whether a call with `n` choices may be answered by a deployment that makes one upstream call per
   * choice (Anthropic, Cohere, Ollama, local, mesh — in the model's group or one it may fall back
   * to): each of those calls reads the prompt, so the prompt is reserved n times.
   */
  promptPerChoice?(model: string): boolean;
}

/** The kind of limit that refused a request: a request or token window, concurrency, or a budget (402). */
export type RefusingLimit = 'requests' | 'tokens' | 'concurrency' | 'budget';

/**
 * Admission's refusal by a rate limit, saying which kind of rule refused the request: a 429
 * rate_limit_exceeded the client may retry after Retry-After, or a 400 request_too_large for a
 * request larger than a token limit allows in a whole window, which no retry can admit.
 */
export class RateLimitRefusal extends GatewayError {
  constructor(
    readonly limit: Exclude<RefusingLimit, 'budget'>,
    opts: GatewayErrorOptions,
    code: 'rate_limit_exceeded' | 'request_too_large' = 'rate_limit_exceeded',
  ) {
    super(code, opts);
  }
}

/**
 * The limit behind a refusal that admission threw — `requests`, `tokens`, `concurrency`, or `budget`
 * for a budget_exceeded (402) — else undefined (the `limit` label of inference_rate_limited_total).
 */
export function refusedBy(err: unknown): RefusingLimit | undefined {
  if (err instanceof RateLimitRefusal) return err.limit;
  if (err instanceof GatewayError && err.code === 'budget_exceeded') return 'budget';
  return undefined;
}

interface Reserved {
  rule: LimitRule;
  /** What a window rule reserved, so it can be corrected. */
  tokens: boolean;
}

/** The value a rule's dimension counts by, for this request (undefined: the rule does not apply). */
export function dimensionValue(d: LimitDimension, ctx: RequestContext, req: ChatRequest): string | undefined {
  const t: Tenant = ctx.tenant;
  switch (d) {
    case 'tenant':
      return t.id;
    case 'key':
      return t.keyId;
    case 'user':
      return t.userId ?? (t.kind === 'anonymous' ? undefined : t.id);
    case 'team':
      return t.teamId;
    case 'session':
      // Session ids come from the client: another tenant could send the same one. Both parts are
      // escaped before the join, so no tenant id or session id containing `/` aliases another pair.
      return ctx.options.sessionId === undefined ? undefined : `${escapeText(t.id)}/${escapeText(ctx.options.sessionId)}`;
    case 'ip':
      return ctx.clientIp === undefined ? undefined : clientAddressKey(ctx.clientIp);
    case 'endpoint':
      return ctx.endpoint;
    case 'model':
      return req.model;
  }
}

/**
 * Contexts of Batch API lines (src/batching/jobs/execute-item.ts). They pace themselves
 * (`batch_jobs.concurrency`), as OpenAI's Batch API has limits apart from a key's, so no rate-limit
 * rule — default, configured or the identity's own, window or concurrency — counts or refuses them:
 * a batch neither loses its lines to 429s nor uses up its tenant's interactive window. Budgets
 * still apply: a line spends money like any request.
 */
const selfPaced = new WeakSet<RequestContext>();

/** Exempts a context from the rate limits (not the budgets): a batch line's. */
export function exemptFromRateLimits(ctx: RequestContext): void {
  selfPaced.add(ctx);
}

/**
 * Whom the default limits (`RATE_LIMIT_RPM` …) count: the identity, and for an identity that every
 * client shares — no credentials at all, or one static token handed to them all (seed 001's setup) —
 * the client's address too (seed 001: "per IP/client"); one noisy client used up everyone's window.
 */
function defaultClient(ctx: RequestContext): string {
  const t = ctx.tenant;
  return t.kind === 'anonymous' || t.kind === 'token' ? `${t.id}@${ctx.clientIp === undefined ? '' : clientAddressKey(ctx.clientIp)}` : t.id;
}

/**
 * A client address as limits count it: an IPv4 address as it is (an IPv4-mapped IPv6 one too), an
 * IPv6 address by its /64 — one client is given a whole /64 and could take a fresh window with each
 * address in it.
 */
export function clientAddressKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1] as string;
  if (!ip.includes(':')) return ip;
  const [head = '', tail] = (ip.split('%')[0] as string).split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => (Number.parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
}

const NO_LINES: readonly BudgetLine[] = Object.freeze([]);
const NO_CALLS: readonly PlannedUsage[] = Object.freeze([]);
const NO_RULES: readonly Reserved[] = Object.freeze([]);

export function createAdmissionStage(opts: AdmissionOptions): ChatStage {
  const { config, limiter, budgets } = opts;
  const leaseMs = config.concurrency_lease_s * 1000;
  const defaultWindowMs = config.window_s * 1000;

  function rulesFor(ctx: RequestContext, req: ChatRequest, estTokens: number): Reserved[] {
    const out: Reserved[] = [];
    const window = (key: string, limit: number, windowMs: number, tokens: boolean) =>
      out.push({ rule: { kind: 'window', key, limit, windowMs, cost: tokens ? estTokens : ctx.options.requestCounted ? 0 : 1 }, tokens });
    if (config.requests || config.tokens) {
      const client = defaultClient(ctx);
      if (config.requests) window(`rl:default:req:${client}`, config.requests, defaultWindowMs, false);
      if (config.tokens) window(`rl:default:tok:${client}`, config.tokens, defaultWindowMs, true);
    }
    for (const [i, r] of config.rules.entries()) {
      const dims = Array.isArray(r.per) ? r.per : [r.per];
      const values = dims.map((d) => dimensionValue(d, ctx, req));
      if (values.some((v) => v === undefined)) continue;
      // Values are escaped: a client-chosen value containing the separator must not alias another key.
      const id = `rl:${r.name ?? `rule${i}`}:${dims.join('+')}:${values.map((v) => escapeText(v as string)).join('|')}`;
      if (r.requests) window(`${id}:req`, r.requests, r.window_s * 1000, false);
      if (r.tokens) window(`${id}:tok`, r.tokens, r.window_s * 1000, true);
    }
    const l = ctx.tenant.limits;
    if (l?.rpm) window(`rl:ident:req:${ctx.tenant.id}`, l.rpm, 60_000, false);
    if (l?.tpm) window(`rl:ident:tok:${ctx.tenant.id}`, l.tpm, 60_000, true);
    if (l?.maxConcurrency) out.push({ rule: { kind: 'concurrency', key: `rl:conc:${ctx.tenant.id}`, limit: l.maxConcurrency, leaseMs }, tokens: false });
    return out;
  }

  /** Whether a configured rule can apply to anyone (an identity's own limits come with its tenant). */
  const anyRule = config.enabled && (config.requests !== undefined || config.tokens !== undefined || config.rules.length > 0);
  const rulesCountTokens = config.enabled && (config.tokens !== undefined || config.rules.some((r) => r.tokens));

  /**
   * Nothing to reserve or settle for this request, but a stream still goes through countStreamUsage:
   * one abandoned by its client is counted from the text that went out, so the ledger, the metrics
   * and the log line record what the upstream generated (and billed).
   */
  function unreserved(ctx: RequestContext, req: ChatRequest, next: ChatHandler, promptTokens: number): Promise<ChatOutcome> {
    return next(ctx, req).then((outcome) => (outcome.kind === 'result' ? outcome : { kind: 'stream', stream: countStreamUsage(opts, ctx, req, promptTokens, outcome.stream, () => undefined) }));
  }

  // Not an async function: a caller nothing limits (most gateways limit nobody) goes on with one
  // then() and nothing estimated or allocated; admit() does the rest.
  return function admission(ctx: RequestContext, req: ChatRequest, next: ChatHandler): Promise<ChatOutcome> {
    // The client left before its request got here (while it was authenticated, say): nothing is
    // reserved or run for it.
    if (ctx.signal.aborted) return Promise.reject(new GatewayError('client_closed_request'));
    const budgetLines = budgets?.linesFor(ctx.tenant) ?? NO_LINES;
    const limited = !selfPaced.has(ctx);
    if (budgetLines.length === 0 && !(limited && (anyRule || (config.enabled && ctx.tenant.limits !== undefined)))) return unreserved(ctx, req, next, 0);
    return admit(ctx, req, next, budgetLines, limited);
  };

  async function admit(ctx: RequestContext, req: ChatRequest, next: ChatHandler, budgetLines: readonly BudgetLine[], limited: boolean): Promise<ChatOutcome> {
    const needsTokens = limited && (rulesCountTokens || (config.enabled && ctx.tenant.limits?.tpm !== undefined));
    let promptTokens = 0;
    // Every upstream call the request may make: one as sent, or its scaling plan's passes and judge.
    let calls: readonly PlannedUsage[] = NO_CALLS;
    let scaled = false;
    if (needsTokens || budgetLines.length > 0) {
      // Counted once for the request: routing's context-window check reads the same count.
      promptTokens = promptTokensOf(req);
      const planned = opts.plannedUsage?.(ctx, req, promptTokens);
      scaled = planned !== undefined;
      // A legacy completion's `best_of` candidates are each generated (and billed), n or more of them.
      const n = Math.max(req.n ?? 1, req.text_completion?.best_of ?? 1);
      calls = planned ?? [
        {
          model: req.model,
          promptTokens: n > 1 && opts.promptPerChoice?.(req.model) ? promptTokens * n : promptTokens,
          completionTokens: (requestedMaxTokens(req) ?? config.default_completion_tokens) * n,
        },
      ];
      if (opts.hedges) calls = calls.flatMap((c) => (opts.hedges?.(c.model) ? [c, c] : [c]));
    }
    let estTokens = 0;
    for (const c of calls) estTokens += c.promptTokens + c.completionTokens;

    const reserved = limited && config.enabled ? rulesFor(ctx, req, estTokens) : NO_RULES;
    // No rule applies to this caller.
    if (reserved.length === 0 && budgetLines.length === 0) return unreserved(ctx, req, next, promptTokens);
    const leaseId = randomUUID();
    let at = 0;
    // Where the reservation was taken: settled there (a fail-open limiter may have used either store).
    let held: ReservationStore | undefined;
    if (reserved.length > 0) {
      const result = await limiter.acquire(reserved.map((r) => r.rule), leaseId);
      at = result.at;
      held = result.store;
      const headers = rateHeaders(reserved, result.states);
      if (!result.admitted) {
        const limit = refusingRule(reserved, result.states) ?? (result.retryAfterMs < 0 ? 'tokens' : 'requests');
        opts.onRefused?.(limit);
        // Larger than a token limit allows in a whole window: no wait can admit it, so nothing invites
        // a retry (a client library retries a 429 after its Retry-After).
        if (result.retryAfterMs < 0) {
          throw new RateLimitRefusal(
            limit,
            { message: `This request (about ${estTokens} tokens${scaled ? ' over the passes its difficulty plans' : ''}) is larger than a token limit allows in one window, so it can never be admitted; lower max_tokens${scaled ? ' or the difficulty' : ''}.`, headers },
            'request_too_large',
          );
        }
        throw new RateLimitRefusal(limit, { message: 'Rate limit exceeded; retry after the time in Retry-After.', retryAfterMs: Math.max(1, result.retryAfterMs), headers });
      }
      ctx.facts.headers = { ...ctx.facts.headers, ...headers };
    }

    let released = false;
    const releaseLimits = async (actualTokens: number | undefined, refundRequest: boolean) => {
      if (released || !held) return;
      released = true;
      const store = held;
      await Promise.all(
        reserved.map(({ rule, tokens }) => {
          if (rule.kind === 'concurrency') return store.release(rule.key, leaseId);
          if (tokens && actualTokens !== undefined) return store.adjust(rule.key, rule.windowMs, at, actualTokens - rule.cost);
          if (!tokens && refundRequest && rule.cost > 0) return store.adjust(rule.key, rule.windowMs, at, -1);
          return undefined;
        }),
      ).catch((err: unknown) => ctx.log.warn({ err: (err as Error).message }, 'rate limiter: could not settle a reservation'));
    };

    let reservation: BudgetReservation | undefined;
    if (budgets && budgetLines.length > 0) {
      let estimate = 0;
      for (const c of calls) {
        const price = opts.priceOf(c.model);
        if (price) estimate += costUsd({ prompt_tokens: c.promptTokens, completion_tokens: c.completionTokens, total_tokens: c.promptTokens + c.completionTokens }, price);
      }
      try {
        reservation = await budgets.reserve(budgetLines, estimate);
      } catch (err) {
        // Refused by a budget: the request did not happen, so it takes nothing from the rate limits.
        await releaseLimits(0, true);
        if (refusedBy(err) === 'budget') opts.onRefused?.('budget');
        throw err;
      }
    }

    let settledBudget = false;
    const settle = async () => {
      const used = ctx.facts.usage;
      // A hedge race's loser read its prompt too (and maybe answered): the upstream counted those tokens.
      const dropped = ctx.facts.discardedTokens ?? 0;
      await releaseLimits(used ? used.prompt_tokens + used.completion_tokens + dropped : dropped, false);
      if (reservation && !settledBudget) {
        settledBudget = true;
        await budgets?.settle(reservation, ctx.facts.costUsd).catch((err: unknown) => ctx.log.error({ err: (err as Error).message }, 'budgets: could not settle a reservation'));
      }
    };

    let outcome: ChatOutcome;
    try {
      outcome = await next(ctx, req);
    } catch (err) {
      await settle();
      throw err;
    }
    if (outcome.kind === 'result') {
      await settle();
      return outcome;
    }
    return { kind: 'stream', stream: countStreamUsage(opts, ctx, req, promptTokens, outcome.stream, settle) };
  }
}

/**
 * A stream settles when it ends; if it ends without a usage chunk (client gone, upstream cut),
 * the completion is counted from the text that went out, so the ledger and budget still agree
 * (not for a cache hit's replay, which costs nothing).
 * It also ends when the client goes away (ctx.signal), whether or not whoever consumes it ever
 * closes it: at once when no chunk is awaited, else as soon as the awaited one arrives (the
 * upstream call is cancelled by the same signal). The source is then closed. So a stream the
 * client abandoned — even before it started — never keeps its concurrency lease or its budget
 * reservation; `onEnd` runs once whichever comes first. Until what it returns has settled, the
 * request owes it (ctx.settlements): the ledger records the request after it.
 */
function countStreamUsage(
  opts: AdmissionOptions,
  ctx: RequestContext,
  req: ChatRequest,
  promptTokens: number,
  stream: AsyncIterable<ChatChunk>,
  onEnd: () => Promise<void> | void,
): AsyncIterable<ChatChunk> {
  let owed: () => void = () => undefined;
  ctx.settlements?.track(new Promise<void>((resolve) => (owed = resolve)));
  let streamed = '';
  let source: AsyncIterator<ChatChunk> | undefined;
  let awaiting = false;
  let ended = false;
  const open = () => (source ??= stream[Symbol.asyncIterator]());
  const end = () => {
    if (ended) return false;
    ended = true;
    ctx.signal.removeEventListener('abort', onAbort);
    // A cache hit ran nothing upstream: like a JSON hit it uses no tokens and costs nothing, so its
    // replayed text is not counted.
    const hit = ctx.facts.cache === 'exact' || ctx.facts.cache === 'semantic';
    if (!ctx.facts.usage && ctx.facts.model && !hit) {
      const completion = countTextTokens(streamed);
      const usage = { prompt_tokens: promptTokens || promptTokensOf(req), completion_tokens: completion, total_tokens: 0 };
      usage.total_tokens = usage.prompt_tokens + completion;
      ctx.facts.usage = usage;
      // Priced as the deployment that served it charges, when routing recorded one.
      const price = opts.priceOf(req.model, ctx.facts.deployment);
      const cost = price ? costUsd(usage, price) : 0;
      ctx.facts.costUsd += cost;
      opts.onUsageEstimated?.(ctx, usage, cost);
    }
    let settling: Promise<void> | void;
    try {
      settling = onEnd();
    } catch (err) {
      settling = Promise.reject(err);
    }
    Promise.resolve(settling).then(owed, (err: unknown) => {
      ctx.log.error({ err: (err as Error).message }, 'admission: could not settle a stream');
      owed();
    });
    return true;
  };
  const close = () => Promise.resolve(open().return?.()).then(
    () => undefined,
    () => undefined,
  );
  const abandon = () => {
    if (end()) void close();
  };
  function onAbort() {
    if (!awaiting) abandon();
  }
  if (ctx.signal.aborted) abandon();
  else ctx.signal.addEventListener('abort', onAbort);
  const iterator: AsyncIterator<ChatChunk> = {
    async next(): Promise<IteratorResult<ChatChunk>> {
      if (ended) return { done: true, value: undefined };
      awaiting = true;
      let r: IteratorResult<ChatChunk>;
      try {
        r = await open().next();
      } catch (err) {
        end();
        throw err;
      } finally {
        awaiting = false;
      }
      if (r.done) {
        end();
        return r;
      }
      for (const c of r.value.choices) if (c.delta.content) streamed += contentText(c.delta.content);
      // The client left while this chunk was on its way: it is counted, and the stream ends here.
      if (ctx.signal.aborted) abandon();
      return r;
    },
    async return(): Promise<IteratorResult<ChatChunk>> {
      if (end()) await close();
      return { done: true, value: undefined };
    },
  };
  return { [Symbol.asyncIterator]: () => iterator };
}

/**
 * The kind of the first rule that refused, read from the states of a refused check (nothing was taken
 * then, so a window refused when fewer than its cost remain, a concurrency rule when no slot does).
 */
function refusingRule(reserved: readonly Reserved[], states: readonly RuleState[]): Exclude<RefusingLimit, 'budget'> | undefined {
  for (const [i, r] of reserved.entries()) {
    const s = states[i];
    if (!s) continue;
    if (r.rule.kind === 'concurrency') {
      if (s.remaining < 1) return 'concurrency';
    } else if (s.remaining < r.rule.cost) return r.tokens ? 'tokens' : 'requests';
  }
  return undefined;
}

/** X-RateLimit-* for the tightest request rule, and -Tokens variants for the tightest token rule. */
function rateHeaders(reserved: readonly Reserved[], states: readonly RuleState[]): Record<string, string> {
  const h: Record<string, string> = {};
  const tightest = (tokens: boolean) => {
    let best: RuleState | undefined;
    reserved.forEach((r, i) => {
      const s = states[i] as RuleState;
      if (r.rule.kind !== 'window' || r.tokens !== tokens) return;
      if (!best || s.remaining / s.limit < best.remaining / best.limit) best = s;
    });
    return best;
  };
  const req = tightest(false);
  if (req) {
    h['x-ratelimit-limit'] = String(req.limit);
    h['x-ratelimit-remaining'] = String(req.remaining);
    h['x-ratelimit-reset'] = String(Math.max(0, Math.ceil(req.resetMs / 1000)));
  }
  const tok = tightest(true);
  if (tok) {
    h['x-ratelimit-limit-tokens'] = String(tok.limit);
    h['x-ratelimit-remaining-tokens'] = String(tok.remaining);
    h['x-ratelimit-reset-tokens'] = String(Math.max(0, Math.ceil(tok.resetMs / 1000)));
  }
  return h;
}
