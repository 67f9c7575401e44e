// Composes the request path in one place: providers and the model catalog from configuration,
// the chat stages around the executor, embeddings, the models list and readiness. The HTTP layer
// holds one Gateway and knows nothing of how a request is served.
import type { RedisClient as Redis } from '../store/redis.js';
import type { Logger } from 'pino';
import type { Embedder } from '../cache/embedders/types.js';
import type { ChatRequest, Usage } from '../canonical/chat.js';
import { embeddingInputs, type EmbeddingRequest, type EmbeddingResult } from '../canonical/embeddings.js';
import { countTextTokens } from '../providers/tokens.js';
import { carryPromptTokens } from '../routing/prompt-tokens.js';
import type { LoadedConfig } from '../config/load.js';
import { costUsd } from '../providers/pricing.js';
import { createProviders, providerContext } from '../providers/registry.js';
import type { CallOptions, ForwardResponse, ProviderAdapter } from '../providers/types.js';
import { UsageTap } from './forward-usage.js';
import type { StreamBody } from '../providers/http.js';
import type { CancelSignal } from '../providers/cancel.js';
import { ModelCatalog, type Deployment, type ModelGroup, type ModelInfo } from '../routing/catalog.js';
import { GatewayError, toGatewayError } from '../server/errors.js';
import { MemoryResponseStore, RedisResponseStore, type ResponseStore } from '../server/response-store.js';
import type { RequestContext } from './context.js';
import type { Router } from '../routing/router.js';
import { endSpan, startSpan, traceHeaders } from '../telemetry/tracing.js';
import { callOptions, createRouter, noAttemptObserver, type AttemptObserver } from './execute.js';
import { composeStages, type ChatHandler, type ChatOutcome, type ChatStage } from './pipeline.js';
import { withTimeout } from './timeout.js';

export interface ReadinessCheck {
  name: string;
  ok: boolean;
  detail?: string;
}

/** A dependency that /ready checks and shutdown closes (Redis, database, …). */
export interface ManagedResource {
  name: string;
  check(): Promise<boolean>;
  /**
   * Called as soon as the gateway starts closing, before in-flight requests drain: stop taking new
   * work (a background runner stops claiming, hands back what it holds). Optional.
   */
  stop?(): Promise<void>;
  /** Called after requests drained and providers closed, in the reverse of registration order. */
  close(): Promise<void>;
}

export interface GatewayOptions {
  loaded: LoadedConfig;
  log: Logger;
  /** Providers to use instead of building them from config (tests). */
  providers?: Map<string, ProviderAdapter>;
  stages?: ChatStage[];
  resources?: ManagedResource[];
  /** Shared breaker state across replicas (assemble.ts passes its one client). */
  redis?: Redis;
  /** For model groups with `strategy: semantic`. */
  embedder?: Embedder;
  /** Told about every upstream attempt (metrics). */
  attemptObserver?: AttemptObserver;
  /**
   * The admission stage (rate limits, budgets) of the chat stages, also run around embeddings: a
   * tenant's limits and budgets cover every route that calls an upstream.
   */
  admission?: ChatStage;
}

/** An OpenAI API call the gateway forwards as it came (audio, images, moderations): Gateway.forward. */
export interface ForwardCall {
  /** The model the client named (a group, or a passthrough name). */
  model: string;
  /** The path under a deployment's base URL, e.g. `/audio/speech`. */
  path: string;
  /** The request's body for a deployment whose upstream name for the model is `upstreamModel`. */
  body(upstreamModel: string): { contentType: string; body: Buffer | string };
  /** The client's `Accept`, passed on. */
  accept?: string;
  /** Text the upstream reads as a prompt (a moderation's input): counted against token limits, as the gateway counts it. */
  promptText?: string;
  /** The body's `user`, for limits keyed by it. */
  user?: string;
}

export class Gateway {
  readonly chat: ChatHandler;
  private modelsCache?: { at: number; models: string[] };
  private closed = false;
  private stopping: Promise<unknown> | undefined;

