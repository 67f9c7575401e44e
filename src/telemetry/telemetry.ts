// One process's telemetry: the metrics registry (with its /v1/stats window), the tracer provider,
// and the two places the spine reports to it — each finished HTTP request and each upstream attempt.
// Built once in assemble(); the HTTP layer, the executor and the capabilities all hold this object.
import nodeCluster from 'node:cluster';
import type { Context, Span } from '@opentelemetry/api';
import type { SpanExporter } from '@opentelemetry/sdk-trace-node';
import type { Usage } from '../canonical/chat.js';
import type { MonitoringConfig } from '../config/schema.js';
import type { RequestContext } from '../gateway/context.js';
import type { AttemptEnd, AttemptObserver } from '../gateway/execute.js';
import { isUpstreamError } from '../providers/errors.js';
import type { Deployment } from '../routing/catalog.js';
import type { IpcChannel, WorkerCounts } from './cluster-metrics.js';
import { GatewayMetrics } from './metrics.js';
import type { RequestRecord } from './records.js';
import type { PerformanceSummary } from './rolling-stats.js';
import { Tracing, endSpan, startServerSpan } from './tracing.js';

export interface TelemetryOptions {
  version: string;
  /** Span exporter replacing the configured one (tests). */
  spanExporter?: SpanExporter;
  /** Clock for the stats window (tests). */
  now?: () => number;
  /**
   * The channel to a `serve --workers N` primary, whose scrapes aggregate the cluster; default: this
   * process's IPC channel when it is a cluster worker, none otherwise (one process, tests).
   */
  cluster?: IpcChannel;
}

/** What the server holds for one request between its arrival and its end. */
export interface RequestTrace {
  readonly context: Context;
  end(record: RequestRecord, extra?: { tenant?: string; requestId?: string; error?: unknown }): void;
}

export interface AlertState {
  name: 'error_rate' | 'p95_latency' | 'queue_depth' | 'breaker_open';
  firing: boolean;
  value: number;
  threshold: number;
}

export class Telemetry implements AttemptObserver {
  readonly metrics: GatewayMetrics;

  private constructor(
    readonly settings: MonitoringConfig,
    readonly tracing: Tracing,
    opts: TelemetryOptions,
  ) {
    this.metrics = new GatewayMetrics({
      maxLabelValues: settings.metrics.max_label_values,
      processMetrics: settings.metrics.process_metrics,
      statsWindowS: settings.stats.window_s,
      now: opts.now,
      cluster: opts.cluster ?? (nodeCluster.isWorker ? process : undefined),
    });
  }

  static create(settings: MonitoringConfig, opts: TelemetryOptions): Telemetry {
    const tracing = Tracing.start(settings.tracing, opts.version, opts.spanExporter);
    return new Telemetry(settings, tracing, opts);
  }

  /** Called as a request arrives: opens its SERVER span (continuing an incoming traceparent). */
  startRequest(method: string, route: string | undefined, headers: Record<string, string | string[] | undefined>, counted: boolean): RequestTrace {
    const { span, context } = startServerSpan(`${method} ${route ?? 'unmatched'}`, headers, {
      'http.request.method': method,
      'http.route': route ?? 'unmatched',
    });
    if (counted) this.metrics.requestStarted();
    let ended = false;
    return {
      context,
      end: (record, extra) => {
        if (ended) return;
        ended = true;
        finishServerSpan(span, record, extra);
        if (counted) this.metrics.recordRequest(record);
      },
    };
  }

  /**
   * AttemptObserver: one upstream attempt's metrics. An attempt that ended with an `aborted`
   * UpstreamError was cancelled by the gateway (hedge lost, client gone, deadline): outcome
   * `cancelled`, not an error.
   */
  attemptEnded(_ctx: RequestContext, d: Deployment, end: AttemptEnd): void {
    const outcome = end.ok ? 'ok' : isUpstreamError(end.error) && end.error.kind === 'aborted' ? 'cancelled' : 'error';
    this.metrics.recordAttempt({
      provider: d.providerName,
      model: d.model,
      deployment: d.id,
      outcome,
      durationMs: end.durationMs,
      ttftMs: end.ttftMs,
      errorKind: outcome !== 'error' ? undefined : isUpstreamError(end.error) ? end.error.kind : 'internal',
      inputTokens: end.usage?.prompt_tokens,
      outputTokens: end.usage?.completion_tokens,
      costUsd: end.costUsd,
    });
  }

