// An open-loop load generator with microsecond latency: requests start on a fixed schedule
// (so a slow server cannot slow the offered load), each timed from its intended send time to last
// byte and to first body byte. autocannon measures saturation throughput; this measures latency at a
// given rate.
//
// Coordinated omission: request i is due at start + i × interval. When the generator falls behind
// (a coarse timer, its own event loop busy with answers, a VM stall) it sends late and catches up in
// a burst; timing from the actual send would leave that wait out and hide a server that stalled the
// generator. So latency counts from the intended time, and how late each request left is kept apart
// (`sendLag`), so a late generator shows as such instead of as server latency alone.
import { openLoop } from './mixed-load.js';

export { percentile } from './stats.js';

export interface LoadResult {
  sent: number;
  ok: number;
  failed: number;
  /** Latency to the last byte (or the failure) of every request, µs, sorted, from the intended send time. */
  latencies: number[];
  /** Time to the first body byte (the end, when none came) of every answered request, µs, sorted, from the intended send time. */
  ttfb: number[];
  /** How late each request was sent (actual − intended), µs, sorted: the generator's own lag. */
  sendLag: number[];
  /**
   * Latency from the actual send, µs, sorted. Beside `latencies`, not instead: it leaves out the
   * generator's lag, which differs between runs (its 1 ms timers fire 0.4–0.8 ms late at p50) and
   * so skews a difference of two targets' percentiles, but it also leaves out a stall the server
   * caused the generator (coordinated omission).
   */
  sinceSend: number[];
  /** The most requests in flight at once (undici queues those beyond `connections`). */
  maxInFlight: number;
  achievedRps: number;
}

/**
 * `body` POSTed to `url` at `rps` for `seconds`: mixed-load's open loop (one scheduler for every
 * fixed-rate benchmark) with every request alike, its results sorted.
 */
export async function fixedRate(url: string, body: string, rps: number, seconds: number, connections = 64): Promise<LoadResult> {
  const shot = { kind: 'fixed', body, stream: (JSON.parse(body) as { stream?: unknown }).stream === true };
  const latencies: number[] = [];
  const ttfb: number[] = [];
  const sendLag: number[] = [];
  const sinceSend: number[] = [];
  let ok = 0;
  let failed = 0;
  const run = await openLoop({ url, connections }, rps, seconds, () => shot, (r) => {
    // Failures count in the percentiles at the time they took, as k6's http_req_duration does.
    latencies.push(r.latencyUs);
    sinceSend.push(r.latencyUs - r.sendLagUs);
    sendLag.push(r.sendLagUs);
    if (r.status !== 0) ttfb.push(r.ttfbUs || r.latencyUs);
    if (r.ok) ok++;
    else failed++;
  });
  for (const xs of [latencies, ttfb, sendLag, sinceSend]) xs.sort((a, b) => a - b);
  return { sent: run.sent, ok, failed, latencies, ttfb, sendLag, sinceSend, maxInFlight: run.maxInFlight, achievedRps: ok / run.elapsedS };
}

