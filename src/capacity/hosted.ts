// Seed 004's hosted GPU cloud: an interface for allocating vGPUs from an external provider's API and
// an HTTP adapter whose paths and credentials come from `clusters.hosted` (key in HOSTED_AI_API_KEY).
// HostedGpuPool puts that API behind the GpuPool contract, so the allocator can run on it unchanged.
// The wire shapes below are the adapter's assumption until the provider publishes its API (docs/capacity.md).
import { z } from 'zod';
import type { HostedGpuCloudConfig } from './config.js';
import { UpstreamHttp } from '../providers/http.js';
import { isUpstreamError } from '../providers/errors.js';
import type { AcquireResult, GpuDevice, GpuPool, LeaseRequest, PoolSnapshot } from './pool.js';

export interface HostedAllocationRequest {
  model: string;
  memoryGb: number;
  tflops: number;
  /** The provider frees the allocation if no heartbeat arrives within this time. */
  ttlS: number;
  /** Our id for the allocation (idempotency key). */
  clientId: string;
}

const allocationSchema = z.object({
  id: z.string(),
  gpu_id: z.string(),
  memory_gb: z.number(),
  tflops: z.number().optional(),
  endpoint: z.string().optional(),
  expires_at: z.string().optional(),
});
export type HostedAllocation = z.infer<typeof allocationSchema>;

const poolsSchema = z.object({
  pools: z.array(
    z.object({
      id: z.string(),
      gpu_type: z.string().optional(),
      region: z.string().optional(),
      memory_gb: z.number(),
      tflops: z.number(),
      total: z.number().int(),
      available: z.number().int(),
      cost_per_hour: z.number().optional(),
    }),
  ),
});
export type HostedPools = z.infer<typeof poolsSchema>['pools'];

export interface HostedGpuCloud {
  /** An allocation, or undefined when the provider has no capacity now (409, 429, 503). */
  allocate(req: HostedAllocationRequest): Promise<HostedAllocation | undefined>;
  /** False when the provider no longer knows the allocation (it expired). */
  heartbeat(id: string): Promise<boolean>;
  release(id: string): Promise<void>;
  pools(): Promise<HostedPools>;
}

/** The provider refuses the model outright (422): no GPU type it offers can hold it. */
export class HostedNoFitError extends Error {}

export class HttpHostedGpuCloud implements HostedGpuCloud {
  private readonly http: UpstreamHttp;
  private readonly cfg: HostedGpuCloudConfig;

  constructor(cfg: HostedGpuCloudConfig, env: Record<string, string | undefined> = process.env) {
    const key = env[cfg.api_key_env];
    if (!key) throw new Error(`clusters.hosted: ${cfg.api_key_env} is not set`);
    this.cfg = cfg;
    this.http = new UpstreamHttp({ provider: 'hosted-gpu', baseUrl: cfg.base_url, headers: { authorization: `Bearer ${key}` }, maxConnections: 16 });
  }

  async allocate(req: HostedAllocationRequest): Promise<HostedAllocation | undefined> {
    try {
      const res = await this.http.json<unknown>(
        'POST',
        this.cfg.endpoints.allocate,
        { model: req.model, memory_gb: req.memoryGb, tflops: req.tflops, ttl_s: req.ttlS, client_id: req.clientId },
        this.opts(),
        { 'idempotency-key': req.clientId },
      );
      return allocationSchema.parse(res.body);
    } catch (err) {
      if (isUpstreamError(err) && [409, 429, 503].includes(err.status)) return undefined;
      if (isUpstreamError(err) && err.status === 422) throw new HostedNoFitError(err.message);
      throw err;
    }
  }

  async heartbeat(id: string): Promise<boolean> {
    try {
      await this.http.json('POST', this.path(this.cfg.endpoints.heartbeat, id), {}, this.opts());
      return true;
    } catch (err) {
      if (isUpstreamError(err) && (err.status === 404 || err.status === 410)) return false;
      throw err;
    }
  }

