// Allocation latency of the GPU allocator: `allocator.run()` with an empty callback, N times, on the
// in-process pool and on the Redis pool (one Lua call to acquire, one to release), with 1 and 8
// concurrent callers. Short by design; numbers depend on the machine and on what else runs on it.
// Percentiles are over every allocation of the run: each latency the allocator records (the same
// measurement its metrics get) is also kept here. The allocator's own figures keep only the last 1,024
// for percentiles (src/capacity/metrics.ts), so they are printed beside, with that window named.
//   npx tsx bench/capacity-allocation.ts [iterations]
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { Redis } from 'ioredis';
import { GpuAllocator } from '../src/capacity/allocator.js';
import { GpuModelCatalog } from '../src/capacity/catalog.js';
import { allocationSchema } from '../src/capacity/config.js';
import { CapacityMetrics } from '../src/capacity/metrics.js';
import { InMemoryGpuPool, devicesFromConfig, type GpuPool } from '../src/capacity/pool.js';
import { RedisGpuPool } from '../src/capacity/redis-pool.js';
import { percentile } from './lib/load.js';

const iterations = Number(process.argv[2] ?? 2000);
const devices = devicesFromConfig([
  { name: 'a100', region: 'local', spot: false, cost_per_gpu_hour: 3, devices: [{ id: 'a100', memory_gb: 80, tflops: 312, kind: 'gpu', count: 8 }] },
]);

/** The allocator's metrics, keeping every allocation latency as well. */
class AllSamples extends CapacityMetrics {
  readonly latencies: number[] = [];
  override recordAllocation(model: string, latencyMs: number, warm: boolean): void {
    this.latencies.push(latencyMs);
    super.recordAllocation(model, latencyMs, warm);
  }
}

async function measure(name: string, pool: GpuPool, concurrency: number): Promise<void> {
  await pool.setDevices(devices);
  const metrics = new AllSamples();
  const allocator = new GpuAllocator({ pool, catalog: new GpuModelCatalog(), allocation: allocationSchema.parse({}), metrics });
  const started = performance.now();
  let left = iterations;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (left-- > 0) await allocator.run({ model: 'mistral-7b' }, async () => undefined);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const all = [...metrics.latencies].sort((a, b) => a - b);
  const f = allocator.metrics.figures().allocationLatency;
  if (f.count !== all.length) throw new Error(`the allocator counted ${f.count} allocations, the bench ${all.length}`);
  const window = Math.min(all.length, 1024);
  console.log(
    `${name.padEnd(9)} concurrency ${String(concurrency).padStart(2)}: ${Math.round(iterations / seconds)} runs/s; allocation over all ${all.length}: ` +
      `p50 ${percentile(all, 50).toFixed(3)} ms, p95 ${percentile(all, 95).toFixed(3)} ms, p99 ${percentile(all, 99).toFixed(3)} ms, max ${(all[all.length - 1] as number).toFixed(2)} ms ` +
      `(allocator's figures, last ${window} of ${f.count}: p50 ${f.p50Ms.toFixed(3)}, p95 ${f.p95Ms.toFixed(3)} ms)`,
  );
}

console.log(`capacity-allocation: ${iterations} runs each; ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, load ${os.loadavg()[0]?.toFixed(1)}`);
for (const c of [1, 8]) await measure('in-memory', new InMemoryGpuPool(), c);
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { lazyConnect: true, maxRetriesPerRequest: 1 });
try {
  await redis.connect();
  const prefix = `bench:${randomUUID()}:gpu:`;
  for (const c of [1, 8]) await measure('redis', new RedisGpuPool({ redis, keyPrefix: prefix }), c);
  await redis.del(`${prefix}devices`, `${prefix}leases`, `${prefix}warm`);
} catch (err) {
  console.log(`redis: skipped (${(err as Error).message})`);
} finally {
  redis.disconnect();
}
