import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { samples } from '../../test/helpers/serve-cluster.js';
import { LedgerWriter } from '../store/ledger.js';
import { openSql, type SqlDatabase } from '../store/sql.js';
import { createLogger } from './logger.js';
import { GatewayMetrics } from './metrics.js';

describe('GatewayMetrics', () => {
  it('defines every metric the seeds name, with help text and the expected labels', async () => {
    const m = new GatewayMetrics({ processMetrics: false });
    const defined = new Map((await m.registry.getMetricsAsJSON()).map((x) => [x.name, x]));
    const expected: Record<string, string> = {
      inference_requests_total: 'counter',
      inference_request_duration_ms: 'histogram',
      inference_errors_5xx_total: 'counter',
      inference_cache_hits_total: 'counter',
      inference_queue_depth: 'gauge',
      circuit_breaker_open_total: 'counter',
      inference_provider_latency_ms: 'histogram',
      inference_time_to_first_token_ms: 'histogram',
      inference_tokens_total: 'counter',
      inference_cost_usd_total: 'counter',
      inference_rate_limited_total: 'counter',
      inference_retries_total: 'counter',
      inference_fallbacks_total: 'counter',
      inference_hedges_total: 'counter',
      inference_mesh_node_health: 'gauge',
      inference_gpu_allocation_latency_ms: 'histogram',
      inference_gpu_utilization_ratio: 'gauge',
    };
    for (const [name, type] of Object.entries(expected)) {
      const metric = defined.get(name);
      expect(metric, name).toBeDefined();
      expect(String(metric?.type)).toBe(type);
      expect(metric?.help.length).toBeGreaterThan(10);
    }
    m.recordRequest({ route: '/v1/chat/completions', method: 'POST', status: 200, durationMs: 42, model: 'gpt-4o', provider: 'openai' });
    const text = await m.render();
    expect(samples(text, 'inference_requests_total')).toEqual([
      'inference_requests_total{model="gpt-4o",provider="openai",route="/v1/chat/completions",status="200"} 1',
    ]);
  });

  it('counts 5xx answers separately and observes durations in the histogram', async () => {
    const m = new GatewayMetrics({ processMetrics: false });
    m.recordRequest({ route: '/v1/chat/completions', method: 'POST', status: 502, durationMs: 30 });
    m.recordRequest({ route: '/v1/chat/completions', method: 'POST', status: 200, durationMs: 3000, model: 'x', provider: 'p' });
    const text = await m.render();
    expect(samples(text, 'inference_errors_5xx_total')).toEqual(['inference_errors_5xx_total{provider="none",route="/v1/chat/completions",status="502"} 1']);
    expect(text).toContain('inference_request_duration_ms_bucket{le="2500",model="x",provider="p",route="/v1/chat/completions"} 0');
    expect(text).toContain('inference_request_duration_ms_bucket{le="5000",model="x",provider="p",route="/v1/chat/completions"} 1');
  });

  it('bounds free-form labels: values past the limit are counted under "other"', async () => {
    const m = new GatewayMetrics({ processMetrics: false, maxLabelValues: 5 });
    for (let i = 0; i < 50; i++) m.recordRequest({ route: '/v1/chat/completions', method: 'POST', status: 200, durationMs: 1, model: `model-${i}`, provider: 'p' });
    const lines = samples(await m.render(), 'inference_requests_total');
    expect(lines).toHaveLength(6);
    expect(lines.find((l) => l.includes('model="other"'))).toMatch(/ 45$/);
  });

  it('labels models and deployments from the catalog: configured names stay themselves however many passthrough names came first', async () => {
    const m = new GatewayMetrics({ processMetrics: false, maxLabelValues: 5 });
    m.useCatalog({ groupNames: () => ['chat'], allDeployments: () => [{ id: 'openai/gpt-4o', model: 'gpt-4o' }] });
    for (let i = 0; i < 50; i++) {
      // A passthrough group per name a client sends: its deployment is `<provider>/<that name>`.
      m.recordRequest({ route: '/v1/chat/completions', method: 'POST', status: 200, durationMs: 1, model: `junk-${i}`, provider: 'openai' });
      m.recordAttempt({ provider: 'openai', model: `junk-${i}`, deployment: `openai/junk-${i}`, outcome: 'ok', durationMs: 1, inputTokens: 1 });
      m.breakerOpened(`openai/junk-${i}`);
    }
    m.recordRequest({ route: '/v1/chat/completions', method: 'POST', status: 200, durationMs: 1, model: 'gpt-4o', provider: 'openai' });
    m.recordAttempt({ provider: 'openai', model: 'gpt-4o', deployment: 'openai/gpt-4o', outcome: 'ok', durationMs: 1, inputTokens: 7 });
    m.breakerOpened('openai/gpt-4o');
    m.fallback('openai/gpt-4o', 'openai/junk-1');
    m.fallback('chat', 'junk-2');
    const text = await m.render();
    expect(samples(text, 'inference_requests_total')).toEqual([
      'inference_requests_total{model="passthrough",provider="openai",route="/v1/chat/completions",status="200"} 50',
      'inference_requests_total{model="gpt-4o",provider="openai",route="/v1/chat/completions",status="200"} 1',
    ]);
    expect(samples(text, 'inference_tokens_total')).toEqual([
      'inference_tokens_total{provider="openai",model="passthrough",type="input"} 50',
      'inference_tokens_total{provider="openai",model="gpt-4o",type="input"} 7',
    ]);
    expect(samples(text, 'circuit_breaker_open_total')).toEqual(['circuit_breaker_open_total{deployment="passthrough"} 50', 'circuit_breaker_open_total{deployment="openai/gpt-4o"} 1']);
    expect(samples(text, 'inference_fallbacks_total')).toEqual([
      'inference_fallbacks_total{from="openai/gpt-4o",to="passthrough"} 1',
      'inference_fallbacks_total{from="chat",to="passthrough"} 1',
    ]);
    expect(text).not.toContain('"other"');
    expect(text).not.toContain('junk');
    // GPU pool models are not catalog models: they keep their names.
    m.gpuAllocation({ model: 'mistral-7b', ok: true, latencyMs: 3 });
    expect(await m.render()).toContain('inference_gpu_allocation_latency_ms_count{model="mistral-7b",outcome="ok"} 1');
  });

  it("shows the worst of the passthrough breakers on their shared series: one closing does not hide another still open", async () => {
    const m = new GatewayMetrics({ processMetrics: false });
    m.useCatalog({ groupNames: () => ['chat'], allDeployments: () => [{ id: 'openai/gpt-4o', model: 'gpt-4o' }] });
    const state = async () => samples(await m.render(), 'circuit_breaker_state').find((l) => l.includes('"passthrough"'));
    m.breakerOpened('openai/pb');
    m.breakerOpened('openai/pa');
    m.setBreakerState('openai/pb', 'half_open');
    m.setBreakerState('openai/pb', 'closed');
    expect(await state()).toBe('circuit_breaker_state{deployment="passthrough"} 2');
    m.setBreakerState('openai/pa', 'half_open');
    expect(await state()).toBe('circuit_breaker_state{deployment="passthrough"} 1');
    m.setBreakerState('openai/pa', 'closed');
    expect(await state()).toBe('circuit_breaker_state{deployment="passthrough"} 0');
  });

  it('keeps only the live mesh nodes, each under its own id, however many have come and gone', async () => {
    const m = new GatewayMetrics({ processMetrics: false, maxLabelValues: 5 });
    for (let pod = 0; pod < 50; pod++) m.setMeshNodes([{ node: `worker-${pod}`, health: 1, state: 'healthy' }]);
    m.setMeshNodes([
      { node: 'worker-live-a', health: 1, state: 'healthy' },
      { node: 'worker-live-b', health: 0, state: 'heartbeat stale' },
    ]);
    expect(samples(await m.render(), 'inference_mesh_node_health')).toEqual(['inference_mesh_node_health{node="worker-live-a"} 1', 'inference_mesh_node_health{node="worker-live-b"} 0']);
    const s = m.summary().mesh;
    expect(s.nodes.map((n) => [n.node, n.state])).toEqual([
      ['worker-live-a', 'healthy'],
      ['worker-live-b', 'heartbeat stale'],
    ]);
    expect(s.healthy).toBe(1);
    m.setMeshNodes([]);
    expect(samples(await m.render(), 'inference_mesh_node_health')).toEqual([]);
    expect(m.summary().mesh).toMatchObject({ enabled: true, nodes: [] });
  });

  it('records upstream attempts: latency by outcome, error kinds, TTFT, tokens and cost', async () => {
    const m = new GatewayMetrics({ processMetrics: false });
    m.recordAttempt({ provider: 'openai', model: 'gpt-4o', deployment: 'openai/gpt-4o', outcome: 'ok', durationMs: 800, ttftMs: 120, inputTokens: 12, outputTokens: 30, costUsd: 0.0005 });
    m.recordAttempt({ provider: 'openai', model: 'gpt-4o', deployment: 'openai/gpt-4o', outcome: 'error', durationMs: 30_000, errorKind: 'timeout' });
    const text = await m.render();
    expect(text).toContain('inference_provider_latency_ms_count{provider="openai",model="gpt-4o",outcome="ok"} 1');
    expect(text).toContain('inference_provider_latency_ms_count{provider="openai",model="gpt-4o",outcome="error"} 1');
    expect(text).toContain('inference_provider_errors_total{provider="openai",kind="timeout"} 1');
    expect(text).toContain('inference_time_to_first_token_ms_count{provider="openai",model="gpt-4o"} 1');
    expect(text).toContain('inference_tokens_total{provider="openai",model="gpt-4o",type="input"} 12');
    expect(text).toContain('inference_tokens_total{provider="openai",model="gpt-4o",type="output"} 30');
    expect(text).toContain('inference_cost_usd_total{provider="openai",model="gpt-4o"} 0.0005');
  });

  it('counts cancelled attempts apart: no error, no latency sample', async () => {
    const m = new GatewayMetrics({ processMetrics: false });
    m.recordAttempt({ provider: 'openai', model: 'gpt-4o', deployment: 'openai/gpt-4o', outcome: 'cancelled', durationMs: 9_000, ttftMs: 300 });
    const text = await m.render();
    expect(text).toContain('inference_provider_cancelled_total{provider="openai"} 1');
    expect(samples(text, 'inference_provider_errors_total')).toEqual([]);
    expect(samples(text, 'inference_provider_latency_ms_count')).toEqual([]);
    expect(text).toContain('inference_time_to_first_token_ms_count{provider="openai",model="gpt-4o"} 1');
    expect(m.summary().providers[0]).toMatchObject({ calls: 1, errors: 0, cancelled: 1, error_rate: 0 });
  });

  it('gives each capability one call that lands in Prometheus and in /v1/stats', async () => {
    const m = new GatewayMetrics({ processMetrics: false });
    m.cacheHit('semantic', 0.01);
    m.cacheMiss();
    m.setQueueDepth(4);
    m.breakerOpened('openai/gpt-4o');
    m.setBreakerState('anthropic/claude', 'half_open');
    m.rateLimited('tokens');
    m.retry('openai');
    m.fallback('openai/gpt-4o', 'anthropic/claude');
    m.hedge('openai', 'won');
    m.setMeshNodeHealth('node-a', 0.9);
    m.gpuAllocation({ model: 'mistral-7b', ok: true, latencyMs: 35 });
    m.setGpuUtilization('gpu-0', 0.6);
    m.setGpuActiveAllocations(2);
    const text = await m.render();
    for (const line of [
      'inference_cache_hits_total{kind="semantic"} 1',
      'inference_cache_hits_total{kind="exact"} 0',
      'inference_cache_misses_total 1',
      'inference_queue_depth{queue="admission"} 4',
      'circuit_breaker_open_total{deployment="openai/gpt-4o"} 1',
      'circuit_breaker_state{deployment="openai/gpt-4o"} 2',
      'circuit_breaker_state{deployment="anthropic/claude"} 1',
      'inference_rate_limited_total{limit="tokens"} 1',
      'inference_retries_total{provider="openai"} 1',
      'inference_fallbacks_total{from="openai/gpt-4o",to="anthropic/claude"} 1',
      'inference_hedges_total{provider="openai",outcome="won"} 1',
      'inference_mesh_node_health{node="node-a"} 0.9',
      'inference_gpu_allocation_latency_ms_count{model="mistral-7b",outcome="ok"} 1',
      'inference_gpu_utilization_ratio{device="gpu-0"} 0.6',
      'inference_gpu_allocations_active 2',
    ]) {
      expect(text).toContain(line);
    }
    const s = m.summary();
    expect(s.cache.hit_rate).toBe(0.5);
    expect(s.breakers.open).toBe(1);
    expect(s.queue.depth).toBe(4);
    expect(s.limits.rate_limited).toBe(1);
    expect(s.routing).toMatchObject({ retries: 1, fallbacks: 1 });
    expect(s.mesh.nodes[0]).toMatchObject({ node: 'node-a', health: 0.9, state: 'healthy' });
    expect(s.gpu).toMatchObject({ allocations: 1, active_allocations: 2 });
  });

  it('tracks requests in flight', async () => {
    const m = new GatewayMetrics({ processMetrics: false });
    m.requestStarted();
    m.requestStarted();
    expect(await m.render()).toContain('inference_requests_in_flight 2');
    m.recordRequest({ route: '/x', method: 'GET', status: 200, durationMs: 1 });
    expect(await m.render()).toContain('inference_requests_in_flight 1');
  });
});

