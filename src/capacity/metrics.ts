// Seed 004's capacity figures as plain numbers: allocation latency, warm hits, failures and cost per
// inference by model. The observability layer reads figures() and exports them to Prometheus; the
// cluster status route returns them as they are.

export interface LatencyFigures {
  count: number;
  meanMs: number;
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
}

export interface ModelFigures {
  allocations: number;
  warmAllocations: number;
  inferences: number;
  failedInferences: number;
  timeouts: number;
  noFit: number;
  gpuSeconds: number;
  costUsd: number;
  costPerInferenceUsd: number;
}

export interface CapacityFigures {
  allocationLatency: LatencyFigures;
  models: Record<string, ModelFigures>;
}

/** Latency samples kept for percentiles: the most recent ones, a fixed ring. */
const RING = 1024;

export class CapacityMetrics {
  private readonly ring = new Float64Array(RING);
  private samples = 0;
  private total = 0;
  private sumMs = 0;
  private maxMs = 0;
  private readonly models = new Map<string, ModelFigures>();

  recordAllocation(model: string, latencyMs: number, warm: boolean): void {
    this.ring[this.samples % RING] = latencyMs;
    this.samples++;
    this.total++;
    this.sumMs += latencyMs;
    this.maxMs = Math.max(this.maxMs, latencyMs);
    const m = this.model(model);
    m.allocations++;
    if (warm) m.warmAllocations++;
  }

  recordFailure(model: string, kind: 'timeout' | 'no_fit'): void {
    const m = this.model(model);
    if (kind === 'timeout') m.timeouts++;
    else m.noFit++;
  }

  recordExecution(model: string, heldMs: number, costUsd: number, ok: boolean): void {
    const m = this.model(model);
    m.inferences++;
    if (!ok) m.failedInferences++;
    m.gpuSeconds += heldMs / 1000;
    m.costUsd += costUsd;
    m.costPerInferenceUsd = m.costUsd / m.inferences;
  }

  figures(): CapacityFigures {
    const n = Math.min(this.samples, RING);
    const sorted = Array.from(this.ring.subarray(0, n)).sort((a, b) => a - b);
    const pct = (p: number) => (n === 0 ? 0 : (sorted[Math.min(n - 1, Math.ceil(p * n) - 1)] as number));
    return {
      allocationLatency: {
        count: this.total,
        meanMs: this.total === 0 ? 0 : this.sumMs / this.total,
        p50Ms: pct(0.5),
        p95Ms: pct(0.95),
        maxMs: this.maxMs,
      },
      models: Object.fromEntries([...this.models].map(([k, v]) => [k, { ...v }])),
    };
  }

  private model(name: string): ModelFigures {
    let m = this.models.get(name);
    if (!m) {
      m = {
        allocations: 0,
        warmAllocations: 0,
        inferences: 0,
        failedInferences: 0,
        timeouts: 0,
        noFit: 0,
        gpuSeconds: 0,
        costUsd: 0,
        costPerInferenceUsd: 0,
      };
      this.models.set(name, m);
    }
    return m;
  }
}
