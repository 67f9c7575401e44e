// An open-loop load generator with microsecond latency: requests start on a fixed schedule
// (so a slow server cannot slow the offered load), each timed from send to last byte and to first
// body byte. autocannon measures saturation throughput; this measures latency at a given rate.
import { Pool } from 'undici';

export interface LoadResult {
  sent: number;
  ok: number;
  failed: number;
  /** Latency to the last byte, µs, sorted. */
  latencies: number[];
  /** Time to the first body byte, µs, sorted. */
  ttfb: number[];
  achievedRps: number;
}

export async function fixedRate(url: string, body: string, rps: number, seconds: number, connections = 64): Promise<LoadResult> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections, keepAliveTimeout: 60_000 });
  const latencies: number[] = [];
  const ttfb: number[] = [];
  let ok = 0;
  let failed = 0;
  let sent = 0;
  const total = rps * seconds;
  const interval = 1000 / rps;
  const start = performance.now();
  const inflight: Promise<void>[] = [];
  const one = async () => {
    const t0 = performance.now();
    try {
      const res = await pool.request({ method: 'POST', path: u.pathname, headers: { 'content-type': 'application/json' }, body });
      let first = 0;
      for await (const _piece of res.body) if (!first) first = performance.now();
      const t1 = performance.now();
      if (res.statusCode === 200) {
        ok++;
        latencies.push((t1 - t0) * 1000);
        ttfb.push(((first || t1) - t0) * 1000);
      } else failed++;
    } catch {
      failed++;
    }
  };
  while (sent < total) {
    const due = start + sent * interval;
    const now = performance.now();
    if (due > now) await new Promise((r) => setTimeout(r, Math.max(0, due - now - 0.5)));
    // Send every request whose time has come (timers are coarse; catch up in a burst).
    while (sent < total && start + sent * interval <= performance.now()) {
      inflight.push(one());
      sent++;
    }
    if (inflight.length > 5000) await Promise.all(inflight.splice(0));
  }
  await Promise.all(inflight);
  const elapsed = (performance.now() - start) / 1000;
  await pool.close();
  latencies.sort((a, b) => a - b);
  ttfb.sort((a, b) => a - b);
  return { sent, ok, failed, latencies, ttfb, achievedRps: ok / elapsed };
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}
