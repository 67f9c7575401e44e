// The Request -> Analyse -> Allocate -> Execute -> Release flow over the in-process pool, on fake
// timers so waits, heartbeats and expiries happen in a known order.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AllocationTimeoutError, GpuAllocator, LeaseLostError, ModelDoesNotFitError } from './allocator.js';
import { GpuModelCatalog } from './catalog.js';
import { allocationSchema } from './config.js';
import { InMemoryGpuPool, type GpuDevice, type GpuPool } from './pool.js';

const allocation = allocationSchema.parse({ timeout_ms: 1_000, lease_ttl_ms: 300, heartbeat_ms: 100, backoff_ms: 20, backoff_max_ms: 100 });

function device(id: string, memoryGb: number, costPerGpuHour = 3.6): GpuDevice {
  return { id, pool: 'p', region: 'local', kind: 'gpu', memoryGb, tflops: 100, spot: false, costPerGpuHour };
}

function setup(devices: GpuDevice[], pool: GpuPool = new InMemoryGpuPool(devices)) {
  return { pool, allocator: new GpuAllocator({ pool, catalog: new GpuModelCatalog(), allocation, keepWarmMs: 60_000, random: () => 1, now: () => Date.now() }) };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('GpuAllocator', () => {
  it('analyses a request from the catalog: needs and expected GPU time', () => {
    const { allocator } = setup([]);
    const plan = allocator.analyse({ model: 'Mistral-7B-Instruct', maxTokens: 300 });
    expect([plan.model.name, plan.model.memoryGb, plan.model.tflops, plan.expectedTokens, plan.expectedMs]).toEqual([
      'mistral-7b',
      6,
      10,
      300,
      5_000,
    ]);
    expect(allocator.analyse({ model: 'gemma-2b' }).expectedTokens).toBe(allocation.default_expected_tokens);
    expect(() => allocator.analyse({ model: 'gpt-4o' })).toThrow(ModelDoesNotFitError);
  });

  it('holds a lease while execute runs, then releases it and counts cost per inference', async () => {
    const { pool, allocator } = setup([device('g', 8)]);
    const result = await allocator.run({ model: 'mistral-7b' }, async ({ lease }) => {
      const snap = await pool.snapshot();
      expect(snap.leases.map((l) => [l.leaseId, l.deviceId])).toEqual([[lease.leaseId, 'g']]);
      await vi.advanceTimersByTimeAsync(1_000);
      return 'done';
    });
    expect(result).toBe('done');
    expect((await pool.snapshot()).leases).toEqual([]);
    const figures = allocator.metrics.figures().models['mistral-7b'];
    // 1 s held on a 3.60 $/h GPU; the heartbeat kept the 300 ms lease alive the whole second.
    expect(figures?.inferences).toBe(1);
    expect(figures?.costPerInferenceUsd).toBeCloseTo(0.001, 6);
    expect(figures?.gpuSeconds).toBeCloseTo(1, 6);
  });

  it('waits with backoff while the pool is full and takes the GPU when it is released', async () => {
    const { pool, allocator } = setup([device('g', 8)]);
    let release!: () => void;
    const first = allocator.run({ model: 'mistral-7b' }, () => new Promise<void>((r) => (release = r)));
    await vi.advanceTimersByTimeAsync(0);
    const order: string[] = [];
    const second = allocator.run({ model: 'mistral-7b' }, async () => {
      order.push('second executes');
    });
    await vi.advanceTimersByTimeAsync(200);
    expect(order).toEqual([]);
    release();
    order.push('first released');
    await first;
    await vi.advanceTimersByTimeAsync(200);
    await second;
    expect(order).toEqual(['first released', 'second executes']);
    expect(allocator.metrics.figures().allocationLatency.count).toBe(2);
    expect(allocator.metrics.figures().allocationLatency.maxMs).toBeGreaterThan(0);
    expect((await pool.snapshot()).leases).toEqual([]);
  });

  it('gives up after the allocation timeout with AllocationTimeoutError', async () => {
    const { allocator } = setup([device('g', 8)]);
    let release!: () => void;
    const holder = allocator.run({ model: 'mistral-7b' }, () => new Promise<void>((r) => (release = r)));
    await vi.advanceTimersByTimeAsync(0);
    const waiting = allocator.run({ model: 'mistral-7b' }, async () => 'never');
    const outcome = waiting.catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(1_100);
    const err = await outcome;
    expect(err).toBeInstanceOf(AllocationTimeoutError);
    expect((err as AllocationTimeoutError).attempts).toBeGreaterThan(2);
    expect(allocator.metrics.figures().models['mistral-7b']?.timeouts).toBe(1);
    release();
    await holder;
  });

  it('fails at once when no device could ever hold the model', async () => {
    const { allocator } = setup([device('small', 8)]);
    await expect(allocator.run({ model: 'qwen-32b' }, async () => 1)).rejects.toBeInstanceOf(ModelDoesNotFitError);
    expect(allocator.metrics.figures().models['qwen-32b']?.noFit).toBe(1);
  });

  it('gets the GPU of a holder that died once its lease expires', async () => {
    const { pool, allocator } = setup([device('g', 8)]);
    // A replica took the GPU and crashed: no heartbeat, no release.
    const crashed = await pool.acquire({
      leaseId: 'crashed',
      model: 'mistral-7b',
      memoryGb: 6,
      tflops: 10,
      holder: 'dead-replica',
      ttlMs: allocation.lease_ttl_ms,
      preferWarm: true,
    });
    expect(crashed.status).toBe('granted');
    const run = allocator.run({ model: 'mistral-7b' }, async ({ lease }) => lease.leaseId);
    await vi.advanceTimersByTimeAsync(allocation.lease_ttl_ms + 200);
    const leaseId = await run;
    expect(leaseId).not.toBe('crashed');
  });

  it('aborts execute and rejects with LeaseLostError when a heartbeat finds the lease gone', async () => {
    const inner = new InMemoryGpuPool([device('g', 8)]);
    const forgetful: GpuPool = {
      setDevices: (d) => inner.setDevices(d),
      acquire: (r) => inner.acquire(r),
      heartbeat: async () => false,
      release: (id, keep) => inner.release(id, keep),
      snapshot: () => inner.snapshot(),
    };
    const { allocator } = setup([], forgetful);
    let sawAbort = false;
    const run = allocator
      .run({ model: 'gemma-2b' }, ({ signal }) => {
        return new Promise((_resolve, reject) => {
          signal.addEventListener('abort', () => {
            sawAbort = true;
            reject(new Error('cancelled'));
          });
        });
      })
      .catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(allocation.heartbeat_ms + 10);
    expect(await run).toBeInstanceOf(LeaseLostError);
    expect(sawAbort).toBe(true);
    expect((await inner.snapshot()).leases).toEqual([]);
  });

  it('reports cluster status: totals, saturation and per-device load', async () => {
    const { allocator } = setup([device('a', 8), device('b', 8)]);
    let release!: () => void;
    const one = allocator.run({ model: 'mistral-7b' }, () => new Promise<void>((r) => (release = r)));
    await vi.advanceTimersByTimeAsync(0);
    let status = await allocator.clusterStatus();
    expect([status.status, status.totals.devices, status.totals.memoryGb, status.totals.allocatedMemoryGb, status.totals.activeLeases]).toEqual([
      'ok',
      2,
      16,
      6,
      1,
    ]);
    expect(status.totals.allocationRatio).toBeCloseTo(6 / 16, 9);
    const two = allocator.run({ model: 'mistral-7b' }, async () => {
      status = await allocator.clusterStatus();
    });
    await two;
    // While both ran, each GPU had 2 GB left: still room for Gemma-2B, so not saturated.
    expect(status.status).toBe('ok');
    expect(status.totals.allocatedMemoryGb).toBe(12);
    release();
    await one;
  });
});
