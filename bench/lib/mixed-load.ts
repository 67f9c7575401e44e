// Load with a mix of requests (plain, streamed, repeated for cache hits, injected failures), each
// result reported as it completes: open loop at a fixed rate (requests start on schedule, however
// slow the server) or closed loop with N concurrent clients (each sends its next request when the
// last one finished). A streamed request counts as ok only if it ends with `data: [DONE]`.
// Open loop times each request from its intended send time (start + i × interval), not from when
// the generator got round to sending it, and keeps the difference as `sendLagUs` (see lib/load.ts:
// coordinated omission).
import { Pool } from 'undici';
import { percentile } from './stats.js';

export interface Shot {
  /** A label to group results by: `plain`, `stream`, `cache-hit`, `fail`… */
  kind: string;
  body: string;
  stream: boolean;
  /** An injected failure: an error answer is the right answer. */
  expectFail?: boolean;
}

export interface ShotResult {
  kind: string;
  status: number;
  /** 2xx with a complete body (a finished SSE stream). */
  ok: boolean;
  expectFail: boolean;
  /**
   * Send to last byte (or to the error: a failed or timed-out request's time to fail), µs. Open
   * loop: from the intended send time, so the generator's lag is in it.
   */
  latencyUs: number;
  /** Send to first body byte, µs (0 when none came); open loop: from the intended send time. */
  ttfbUs: number;
  /** Open loop: how late the request was sent (actual − intended), µs. Closed loop: 0. */
  sendLagUs: number;
  /** `x-inferenceflow-cache`, when the gateway said. */
  cache?: string;
  /** Seconds since the run started, at completion. */
  at: number;
  error?: string;
  /** closedLoop: which client sent it. */
  client?: number;
}

export interface LoadTarget {
  url: string;
  headers?: Record<string, string>;
  /** Upper bound on open connections. */
  connections?: number;
}

function client(target: LoadTarget) {
  const u = new URL(target.url);
  const pool = new Pool(u.origin, { connections: target.connections ?? 512, keepAliveTimeout: 60_000, headersTimeout: 60_000, bodyTimeout: 60_000 });
  const headers = { 'content-type': 'application/json', ...(target.headers ?? {}) };
  const start = performance.now();
  /** `intended`: the performance.now() at which the schedule wanted it sent (open loop). */
  const send = async (shot: Shot, intended?: number): Promise<ShotResult> => {
    const sentAt = performance.now();
    const t0 = intended ?? sentAt;
    const sendLagUs = (sentAt - t0) * 1000;
    try {
      const res = await pool.request({ method: 'POST', path: u.pathname, headers, body: shot.body });
      let first = 0;
      // Only the end matters (did the stream finish?): the last two pieces hold it. Read by events,
      // not for-await: a thousand streaming clients share the machine with the gateway under test,
      // and async iteration costs this process promises per chunk (its GC was 30% of its time).
      let prev: Buffer | undefined;
      let last: Buffer | undefined;
      await new Promise<void>((resolve, reject) => {
        res.body.on('data', (piece: Buffer) => {
          if (!first) first = performance.now();
          prev = last;
          last = piece;
        });
        res.body.once('end', resolve);
        res.body.once('error', reject);
      });
      const tail = `${prev ? prev.subarray(-64).toString('latin1') : ''}${last ? last.toString('latin1') : ''}`.slice(-64);
      const t1 = performance.now();
      const complete = !shot.stream || tail.trimEnd().endsWith('data: [DONE]');
      const cache = res.headers['x-inferenceflow-cache'];
      return {
        kind: shot.kind,
        status: res.statusCode,
        ok: res.statusCode >= 200 && res.statusCode < 300 && complete,
        expectFail: shot.expectFail ?? false,
        latencyUs: (t1 - t0) * 1000,
        ttfbUs: ((first || t1) - t0) * 1000,
        sendLagUs,
        cache: typeof cache === 'string' ? cache : undefined,
        at: (t1 - start) / 1000,
        // Which error it was (an error body is small: its last piece holds its code).
        ...(res.statusCode >= 400 ? { error: `HTTP ${res.statusCode} ${(last ?? Buffer.alloc(0)).toString('utf8').slice(0, 160)}` } : {}),
      };
    } catch (err) {
      const t1 = performance.now();
      return { kind: shot.kind, status: 0, ok: false, expectFail: shot.expectFail ?? false, latencyUs: (t1 - t0) * 1000, ttfbUs: 0, sendLagUs, at: (t1 - start) / 1000, error: (err as Error).message };
    }
  };
  return { send, close: () => pool.close() };
}

/**
 * Fixed rate for `seconds`; `shot(i)` picks the i-th request, due at start + i / rps and timed from
 * then. Every request in flight is tracked, without a cap. Resolves when every request finished.
 */
