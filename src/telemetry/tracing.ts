// OpenTelemetry traces: one SERVER span per HTTP request (continuing an incoming W3C `traceparent`),
// a child span per stage (auth, limits, cache, plan, route, each provider attempt, aggregate), and the
// attempt's `traceparent` injected into the upstream call. Spans go to OTLP/HTTP when an endpoint is
// set (the standard OTEL_* variables). Spans cost CPU on every request, so they are only made when
// something records them: with no exporter the gateway only propagates `traceparent` (one id per
// request, no span objects), and with tracing off every helper here is a no-op.
import {
  INVALID_SPAN_CONTEXT,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context as otelContext,
  createTraceState,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Span,
  type SpanContext,
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
import { randomHex } from '../gateway/ids.js';
import type { ChatOutcome, ChatStage } from '../gateway/pipeline.js';
import { observeStream } from '../gateway/pipeline.js';

const TRACER_NAME = 'inferenceflow';

/**
 * What this process does with traces: `off` nothing; `propagate` no spans, but each request gets a
 * span id and the upstream a `traceparent` (tracing on without an exporter); `record` the SDK makes
 * spans for an exporter. Process-wide, like OpenTelemetry's own global registration.
 */
type TracingMode = 'off' | 'propagate' | 'record';
let mode: TracingMode = 'off';
/** In `propagate` mode: whether a trace this gateway starts is marked sampled (from the sampler setting). */
let sampleRoot: () => boolean = () => true;

/** The one span handed out where no span is made: ending or annotating it does nothing. */
const NO_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** The key the OpenTelemetry API keeps a context's span under (`createContextKey` is `Symbol.for`). */
const SPAN_KEY = Symbol.for('OpenTelemetry Context Key SPAN');
/** Checked once: should a later API keep spans elsewhere, `propagate` mode uses its own contexts again. */
const SPAN_KEY_HOLDS = trace.getSpan(ROOT_CONTEXT.setValue(SPAN_KEY, NO_SPAN)) === NO_SPAN;

/**
 * `propagate` mode's request context: the span context the request passes on and nothing else.
 * OpenTelemetry's own context copies a Map for every value set (~0.8 KB per request with its span);
 * this one answers the span key, which `trace.getSpan` and `getSpanContext` read, becomes an
 * OpenTelemetry context only if something sets another value.
 */
export class PropagatedContext implements Context {
  private span: Span | undefined;

  constructor(readonly spanContext: SpanContext) {}

  getValue(key: symbol): unknown {
    return key === SPAN_KEY ? (this.span ??= trace.wrapSpanContext(this.spanContext)) : undefined;
  }

  setValue(key: symbol, value: unknown): Context {
    return ROOT_CONTEXT.setValue(SPAN_KEY, this.getValue(SPAN_KEY)).setValue(key, value);
  }

  deleteValue(key: symbol): Context {
    return key === SPAN_KEY ? ROOT_CONTEXT : this;
  }
}

/** W3C `traceparent` naming a span. */
function traceparentOf(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-0${sc.traceFlags & 1}`;
}

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

/**
 * Spans go to the collector in batches of EXPORT_BATCH_SPANS unless OTEL_BSP_MAX_EXPORT_BATCH_SIZE
 * says otherwise (an explicit setting would override the variable). The SDK's default, 512, is
 * serialised to OTLP JSON in one go on the event loop: ~5 ms here, a stall every request arriving
 * meanwhile waits out; 64 spans take well under 1 ms, at the cost of more, smaller exports.
 */
const EXPORT_BATCH_SPANS = 64;

function exportBatching(): { maxExportBatchSize?: number } {
  return process.env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE ? {} : { maxExportBatchSize: EXPORT_BATCH_SPANS };
}

/** The process-wide tracer provider; `start` registers it globally so every module's spans use it. */
export class Tracing {
  private constructor(
    readonly enabled: boolean,
    private readonly provider?: NodeTracerProvider,
  ) {}

  static disabled(): Tracing {
    mode = 'off';
    return new Tracing(false);
  }

  /**
   * Registers the global tracer provider and W3C propagator. `exporter` overrides the configured one
   * (tests pass an InMemorySpanExporter and get synchronous export).
   */
  static start(settings: TracingSettings, version: string, exporter?: SpanExporter): Tracing {
    // Replace whatever an earlier instance in this process registered (tests start several gateways).
    trace.disable();
    otelContext.disable();
    propagation.disable();
    if (!settings.enabled) return Tracing.disabled();
    const processors: SpanProcessor[] = [];
    if (exporter) processors.push(new SimpleSpanProcessor(exporter));
    else {
      const kind = settings.exporter ?? (settings.otlp_endpoint ? 'otlp' : 'none');
      if (kind === 'otlp') processors.push(new BatchSpanProcessor(new OTLPTraceExporter(settings.otlp_endpoint ? { url: settings.otlp_endpoint } : {}), exportBatching()));
      if (kind === 'console') processors.push(new SimpleSpanProcessor(new ConsoleSpanExporter()));
    }
    if (processors.length === 0) {
      // Nothing would receive a span: propagate trace context only (docs/observability.md).
      mode = 'propagate';
      sampleRoot = rootSampling(settings.sampler, settings.sampler_arg);
      return new Tracing(true);
    }
    mode = 'record';
    const provider = new NodeTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: settings.service_name, [ATTR_SERVICE_VERSION]: version }),
      sampler: buildSampler(settings.sampler, settings.sampler_arg),
      spanProcessors: processors,
    });
    // No context manager: every span here is parented explicitly (startSpan's `parent`), so nothing
    // reads context.active(). The default one (AsyncLocalStorage) installs a promise hook that runs on
    // every promise the process makes, traced or not (~2% of a full-pipeline request's CPU).
    provider.register({ contextManager: null });
    return new Tracing(true, provider);
  }

  async shutdown(): Promise<void> {
    if (!this.provider) return;
    await this.provider.shutdown().catch(() => undefined);
  }
}

/** For `propagate` mode: the sampled flag of a trace this gateway starts, as the configured sampler would set it. */
function rootSampling(name: string, arg?: number): () => boolean {
  if (name === 'always_off' || name === 'parentbased_always_off') return () => false;
  if (name === 'traceidratio' || name === 'parentbased_traceidratio') {
    const ratio = arg === undefined || Number.isNaN(arg) ? 1 : Math.min(1, Math.max(0, arg));
    return () => Math.random() < ratio;
  }
  return () => true;
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

/**
 * A child span of `parent` (or a root span). Where nothing is recorded (tracing off, propagation
 * only, or a parent that was not sampled) no span is made: the parent's context is handed back, so
 * `traceparent` still names the nearest real span.
 */
export function startSpan(name: string, parent: Context | undefined, attributes?: Attributes, kind = SpanKind.INTERNAL): StartedSpan {
  const base = parent ?? ROOT_CONTEXT;
  if (mode !== 'record') return { span: NO_SPAN, context: base };
  const parentSpan = parent ? trace.getSpan(parent) : undefined;
  // A local parent that is not recorded (not sampled) has no recorded children either; a remote
  // parent (the caller's traceparent) is never "recording" here and is left to the sampler.
  if (parentSpan && !parentSpan.isRecording() && !parentSpan.spanContext().isRemote) return { span: NO_SPAN, context: base };
  const span = tracer().startSpan(name, { kind, attributes }, base);
  return { span, context: trace.setSpan(base, span) };
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The SERVER span of one HTTP request, continuing the caller's trace when it sent `traceparent`. */
export function startServerSpan(name: string, headers: Record<string, string | string[] | undefined>, attributes?: Attributes): StartedSpan {
  if (mode === 'off') return { span: NO_SPAN, context: ROOT_CONTEXT };
  if (mode === 'propagate') {
    const sc = propagatedSpanContext(headers);
    return { span: NO_SPAN, context: SPAN_KEY_HOLDS ? new PropagatedContext(sc) : trace.setSpan(ROOT_CONTEXT, trace.wrapSpanContext(sc)) };
  }
  const parent = propagation.extract(ROOT_CONTEXT, headers, {
    get: (carrier, key) => carrier[key],
    keys: (carrier) => Object.keys(carrier),
  });
  return startSpan(name, parent, attributes, SpanKind.SERVER);
}

/** `propagate` mode: this request's own span id in the caller's trace (or a new trace). */
function propagatedSpanContext(headers: Record<string, string | string[] | undefined>): SpanContext {
  const ids = randomHex(24);
  const incoming = headers.traceparent;
  const m = typeof incoming === 'string' ? TRACEPARENT.exec(incoming.trim().toLowerCase()) : null;
  const spanId = ids.slice(32);
  if (m && !/^0+$/.test(m[1] as string) && !/^0+$/.test(m[2] as string)) {
    const state = headers.tracestate;
    const sc: SpanContext = { traceId: m[1] as string, spanId, traceFlags: parseInt(m[3] as string, 16) & 1 };
    if (typeof state === 'string' && state) sc.traceState = createTraceState(state);
    return sc;
  }
  return { traceId: ids.slice(0, 32), spanId, traceFlags: sampleRoot() ? 1 : 0 };
}

/** W3C `traceparent` (and `tracestate`) for an upstream call made within `ctx`. */
export function traceHeaders(ctx: Context): Record<string, string> {
  const carrier: Record<string, string> = {};
  if (mode === 'off') return carrier;
  if (mode === 'propagate') {
    const sc = ctx instanceof PropagatedContext ? ctx.spanContext : trace.getSpanContext(ctx);
    if (!sc) return carrier;
    carrier.traceparent = traceparentOf(sc);
    const state = sc.traceState?.serialize();
    if (state) carrier.tracestate = state;
    return carrier;
  }
  propagation.inject(ctx, carrier);
  // The registered propagator also carries W3C baggage, which the client's request may hold (user
  // ids, emails, tenant names): a provider gets the trace's two headers only, as in propagate mode.
  delete carrier.baggage;
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
  if (span === NO_SPAN) return fn(span);
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
  // Spans are only ever recorded in 'record' mode, fixed when telemetry is set up (before the
  // pipeline is assembled): otherwise the stage runs as it is, with no wrapper on the request path.
  if (mode !== 'record') return stage;
  const attributes = { 'inferenceflow.stage': name };
  const traced: ChatStage = async (ctx, req, next) => {
    const { span } = startSpan(name, contextOf(ctx), attributes);
    if (span === NO_SPAN) return stage(ctx, req, next);
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
