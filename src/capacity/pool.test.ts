// One contract, two pools: the in-process pool and the Redis pool (real Redis and Redis Cluster, unique key prefix)
// must place, refuse, expire and share leases the same way.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InMemoryGpuPool, devicesFromConfig, devicesFromMeshNodes, type GpuDevice, type GpuPool, type LeaseRequest } from './pool.js';
import { clustersSchema } from './config.js';
import { RedisGpuPool } from './redis-pool.js';
import { redisTargets } from '../../test/helpers/redis.js';

function gpu(id: string, memoryGb: number, tflops = 100, kind: 'gpu' | 'slice' = 'gpu', costPerGpuHour = 1): GpuDevice {
  return { id, pool: 'p', region: 'local', kind, memoryGb, tflops, spot: false, costPerGpuHour };
}

function req(model: string, memoryGb: number, tflops: number, extra: Partial<LeaseRequest> = {}): LeaseRequest {
  return { leaseId: randomUUID(), model, memoryGb, tflops, holder: 'test', ttlMs: 60_000, preferWarm: true, ...extra };
}

// The Redis pool runs on a single server and on a Redis Cluster (test/helpers/redis.ts).
const targets = await redisTargets();
const run = randomUUID();
afterAll(async () => {
  for (const t of targets) if (t.available) await t.cleanup(`*test:${run}:*`);
});

type Factory = () => Promise<{ pool: GpuPool; second: () => GpuPool }>;
const factories: Array<[string, Factory, boolean]> = [
  [
    'InMemoryGpuPool',
    async () => {
      const pool = new InMemoryGpuPool();
      return { pool, second: () => pool };
    },
    true,
  ],
  ...targets.map((t): [string, Factory, boolean] => [
    `RedisGpuPool on ${t.name}`,
    async () => {
      const prefix = `test:${run}:${t.name}:gpu:`;
      // Two connections stand for two gateway replicas sharing one pool.
      const a = t.connect();
      const b = t.connect();
      return { pool: new RedisGpuPool({ redis: a, keyPrefix: prefix }), second: () => new RedisGpuPool({ redis: b, keyPrefix: prefix }) };
    },
    t.available,
  ]),
];

describe.each(factories)('%s', (_name, make, enabled) => {
  let pool: GpuPool;
  let second: () => GpuPool;
  beforeAll(async () => {
    if (!enabled) return;
    ({ pool, second } = await make());
  });
  const test = enabled ? it : it.skip;

  test('places a model on the device it fits most tightly', async () => {
    await pool.setDevices([gpu('a-24', 24), gpu('b-8', 8), gpu('c-4', 4)]);
    const r = await pool.acquire(req('mistral-7b', 6, 10));
    expect(r.status).toBe('granted');
    if (r.status !== 'granted') return;
    expect(r.lease.deviceId).toBe('b-8');
    expect(r.lease.allocatedMemoryGb).toBe(6);
    await pool.release(r.lease.leaseId, 0);
  });

  test('prefers a device where the model is warm over a tighter fit, and only when asked', async () => {
    await pool.setDevices([gpu('a-24', 24), gpu('b-8', 8)]);
    // Fill b so the first gemma lands on a, then free b again.
    const filler = await pool.acquire(req('other', 8, 1));
    const first = await pool.acquire(req('gemma-2b', 2, 5));
    expect(first.status === 'granted' && first.lease.deviceId).toBe('a-24');
    if (first.status !== 'granted' || filler.status !== 'granted') return;
    await pool.release(first.lease.leaseId, 60_000);
    await pool.release(filler.lease.leaseId, 0);

    const warm = await pool.acquire(req('gemma-2b', 2, 5));
    expect(warm.status === 'granted' && [warm.lease.deviceId, warm.lease.warm]).toEqual(['a-24', true]);
    const cold = await pool.acquire(req('gemma-2b', 2, 5, { preferWarm: false }));
    expect(cold.status === 'granted' && cold.lease.deviceId).toBe('b-8');
    const snap = await pool.snapshot();
    expect(snap.devices.find((d) => d.id === 'a-24')?.warmModels).toEqual(['gemma-2b']);
    for (const r of [warm, cold]) if (r.status === 'granted') await pool.release(r.lease.leaseId, 0);
  });

  test('packs by memory and compute on a GPU, and holds a vGPU slice whole', async () => {
    await pool.setDevices([gpu('big', 80, 45), gpu('slice-8', 8, 20, 'slice')]);
    const qwen = await pool.acquire(req('qwen-32b', 32, 40));
    expect(qwen.status === 'granted' && qwen.lease.deviceId).toBe('big');
    // 48 GB are free on `big`, but only 5 TFLOPS: a 10-TFLOPS model goes to the slice.
    const mistral = await pool.acquire(req('mistral-7b', 6, 10));
    expect(mistral.status === 'granted' && [mistral.lease.deviceId, mistral.lease.allocatedMemoryGb, mistral.lease.usedMemoryGb]).toEqual([
      'slice-8',
      8,
      6,
    ]);
    expect((await pool.acquire(req('mistral-7b', 6, 10))).status).toBe('busy');
    expect((await pool.acquire(req('huge', 100, 1))).status).toBe('no_fit');
    const snap = await pool.snapshot();
    const slice = snap.devices.find((d) => d.id === 'slice-8');
    expect([slice?.allocatedMemoryGb, slice?.usedMemoryGb, slice?.leases]).toEqual([8, 6, 1]);
    for (const r of [qwen, mistral]) if (r.status === 'granted') await pool.release(r.lease.leaseId, 0);
    expect((await pool.snapshot()).leases).toEqual([]);
  });

  test("frees a dead holder's lease when its TTL passes, and a heartbeat keeps a live one", async () => {
    await pool.setDevices([gpu('only', 8)]);
    const dead = await pool.acquire(req('mistral-7b', 6, 10, { ttlMs: 500 }));
    const alive = await pool.acquire(req('gemma-2b', 2, 5, { ttlMs: 500 }));
    expect([dead.status, alive.status]).toEqual(['granted', 'granted']);
    if (dead.status !== 'granted' || alive.status !== 'granted') return;
    expect((await pool.acquire(req('mistral-7b', 6, 10))).status).toBe('busy');
    expect(await pool.heartbeat(alive.lease.leaseId, 60_000)).toBe(true);
    await new Promise((r) => setTimeout(r, 700));
    expect(await pool.heartbeat(dead.lease.leaseId, 60_000)).toBe(false);
    const snap = await pool.snapshot();
    expect(snap.leases.map((l) => l.leaseId)).toEqual([alive.lease.leaseId]);
    // Room for 6 GB again (8 minus the live 2).
    const again = await pool.acquire(req('mistral-7b', 6, 10));
    expect(again.status).toBe('granted');
    if (again.status === 'granted') await pool.release(again.lease.leaseId, 0);
    await pool.release(alive.lease.leaseId, 0);
  });

  test('never grants more than fits when two replicas race for one GPU', async () => {
    await pool.setDevices([gpu('shared', 24)]);
    const other = second();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? pool : other).acquire(req('mistral-7b', 6, 1))),
    );
    const granted = results.filter((r) => r.status === 'granted');
    expect(granted).toHaveLength(4);
    expect(results.filter((r) => r.status === 'busy')).toHaveLength(16);
    for (const r of granted) if (r.status === 'granted') await other.release(r.lease.leaseId, 0);
  });

  test("replaces one source's devices at a time: a replica writing the configured list keeps the mesh GPUs", async () => {
    const ids = async () => (await pool.snapshot()).devices.map((d) => d.id).sort();
    await pool.setDevices([gpu('cfg-24', 24)]);
    await pool.setDevices([gpu('node-1/gpu0', 16)], 'mesh');
    // Another replica starts and writes the configured devices (the same config, one more GPU).
    await second().setDevices([gpu('cfg-24', 24), gpu('cfg-8', 8)]);
    expect(await ids()).toEqual(['cfg-24', 'cfg-8', 'node-1/gpu0']);
    const lease = await pool.acquire(req('qwen-like', 14, 1));
    expect(lease.status === 'granted' && lease.lease.deviceId).toBe('node-1/gpu0');
    if (lease.status === 'granted') await pool.release(lease.lease.leaseId, 0);
    expect(Object.keys((await pool.snapshot()).devices[0] ?? {})).not.toContain('source');
    // The node leaves the mesh: only the mesh list changes.
    await second().setDevices([], 'mesh');
    expect(await ids()).toEqual(['cfg-24', 'cfg-8']);
  });
});

