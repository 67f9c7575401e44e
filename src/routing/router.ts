// The terminal chat handler: picks deployments of the request's model group by the group's
// strategy, skipping open breakers, deployments cooling down after a Retry-After and those whose
// context window the prompt does not fit; calls them with timeouts, hedging, fallbacks across
// deployments and groups, budgeted retries with backoff, and a deadline over all of it.
import type { RedisClient as Redis } from '../store/redis.js';
import type { Logger } from 'pino';
import { requestedMaxTokens, type ChatChunk, type ChatRequest } from '../canonical/chat.js';
import type { Embedder } from '../cache/embedders/types.js';
import type { RoutingConfig } from '../config/schema.js';
import type { RequestContext } from '../gateway/context.js';
import { noAttemptObserver, type AttemptObserver } from '../gateway/execute.js';
import { observeStream, type ChatHandler, type ChatOutcome } from '../gateway/pipeline.js';
import { isUpstreamError } from '../providers/errors.js';
import { GatewayError, toGatewayError } from '../server/errors.js';
import { contextOf, endSpan, startSpan } from '../telemetry/tracing.js';
import { Admission, AdmissionQueue } from './admission.js';
import { DeadlineExceeded, type AttemptHooks, type AttemptSpec } from './attempt.js';
import { CircuitBreaker, type BreakerToken, type BreakerTransition } from './breaker.js';
import { Cancellation, type CancelSignal } from '../providers/cancel.js';
import { BreakerSync } from './breaker-sync.js';
import { fallbackGroupNames, semanticTargets, type Deployment, type ModelCatalog, type ModelGroup } from './catalog.js';
import { Deduplicator, callsAlone, dedupKey } from './dedup.js';
import { RoutingEvents } from './events.js';
import { DEFAULT_COOLDOWN_MS, everyDeploymentWaiting, isDeploymentFault, isRateLimit, isRetryable, RetryBudget } from './retry.js';
import { routingText, SemanticRouter } from './semantic.js';
import { DeploymentStats, LatencyRing } from './stats.js';
import { eligibleDeployments, promptTokens, promptUpperBound, type RequestState } from './eligibility.js';
import { createStrategy, type StrategyInput } from './strategies.js';
import { runAttempts, take, type AttemptLoopDeps, type GroupRuntime } from './attempt-loop.js';
import { buildStatus, type ProviderStatusReport } from './status.js';

export interface RouterOptions {
  config: RoutingConfig;
  log: Logger;
  /** Shared breaker state across replicas when set. */
  redis?: Redis;
  keyPrefix?: string;
  /** Needed by groups with `strategy: semantic`. */
  embedder?: Embedder;
  random?: () => number;
  /** Told about every upstream attempt (metrics). */
  observer?: AttemptObserver;
}

/**
 * What the health rules read of a request that is not a chat (callInOrder): no stream, no
 * messages to fit.
 */
const NO_CHAT: ChatRequest = Object.freeze({ model: '', messages: [] }) as ChatRequest;

/** Passthrough groups (and their deployments' state) kept before idle ones are dropped. */
const MAX_RUNTIMES = 1_024;

/** An attempt given less than this (or twice its deployment's usual latency) is not judged by the request's deadline ending it. */
const FAIR_BUDGET_FLOOR_MS = 1_000;

