// What the gateway feeds the autoscaler's traffic recorder: every chat request that reaches the
// pipeline as demand (answered, refused by a limit, or failed — a replica that turns requests away
// with 429 is a replica short of capacity, not one with less demand), with its tokens when it was
// answered; and the depth of the router's admission queues, the figure `scaling.per_replica.queue_depth`
// sizes on (the same one /v1/providers and `inference_queue_depth` show).
import type { ChatOutcome, ChatStage } from '../gateway/pipeline.js';
import { observeStream } from '../gateway/pipeline.js';
import type { RoutingEvents } from '../routing/events.js';
import type { TrafficRecorder } from './traffic.js';

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
    recorder.recordRequest(0);
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