describe('device lists', () => {
  it('expands counted devices from config and carries pool prices and spot flags', () => {
    const devices = devicesFromConfig([
      {
        name: 'a100',
        region: 'eu',
        spot: true,
        cost_per_gpu_hour: 1.5,
        devices: [{ id: 'a100', memory_gb: 80, tflops: 312, kind: 'gpu', count: 2 }],
      },
    ]);
    expect(devices.map((d) => [d.id, d.pool, d.region, d.spot, d.costPerGpuHour])).toEqual([
      ['a100-0', 'a100', 'eu', true, 1.5],
      ['a100-1', 'a100', 'eu', true, 1.5],
    ]);
  });

  it('refuses a config where two devices get one id, naming them', () => {
    const twoPools = {
      pools: [
        { name: 'eu', devices: [{ id: 'a100', memory_gb: 80, tflops: 312 }] },
        { name: 'us', devices: [{ id: 'a100', memory_gb: 80, tflops: 312 }] },
      ],
    };
    expect(() => clustersSchema.parse(twoPools)).toThrow(/device ids must be unique.*'a100' \(pools eu and us\)/);
    // A counted entry's expanded ids collide with a listed one.
    const expanded = { pools: [{ name: 'eu', devices: [{ id: 'l4', memory_gb: 24, tflops: 30, count: 2 }, { id: 'l4-1', memory_gb: 24, tflops: 30 }] }] };
    expect(() => clustersSchema.parse(expanded)).toThrow(/'l4-1' \(twice in pool eu\)/);
    expect(clustersSchema.parse({ pools: [{ name: 'eu', devices: [{ id: 'l4', memory_gb: 24, tflops: 30, count: 2 }, { id: 'l4-2', memory_gb: 24, tflops: 30 }] }] }).pools).toHaveLength(1);
  });

  it('turns the GPU memory mesh nodes report into devices', () => {
    const devices = devicesFromMeshNodes([{ nodeId: 'n1', gpus: [{ memoryGb: 24, tflops: 80 }, { memoryGb: 12 }] }]);
    expect(devices.map((d) => [d.id, d.memoryGb, d.tflops])).toEqual([
      ['n1/gpu0', 24, 80],
      ['n1/gpu1', 12, 20],
    ]);
  });
});
