// What the gateway feeds the autoscaler's traffic recorder: every chat request that reaches the
// pipeline as demand — answered, failed, or turned away for want of capacity (a full admission
// queue: a replica that does that is short of capacity, not one with less demand) — with its tokens
// when it was answered. A request refused by policy or as invalid (a tenant's rate limit or budget,
// a bad body, a bad key) is not demand: one tenant retrying its 429s in a loop would otherwise
// scale the fleet to max_replicas. And the depth of the router's admission queues, the figure `scaling.per_replica.queue_depth`
// sizes on (the same one /v1/providers and `inference_queue_depth` show).
import type { ChatOutcome, ChatStage } from '../gateway/pipeline.js';
import { observeStream } from '../gateway/pipeline.js';
import type { RoutingEvents } from '../routing/events.js';
import { toGatewayError } from '../server/errors.js';
import type { ErrorCode } from '../server/error-codes.js';
import type { TrafficRecorder } from './traffic.js';

/**
 * The 4xx refusals that still count as demand: the router's admission queue was full (every
 * deployment at its concurrency limit), or the client left while the request was being served.
 * Every other 4xx is a refusal by policy or of the request itself; every 5xx is a failure and counts.
 */
const DEMAND_4XX: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['queue_full', 'client_closed_request']);

/** Whether a failed request counts as demand (see above). */
export function failureIsDemand(err: unknown): boolean {
  const e = toGatewayError(err);
  return e.status >= 500 || DEMAND_4XX.has(e.code);
}

/**
 * The outermost chat stage: one request per call, its tokens from the answer (0 when there is none).
 * Not an async function: the answer passes through one `then` with handlers made once, not a
 * promise and an await of this stage's own per request.
 */
export function trafficRecorderStage(recorder: Pick<TrafficRecorder, 'recordRequest'>): ChatStage {
  const answered = (outcome: ChatOutcome): ChatOutcome => {
    if (outcome.kind === 'result') {
      recorder.recordRequest(outcome.result.usage.total_tokens);
      return outcome;
    }
    let tokens = 0;
    const stream = observeStream(
      outcome.stream,
      (chunk) => {
        if (chunk.usage) tokens = chunk.usage.total_tokens;
      },
      () => recorder.recordRequest(tokens),
    );
    return { kind: 'stream', stream };
  };
  const failed = (err: unknown): never => {
    if (failureIsDemand(err)) recorder.recordRequest(0);
    throw err;
  };
  return function recordTraffic(ctx, req, next) {
    return next(ctx, req).then(answered, failed);
  };
}

/** The router's view of its admission queues (src/routing/router.ts). */
export interface QueueDepthSource {
  /** Requests waiting for a deployment slot, over every group. */
  queueDepth(): number;
  events: Pick<RoutingEvents, 'on' | 'off'>;
}

/**
 * Samples the router's total queue depth into the recorder whenever a queue grows or shrinks, and
 * every `intervalMs` (so a queue that stays long shows in each new bucket, which keeps its deepest
 * sample). Returns the function that stops sampling.
 */
export function sampleQueueDepth(recorder: Pick<TrafficRecorder, 'observeQueueDepth'>, router: QueueDepthSource, intervalMs = 5_000): () => void {
  const sample = () => recorder.observeQueueDepth(router.queueDepth());
  router.events.on('queue_depth', sample);
  const timer = setInterval(sample, intervalMs);
  timer.unref();
  sample();
  return () => {
    clearInterval(timer);
    router.events.off('queue_depth', sample);
  };
}