  /** A forwarded answer's tokens and cost, read from its body after its attempt was recorded. */
  spent(_ctx: RequestContext, d: Deployment, usage: Usage, costUsd: number): void {
    // Counters only grow (recordSpend clamps): an upstream count below what was recorded up front is left as recorded.
    this.metrics.recordSpend({ provider: d.providerName, model: d.model, inputTokens: usage.prompt_tokens, outputTokens: usage.completion_tokens, costUsd });
  }

  /**
   * Admission's `onUsageEstimated`: a stream that ended without a usage chunk (client gone, upstream
   * cut) was charged an estimate no attempt recorded — tokens and cost go to the metrics as charged.
   */
  readonly usageEstimated = (ctx: RequestContext, usage: Usage, costUsd: number): void => {
    this.metrics.recordSpend({ provider: ctx.facts.provider, model: ctx.facts.model, inputTokens: usage.prompt_tokens, outputTokens: usage.completion_tokens, costUsd });
  };

  /** This process's /v1/stats document with the configured alert thresholds evaluated. */
  summary(): PerformanceSummary & { alerts: AlertState[] } {
    return this.withAlerts(this.metrics.summary());
  }

  /**
   * The /v1/stats document with the alerts evaluated: in a `serve --workers N` worker the whole
   * cluster's, with `workers` (answered, stale, missing); otherwise summary(). Rejects with a 503
   * GatewayError when a cluster's primary cannot answer.
   */
  async clusterSummary(): Promise<PerformanceSummary & { workers?: WorkerCounts; alerts: AlertState[] }> {
    return this.withAlerts(await this.metrics.clusterSummary());
  }

  private withAlerts<S extends PerformanceSummary>(s: S): S & { alerts: AlertState[] } {
    const t = this.settings.alerts;
    const alerts: AlertState[] = [
      { name: 'error_rate', value: s.requests.error_rate, threshold: t.error_rate, firing: s.requests.total > 0 && s.requests.error_rate > t.error_rate },
      { name: 'p95_latency', value: s.latency_ms.p95, threshold: t.p95_latency_ms, firing: s.latency_ms.p95 > t.p95_latency_ms },
      { name: 'queue_depth', value: s.queue.depth, threshold: t.queue_depth, firing: s.queue.depth > t.queue_depth },
      { name: 'breaker_open', value: s.breakers.open, threshold: 0, firing: s.breakers.open > 0 },
    ];
    return { ...s, alerts };
  }

  async close(): Promise<void> {
    this.metrics.close();
    await this.tracing.shutdown();
  }
}

function finishServerSpan(span: Span, r: RequestRecord, extra?: { tenant?: string; requestId?: string; error?: unknown }): void {
  // A span that records nothing (propagation only, not sampled) gets no attributes built for it.
  if (span.isRecording()) span.setAttributes({
    'http.response.status_code': r.status,
    ...(r.model ? { 'gen_ai.response.model': r.model } : {}),
    ...(r.provider ? { 'inferenceflow.provider': r.provider } : {}),
    ...(r.cache ? { 'inferenceflow.cache': r.cache } : {}),
    ...(extra?.tenant ? { 'inferenceflow.tenant': extra.tenant } : {}),
    ...(extra?.requestId ? { 'inferenceflow.request_id': extra.requestId } : {}),
    ...(r.costUsd ? { 'inferenceflow.cost_usd': r.costUsd } : {}),
  });
  endSpan(span, r.status >= 500 ? (extra?.error ?? new Error(`HTTP ${r.status}`)) : undefined);
}