  async release(id: string): Promise<void> {
    try {
      await this.http.json('DELETE', this.path(this.cfg.endpoints.release, id), undefined, this.opts());
    } catch (err) {
      // Already gone is what we wanted.
      if (isUpstreamError(err) && (err.status === 404 || err.status === 410)) return;
      throw err;
    }
  }

  async pools(): Promise<HostedPools> {
    const res = await this.http.json<unknown>('GET', this.cfg.endpoints.pools, undefined, this.opts());
    return poolsSchema.parse(res.body).pools;
  }

  async close(): Promise<void> {
    await this.http.close();
  }

  private path(template: string, id: string): string {
    return template.replace('{id}', encodeURIComponent(id));
  }

  private opts() {
    return { signal: new AbortController().signal, timeoutMs: this.cfg.timeout_ms, requestId: 'capacity' };
  }
}

/** The hosted cloud as a GpuPool: each lease is one provider allocation; the provider does placement. */
export class HostedGpuPool implements GpuPool {
  private readonly byLease = new Map<string, { allocationId: string; model: string }>();

  constructor(
    private readonly cloud: HostedGpuCloud,
    private readonly now: () => number = Date.now,
    /** The provider's price per GPU-hour, when its allocation answer does not say. */
    private readonly costPerGpuHour = 0,
  ) {}

  async setDevices(_devices: GpuDevice[]): Promise<void> {
    // The provider owns its inventory.
  }

  async acquire(req: LeaseRequest): Promise<AcquireResult> {
    let a: HostedAllocation | undefined;
    try {
      a = await this.cloud.allocate({ model: req.model, memoryGb: req.memoryGb, tflops: req.tflops, ttlS: Math.ceil(req.ttlMs / 1000), clientId: req.leaseId });
    } catch (err) {
      if (err instanceof HostedNoFitError) return { status: 'no_fit' };
      throw err;
    }
    if (!a) return { status: 'busy' };
    this.byLease.set(req.leaseId, { allocationId: a.id, model: req.model });
    return {
      status: 'granted',
      lease: {
        leaseId: req.leaseId,
        deviceId: a.gpu_id,
        model: req.model,
        allocatedMemoryGb: a.memory_gb,
        usedMemoryGb: req.memoryGb,
        tflops: req.tflops,
        holder: req.holder,
        expiresAt: a.expires_at ? Date.parse(a.expires_at) : this.now() + req.ttlMs,
        warm: false,
        costPerGpuHour: this.costPerGpuHour,
      },
    };
  }

  async heartbeat(leaseId: string): Promise<boolean> {
    const held = this.byLease.get(leaseId);
    return held ? this.cloud.heartbeat(held.allocationId) : false;
  }

  async release(leaseId: string): Promise<boolean> {
    const held = this.byLease.get(leaseId);
    if (!held) return false;
    this.byLease.delete(leaseId);
    await this.cloud.release(held.allocationId);
    return true;
  }

  async snapshot(): Promise<PoolSnapshot> {
    const pools = await this.cloud.pools();
    // One row per provider pool: its `total` GPUs summed (units), its load from total − available.
    const devices = pools.map((p): PoolSnapshot['devices'][number] => {
      const busy = p.total - p.available;
      return {
        id: p.id,
        pool: 'hosted',
        region: p.region ?? 'hosted',
        kind: 'slice' as const,
        memoryGb: p.memory_gb * p.total,
        tflops: p.tflops * p.total,
        spot: false,
        costPerGpuHour: p.cost_per_hour ?? 0,
        allocatedMemoryGb: p.memory_gb * busy,
        usedMemoryGb: p.memory_gb * busy,
        allocatedTflops: p.tflops * busy,
        leases: busy,
        warmModels: [],
        units: p.total,
      };
    });
    return { devices, leases: [] };
  }
}