  private constructor(
    readonly loaded: LoadedConfig,
    readonly log: Logger,
    readonly providers: Map<string, ProviderAdapter>,
    readonly catalog: ModelCatalog,
    readonly router: Router,
    stages: ChatStage[],
    readonly resources: ManagedResource[],
    private readonly observer: AttemptObserver,
    /** Stored Responses API answers (`previous_response_id`, GET /v1/responses/{id}). */
    readonly responses: ResponseStore,
    private readonly admission: ChatStage | undefined,
  ) {
    this.chat = composeStages(stages, router.handler);
  }

  static async create(opts: GatewayOptions): Promise<Gateway> {
    const { loaded, log } = opts;
    const providers = opts.providers ?? (await createProviders(loaded.config.providers, providerContext(loaded.config)));
    const catalog = new ModelCatalog(loaded.config.models, providers, loaded.passthroughProvider, loaded.config.providers);
    const observer = opts.attemptObserver ?? noAttemptObserver;
    const router = createRouter(catalog, log, loaded.config.routing, { redis: opts.redis, keyPrefix: loaded.config.redis.key_prefix, embedder: opts.embedder, observer });
    await router.start();
    const responses = opts.redis ? new RedisResponseStore(opts.redis, loaded.config.redis.key_prefix) : new MemoryResponseStore();
    return new Gateway(loaded, log, providers, catalog, router, opts.stages ?? [], opts.resources ?? [], observer, responses, opts.admission);
  }

