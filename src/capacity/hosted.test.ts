// The hosted GPU-cloud adapter against a local stand-in of the provider: paths and key from config,
// capacity refusals mapped to "busy" and "no fit", and the allocator's whole flow run on top of it.
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GpuAllocator } from './allocator.js';
import { GpuModelCatalog } from './catalog.js';
import { allocationSchema, clustersSchema, costOptimizationSchema, hostedGpuCloudSchema, scalingSchema } from './config.js';
import { HostedGpuPool, HttpHostedGpuCloud, type HostedGpuCloud, type HostedPools } from './hosted.js';
import { createCapacityServices } from './service.js';

let server: Server;
let base: string;
let log: Array<{ method?: string; url?: string; auth?: string; idem?: string; body: unknown }> = [];
let free = 1;
let refusals = 0;
const live = new Set<string>();

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : undefined;
      log.push({ method: req.method, url: req.url, auth: req.headers.authorization, idem: req.headers['idempotency-key'] as string, body });
      const send = (status: number, payload: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(payload));
      };
      if (req.headers.authorization !== 'Bearer hk-test') return send(401, { error: { message: 'bad key' } });
      if (req.method === 'POST' && req.url === '/api/alloc') {
        if ((body?.memory_gb as number) > 48) return send(422, { error: { message: 'no GPU type holds this model' } });
        if (free === 0) {
          refusals++;
          return send(503, { error: { message: 'no capacity' } });
        }
        free--;
        const id = `alloc-${log.length}`;
        live.add(id);
        return send(201, { id, gpu_id: 'l40s-7', memory_gb: 48, endpoint: 'https://gpu.example/l40s-7' });
      }
      const hb = /^\/api\/alloc\/([^/]+)\/beat$/.exec(req.url ?? '');
      if (req.method === 'POST' && hb) return live.has(hb[1] as string) ? send(200, { ok: true }) : send(404, { error: { message: 'gone' } });
      const del = /^\/api\/alloc\/([^/]+)$/.exec(req.url ?? '');
      if (req.method === 'DELETE' && del) {
        if (live.delete(del[1] as string)) free++;
        return send(200, {});
      }
      if (req.method === 'GET' && req.url === '/api/pools') {
        return send(200, { pools: [{ id: 'l40s', region: 'eu', memory_gb: 48, tflops: 90, total: 2, available: free, cost_per_hour: 1.2 }] });
      }
      send(404, { error: { message: 'no route' } });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => {
  server.close();
});

beforeEach(() => {
  log = [];
  free = 1;
  refusals = 0;
  live.clear();
});

function cloud(key = 'hk-test') {
  const cfg = hostedGpuCloudSchema.parse({
    base_url: base,
    endpoints: { allocate: '/api/alloc', heartbeat: '/api/alloc/{id}/beat', release: '/api/alloc/{id}', pools: '/api/pools' },
  });
  return new HttpHostedGpuCloud(cfg, { HOSTED_AI_API_KEY: key });
}

describe('HttpHostedGpuCloud', () => {
  it('allocates, renews and releases at the configured paths with the HOSTED_AI_API_KEY bearer', async () => {
    const c = cloud();
    const a = await c.allocate({ model: 'mistral-7b', memoryGb: 6, tflops: 10, ttlS: 15, clientId: 'lease-1' });
    expect(a).toMatchObject({ gpu_id: 'l40s-7', memory_gb: 48 });
    expect(log[0]).toMatchObject({
      method: 'POST',
      url: '/api/alloc',
      auth: 'Bearer hk-test',
      idem: 'lease-1',
      body: { model: 'mistral-7b', memory_gb: 6, tflops: 10, ttl_s: 15, client_id: 'lease-1' },
    });
    expect(await c.heartbeat(a?.id as string)).toBe(true);
    await c.release(a?.id as string);
    expect(await c.heartbeat(a?.id as string)).toBe(false);
    expect(log.map((l) => `${l.method} ${l.url}`).slice(1)).toEqual([
      `POST /api/alloc/${a?.id}/beat`,
      `DELETE /api/alloc/${a?.id}`,
      `POST /api/alloc/${a?.id}/beat`,
    ]);
    await c.close();
  });

  it('refuses to start without its key, and surfaces a rejected key as an upstream auth error', async () => {
    const cfg = hostedGpuCloudSchema.parse({ base_url: base });
    expect(() => new HttpHostedGpuCloud(cfg, {})).toThrow(/HOSTED_AI_API_KEY is not set/);
    const wrong = cloud('wrong');
    await expect(wrong.pools()).rejects.toMatchObject({ kind: 'auth', status: 401 });
    await wrong.close();
  });
});