export class Router {
  /** Deployments each in-flight request has already failed on (for the breaker's consecutive rule). */
  private readonly failedHere = new WeakMap<object, Set<string>>();
  readonly events = new RoutingEvents();
  readonly handler: ChatHandler;
  private readonly stats = new Map<string, DeploymentStats>();
  private readonly breakers = new Map<string, CircuitBreaker>();
  private readonly groups = new Map<string, GroupRuntime>();
  private readonly admission: Admission;
  private readonly budget: RetryBudget;
  private readonly dedup: Deduplicator;
  private readonly sync?: BreakerSync;
  private readonly random: () => number;
  private readonly hooks: AttemptHooks;
  /** What the attempt loop (attempt-loop.ts) needs from the router. */
  private readonly loop: AttemptLoopDeps;
  private active = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly catalog: ModelCatalog,
    private readonly opts: RouterOptions,
  ) {
    const cfg = opts.config;
    this.random = opts.random ?? Math.random;
    this.admission = new Admission((id) => this.statsFor(id));
    this.budget = new RetryBudget(cfg.retry_budget.ratio, cfg.retry_budget.min_per_s, cfg.retry_budget.window_ms);
    this.dedup = new Deduplicator((group, stream) => {
      this.events.counters.dedupJoins++;
      this.events.emit('dedup', { group, stream });
    });
    if (opts.redis) {
      this.sync = new BreakerSync(opts.redis, opts.keyPrefix ?? 'inferenceflow:', {
        forceOpen: (id, until, reason) => this.breakerFor(id).forceOpen(until, reason),
        forceClose: (id, reason) => this.breakerFor(id).forceClose(reason),
        coolUntil: (id, until) => {
          const s = this.statsFor(id);
          s.coolingUntil = Math.max(s.coolingUntil, until);
        },
        deploymentIds: () => [...new Set([...this.catalog.allDeployments().map((d) => d.id), ...this.breakers.keys()])],
      }, opts.log, cfg.breaker_sync_ms);
    }
    const observer = opts.observer ?? noAttemptObserver;
    this.hooks = {
      streamIdleTimeoutMs: cfg.stream_idle_timeout_ms,
      // Twice what the deployment takes when it answers, at least a second — at most its own timeout
      // or the whole deadline (an attempt that had either is judged by it).
      fairBudgetMs: (d) => Math.min(d.timeoutMs, cfg.deadline_ms, Math.max(FAIR_BUDGET_FLOOR_MS, 2 * (this.stats.get(d.id)?.answeredMs ?? 0))),
      settled: (spec, ok, latencyMs, err) => this.settled(spec, ok, latencyMs, err),
      cancelled: (spec, latencyMs) => {
        this.breakerFor(spec.d.id).release(spec.token);
        this.events.emit('attempt', { deployment: spec.d.id, group: spec.d.group, provider: spec.d.providerName, outcome: 'cancelled', latencyMs, hedge: spec.hedge });
      },
      release: (spec) => this.admission.release(spec.d),
      ended: (spec, end) => observer.attemptEnded(spec.ctx, spec.d, end),
      streamFailed: (spec, err) => this.answerBroke(spec.d, err, spec.hedge),
    };
    for (const name of catalog.groupNames()) {
      const group = catalog.get(name) as ModelGroup;
      this.validateGroup(group);
      if (group.strategy === 'semantic' && !opts.embedder) opts.log.warn({ group: name }, 'no embedder for semantic routing: the group uses priority order');
    }
    this.loop = {
      config: opts.config,
      budget: this.budget,
      events: this.events,
      admission: this.admission,
      hooks: this.hooks,
      random: this.random,
      breakerFor: (id) => this.breakerFor(id),
      statsFor: (id) => this.statsFor(id),
    };
    this.handler = (ctx, req) => this.handle(ctx, req);
  }

  /** Connects shared breaker state (when Redis is configured). */
  async start(): Promise<void> {
    await this.sync?.start();
  }

  /** Waits (up to `timeoutMs`) for routed requests to finish, then stops sharing breaker state. */
  async close(timeoutMs = 0): Promise<void> {
    if (this.active > 0 && timeoutMs > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        t.unref();
        this.idleWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    for (const g of this.groups.values()) g.queue.rejectAll(new GatewayError('shutting_down'));
    await this.sync?.close();
  }

  /** Requests currently being routed (streams until they end). */
  get inFlight(): number {
    return this.active;
  }

  /** How much per-group and per-deployment state is held (bounded for passthrough names). */
  get tracked(): { groups: number; deployments: number } {
    return { groups: this.groups.size, deployments: Math.max(this.stats.size, this.breakers.size) };
  }

  /** Requests waiting for a deployment slot, over every group. */
  queueDepth(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.queue.depth;
    return n;
  }

  /** Seed 002 `get_provider_status`: one row per deployment. */
  status(): ProviderStatusReport {
    return buildStatus(this.catalog, {
      stats: (id) => this.statsFor(id),
      breaker: (id) => this.breakerFor(id),
      queueDepth: (group) => this.groups.get(group)?.queue.depth ?? 0,
      counters: this.events.counters,
      passthrough: [...this.groups].filter(([, rt]) => rt.passthrough).map(([name, rt]) => ({ name, deployments: rt.byPriority })),
    });
  }

  breakerFor(id: string): CircuitBreaker {
    let b = this.breakers.get(id);
    if (!b) {
      b = new CircuitBreaker(id, this.opts.config.breaker, (t) => this.onBreaker(t));
      this.breakers.set(id, b);
    }
    return b;
  }

  statsFor(id: string): DeploymentStats {
    let s = this.stats.get(id);
    if (!s) {
      s = new DeploymentStats(id, this.opts.config.latency.ewma_alpha);
      this.stats.set(id, s);
    }
    return s;
  }

  private onBreaker(t: BreakerTransition): void {
    if (t.to === 'open') this.events.counters.breakerOpens++;
    const level = t.to === 'open' ? 'warn' : 'info';
    this.opts.log[level]({ deployment: t.deployment, from: t.from, to: t.to, reason: t.reason, source: t.source }, 'circuit breaker state changed');
    this.events.emit('breaker', t);
    this.sync?.publish(t);
  }

  /**
   * Counts the request in flight until its answer is over (a stream: until it ends). Not an async
   * function: the answer passes through one `then` with handlers made once per router.
   */
  private handle(ctx: RequestContext, req: ChatRequest): Promise<ChatOutcome> {
    this.budget.deposit();
    this.active++;
    let pending: Promise<ChatOutcome>;
    try {
      pending = this.dedupes(req) && !callsAlone(ctx)
        ? this.dedup.run(dedupKey(ctx, req), req.model, ctx, req.stream === true, (shared, cancel) => this.route(shared, req, cancel))
        : this.route(ctx, req, ctx.signal);
    } catch (err) {
      this.done();
      return Promise.reject(err);
    }
    return pending.then(this.answered, this.failed);
  }

  private readonly answered = (outcome: ChatOutcome): ChatOutcome => {
    if (outcome.kind === 'stream') return { kind: 'stream', stream: this.trackStream(outcome.stream) };
    this.done();
    return outcome;
  };

  private readonly failed = (err: unknown): never => {
    this.done();
    throw err;
  };

  /**
   * Sampling requests (temperature above 0, no seed) are not coalesced by default: a client sending
   * the same prompt twice may want two different samples.
   */
  private dedupes(req: ChatRequest): boolean {
    const mode = this.opts.config.dedup;
    return mode === 'all' || (mode === 'deterministic' && (req.temperature === 0 || req.seed !== undefined));
  }

  private done(): void {
    if (--this.active === 0 && this.idleWaiters.length > 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Keeps a stream counted as in flight until it ends (graceful drain waits for it). */
  private trackStream(stream: AsyncIterable<ChatChunk>): AsyncIterable<ChatChunk> {
    return onEnd(stream, () => this.done());
  }

  private async route(ctx: RequestContext, req: ChatRequest, cancel: CancelSignal): Promise<ChatOutcome> {
    const deadlineMs = this.opts.config.deadline_ms;
    const signal = new Cancellation();
    const unlink = signal.follow(cancel);
    const timer = setTimeout(() => signal.abort(new DeadlineExceeded(deadlineMs)), deadlineMs);
    const span = startSpan('route', contextOf(ctx), { 'inferenceflow.model_group': req.model });
    const state: RequestState = { ctx, req, signal, deadlineAt: Date.now() + deadlineMs, visited: [], trace: span.context };
    let streaming = false;
    let passthrough = false;
    try {
      const group = this.catalog.resolve(req.model);
      passthrough = group.passthrough;
      const outcome = await this.routeGroup(state, group);
      if (span.span.isRecording()) {
        span.span.setAttributes({ 'inferenceflow.route': ctx.facts.route ?? '', 'inferenceflow.deployment': ctx.facts.deployment ?? '', 'inferenceflow.attempts': ctx.facts.attempts });
      }
      if (outcome.kind === 'result') {
        span.span.end();
        return outcome;
      }
      // The client can still cancel a running stream; unlink once it ends. The route span ends with
      // the stream too, as its attempt's span does (it is that span's parent).
      streaming = true;
      return {
        kind: 'stream',
        stream: onEnd(outcome.stream, () => {
          unlink();
          span.span.end();
        }),
      };
    } catch (err) {
      // A client that left is not a gateway failure (it was logged as internal_error before).
      const failure =
        signal.reason instanceof DeadlineExceeded ? signal.reason : cancel.aborted ? new GatewayError('client_closed_request', { cause: err }) : toGatewayError(err, { passthrough });
      endSpan(span.span, failure);
      throw failure;
    } finally {
      // Streams: the deadline covers attempts up to the first chunk; the idle timeout takes over.
      clearTimeout(timer);
      if (!streaming) unlink();
    }
  }

  private runtime(group: ModelGroup): GroupRuntime {
    let g = this.groups.get(group.name);
    if (!g) {
      const cfg = this.opts.config;
      const queue = new AdmissionQueue(group.name, group.queueSize ?? cfg.queue.max_size, cfg.queue.max_wait_ms, (name, depth) => this.events.emit('queue_depth', { group: name, depth }));
      if (group.passthrough && this.groups.size >= MAX_RUNTIMES) this.prunePassthrough();
      this.admission.watch(queue, group.deployments);
      g = {
        byPriority: [...group.deployments].sort((a, b) => a.priority - b.priority),
        retry: { ...cfg.retry, ...group.retry },
        strategy: createStrategy(group.strategy, { exploration: cfg.latency.exploration }),
        queue,
        latency: { stream: new LatencyRing(), json: new LatencyRing() },
        semantic: group.semantic && this.opts.embedder ? new SemanticRouter(group.semantic, this.opts.embedder) : undefined,
        passthrough: group.passthrough,
      };
      this.groups.set(group.name, g);
    }
    return g;
  }

  /**
   * Clients may send any model name to a passthrough provider, so state kept per passthrough group
   * and deployment is bounded: idle entries of unconfigured names are dropped when the table fills.
   */
  private prunePassthrough(): void {
    const configured = new Set(this.catalog.allDeployments().map((d) => d.id));
    for (const [name, rt] of this.groups) {
      if (!rt.passthrough || rt.queue.depth > 0) continue;
      if (rt.byPriority.some((d) => this.stats.get(d.id)?.inFlight)) continue;
      this.groups.delete(name);
      for (const d of rt.byPriority) {
        if (configured.has(d.id) || this.breakers.get(d.id)?.state === 'open') continue;
        this.forgetDeployment(d.id);
      }
    }
    // A deployment kept above because its breaker was open belongs to no group any more: once its
    // breaker lets calls through again, nothing needs its state (a new request rebuilds it).
    const live = new Set<string>();
    for (const rt of this.groups.values()) for (const d of rt.byPriority) live.add(d.id);
    for (const [id, b] of this.breakers) if (!configured.has(id) && !live.has(id) && b.state !== 'open') this.forgetDeployment(id);
  }

  private forgetDeployment(id: string): void {
    this.breakers.delete(id);
    this.stats.delete(id);
    this.admission.forget(id);
  }

  private async routeGroup(state: RequestState, group: ModelGroup): Promise<ChatOutcome> {
    state.visited.push(group.name);
    const rt = this.runtime(group);
    const now = Date.now();
    let deployments: readonly Deployment[] = rt.byPriority;
    let routeNote = '';

    // A prompt of token ids has no text to classify (and must stay with its model): priority order.
    if (rt.semantic && !state.req.text_completion?.prompt_ids) {
      // An embedder failure must not fail the request: the group's priority order still answers.
      const match = await rt.semantic.classify(routingText(state.req)).catch((err: unknown) => {
        state.ctx.log.warn({ group: group.name, err: (err as Error).message }, 'semantic routing failed; using priority order');
        return undefined;
      });
      routeNote = match ? `route=${match.route}; similarity=${match.similarity.toFixed(3)}` : 'route=unavailable';
      if (match?.target) {
        const inGroup = group.deployments.find((d) => d.id === match.target);
        if (inGroup) deployments = [inGroup, ...rt.byPriority.filter((d) => d !== inGroup)];
        else if (!state.visited.includes(match.target)) {
          state.routePrefix = `strategy=semantic; ${routeNote}; group=${match.target}`;
          return this.routeGroup(state, this.catalog.resolve(match.target));
        }
      }
    }

    const { eligible, tooLong, incapable, missing, cooling, earliest } = eligibleDeployments(state, deployments, now, (id) => this.breakerFor(id), (id) => this.statsFor(id));

    if (eligible.length === 0) {
      if (incapable > 0 && incapable === deployments.length) {
        return this.fallBack(state, group, group.fallbacks, 'group', () =>
          missing === 'anthropic'
            ? new GatewayError('unsupported_capability', {
                param: state.req.anthropic_tools?.length ? 'tools' : 'messages',
                message: `No deployment of "${group.name}" is an Anthropic one: Anthropic-defined tools (bash, text_editor, web_search, …), server-tool blocks (server_tool_use, web_search_tool_result, …) and documents by URL are passed through to Anthropic deployments only.`,
              })
            : missing === 'files'
            ? new GatewayError('unsupported_capability', {
                param: 'messages',
                message: `No deployment of "${group.name}" reads documents of these types (file content parts); api.openai.com, Anthropic (PDF, plain text), Google and simulator deployments do, and any provider with options.files: true.`,
              })
            : new GatewayError('unsupported_capability', {
                param: 'logprobs',
                message: `No deployment of "${group.name}" can return token log-probabilities (logprobs); OpenAI-compatible and simulator deployments can, and any provider with options.logprobs: true.`,
              }),
        );
      }
      // Every deployment that can take the request is too short for it: the context-window path.
      if (tooLong > 0 && tooLong + incapable === deployments.length) {
        return this.fallBack(state, group, group.contextWindowFallbacks, 'context_window', () =>
          new GatewayError('context_length_exceeded', {
            message: `The prompt (${promptTokens(state)} tokens) plus max_tokens does not fit the context window of any deployment of "${group.name}".`,
          }),
        );
      }
      const retryAfterMs = Number.isFinite(earliest) ? Math.max(DEFAULT_COOLDOWN_MS, earliest - now) : DEFAULT_COOLDOWN_MS;
      if (cooling + tooLong + incapable === deployments.length) {
        // Every deployment asked us to wait (429/503 Retry-After): pass the wait on to the client.
        return this.fallBack(state, group, group.fallbacks, 'group', () => everyDeploymentWaiting(group.name, retryAfterMs));
      }
      return this.fallBack(state, group, group.fallbacks, 'group', () =>
        new GatewayError('no_healthy_deployment', {
          message: `Every deployment of "${group.name}" is unavailable (circuit open or cooling down).`,
          retryAfterMs,
        }),
      );
    }

    // Semantic routing already put its target first; the other strategies order now.
    const input = this.strategyInput(state);
    const choice = rt.semantic ? { order: eligible, reason: routeNote } : rt.strategy.order(eligible, input);
    const route = `strategy=${group.strategy}; choice=${choice.order[0]?.id}; ${choice.reason}`;
    state.ctx.facts.route = state.routePrefix ? `${state.routePrefix}; then ${route}` : route;

    try {
      return await runAttempts(this.loop, state, group, rt, choice.order);
    } catch (err) {
      if (state.signal.aborted || err instanceof DeadlineExceeded) throw err;
      if (isUpstreamError(err) && err.kind === 'context_length') {
        return this.fallBack(state, group, group.contextWindowFallbacks, 'context_window', () => err);
      }
      if (isUpstreamError(err) && err.kind === 'content_policy') {
        return this.fallBack(state, group, group.contentPolicyFallbacks, 'content_policy', () => err);
      }
      if (isRetryable(err) || isDeploymentFault(err) || (err instanceof GatewayError && (err.code === 'no_healthy_deployment' || err.code === 'upstream_rate_limited'))) {
        return this.fallBack(state, group, group.fallbacks, 'group', () => err);
      }
      throw err;
    }
  }

  /**
   * An embedding's or a forwarded call's attempts (audio, images, moderations): `deployments` in the
   * order given, under chat's health rules but without its strategies, retries of one deployment,
   * hedging or fallback groups. A deployment whose breaker is open or that is cooling down after a
   * Retry-After is passed over; one whose max_concurrency is taken is passed over while another can
   * answer, else the request waits in the group's queue as a chat request does. Each attempt holds a
   * slot and its breaker's permission until `attempt` settles, and its outcome feeds the breaker,
   * the failure counts, the latency EWMA and cooldowns (shared across replicas) as a chat attempt's
   * does. The next deployment is tried on a retryable failure or the deployment's own fault (quota,
   * credentials, model missing) while the client is still there; `attempt` throws what failed.
   * With no deployment able to take it: 503 no_healthy_deployment, or 429 when every one asked to
   * wait, with Retry-After. A deployment for which `sharesCall` says yes (a batched embedding: the
   * request joins a call others share) takes no slot, and its outcome feeds neither its breaker nor
   * its counts, a rate limit's cooldown aside. A GatewayError from `attempt` (the client's own
   * request refused before it went upstream) ends the request and counts for nothing.
   */
  async callInOrder<T>(ctx: RequestContext, group: ModelGroup, deployments: readonly Deployment[], attempt: (d: Deployment) => Promise<T>, sharesCall?: (d: Deployment) => boolean): Promise<T> {
    const rt = this.runtime(group);
    const now = Date.now();
    const untried: Deployment[] = [];
    let cooling = 0;
    let earliest = Infinity;
    for (const d of deployments) {
      const b = this.breakerFor(d.id);
      const s = this.statsFor(d.id);
      if (!b.canPass()) earliest = Math.min(earliest, b.retryAt ?? now + DEFAULT_COOLDOWN_MS);
      else if (s.cooling(now)) {
        cooling++;
        earliest = Math.min(earliest, s.coolingUntil);
      } else untried.push(d);
    }
    if (untried.length === 0) {
      const retryAfterMs = Number.isFinite(earliest) ? Math.max(DEFAULT_COOLDOWN_MS, earliest - now) : DEFAULT_COOLDOWN_MS;
      if (cooling === deployments.length) throw everyDeploymentWaiting(group.name, retryAfterMs);
      throw new GatewayError('no_healthy_deployment', { message: `Every deployment of "${group.name}" is unavailable (circuit open or cooling down).`, retryAfterMs });
    }
    // The queue's wait ends with the client; its request (the priority) is the caller's.
    const signal = new Cancellation();
    const unlink = signal.follow(ctx.signal);
    const state: RequestState = { ctx, req: NO_CHAT, signal, deadlineAt: Infinity, visited: [group.name] };
    let lastError: unknown;
    this.active++;
    try {
      for (;;) {
        const next = await this.nextInOrder(state, rt, untried, sharesCall);
        if (!next) break;
        const { pick, shared } = next;
        const spec: AttemptSpec = { ctx, req: NO_CHAT, d: pick.d, token: pick.token, signal, timeoutMs: pick.d.timeoutMs, hedge: false };
        const started = performance.now();
        try {
          const result = await attempt(pick.d);
          if (shared) this.sharedCallEnded(spec, performance.now() - started, undefined);
          else this.settled(spec, true, performance.now() - started, undefined);
          return result;
        } catch (err) {
          lastError = err;
          // A client that left, or its own request refused before anything went upstream (a
          // GatewayError), decides nothing about the deployment.
          if (ctx.signal.aborted || err instanceof GatewayError) {
            this.hooks.cancelled(spec, performance.now() - started);
            break;
          }
          if (shared) this.sharedCallEnded(spec, performance.now() - started, err);
          else this.settled(spec, false, performance.now() - started, err);
          if (!(isRetryable(err) || isDeploymentFault(err))) break;
        } finally {
          if (!shared) this.admission.release(pick.d);
        }
      }
    } finally {
      unlink();
      this.done();
    }
    throw lastError ?? new GatewayError('no_healthy_deployment', { message: `Every deployment of "${group.name}" is unavailable (circuit open or cooling down).`, retryAfterMs: DEFAULT_COOLDOWN_MS });
  }

  /**
   * An answer that had begun broke off (a chat stream, a forwarded body): held against its
   * deployment's breaker and failure count, as a failed call is.
   */
  answerBroke(d: Deployment, err: unknown, hedge = false): void {
    this.statsFor(d.id).failures++;
    this.breakerFor(d.id).record(false, 'normal');
    this.events.emit('attempt', { deployment: d.id, group: d.group, provider: d.providerName, outcome: 'failure', kind: isUpstreamError(err) ? err.kind : undefined, latencyMs: 0, hedge });
  }

  /**
   * A request's part in a shared upstream call ended (callInOrder): its time is the request's; the
   * call's outcome is every request's in it, so it is not this one's evidence about the deployment —
   * but a rate limit still cools the deployment down.
   */
  private sharedCallEnded(spec: AttemptSpec, latencyMs: number, err: unknown): void {
    spec.ctx.facts.latencyMs = (spec.ctx.facts.latencyMs ?? 0) + latencyMs;
    this.breakerFor(spec.d.id).release(spec.token);
    if (err !== undefined && isRateLimit(err)) this.coolDown(this.statsFor(spec.d.id), Date.now() + (err.retryAfterMs ?? DEFAULT_COOLDOWN_MS));
  }

  /**
   * callInOrder's next deployment, taken out of `untried`: one whose call is shared (`sharesCall`:
   * a batched embedding) when it comes first and its breaker lets it through, with no slot taken;
   * else the first of the deployments before the next shared one that has a slot (attempt-loop's
   * `take`, which waits in the group's queue when every one of them is full). None when none is left.
   */
  private async nextInOrder(state: RequestState, rt: GroupRuntime, untried: Deployment[], sharesCall: ((d: Deployment) => boolean) | undefined): Promise<{ pick: { d: Deployment; token: BreakerToken }; shared: boolean } | undefined> {
    while (untried.length > 0) {
      const first = untried[0] as Deployment;
      if (sharesCall?.(first)) {
        untried.shift();
        const token = this.breakerFor(first.id).acquire();
        if (token) return { pick: { d: first, token }, shared: true };
        continue;
      }
      const upTo = sharesCall ? untried.findIndex(sharesCall) : -1;
      const own = upTo < 0 ? untried : untried.slice(0, upTo);
      const pick = await take(this.loop, state, rt, own);
      if (own !== untried) {
        // take() removed its pick from the copy: remove it here too, or drop the ones it could not use.
        const at = pick ? untried.indexOf(pick.d) : -1;
        if (at >= 0) untried.splice(at, 1);
        else if (!pick) untried.splice(0, upTo);
      }
      if (pick) return { pick, shared: false };
      if (own === untried) return undefined;
    }
    return undefined;
  }

  /**
   * The routing decision alone (eligibility and the strategy's order, no upstream call), for the
   * decision benchmark and for debugging a configuration. Semantic groups are ordered by priority.
   */
  decide(req: ChatRequest): { group: string; order: Deployment[]; reason: string } {
    const group = this.catalog.resolve(req.model);
    const rt = this.runtime(group);
    const state: RequestState = { ctx: undefined as never, req, signal: new Cancellation(), deadlineAt: Infinity, visited: [] };
    const { eligible } = eligibleDeployments(state, rt.byPriority, Date.now(), (id) => this.breakerFor(id), (id) => this.statsFor(id));
    const choice = rt.strategy.order(eligible, this.strategyInput(state));
    return { group: group.name, order: choice.order, reason: choice.reason };
  }

  /**
   * Tries fallback groups in order; when none answers, throws the original error. Not for a prompt of
   * token ids: they are ids of this group's model's tokenizer, which another group's model may not
   * share (it would answer them, wrongly).
   */
  private async fallBack(state: RequestState, from: ModelGroup, names: readonly string[], kind: 'group' | 'context_window' | 'content_policy', original: () => unknown): Promise<ChatOutcome> {
    if (state.req.text_completion?.prompt_ids) throw original();
    let last: unknown;
    for (const name of names) {
      if (state.visited.includes(name) || state.signal.aborted) continue;
      const target = this.catalog.get(name);
      if (!target) continue;
      this.events.counters.fallbacks++;
      this.events.emit('fallback', { from: from.name, to: name, kind });
      state.ctx.log.warn({ from: from.name, to: name, kind }, 'falling back to another model group');
      try {
        const outcome = await this.routeGroup(state, target);
        // The innermost fallback names the group that answered.
        state.ctx.facts.fallbackGroup ??= name;
        return outcome;
      } catch (err) {
        last = err;
        if (state.signal.aborted) throw err;
      }
    }
    throw original() ?? last;
  }

  private strategyInput(state: RequestState): StrategyInput {
    if (state.promptChars === undefined) promptUpperBound(state);
    return {
      stats: (id) => this.statsFor(id),
      promptTokens: state.promptTokens ?? Math.ceil((state.promptChars ?? 0) / 4),
      completionTokens: requestedMaxTokens(state.req) ?? 256,
      random: this.random,
    };
  }

  /** Cools a deployment until `until` (unless it cools longer already) and tells the other replicas. */
  private coolDown(s: DeploymentStats, until: number): void {
    if (until <= s.coolingUntil) return;
    s.coolingUntil = until;
    this.sync?.shareCooldown(s.id, until);
  }

  private settled(spec: AttemptSpec, ok: boolean, latencyMs: number, err: unknown): void {
    const { d } = spec;
    const s = this.statsFor(d.id);
    const b = this.breakerFor(d.id);
    spec.ctx.facts.latencyMs = (spec.ctx.facts.latencyMs ?? 0) + latencyMs;
    if (ok) {
      s.successes++;
      s.observeLatency(latencyMs);
      const rt = this.runtimeByName(d.group);
      if (rt) (spec.req.stream ? rt.latency.stream : rt.latency.json).add(latencyMs);
      b.record(true, spec.token);
    } else if (isRateLimit(err)) {
      // Busy, not broken: the deployment cools down for its Retry-After (1 s when it gave none) and
      // the breaker learns nothing from it (a probe's slot is freed for the next one).
      b.release(spec.token);
      this.coolDown(s, Date.now() + (err.retryAfterMs ?? DEFAULT_COOLDOWN_MS));
    } else {
      if (countsAgainst(err, this.runtimeByName(d.group)?.passthrough === true)) {
        s.observeFailure(latencyMs);
        let failed = this.failedHere.get(spec.ctx);
        if (!failed) this.failedHere.set(spec.ctx, (failed = new Set()));
        b.record(false, spec.token, failed.has(d.id));
        failed.add(d.id);
      } else if (isUpstreamError(err) && err.kind === 'unsupported') {
        // A feature this deployment lacks (often refused by the adapter with no upstream call): no
        // evidence either way, so it neither closes a half-open breaker nor dilutes its failure rate.
        b.release(spec.token);
      } else {
        // The upstream answered; the request itself was the problem (400, context length, policy).
        b.record(true, spec.token);
      }
      if (isUpstreamError(err) && err.retryAfterMs !== undefined && err.kind === 'overloaded') {
        this.coolDown(s, Date.now() + err.retryAfterMs);
      }
    }
    this.events.emit('attempt', {
      deployment: d.id,
      group: d.group,
      provider: d.providerName,
      outcome: ok ? 'success' : 'failure',
      kind: isUpstreamError(err) ? err.kind : undefined,
      latencyMs,
      hedge: spec.hedge,
    });
  }

  private runtimeByName(name: string): GroupRuntime | undefined {
    return this.groups.get(name);
  }

  private validateGroup(group: ModelGroup): void {
    for (const name of fallbackGroupNames(group)) {
      if (!this.catalog.get(name)) throw new Error(`models[${group.name}]: fallback group "${name}" is not configured`);
    }
    if (group.strategy === 'semantic') {
      if (!group.semantic) throw new Error(`models[${group.name}]: strategy semantic needs a \`semantic:\` section with routes`);
      const ids = new Set(group.deployments.map((d) => d.id));
      for (const target of semanticTargets(group)) {
        if (!ids.has(target) && !this.catalog.get(target)) throw new Error(`models[${group.name}].semantic: target "${target}" is neither a deployment id of the group nor a model group`);
      }
    }
  }
}

/**
 * Whether a failed attempt counts against its deployment's breaker: upstream failures (not a rate
 * limit: see isRateLimit), and refused
 * credentials, an exhausted quota or a model missing there (every request to it fails the same way). Not a 400 the
 * request earned, nor `unsupported` (what this request asks, e.g. n > 1 on a stream: a client must
 * not be able to open a healthy deployment's breaker), nor a 404 for a passthrough name (the client
 * made the name up).
 */
function countsAgainst(err: unknown, passthrough: boolean): boolean {
  if (!isUpstreamError(err)) return true;
  if (err.retryable || err.kind === 'auth' || err.kind === 'quota') return true;
  return err.kind === 'not_found' && !passthrough;
}

/** Runs `fn` once when the stream ends, fails or is abandoned by its reader. */
function onEnd(stream: AsyncIterable<ChatChunk>, fn: () => void): AsyncIterable<ChatChunk> {
  return observeStream(stream, () => undefined, fn);
}
