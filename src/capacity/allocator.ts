// Seed 004's flow as one call: Request -> Analyse (model needs, expected tokens) -> Allocate (wait for
// room with backoff until the allocation timeout) -> Execute (lease renewed by heartbeat) -> Release.
// `run(request, execute)` owns the lease from start to end, so no caller can forget to release it.
import { randomUUID } from 'node:crypto';
import type { AllocationConfig } from './config.js';
import type { GpuModelCatalog, GpuModelSpec } from './catalog.js';
import { hasRoom, type GpuPool, type Lease, type PoolSnapshot } from './pool.js';
import { CapacityMetrics, type CapacityFigures } from './metrics.js';

export interface AllocationRequest {
  model: string;
  /** The request's max_tokens, when it names one. */
  maxTokens?: number;
  /** Aborts the wait for a GPU and the execution (client gone, deadline). */
  signal?: AbortSignal;
}

export interface AllocationPlan {
  model: GpuModelSpec;
  expectedTokens: number;
  /** Expected GPU time, from tokens and the model's decode speed. */
  expectedMs: number;
}

export interface ExecuteContext {
  lease: Lease;
  plan: AllocationPlan;
  /** Aborted when the caller's signal fires or the lease is lost (heartbeat found it expired). */
  signal: AbortSignal;
}

/** The model is not in the catalog, or no device of the pool could ever hold it. */
export class ModelDoesNotFitError extends Error {
  readonly code = 'model_does_not_fit';
  constructor(message: string) {
    super(message);
    this.name = 'ModelDoesNotFitError';
  }
}

/** Every device that could hold the model stayed busy for the whole allocation timeout. */
export class AllocationTimeoutError extends Error {
  readonly code = 'allocation_timeout';
  constructor(
    readonly model: string,
    readonly waitedMs: number,
    readonly attempts: number,
  ) {
    super(`no GPU had room for ${model} within ${waitedMs} ms (${attempts} attempts)`);
    this.name = 'AllocationTimeoutError';
  }
}

/** The lease expired while the work ran (heartbeats failed); the GPU may already serve someone else. */
export class LeaseLostError extends Error {
  readonly code = 'lease_lost';
  constructor(readonly leaseId: string) {
    super(`lease ${leaseId} expired before the work finished`);
    this.name = 'LeaseLostError';
  }
}

export interface GpuAllocatorOptions {
  pool: GpuPool;
  catalog: GpuModelCatalog;
  allocation: AllocationConfig;
  /** Mark a released model warm this long; 0 disables the warm preference's memory. */
  keepWarmMs?: number;
  preferWarm?: boolean;
  /** This replica's name in leases. */
  holder?: string;
  metrics?: CapacityMetrics;
  /** Clock for durations (allocation latency, GPU time); sub-millisecond by default. */
  now?: () => number;
  /** Injected in tests to make backoff deterministic. */
  random?: () => number;
}

export class GpuAllocator {
  readonly metrics: CapacityMetrics;
  private readonly pool: GpuPool;
  private readonly catalog: GpuModelCatalog;
  private readonly cfg: AllocationConfig;
  private readonly keepWarmMs: number;
  private readonly preferWarm: boolean;
  private readonly holder: string;
  private readonly now: () => number;
  private readonly random: () => number;

  constructor(opts: GpuAllocatorOptions) {
    this.pool = opts.pool;
    this.catalog = opts.catalog;
    this.cfg = opts.allocation;
    this.keepWarmMs = opts.keepWarmMs ?? 300_000;
    this.preferWarm = opts.preferWarm ?? true;
    this.holder = opts.holder ?? `gateway-${process.pid}`;
    this.metrics = opts.metrics ?? new CapacityMetrics();
    this.now = opts.now ?? (() => performance.now());
    this.random = opts.random ?? Math.random;
  }

  /** Analyse: what the request needs of a GPU and for how long. */
  analyse(req: AllocationRequest): AllocationPlan {
    const model = this.catalog.get(req.model);
    if (!model) throw new ModelDoesNotFitError(`model ${req.model} is not in the GPU catalog`);
    const expectedTokens = req.maxTokens ?? this.cfg.default_expected_tokens;
    return { model, expectedTokens, expectedMs: Math.ceil((expectedTokens / model.tokensPerS) * 1000) };
  }