export async function openLoop(
  target: LoadTarget,
  rps: number,
  seconds: number,
  shot: (i: number) => Shot,
  onResult: (r: ShotResult) => void,
): Promise<{ sent: number; elapsedS: number; maxInFlight: number }> {
  const c = client(target);
  const total = Math.round(rps * seconds);
  const interval = 1000 / rps;
  const start = performance.now();
  const inflight = new Set<Promise<void>>();
  let maxInFlight = 0;
  let sent = 0;
  while (sent < total) {
    const due = start + sent * interval;
    const now = performance.now();
    if (due > now) await new Promise((r) => setTimeout(r, Math.max(0, due - now - 0.5)));
    // Send every request whose time has come (timers are coarse; catch up in a burst).
    while (sent < total && start + sent * interval <= performance.now()) {
      const p: Promise<void> = c.send(shot(sent), start + sent * interval).then((r) => {
        inflight.delete(p);
        onResult(r);
      });
      inflight.add(p);
      sent++;
    }
    if (inflight.size > maxInFlight) maxInFlight = inflight.size;
  }
  await Promise.all(inflight);
  const elapsedS = (performance.now() - start) / 1000;
  await c.close();
  return { sent, elapsedS, maxInFlight };
}

/**
 * `clients` concurrent clients, each sending back to back until `seconds` have passed. Clients join
 * evenly over `rampS` seconds (as k6's ramp does), so a thousand connections do not all arrive in
 * the same millisecond and overflow the listen backlog.
 */
export async function closedLoop(
  target: LoadTarget,
  clients: number,
  seconds: number,
  shot: (i: number) => Shot,
  onResult: (r: ShotResult) => void,
  rampS = 0,
): Promise<{ sent: number; elapsedS: number }> {
  const c = client({ ...target, connections: Math.max(clients, target.connections ?? 0) });
  const start = performance.now();
  const end = start + seconds * 1000;
  let sent = 0;
  const worker = async (_: unknown, index: number) => {
    if (rampS > 0) await new Promise((r) => setTimeout(r, (index / clients) * rampS * 1000));
    while (performance.now() < end) onResult({ ...(await c.send(shot(sent++))), client: index });
  };
  await Promise.all(Array.from({ length: clients }, worker));
  const elapsedS = (performance.now() - start) / 1000;
  await c.close();
  return { sent, elapsedS };
}

export interface Summary {
  count: number;
  ok: number;
  /** Requests not meant to fail that failed (error answer, broken stream, timeout, refused). */
  failed: number;
  /** Failures other than the injected ones (an injected failure answered with an error is fine). */
  unexpected: number;
  successRate: number;
  rps: number;
  /**
   * Latency percentiles over every request not meant to fail, failed and timed-out ones included at
   * the time they took to fail (a timeout at the client's limit: a lower bound on its latency), as
   * k6's http_req_duration counts them. Injected failures are left out, as from the success rate.
   */
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  /** The same over successful requests only (what `p50Ms`… meant before failures were counted). */
  okP50Ms: number;
  okP95Ms: number;
  okP99Ms: number;
  /** Time to first byte of successful requests. */
  ttfbP50Ms: number;
  ttfbP99Ms: number;
  /** How late the generator sent (open loop; 0 in a closed loop), over every request. */
  sendLagP50Ms: number;
  sendLagP99Ms: number;
  sendLagMaxMs: number;
}

export function summarize(results: readonly ShotResult[], elapsedS: number): Summary {
  const sorted = (xs: number[]) => xs.sort((a, b) => a - b);
  const real = results.filter((r) => !r.expectFail);
  const lat = sorted(real.map((r) => r.latencyUs));
  const okLat = sorted(real.filter((r) => r.ok).map((r) => r.latencyUs));
  const ttfb = sorted(results.filter((r) => r.ok).map((r) => r.ttfbUs));
  const lag = sorted(results.map((r) => r.sendLagUs));
  const ok = real.filter((r) => r.ok).length;
  const injectedWrong = results.filter((r) => r.expectFail && (r.ok || r.status === 0)).length;
  const ms = (xs: number[], p: number) => percentile(xs, p) / 1000;
  return {
    count: results.length,
    ok,
    failed: real.length - ok,
    unexpected: real.length - ok + injectedWrong,
    successRate: real.length ? ok / real.length : 1,
    rps: results.length / elapsedS,
    p50Ms: ms(lat, 50),
    p95Ms: ms(lat, 95),
    p99Ms: ms(lat, 99),
    okP50Ms: ms(okLat, 50),
    okP95Ms: ms(okLat, 95),
    okP99Ms: ms(okLat, 99),
    ttfbP50Ms: ms(ttfb, 50),
    ttfbP99Ms: ms(ttfb, 99),
    sendLagP50Ms: ms(lag, 50),
    sendLagP99Ms: ms(lag, 99),
    sendLagMaxMs: lag.length ? (lag[lag.length - 1] as number) / 1000 : NaN,
  };
}

/** Counts of `x-inferenceflow-cache` answers (`exact`, `semantic`, `miss`, `bypass`; `none` when absent). */
export function cacheCounts(results: readonly ShotResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of results) out[r.cache ?? 'none'] = (out[r.cache ?? 'none'] ?? 0) + 1;
  return out;
}

/** Cache hits among `counts` (`exact` and `semantic` answers). */
export const cacheHits = (counts: Record<string, number>): number => (counts.exact ?? 0) + (counts.semantic ?? 0);

export function chatBody(content: string, stream: boolean, model = 'bench'): string {
  return JSON.stringify({ model, stream, messages: [{ role: 'user', content }], max_tokens: 32 });
}
