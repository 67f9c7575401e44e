// Load with a mix of requests (plain, streamed, repeated for cache hits, injected failures), each
// result reported as it completes: open loop at a fixed rate (requests start on schedule, however
// slow the server) or closed loop with N concurrent clients (each sends its next request when the
// last one finished). A streamed request counts as ok only if it ends with `data: [DONE]`.
import { Pool } from 'undici';
import { percentile } from './load.js';

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
  /** Send to last byte, µs. */
  latencyUs: number;
  /** Send to first body byte, µs. */
  ttfbUs: number;
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
  const send = async (shot: Shot): Promise<ShotResult> => {
    const t0 = performance.now();
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
        cache: typeof cache === 'string' ? cache : undefined,
        at: (t1 - start) / 1000,
      };
    } catch (err) {
      const t1 = performance.now();
      return { kind: shot.kind, status: 0, ok: false, expectFail: shot.expectFail ?? false, latencyUs: (t1 - t0) * 1000, ttfbUs: 0, at: (t1 - start) / 1000, error: (err as Error).message };
    }
  };
  return { send, close: () => pool.close() };
}

/** Fixed rate for `seconds`; `shot(i)` picks the i-th request. Resolves when every request finished. */
export async function openLoop(
  target: LoadTarget,
  rps: number,
  seconds: number,
  shot: (i: number) => Shot,
  onResult: (r: ShotResult) => void,
): Promise<{ sent: number; elapsedS: number }> {
  const c = client(target);
  const total = Math.round(rps * seconds);
  const interval = 1000 / rps;
  const start = performance.now();
  const inflight = new Set<Promise<void>>();
  let sent = 0;
  while (sent < total) {
    const due = start + sent * interval;
    const now = performance.now();
    if (due > now) await new Promise((r) => setTimeout(r, Math.max(0, due - now - 0.5)));
    // Send every request whose time has come (timers are coarse; catch up in a burst).
    while (sent < total && start + sent * interval <= performance.now()) {
      const p: Promise<void> = c.send(shot(sent)).then((r) => {
        inflight.delete(p);
        onResult(r);
      });
      inflight.add(p);
      sent++;
    }
  }
  await Promise.all(inflight);
  const elapsedS = (performance.now() - start) / 1000;
  await c.close();
  return { sent, elapsedS };
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
  /** Failures other than the injected ones (an injected failure answered with an error is fine). */
  unexpected: number;
  successRate: number;
  rps: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  ttfbP50Ms: number;
  ttfbP99Ms: number;
}

export function summarize(results: readonly ShotResult[], elapsedS: number): Summary {
  const lat = results.filter((r) => r.ok).map((r) => r.latencyUs).sort((a, b) => a - b);
  const ttfb = results.filter((r) => r.ok).map((r) => r.ttfbUs).sort((a, b) => a - b);
  const real = results.filter((r) => !r.expectFail);
  const ok = real.filter((r) => r.ok).length;
  const injectedWrong = results.filter((r) => r.expectFail && (r.ok || r.status === 0)).length;
  return {
    count: results.length,
    ok,
    unexpected: real.length - ok + injectedWrong,
    successRate: real.length ? ok / real.length : 1,
    rps: results.length / elapsedS,
    p50Ms: percentile(lat, 50) / 1000,
    p95Ms: percentile(lat, 95) / 1000,
    p99Ms: percentile(lat, 99) / 1000,
    ttfbP50Ms: percentile(ttfb, 50) / 1000,
    ttfbP99Ms: percentile(ttfb, 99) / 1000,
  };
}

export function chatBody(content: string, stream: boolean, model = 'bench'): string {
  return JSON.stringify({ model, stream, messages: [{ role: 'user', content }], max_tokens: 32 });
}
