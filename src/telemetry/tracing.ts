// OpenTelemetry traces: one SERVER span per HTTP request (continuing an incoming W3C `traceparent`),
// a child span per stage (auth, limits, cache, plan, route, each provider attempt, aggregate), and the
// attempt's `traceparent` injected into the upstream call. Spans go to OTLP/HTTP when an endpoint is
// set (the standard OTEL_* variables); with tracing off every helper here is a cheap no-op.
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context as otelContext,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Span,
} from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  NodeTracerProvider,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type Sampler,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { RequestContext } from '../gateway/context.js';
import type { ChatOutcome, ChatStage } from '../gateway/pipeline.js';
import { observeStream } from '../gateway/pipeline.js';

const TRACER_NAME = 'inferenceflow';

export interface TracingSettings {
  enabled: boolean;
  service_name: string;
  /** OTLP/HTTP traces URL (…/v1/traces); unset means spans are made (and propagated) but not exported. */
  otlp_endpoint?: string;
  /** `otlp`, `console` or `none`; defaults to `otlp` when an endpoint is set. */
  exporter?: 'otlp' | 'console' | 'none';
  /** OTEL_TRACES_SAMPLER names: always_on, always_off, traceidratio, parentbased_* . */
  sampler: string;
  sampler_arg?: number;
}

/** The process-wide tracer provider; `start` registers it globally so every module's spans use it. */
export class Tracing {
  private constructor(
    readonly enabled: boolean,
    private readonly provider?: NodeTracerProvider,
  ) {}

  static disabled(): Tracing {
    return new Tracing(false);
  }

  /**
   * Registers the global tracer provider and W3C propagator. `exporter` overrides the configured one
   * (tests pass an InMemorySpanExporter and get synchronous export).
   */
  static start(settings: TracingSettings, version: string, exporter?: SpanExporter): Tracing {
    if (!settings.enabled) return Tracing.disabled();
    const processors: SpanProcessor[] = [];
    if (exporter) processors.push(new SimpleSpanProcessor(exporter));
    else {
      const kind = settings.exporter ?? (settings.otlp_endpoint ? 'otlp' : 'none');
      if (kind === 'otlp') processors.push(new BatchSpanProcessor(new OTLPTraceExporter(settings.otlp_endpoint ? { url: settings.otlp_endpoint } : {})));
      if (kind === 'console') processors.push(new SimpleSpanProcessor(new ConsoleSpanExporter()));
    }
    // Replace whatever an earlier instance in this process registered (tests start several gateways).
    trace.disable();
    otelContext.disable();
    propagation.disable();
    const provider = new NodeTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: settings.service_name, [ATTR_SERVICE_VERSION]: version }),
      sampler: buildSampler(settings.sampler, settings.sampler_arg),
      spanProcessors: processors,
    });
    provider.register();
    return new Tracing(true, provider);
  }

  async shutdown(): Promise<void> {
    if (!this.provider) return;
    await this.provider.shutdown().catch(() => undefined);
  }
}

export function buildSampler(name: string, arg?: number): Sampler {
  const ratio = arg === undefined || Number.isNaN(arg) ? 1 : Math.min(1, Math.max(0, arg));
  switch (name) {
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio);
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
    case 'always_on':
      return new AlwaysOnSampler();
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

function tracer() {
  return trace.getTracer(TRACER_NAME);
}

export interface StartedSpan {
  span: Span;
  /** The context to parent further spans on. */
  context: Context;
}

/** A child span of `parent` (or a root span). Cheap no-op when tracing is off. */
export function startSpan(name: string, parent: Context | undefined, attributes?: Attributes, kind = SpanKind.INTERNAL): StartedSpan {
  const base = parent ?? ROOT_CONTEXT;
  const span = tracer().startSpan(name, { kind, attributes }, base);
  return { span, context: trace.setSpan(base, span) };
}

/** The SERVER span of one HTTP request, continuing the caller's trace when it sent `traceparent`. */
export function startServerSpan(name: string, headers: Record<string, string | string[] | undefined>, attributes?: Attributes): StartedSpan {
  const parent = propagation.extract(ROOT_CONTEXT, headers, {
    get: (carrier, key) => carrier[key],
    keys: (carrier) => Object.keys(carrier),
  });
  return startSpan(name, parent, attributes, SpanKind.SERVER);
}

/** W3C `traceparent` (and `tracestate`) for an upstream call made within `ctx`. */
export function traceHeaders(ctx: Context): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier;
}

/** Ends a span, marking it failed when `error` is set. */
export function endSpan(span: Span, error?: unknown, attributes?: Attributes): void {
  if (attributes) span.setAttributes(attributes);
  if (error !== undefined) {
    const err = error instanceof Error ? error : new Error(String(error));
    span.recordException(err);
    span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
  }
  span.end();
}

/** Runs `fn` inside a child span of the request's span; used by edge stages (auth, limits). */
export async function withSpan<T>(name: string, parent: Context | undefined, fn: (span: Span) => Promise<T>, attributes?: Attributes): Promise<T> {
  const { span } = startSpan(name, parent, attributes);
  try {
    const out = await fn(span);
    span.end();
    return out;
  } catch (err) {
    endSpan(span, err);
    throw err;
  }
}

/**
 * Wraps a chat stage in a span named after it (`cache`, `plan`, `aggregate`, …). A streamed outcome's
 * span lasts until the stream ends, so it covers the whole answer.
 */
export function tracedStage(name: string, stage: ChatStage): ChatStage {
  const traced: ChatStage = async (ctx, req, next) => {
    const { span } = startSpan(name, contextOf(ctx), { 'inferenceflow.stage': name });
    let outcome: ChatOutcome;
    try {
      outcome = await stage(ctx, req, next);
    } catch (err) {
      endSpan(span, err);
      throw err;
    }
    if (outcome.kind === 'result') {
      span.end();
      return outcome;
    }
    return { kind: 'stream', stream: observeStream(outcome.stream, () => undefined, ({ error }) => endSpan(span, error)) };
  };
  Object.defineProperty(traced, 'name', { value: `traced_${stage.name || name}` });
  return traced;
}

/** The trace context a request context carries (set from the HTTP request's span). */
export function contextOf(ctx: RequestContext): Context | undefined {
  return ctx.traceContext as Context | undefined;
}