describe('HostedGpuPool under the allocator', () => {
  it('runs the whole flow on the provider, waits while it has no capacity, and reports its pools', async () => {
    const c = cloud();
    const pool = new HostedGpuPool(c);
    const allocator = new GpuAllocator({
      pool,
      catalog: new GpuModelCatalog([{ name: 'giant', aliases: [], memory_gb: 80, tflops: 50, tokens_per_s: 10 }]),
      allocation: allocationSchema.parse({ timeout_ms: 2_000, lease_ttl_ms: 10_000, heartbeat_ms: 5_000, backoff_ms: 10, backoff_max_ms: 50 }),
    });
    let release!: () => void;
    const first = allocator.run({ model: 'mistral-7b' }, ({ lease }) => {
      expect(lease.deviceId).toBe('l40s-7');
      return new Promise<void>((r) => (release = r));
    });
    while (!release) await new Promise((r) => setTimeout(r, 5));
    const status = await allocator.clusterStatus();
    // The stand-in has two 48 GB GPUs, one already taken by another tenant, one now by us.
    expect(status.totals).toMatchObject({ memoryGb: 96, allocatedMemoryGb: 96 });
    expect(status.status).toBe('saturated');
    const second = allocator.run({ model: 'gemma-2b' }, async () => 'ran');
    // The second run is refused (503) while the only GPU is held, and keeps retrying.
    while (refusals < 2) await new Promise((r) => setTimeout(r, 5));
    release();
    await first;
    expect(await second).toBe('ran');
    await expect(allocator.run({ model: 'giant' }, async () => 1)).rejects.toThrow(/no device in the pool/);
    expect(live.size).toBe(0);
    await c.close();
  });
});

describe('the hosted pool the capacity services build', () => {
  it('prices its leases at clusters.hosted.cost_per_gpu_hour (cost per inference was always 0)', async () => {
    const clusters = clustersSchema.parse({
      hosted: { base_url: base, cost_per_gpu_hour: 2.5, endpoints: { allocate: '/api/alloc', heartbeat: '/api/alloc/{id}/beat', release: '/api/alloc/{id}', pools: '/api/pools' } },
    });
    const services = await createCapacityServices({ clusters, scaling: scalingSchema.parse({}), cost: costOptimizationSchema.parse({}), env: { HOSTED_AI_API_KEY: 'hk-test' } });
    try {
      const price = await services.allocator?.run({ model: 'gemma-2b' }, async ({ lease }) => lease.costPerGpuHour);
      expect(price).toBe(2.5);
      expect(services.allocator?.metrics.figures().models['gemma-2b']?.inferences).toBe(1);
    } finally {
      await services.close();
    }
    expect(hostedGpuCloudSchema.parse({ base_url: base }).cost_per_gpu_hour).toBe(0);
  });
});

describe('HostedGpuPool in the cluster status', () => {
  const statusOf = async (pools: HostedPools) => {
    const cloud: HostedGpuCloud = {
      allocate: async () => undefined,
      heartbeat: async () => false,
      release: async () => undefined,
      pools: async () => pools,
    };
    const allocator = new GpuAllocator({ pool: new HostedGpuPool(cloud), catalog: new GpuModelCatalog(), allocation: allocationSchema.parse({}) });
    return allocator.clusterStatus();
  };
  const l40s = { id: 'l40s', memory_gb: 48, tflops: 90, total: 10 };

  it('has room while a provider pool has a GPU available (one row stands for all its GPUs)', async () => {
    const status = await statusOf([{ ...l40s, available: 9 }]);
    expect(status.status).toBe('ok');
    expect(status.devices[0]).toMatchObject({ units: 10, leases: 1, memoryGb: 480, allocatedMemoryGb: 48 });
    expect((await statusOf([{ ...l40s, available: 1 }])).status).toBe('ok');
  });

  it('is saturated when every pool is fully taken, or its GPUs hold no catalog model', async () => {
    expect((await statusOf([{ ...l40s, available: 0 }])).status).toBe('saturated');
    expect((await statusOf([{ id: 'tiny', memory_gb: 1, tflops: 5, total: 10, available: 10 }])).status).toBe('saturated');
  });
});
