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
import { Pool } from 'undici';

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
  /** The most requests in flight at once (undici queues those beyond `connections`). */
  maxInFlight: number;
  achievedRps: number;
}

export async function fixedRate(url: string, body: string, rps: number, seconds: number, connections = 64): Promise<LoadResult> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections, keepAliveTimeout: 60_000, headersTimeout: 60_000, bodyTimeout: 60_000 });
  const latencies: number[] = [];
  const ttfb: number[] = [];
  const sendLag: number[] = [];
  let ok = 0;
  let failed = 0;
  let sent = 0;
  const total = rps * seconds;
  const interval = 1000 / rps;
  const start = performance.now();
  // Every request in flight, however many: no cap that would stop sending until they finish (a
  // stall would then pause the schedule and go unmeasured).
  const inflight = new Set<Promise<void>>();
  let maxInFlight = 0;
  const one = async (intended: number) => {
    sendLag.push((performance.now() - intended) * 1000);
    try {
      const res = await pool.request({ method: 'POST', path: u.pathname, headers: { 'content-type': 'application/json' }, body });
      let first = 0;
      for await (const _piece of res.body) if (!first) first = performance.now();
      const t1 = performance.now();
      // Failures count in the percentiles at the time they took, as k6's http_req_duration does.
      latencies.push((t1 - intended) * 1000);
      ttfb.push(((first || t1) - intended) * 1000);
      if (res.statusCode === 200) ok++;
      else failed++;
    } catch {
      latencies.push((performance.now() - intended) * 1000);
      failed++;
    }
  };
  while (sent < total) {
    const due = start + sent * interval;
    const now = performance.now();
    if (due > now) await new Promise((r) => setTimeout(r, Math.max(0, due - now - 0.5)));
    // Send every request whose time has come (timers are coarse; catch up in a burst).
    while (sent < total && start + sent * interval <= performance.now()) {
      const p: Promise<void> = one(start + sent * interval).then(() => void inflight.delete(p));
      inflight.add(p);
      sent++;
    }
    if (inflight.size > maxInFlight) maxInFlight = inflight.size;
  }
  await Promise.all(inflight);
  const elapsed = (performance.now() - start) / 1000;
  await pool.close();
  latencies.sort((a, b) => a - b);
  ttfb.sort((a, b) => a - b);
  sendLag.sort((a, b) => a - b);
  return { sent, ok, failed, latencies, ttfb, sendLag, maxInFlight, achievedRps: ok / elapsed };
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}
