// Allocation latency of the GPU allocator: `allocator.run()` with an empty callback, N times, on the
// in-process pool and on the Redis pool (one Lua call to acquire, one to release), with 1 and 8
// concurrent callers. Short by design; numbers depend on the machine and on what else runs on it.
//   npx tsx bench/capacity-allocation.ts [iterations]
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { GpuAllocator } from '../src/capacity/allocator.js';
import { GpuModelCatalog } from '../src/capacity/catalog.js';
import { allocationSchema } from '../src/capacity/config.js';
import { InMemoryGpuPool, devicesFromConfig, type GpuPool } from '../src/capacity/pool.js';
import { RedisGpuPool } from '../src/capacity/redis-pool.js';

const iterations = Number(process.argv[2] ?? 2000);
const devices = devicesFromConfig([
  { name: 'a100', region: 'local', spot: false, cost_per_gpu_hour: 3, devices: [{ id: 'a100', memory_gb: 80, tflops: 312, kind: 'gpu', count: 8 }] },
]);

async function measure(name: string, pool: GpuPool, concurrency: number): Promise<void> {
  await pool.setDevices(devices);
  const allocator = new GpuAllocator({ pool, catalog: new GpuModelCatalog(), allocation: allocationSchema.parse({}) });
  const started = performance.now();
  let left = iterations;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (left-- > 0) await allocator.run({ model: 'mistral-7b' }, async () => undefined);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const f = allocator.metrics.figures().allocationLatency;
  console.log(
    `${name.padEnd(14)} concurrency ${String(concurrency).padStart(2)}: ${Math.round(iterations / seconds)} runs/s, allocation p50 ${f.p50Ms.toFixed(2)} ms, p95 ${f.p95Ms.toFixed(2)} ms`,
  );
}

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
