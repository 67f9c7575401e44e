// Builds the RequestContext for one HTTP request: request id, tenant, gateway options from extension
// fields and headers (priority, difficulty, aggregation, session, Cache-Control), and an AbortSignal that fires
// when the client goes away before the answer is complete (a Cancellation: an AbortController per
// request costs several microseconds).
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ANONYMOUS, LazyLogContext, NO_CACHE_DIRECTIVES, defaultRequestOptions, newFacts, type Priority, type RequestContext, type RequestOptions } from '../gateway/context.js';
import type { Logger } from 'pino';
import { Cancellation } from '../providers/cancel.js';

export interface ExtensionFields {
  difficulty?: string | number;
  /** How test-time scaling combines passes (seed bodies); else the `x-inferenceflow-aggregation` header. */
  aggregation?: string;
  priority?: Priority;
  session_id?: string;
  metadata?: Record<string, unknown> | null;
}

/**
 * Whether the request is answered in Anthropic's dialect: its route's (`/v1/messages`…), or, on a route
 * both APIs share (`by-header`: the model list), a caller sending `anthropic-version` as the SDK does.
 */
export function speaksAnthropic(request: FastifyRequest): boolean {
  const dialect = (request.routeConfig ?? request.routeOptions.config)?.dialect;
  return dialect === 'anthropic' || (dialect === 'by-header' && request.headers['anthropic-version'] !== undefined);
}

export function parseCacheControl(headers: FastifyRequest['headers']): RequestOptions['cache'] {
  const raw = headers['cache-control'];
  if (raw === undefined && headers['x-inferenceflow-cache-bypass'] === undefined) return NO_CACHE_DIRECTIVES;
  const cc = (Array.isArray(raw) ? raw.join(',') : (raw ?? '')).toLowerCase();
  const bypass = headers['x-inferenceflow-cache-bypass'];
  const bypassOn = bypass !== undefined && !/^(0|false|no)$/i.test(String(bypass));
  const maxAge = /max-age\s*=\s*(\d+)/.exec(cc);
  return {
    noCache: bypassOn || /\bno-cache\b/.test(cc),
    noStore: bypassOn || /\bno-store\b/.test(cc),
    ...(maxAge ? { maxAgeS: Number(maxAge[1]) } : {}),
  };
}

function headerValue(headers: FastifyRequest['headers'], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function createRequestContext(request: FastifyRequest, reply: FastifyReply, endpoint: string, log: Logger, ext: ExtensionFields = {}): RequestContext {
  const controller = new Cancellation();
  const res = reply.raw;
  const onClose = () => {
    if (!res.writableEnded) controller.abort();
  };
  res.once('close', onClose);
  // The client may have left already (while the request was authenticated or its body read): its
  // `close` has fired, so the signal fires now.
  if (res.destroyed && !res.writableEnded) controller.abort();
  const options = defaultRequestOptions();
  const priority = ext.priority ?? (headerValue(request.headers, 'x-inferenceflow-priority') as Priority | undefined);
  if (priority === 'low' || priority === 'normal' || priority === 'high') options.priority = priority;
  const difficulty = ext.difficulty ?? headerValue(request.headers, 'x-inferenceflow-difficulty');
  if (difficulty !== undefined && difficulty !== '') options.difficulty = String(difficulty).trim().toLowerCase();
  // Read once, here: the scaling stage plans with it and the cache keys on it, so both see the same value.
  const aggregation = (ext.aggregation ?? headerValue(request.headers, 'x-inferenceflow-aggregation'))?.trim();
  if (aggregation) options.aggregation = aggregation.toLowerCase();
  const session = ext.session_id ?? headerValue(request.headers, 'x-session-id');
  if (session) options.sessionId = session;
  if (ext.metadata) options.metadata = ext.metadata;
  options.cache = parseCacheControl(request.headers);
  return new LazyLogContext(
    {
      id: request.id,
      startedAt: request.startedAt ?? performance.now(),
      endpoint,
      tenant: request.tenant ?? ANONYMOUS,
      signal: controller,
      options,
      facts: newFacts(),
      clientIp: request.ip,
      headers: request.headers,
      traceContext: request.traceContext,
    },
    log,
  );
}

declare module 'fastify' {
  interface FastifyRequest {
    tenant?: import('../gateway/context.js').Tenant;
    startedAt?: number;
    ctx?: RequestContext;
    /** OpenTelemetry context of this request's SERVER span (set when tracing is on). */
    traceContext?: import('@opentelemetry/api').Context;
    /** The matched route's path and config, read once from Fastify's routeOptions (the onRequest hook). */
    routeUrl?: string;
    routeConfig?: FastifyContextConfig;
  }
  interface FastifyContextConfig {
    /** Routes anyone may call (health, root). */
    public?: boolean;
    /** Error body dialect for this route; `by-header`: Anthropic's for a caller sending `anthropic-version`. */
    dialect?: 'openai' | 'anthropic' | 'by-header';
    /** An operational endpoint (metrics, stats, dashboard, docs): not counted in request metrics. */
    monitoring?: boolean;
  }
}