describe('ledger metrics', () => {
  /** `sql` behind a switch: while `state.up` is false every statement fails as an unreachable server does. */
  const switchable = (sql: SqlDatabase, state: { up: boolean }) =>
    ({
      kind: sql.kind,
      query: async (text: string, params?: unknown[]) => {
        if (!state.up) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
        return sql.query(text, params);
      },
    }) as unknown as SqlDatabase;
  const row = (requestId: string) => ({ requestId, ts: new Date(), tenantId: 't', tenantKind: 'token', endpoint: 'chat', status: 200, costUsd: 0.001, promptTokens: 3, completionTokens: 4 });
  const ledgerLines = async (m: GatewayMetrics) => {
    const text = await m.render();
    return [...samples(text, 'inference_ledger_pending_rows'), ...samples(text, 'inference_ledger_rows_total')];
  };
  const counts = (pending: number, written: number, rejected: number, spooled: number, dropped: number, duplicate = 0) => [
    `inference_ledger_pending_rows ${pending}`,
    `inference_ledger_rows_total{outcome="written"} ${written}`,
    `inference_ledger_rows_total{outcome="rejected"} ${rejected}`,
    `inference_ledger_rows_total{outcome="spooled"} ${spooled}`,
    `inference_ledger_rows_total{outcome="dropped"} ${dropped}`,
    `inference_ledger_rows_total{outcome="duplicate"} ${duplicate}`,
  ];

  it('read the writer when scraped: rows queued, and rows written, rejected, spooled, dropped and found there already', async () => {
    const db = await openSql({ pglitePath: 'memory://' });
    const dir = await mkdtemp(join(tmpdir(), 'ledger-metrics-'));
    const log = createLogger('silent');
    try {
      const m = new GatewayMetrics({ processMetrics: false });
      // Zero series before any ledger, so rate() and the alerts read 0 rather than nothing.
      expect(await ledgerLines(m)).toEqual(counts(0, 0, 0, 0, 0));
      const state = { up: false };
      const w = new LedgerWriter(switchable(db, state), log, { flushIntervalMs: 600_000, batchSize: 50, spoolPath: join(dir, 'spool.jsonl'), maxPendingRows: 100 });
      m.watchLedger(w);
      for (let n = 0; n < 250; n++) w.record(row(`m-${n}`));
      expect(await ledgerLines(m)).toEqual(counts(250, 0, 0, 0, 0));
      await w.tick(); // the database is down: the oldest rows beyond 3/4 of the bound go to a spool file
      expect(await ledgerLines(m)).toEqual(counts(75, 0, 0, 175, 0));
      state.up = true;
      w.record({ ...row('m-bad'), status: 2 ** 40 }); // beyond integer: refused, set aside
      await w.tick(); // the queue drains, then the spool file is replayed
      expect(await ledgerLines(m)).toEqual(counts(0, 250, 1, 175, 0));
      // A row the database holds already (its earlier write's answer was lost): not written twice.
      const [again] = await db.query<Record<string, unknown>>(`SELECT id FROM ledger WHERE request_id = 'm-0'`);
      w.record({ ...row('m-0'), id: again?.id as string });
      await w.flush();
      expect(await ledgerLines(m)).toEqual(counts(0, 250, 1, 175, 0, 1));
      await w.close();

      const m2 = new GatewayMetrics({ processMetrics: false });
      const state2 = { up: false };
      const noSpool = new LedgerWriter(switchable(db, state2), log, { flushIntervalMs: 600_000, batchSize: 50, spoolPath: '', maxPendingRows: 100 });
      m2.watchLedger(noSpool);
      for (let n = 0; n < 150; n++) noSpool.record(row(`m2-${n}`));
      await noSpool.tick();
      expect(await ledgerLines(m2)).toEqual(counts(100, 0, 0, 0, 50));
      state2.up = true;
      await noSpool.tick();
      expect(await ledgerLines(m2)).toEqual(counts(0, 100, 0, 0, 50));
      await noSpool.close();
    } finally {
      await db.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