  /** Not an async function: the pipeline's promise is returned as it is, not wrapped in another. */
  handleChat(ctx: RequestContext, req: ChatRequest): Promise<ChatOutcome> {
    try {
      if (req.model !== undefined) ensureAllowed(ctx, req.model);
      return this.chat(ctx, req);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Embeddings, admitted as a chat request is — counted against the caller's request and token
   * limits (the input's tokens; nothing is generated) and its budgets (reserved at the model's
   * price, settled at the cost) — then sent to the model's deployments in priority order.
   */
  async embed(ctx: RequestContext, req: EmbeddingRequest): Promise<EmbeddingResult> {
    ensureAllowed(ctx, req.model);
    // Counted once: admission reserves it, and it stands in for an upstream that reports no usage.
    const tokens = inputTokens(req);
    if (!this.admission) return this.routeEmbedding(ctx, req, tokens);
    let result: EmbeddingResult | undefined;
    await this.admission(ctx, promptOnly(req.model, tokens, req.user), async () => {
      result = await this.routeEmbedding(ctx, req, tokens);
      return SETTLED_BY_FACTS;
    });
    return result as EmbeddingResult;
  }

  private routeEmbedding(ctx: RequestContext, req: EmbeddingRequest, inputTokens: number): Promise<EmbeddingResult> {
    const group = this.catalog.resolve(req.model);
    const asSent: EmbeddingRequest = { ...req, encoding_format: 'float' };
    return this.overDeployments(ctx, group, inPriorityOrder(group), async (d, opts) => {
      const result = await d.provider.embed({ ...asSent, model: d.model }, opts);
      // An upstream that reports no usage (0 for a non-empty input) is counted here, as chat answers
      // are: limits and budgets settle on it, so a missing count must not refund the reservation.
      const reported = result.usage.prompt_tokens;
      if (reported > 0) return { result, usage: { prompt_tokens: reported, completion_tokens: 0, total_tokens: result.usage.total_tokens } };
      const prompt = inputTokens;
      return { result: prompt > 0 ? { ...result, usage: { prompt_tokens: prompt, total_tokens: prompt } } : result, usage: { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt } };
    }, (d) => d.provider.sharesEmbedCall?.(asSent) === true);
  }

  /**
   * Calls `attempt` on `deployments` in order until one answers, under the router's health rules
   * (Router.callInOrder: open breakers, cooldowns and full deployments passed over, each outcome fed
   * back to them): each attempt spanned, observed (metrics) and recorded in ctx.facts (who answered,
   * usage and its cost at the deployment's price). As on chat, a retryable error or the deployment's
   * own fault (quota, auth, model missing) moves on to the next; anything else, or the client gone,
   * ends the request with that error.
   */
  private async overDeployments<T>(
    ctx: RequestContext,
    group: ModelGroup,
    deployments: readonly Deployment[],
    attempt: (d: Deployment, opts: CallOptions) => Promise<{ result: T; usage?: Usage }>,
    sharesCall?: (d: Deployment) => boolean,
  ): Promise<T> {
    try {
      return await this.router.callInOrder(ctx, group, deployments, async (d) => {
        ctx.facts.attempts++;
        const span = startSpan(`provider ${d.providerName}`, ctx.traceContext, { 'inferenceflow.provider': d.providerName, 'inferenceflow.deployment': d.id });
        const started = performance.now();
        try {
          const { result, usage } = await attempt(d, callOptions(ctx, d, traceHeaders(span.context)));
          ctx.facts.provider = d.providerName;
          ctx.facts.model = d.model;
          ctx.facts.deployment = d.id;
          // A call that reports no tokens still costs its deployment's per_request fee.
          const cost = costUsd(usage ?? NO_USAGE, d.price);
          if (usage) ctx.facts.usage = usage;
          ctx.facts.costUsd += cost;
          this.observer.attemptEnded(ctx, d, { ok: true, durationMs: performance.now() - started, ...(usage ? { usage } : {}), costUsd: cost });
          endSpan(span.span);
          return result;
        } catch (err) {
          this.observer.attemptEnded(ctx, d, { ok: false, durationMs: performance.now() - started, error: err });
          endSpan(span.span, err);
          throw err;
        }
      }, sharesCall);
    } catch (err) {
      throw toGatewayError(err, { passthrough: group.passthrough });
    }
  }

  /**
   * Audio, images and moderations, forwarded as bytes to the model's deployments whose provider can
   * forward (OpenAI-compatible ones), in priority order under the routing health rules, with the
   * model replaced by each one's upstream name. Admitted as a chat request is: one request against
   * the caller's request limits, a moderation's input text against its token limits, and its budgets
   * reserved at what is known up front (that input, a deployment's `per_request` fee). Settled at
   * what the answer cost: the tokens its body reports (forward-usage.ts: an image or a
   * transcription's `usage`), read as it streams through, at the deployment's price, plus its fee.
   * The next deployment is tried on a retryable failure or a deployment's own fault while nothing
   * has been answered; the answer is the first upstream's to send its status, whose body then
   * streams through. The admission holds its reservations (a concurrency slot) until that body has
   * ended or its client has gone.
   */
  forward(ctx: RequestContext, call: ForwardCall): Promise<ForwardResponse> {
    try {
      ensureAllowed(ctx, call.model);
      const group = this.catalog.resolve(call.model);
      const deployments = forwarders(group);
      if (deployments.length === 0) {
        throw new GatewayError('unsupported_capability', {
          param: 'model',
          message: `The model "${call.model}" has no deployment that serves ${call.path}: these requests are forwarded to OpenAI-compatible (type: openai) deployments only.`,
        });
      }
      // Only a moderation's input is known up front (as the gateway counts it).
      const tokens = call.promptText ? countTextTokens(call.promptText) : 0;
      const admission = this.admission;
      if (!admission) return this.routeForward(ctx, group, deployments, call, tokens);
      return new Promise<ForwardResponse>((resolve, reject) => {
        let answered = false;
        const admitted = admission(ctx, promptOnly(call.model, tokens, call.user), async () => {
          const res = await this.routeForward(ctx, group, deployments, call, tokens);
          let ended: () => void = () => undefined;
          const bodyEnded = new Promise<void>((r) => (ended = r));
          answered = true;
          resolve({ ...res, body: untilEnded(res.body, ctx.signal, ended) });
          await bodyEnded;
          return SETTLED_BY_FACTS;
        });
        // Settled once the body has ended: the ledger row and the log line wait for it.
        ctx.settlements?.track(admitted.catch(() => undefined));
        admitted.catch((err: unknown) => {
          if (!answered) reject(err);
          else ctx.log.warn({ err: (err as Error).message }, 'admission: could not settle a forwarded request');
        });
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * `deployments` can all forward (forwarders); as for embeddings, failover ends once one answers a
   * status. The answer's body is tapped for the usage it reports, which replaces what was known of
   * the call's usage and cost once the body has been read to its end.
   */
  private async routeForward(ctx: RequestContext, group: ModelGroup, deployments: readonly Deployment[], call: ForwardCall, tokens: number): Promise<ForwardResponse> {
    const known: Usage | undefined = tokens > 0 ? { prompt_tokens: tokens, completion_tokens: 0, total_tokens: tokens } : undefined;
    let answered: Deployment | undefined;
    const res = await this.overDeployments(ctx, group, deployments, async (d, opts) => {
      const { contentType, body } = call.body(d.model);
      const result = await (d.provider.forward as NonNullable<ProviderAdapter['forward']>).call(d.provider, { path: call.path, contentType, body, ...(call.accept ? { accept: call.accept } : {}) }, opts);
      answered = d;
      return { result, ...(known ? { usage: known } : {}) };
    });
    const d = answered as Deployment;
    const contentType = res.headers['content-type'];
    // Each usage the answer reports replaces what was counted before it (a stream's last one wins).
    let counted = known ?? NO_USAGE;
    const tap = new UsageTap(Array.isArray(contentType) ? contentType[0] : contentType, (usage) => {
      const cost = costUsd(usage, d.price) - costUsd(counted, d.price);
      const delta = { prompt_tokens: usage.prompt_tokens - counted.prompt_tokens, completion_tokens: usage.completion_tokens - counted.completion_tokens, total_tokens: usage.total_tokens - counted.total_tokens };
      counted = usage;
      ctx.facts.usage = usage;
      ctx.facts.costUsd += cost;
      this.observer.spent?.(ctx, d, delta, cost);
    });
    // A body that breaks off after its status counts against the deployment, as a broken chat stream
    // does (the client's leaving does not).
    return { ...res, body: tapped(res.body, tap.reading ? tap : undefined, (err) => ctx.signal.aborted || this.router.answerBroke(d, err)) };
  }

  /** /v1/models: configured groups plus what the passthrough provider lists (cached a minute). */
  async listModels(ctx: RequestContext): Promise<ModelInfo[]> {
    const passthrough = this.catalog.passthrough;
    let extra: string[] = [];
    if (passthrough?.listModels) {
      const now = Date.now();
      if (this.modelsCache && now - this.modelsCache.at < 60_000) extra = this.modelsCache.models;
      else {
        extra = await passthrough
          .listModels({ signal: ctx.signal, timeoutMs: 5_000, requestId: ctx.id })
          .catch((err: unknown) => {
            this.log.warn({ err: (err as Error).message }, 'could not list the passthrough provider models');
            return [] as string[];
          });
        this.modelsCache = { at: now, models: extra };
      }
    }
    const all = this.catalog.list(extra);
    const allowed = ctx.tenant.allowedModels;
    return allowed ? all.filter((m) => allowed.includes(m.id)) : all;
  }

  /** Readiness: every managed resource reachable and at least one provider usable. */
  async readiness(): Promise<{ ready: boolean; checks: ReadinessCheck[] }> {
    const checks: ReadinessCheck[] = [];
    if (this.closed) checks.push({ name: 'shutdown', ok: false, detail: 'shutting down' });
    for (const r of this.resources) {
      const ok = await withTimeout(r.check(), 2_000).catch(() => false);
      checks.push({ name: r.name, ok });
    }
    const usable: string[] = [];
    await Promise.all(
      [...this.providers].map(async ([name, p]) => {
        if (await withTimeout(p.ready(), 2_000).catch(() => false)) usable.push(name);
      }),
    );
    // Counts, not names: /ready is public, and provider names are configuration (GET /v1/providers, authenticated, has them).
    checks.push({ name: 'providers', ok: usable.length > 0, detail: usable.length ? `${usable.length} of ${this.providers.size} usable` : 'no provider is usable' });
    return { ready: checks.every((c) => c.ok), checks };
  }

  /** Not ready from now on; background work (batch lines) stops being taken. */
  markClosing(): void {
    this.closed = true;
    this.stopping ??= Promise.allSettled(this.resources.map((r) => r.stop?.()));
  }

  /**
   * Stops background work, waits up to `drainMs` for routed requests (and streams) to finish, closes
   * provider pools, then the resources, last registered first: what uses the database and Redis
   * (batch jobs, the ledger writer, webhooks) closes before they do.
   */
  async close(drainMs = 0): Promise<void> {
    this.markClosing();
    await this.stopping;
    await this.router.close(drainMs).catch(() => undefined);
    await Promise.allSettled([...this.providers.values()].map((p) => p.close()));
    for (const r of [...this.resources].reverse()) await r.close().catch(() => undefined);
  }
}

function ensureAllowed(ctx: RequestContext, model: string): void {
  const allowed = ctx.tenant.allowedModels;
  if (allowed && !allowed.includes(model)) {
    throw new GatewayError('permission_denied', { param: 'model', message: `This key may not use the model "${model}".` });
  }
}

/** An embedding input's size: text by the tokenizer, token ids by their count. */
function inputTokens(req: EmbeddingRequest): number {
  const texts = embeddingInputs(req.input);
  return texts ? texts.reduce((n, t) => n + countTextTokens(t), 0) : (req.input as number[] | number[][]).reduce<number>((n, v) => n + (Array.isArray(v) ? v.length : 1), 0);
}

/**
 * What the admission stage sees of a request outside the chat pipeline (an embedding, a forwarded
 * call): `tokens` of prompt (counted by the caller; the message's text is never read) and nothing
 * to generate.
 */
function promptOnly(model: string, tokens: number, user: string | undefined): ChatRequest {
  const chat: ChatRequest = { model, messages: [{ role: 'user', content: '' }], max_tokens: 0, ...(user ? { user } : {}) };
  carryPromptTokens(chat, tokens);
  return chat;
}

/** A group's deployments by priority, and those that can forward, made once per group. */
const byPriority = new WeakMap<ModelGroup, { all: Deployment[]; forwarding: Deployment[] }>();
function priorityOrder(group: ModelGroup): { all: Deployment[]; forwarding: Deployment[] } {
  let o = byPriority.get(group);
  if (!o) {
    const all = [...group.deployments].sort((a, b) => a.priority - b.priority);
    byPriority.set(group, (o = { all, forwarding: all.filter((d) => d.provider.forward !== undefined) }));
  }
  return o;
}
const inPriorityOrder = (group: ModelGroup): readonly Deployment[] => priorityOrder(group).all;
const forwarders = (group: ModelGroup): readonly Deployment[] => priorityOrder(group).forwarding;

/**
 * `body`, calling `ended` once when it has been read to its end, failed, been given up by its
 * reader (return, destroy) or its client has gone.
 */
function untilEnded(body: StreamBody, signal: CancelSignal, ended: () => void): StreamBody {
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    signal.removeEventListener('abort', finish);
    ended();
  };
  if (signal.aborted) finish();
  else signal.addEventListener('abort', finish);
  const source = body[Symbol.asyncIterator]();
  const iterator: AsyncIterator<Uint8Array> = {
    async next() {
      try {
        const r = await source.next();
        if (r.done) finish();
        return r;
      } catch (err) {
        finish();
        throw err;
      }
    },
    async return() {
      finish();
      return (await source.return?.()) ?? { done: true, value: undefined };
    },
  };
  return {
    [Symbol.asyncIterator]: () => iterator,
    destroy(err?: Error) {
      finish();
      body.destroy(err);
    },
  };
}

const NO_USAGE: Usage = Object.freeze({ prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 });

/**
 * `body`, every chunk shown to `tap` (when there is one) before it goes on and the tap told when the
 * body has ended; `broke` told when reading it failed.
 */
function tapped(body: StreamBody, tap: UsageTap | undefined, broke: (err: unknown) => void): StreamBody {
  const source = body[Symbol.asyncIterator]();
  const iterator: AsyncIterator<Uint8Array> = {
    async next() {
      let r: IteratorResult<Uint8Array>;
      try {
        r = await source.next();
      } catch (err) {
        broke(err);
        throw err;
      }
      if (!r.done) tap?.push(r.value);
      else tap?.end();
      return r;
    },
    async return() {
      return (await source.return?.()) ?? { done: true, value: undefined };
    },
  };
  return { [Symbol.asyncIterator]: () => iterator, destroy: (err?: Error) => body.destroy(err) };
}

/**
 * The outcome the admission stage settles an embedding or a forwarded call with: their usage and
 * cost are in ctx.facts, which is what admission reads.
 */
const SETTLED_BY_FACTS: ChatOutcome = { kind: 'result', result: { id: 'settled-by-facts', object: 'chat.completion', created: 0, model: '', choices: [], usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 } } };
