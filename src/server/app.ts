// The Fastify application: request ids, authentication, the error table rendered per dialect, and
// the route plugins. Built once per process (or per test with app.inject); it holds no request state.
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyPluginAsync, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { Logger } from 'pino';
import { ANONYMOUS, SETTLEMENT_WAIT_MS, afterSettlement } from '../gateway/context.js';
import type { Gateway } from '../gateway/gateway.js';
import type { RequestTrace, Telemetry } from '../telemetry/telemetry.js';
import { startSpan, withSpan } from '../telemetry/tracing.js';
import type { Authenticator } from './auth.js';
import { AccessLogger } from '../telemetry/logger.js';
import { GatewayError, errorHeaders, openAiErrorBody, toGatewayError, type ErrorCode } from './errors.js';
import { anthropicErrorFromGateway } from './anthropic-format.js';
import { MAX_JSON_DEPTH, nestedDeeperThan } from './json-depth.js';
import { factHeaders } from './headers.js';
import { recordedStatus } from './ledger-hook.js';
import { anthropicRoutes } from './routes/anthropic.js';
import { forwardedRoutes } from './routes/forwarded.js';
import { registerDocs } from './routes/docs.js';
import { healthRoutes } from './routes/health.js';
import { openAiRoutes } from './routes/openai.js';
import { responsesRoutes } from './routes/responses.js';
import { speaksAnthropic } from './request-context.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * A route that checks its own credential (the admin token, a webhook signature) instead of the
     * tenant authenticator's. Unlike `public` it is an ordinary route: counted in the request
     * metrics and logged whatever its status (key creation and revocation leave an audit line).
     */
    skipAuth?: boolean;
  }
}

export interface AppOptions {
  gateway: Gateway;
  authenticator: Authenticator;
  log: Logger;
  version: string;
  bodyLimit?: number;
  /** Longest a client may take to send a whole request, ms; 0: no limit (server.request_timeout_ms). */
  requestTimeoutMs?: number;
  /** Extra route plugins (admin, seed endpoints, metrics…) registered after the core ones. */
  plugins?: { plugin: FastifyPluginAsync<Record<string, unknown>>; options?: Record<string, unknown> }[];
  /** Metrics, traces and the stats window; without it requests are only logged. */
  telemetry?: Telemetry;
  /** In a cluster worker: sent as `x-inferenceflow-worker` so a client can see which process answered. */
  worker?: string;
  /** Requests a kept-alive connection carries before `Connection: close` (server.max_requests_per_connection); 0 or unset: no limit. */
  maxRequestsPerConnection?: number;
  /** server.trust_proxy: whose X-Forwarded-For gives the client's address (`request.ip`). */
  trustProxy?: boolean | number | string | string[];
}

const REQUEST_ID = /^[\w.:@/+=-]{1,128}$/;

/**
 * The error body of a request no route took (an unknown path, a URL the router cannot decode): an
 * Anthropic client (its paths, or its version header) gets Anthropic's shape, as on every other error.
 */
function unroutedErrorBody(path: string, headers: Record<string, string | string[] | undefined>, id: string, err: GatewayError): object {
  return path.startsWith('/v1/messages') || headers['anthropic-version'] !== undefined ? anthropicErrorFromGateway(err, id) : openAiErrorBody(err);
}