  /** Allocate: a lease on the best device, waiting with capped exponential backoff while the pool is full. */
  async allocate(plan: AllocationPlan, signal?: AbortSignal): Promise<Lease> {
    const started = this.now();
    let attempts = 0;
    let delay = this.cfg.backoff_ms;
    while (true) {
      signal?.throwIfAborted();
      attempts++;
      const result = await this.pool.acquire({
        leaseId: randomUUID(),
        model: plan.model.name,
        memoryGb: plan.model.memoryGb,
        tflops: plan.model.tflops,
        holder: this.holder,
        ttlMs: this.cfg.lease_ttl_ms,
        preferWarm: this.preferWarm,
      });
      if (result.status === 'granted') {
        this.metrics.recordAllocation(plan.model.name, this.now() - started, result.lease.warm);
        return result.lease;
      }
      if (result.status === 'no_fit') {
        this.metrics.recordFailure(plan.model.name, 'no_fit');
        throw new ModelDoesNotFitError(
          `no device in the pool has ${plan.model.memoryGb} GB and ${plan.model.tflops} TFLOPS for ${plan.model.name}`,
        );
      }
      const waited = this.now() - started;
      const left = this.cfg.timeout_ms - waited;
      if (left <= 0) {
        this.metrics.recordFailure(plan.model.name, 'timeout');
        throw new AllocationTimeoutError(plan.model.name, waited, attempts);
      }
      // Full jitter keeps replicas that were refused together from retrying together.
      const pause = Math.min(left, delay * (0.5 + this.random() / 2));
      await sleep(pause, signal);
      delay = Math.min(delay * 2, this.cfg.backoff_max_ms);
    }
  }

  /**
   * The whole flow. `execute` runs while the lease is held and renewed; the lease is released
   * however it ends. If the lease is lost mid-way, the context's signal aborts and run() rejects
   * with LeaseLostError unless execute had already finished.
   */
  async run<T>(req: AllocationRequest, execute: (ctx: ExecuteContext) => Promise<T>): Promise<T> {
    const plan = this.analyse(req);
    const lease = await this.allocate(plan, req.signal);
    const lost = new AbortController();
    const signal = req.signal ? AbortSignal.any([req.signal, lost.signal]) : lost.signal;
    const heartbeat = setInterval(() => {
      this.pool.heartbeat(lease.leaseId, this.cfg.lease_ttl_ms).then(
        (alive) => {
          if (!alive) lost.abort(new LeaseLostError(lease.leaseId));
        },
        // A failed renewal is retried at the next beat; the TTL allows a few misses.
        () => undefined,
      );
    }, this.cfg.heartbeat_ms);
    heartbeat.unref();
    const started = this.now();
    let ok = false;
    try {
      const out = await execute({ lease, plan, signal });
      ok = true;
      return out;
    } catch (err) {
      if (lost.signal.aborted) throw lost.signal.reason as Error;
      throw err;
    } finally {
      clearInterval(heartbeat);
      const heldMs = this.now() - started;
      this.metrics.recordExecution(plan.model.name, heldMs, (lease.costPerGpuHour * heldMs) / 3_600_000, ok);
      await this.pool.release(lease.leaseId, this.keepWarmMs).catch(() => undefined);
    }
  }

  /** Cluster status for `GET /v1/cluster` (seed 000's `get cluster status`). */
  async clusterStatus(): Promise<ClusterStatus> {
    const snap = await this.pool.snapshot();
    return summarise(snap, this.metrics.figures(), this.catalog.list());
  }
}

export interface ClusterStatus {
  status: 'ok' | 'saturated' | 'empty';
  totals: {
    devices: number;
    memoryGb: number;
    allocatedMemoryGb: number;
    usedMemoryGb: number;
    tflops: number;
    allocatedTflops: number;
    activeLeases: number;
    /** Allocated memory over total memory. */
    allocationRatio: number;
    /** Memory the models need over memory reserved for them (below 1 where slices are larger than models). */
    usedOfAllocatedRatio: number;
  };
  devices: PoolSnapshot['devices'];
  models: GpuModelSpec[];
  figures: CapacityFigures;
}

function summarise(snap: PoolSnapshot, figures: CapacityFigures, models: GpuModelSpec[]): ClusterStatus {
  const sum = (f: (d: PoolSnapshot['devices'][number]) => number) => snap.devices.reduce((s, d) => s + f(d), 0);
  const memoryGb = sum((d) => d.memoryGb);
  const allocatedMemoryGb = sum((d) => d.allocatedMemoryGb);
  const usedMemoryGb = sum((d) => d.usedMemoryGb);
  const smallest = models.reduce((m, x) => Math.min(m, x.memoryGb), Infinity);
  const anyRoom = snap.devices.some((d) => hasRoom(d, smallest));
  return {
    status: snap.devices.length === 0 ? 'empty' : anyRoom ? 'ok' : 'saturated',
    totals: {
      devices: snap.devices.length,
      memoryGb,
      allocatedMemoryGb,
      usedMemoryGb,
      tflops: sum((d) => d.tflops),
      allocatedTflops: sum((d) => d.allocatedTflops),
      activeLeases: snap.leases.length,
      allocationRatio: memoryGb > 0 ? allocatedMemoryGb / memoryGb : 0,
      usedOfAllocatedRatio: allocatedMemoryGb > 0 ? usedMemoryGb / allocatedMemoryGb : 0,
    },
    devices: snap.devices,
    models,
    figures,
  };
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }
    function onAbort() {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
