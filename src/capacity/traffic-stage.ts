// What the gateway feeds the autoscaler's traffic recorder: every chat request that reaches the
// pipeline as demand (answered, refused by a limit, or failed — a replica that turns requests away
// with 429 is a replica short of capacity, not one with less demand), with its tokens when it was
// answered.
import type { ChatStage } from '../gateway/pipeline.js';
import { observeStream } from '../gateway/pipeline.js';
import type { TrafficRecorder } from './traffic.js';

/** The outermost chat stage: one request per call, its tokens from the answer (0 when there is none). */
export function trafficRecorderStage(recorder: Pick<TrafficRecorder, 'recordRequest'>): ChatStage {
  return async function recordTraffic(ctx, req, next) {
    let outcome;
    try {
      outcome = await next(ctx, req);
    } catch (err) {
      recorder.recordRequest(0);
      throw err;
    }
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
}