function tooDeep(): GatewayError {
  return new GatewayError('invalid_request', { message: `The request body nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels.` });
}

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const accessLog = new AccessLogger(opts.log);
  const app = Fastify({
    logger: false,
    bodyLimit: opts.bodyLimit ?? 32 * 1024 * 1024,
    requestTimeout: opts.requestTimeoutMs ?? 300_000,
    // Node honours the request timeout only when the server is made with it (Fastify sets it after),
    // and looks for requests past it every connectionsCheckingInterval (default 30 s): a tenth of it here.
    http: {
      requestTimeout: opts.requestTimeoutMs ?? 300_000,
      connectionsCheckingInterval: Math.min(30_000, Math.max(100, Math.floor((opts.requestTimeoutMs ?? 300_000) / 10))),
    },
    // A hop count works at run time (Fastify's docs; proxy-addr) though its types leave numbers out.
    ...(opts.trustProxy === undefined ? {} : { trustProxy: opts.trustProxy as FastifyServerOptions['trustProxy'] }),
    requestIdHeader: false,
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      const id = Array.isArray(incoming) ? incoming[0] : incoming;
      return id && REQUEST_ID.test(id) ? id : randomUUID();
    },
    // Our onRequest hook answers shutting_down in the route's own error shape instead of
    // Fastify's bare 503 (no code, no Retry-After).
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    ...(opts.maxRequestsPerConnection ? { maxRequestsPerSocket: opts.maxRequestsPerConnection } : {}),
    routerOptions: { ignoreTrailingSlash: true },
    // A URL the router cannot decode (`/v1/%zz`) is answered in the gateway's error shape with its
    // request id, like every other bad request; Fastify's own body named a code of no table.
    frameworkErrors: (error, request, reply) => {
      const err = new GatewayError('invalid_request', { message: `The request URL is malformed: ${error.message}` });
      // The request is typed with no reply schema here; the reply is the plain one every route has.
      void (reply as unknown as FastifyReply).code(err.status).header('x-request-id', request.id).send(unroutedErrorBody(request.url.split('?')[0] ?? '', request.headers, request.id, err));
    },
  });

  // JSON as Fastify parses it (prototype-poisoning keys refused), but no deeper than MAX_JSON_DEPTH:
  // V8 parses any depth, while serialising it again (to an upstream, for a token count, into a
  // response) overflows the stack — a ~24 KB body of nested arrays in a tool's parameters failed as
  // an unreachable upstream and opened the deployment's breaker for every tenant.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (nestedDeeperThan(body as string, MAX_JSON_DEPTH)) done(tooDeep(), undefined);
    else parseJson(req, body as string, done);
  });
  // The seed's curl examples send JSON without a JSON content type: accept it as JSON.
  app.addContentTypeParser(['text/plain', 'application/x-www-form-urlencoded'], { parseAs: 'string' }, (_req, body, done) => {
    if (nestedDeeperThan(body as string, MAX_JSON_DEPTH)) return done(tooDeep(), undefined);
    try {
      done(null, body === '' ? undefined : JSON.parse(body as string));
    } catch {
      done(new GatewayError('invalid_json'), undefined);
    }
  });

  // Own fields of every request from its construction (Fastify's request decorators), so each
  // request keeps one shape whichever of them its route sets.
  for (const field of ['startedAt', 'tenant', 'ctx', 'traceContext', 'routeUrl', 'routeConfig'] as const) app.decorateRequest(field, undefined);

  // Set once app.close() starts (the listener is closing): a request that still arrives on a
  // kept-alive connection is answered 503 shutting_down with Retry-After, so the client retries on
  // another replica; Fastify adds `Connection: close`. Probes and scrapes are still answered.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });

  // A callback hook rather than an async one: with no credential required (every caller anonymous)
  // the request goes on without a promise made and awaited for it.
  app.addHook('onRequest', (request, reply, done) => {
    request.startedAt = performance.now();
    reply.header('x-request-id', request.id);
    if (opts.worker) reply.header('x-inferenceflow-worker', opts.worker);
    // The connection's last request (server.max_requests_per_connection): Node would only say
    // `Connection: close` and leave the socket open, answering a request that still came on it with a
    // bare 503 (no body, never logged). Said here, Node also closes the socket after this answer.
    if ((reply.raw as { maxRequestsOnConnectionReached?: boolean }).maxRequestsOnConnectionReached) reply.header('connection', 'close');
    // Read once: Fastify builds a new routeOptions object on every access.
    const { url, config } = request.routeOptions;
    request.routeUrl = url;
    request.routeConfig = config;
    // Anthropic's API names every answer's id `request-id`, which its SDK reports (`_request_id`,
    // an error's `requestID`): the same id, to Anthropic-dialect callers only.
    if (config?.dialect !== undefined && speaksAnthropic(request)) reply.header('request-id', request.id);
    const trace = opts.telemetry?.startRequest(request.method, url, request.headers, !config?.public && !config?.monitoring);
    if (trace) request.traceContext = trace.context;
    // 'close' fires once whether the response finished or the client went away mid-stream (Fastify's
    // onResponse only fires on finish), so every request gets its log line and its metrics.
    reply.raw.once('close', () => closed(request, reply, trace));
    if (closing && !config?.public && !config?.monitoring) return done(new GatewayError('shutting_down', { retryAfterMs: 1_000 }));
    if (config?.public || config?.skipAuth) return done();
    if (!opts.authenticator.required) {
      request.tenant = ANONYMOUS;
      // Its (empty) span still, as for any authentication, when traces are recorded.
      startSpan('auth', request.traceContext).span.end();
      return done();
    }
    withSpan('auth', request.traceContext, () => opts.authenticator.authenticate({ headers: request.headers, ip: request.ip })).then((tenant) => {
      request.tenant = tenant;
      done();
      // Never a falsy reason, which `done` would take for success: the request would go on unauthenticated.
    }, (err: unknown) => done(err instanceof Error ? err : new GatewayError('internal_error', { cause: err })));
  });

  /**
   * Status and latency as the connection closed; the log line and the request's metrics once what
   * it still owes has settled (a stream whose client left is charged after this 'close'), so they
   * show the tokens and cost its budget and ledger row got.
   */
  function closed(request: FastifyRequest, reply: FastifyReply, trace: RequestTrace | undefined): void {
    const latency = performance.now() - (request.startedAt ?? performance.now());
    // 499 (nginx's "client closed request") when the client left before the response was complete;
    // a stream that failed after it started, with its error's status.
    const status = recordedStatus(request, reply);
    const settled = request.ctx && afterSettlement(request.ctx, SETTLEMENT_WAIT_MS, () => undefined);
    if (!settled) return finishRequest(request, trace, status, latency);
    void settled.then(() => finishRequest(request, trace, status, latency));
  }

  function finishRequest(request: FastifyRequest, trace: RequestTrace | undefined, status: number, latency: number): void {
    const ctx = request.ctx;
    const route = request.routeUrl;
    trace?.end(
      { route: route ?? 'unmatched', method: request.method, status, durationMs: latency, model: ctx?.facts.model, provider: ctx?.facts.provider, cache: ctx?.facts.cache, costUsd: ctx?.facts.costUsd },
      { tenant: request.tenant?.id, requestId: request.id },
    );
    // Health probes, scrapes and dashboard polls are logged only when they fail.
    const quiet = request.routeConfig?.public || request.routeConfig?.monitoring;
    if (quiet && status < 400) return;
    accessLog.request({
      reqId: request.id,
      method: request.method,
      url: request.url,
      route,
      status,
      code: status >= 400 ? request.ledgerErrorCode : undefined,
      tenant: request.tenant?.id,
      model: ctx?.facts.model,
      provider: ctx?.facts.provider,
      deployment: ctx?.facts.deployment,
      cache: ctx?.facts.cache,
      costUsd: ctx?.facts.costUsd,
      tokens: ctx?.facts.usage ? { input: ctx.facts.usage.prompt_tokens, output: ctx.facts.usage.completion_tokens } : undefined,
      attempts: ctx?.facts.attempts || undefined,
      latencyMs: Math.round(latency * 100) / 100,
      outcome: status === 499 ? 'client_closed' : status < 400 ? 'ok' : status < 500 ? 'client_error' : 'error',
    });
  }

  app.setErrorHandler((error: FastifyError | GatewayError, request, reply) => {
    // The client went away while its request was handled: whatever failed because of it, the outcome
    // is theirs, not a gateway failure to log at error level.
    const gone = reply.raw.destroyed && !reply.raw.writableEnded;
    const err = gone && !(error instanceof GatewayError && error.code === 'client_closed_request') ? new GatewayError('client_closed_request', { cause: error }) : fastifyToGatewayError(error);
    // The access line (and the ledger) say which error it was.
    request.ledgerErrorCode = err.code;
    if (err.status >= 500) opts.log.error({ reqId: request.id, err: error, code: err.code }, 'request failed');
    else if (gone) opts.log.debug({ reqId: request.id, code: err.code, cause: (error as Error).message }, 'client closed the request');
    reply.code(err.status);
    // A request the gateway began handling answers with the facts it has, as a success does: who
    // was tried, the upstream time when an upstream was called, what was spent. Latency is left out
    // when no upstream was reached; the error's own headers come last.
    if (request.ctx) reply.headers(factHeaders(request.ctx.facts, true, 'known'));
    reply.headers(errorHeaders(err));
    // An error raised before the onRequest hook ran (none is known) would find routeConfig unset.
    if (speaksAnthropic(request)) {
      return reply.send(anthropicErrorFromGateway(err, request.id));
    }
    return reply.send(openAiErrorBody(err));
  });

  app.setNotFoundHandler({}, (request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    // A path served under other methods gets 405 with `Allow` listing them; an unknown path 404.
    const allowed = ROUTE_METHODS.filter((method) => method !== request.method && app.findRoute({ method, url: path }) !== null);
    const err = allowed.length
      ? new GatewayError('method_not_allowed', { message: `${request.method} is not allowed on ${path}; use ${allowed.filter((m) => m !== 'HEAD' && m !== 'OPTIONS').join(' or ')}.` })
      : new GatewayError('not_found', { message: `No route for ${request.method} ${path}.` });
    reply.code(err.status);
    if (allowed.length) reply.header('allow', allowed.join(', '));
    return reply.send(unroutedErrorBody(path, request.headers, request.id, err));
  });

  const routes: string[] = [];
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const m of methods) if (m !== 'HEAD' && m !== 'OPTIONS' && !route.url.includes('*')) routes.push(`${m} ${route.url}`);
  });
  // The OpenAPI generator must be registered before the routes it documents.
  if (opts.telemetry?.settings.docs.enabled) await registerDocs(app, { version: opts.version });
  await app.register(healthRoutes, { gateway: opts.gateway, version: opts.version, routes });
  await app.register(openAiRoutes, { gateway: opts.gateway, log: opts.log });
  await app.register(forwardedRoutes, { gateway: opts.gateway, log: opts.log });
  await app.register(anthropicRoutes, { gateway: opts.gateway, log: opts.log });
  await app.register(responsesRoutes, { gateway: opts.gateway, log: opts.log });
  for (const p of opts.plugins ?? []) await app.register(p.plugin, p.options ?? {});
  return app;
}

/** Methods a route may be registered under, in the order `Allow` lists them. */
const ROUTE_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
};

function fastifyToGatewayError(error: FastifyError | GatewayError): GatewayError {
  if (error instanceof GatewayError) return error;
  const code = (error as FastifyError).code;
  if (code && FASTIFY_CODES[code]) return new GatewayError(FASTIFY_CODES[code] as ErrorCode);
  if (error instanceof SyntaxError) return new GatewayError('invalid_json');
  const status = (error as FastifyError).statusCode;
  if (status !== undefined && status >= 400 && status < 500) return new GatewayError('invalid_request', { message: error.message });
  return toGatewayError(error);
}
