// GET /v1/cluster and GET /v1/scaling on a bare Fastify instance, over real capacity services
// built from config (in-process pool, dry-run autoscaler).
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { clustersSchema, costOptimizationSchema, scalingSchema } from '../../capacity/config.js';
import { createCapacityServices, type CapacityServices } from '../../capacity/service.js';
import { capacityRoutes } from './capacity.js';

let services: CapacityServices | undefined;
afterEach(async () => {
  await services?.close();
  services = undefined;
});

async function build(withPool: boolean, scalingOn: boolean) {
  services = await createCapacityServices({
    clusters: clustersSchema.parse(
      withPool ? { pools: [{ name: 'a100', cost_per_gpu_hour: 2, devices: [{ id: 'a100', memory_gb: 40, tflops: 150, count: 2 }] }] } : {},
    ),
    scaling: scalingSchema.parse({ enabled: scalingOn, dry_run: true }),
    cost: costOptimizationSchema.parse({}),
    env: {},
  });
  const app = Fastify();
  await app.register(capacityRoutes, { allocator: services.allocator, autoscaler: services.autoscaler });
  return app;
}

describe('capacity routes', () => {
  it('GET /v1/cluster reports devices, live leases and figures while a model runs', async () => {
    const app = await build(true, false);
    let body: Record<string, unknown> = {};
    await services?.allocator?.run({ model: 'qwen-32b' }, async () => {
      const res = await app.inject({ method: 'GET', url: '/v1/cluster' });
      expect(res.statusCode).toBe(200);
      body = res.json();
    });
    expect(body.status).toBe('ok');
    expect(body.totals).toMatchObject({ devices: 2, memoryGb: 80, allocatedMemoryGb: 32, activeLeases: 1 });
    const devices = body.devices as Array<{ id: string; leases: number; warmModels: string[] }>;
    expect(devices.map((d) => [d.id, d.leases])).toEqual([
      ['a100-0', 1],
      ['a100-1', 0],
    ]);
    expect((body.models as Array<{ name: string }>).map((m) => m.name)).toEqual(['gemma-2b', 'mistral-7b', 'qwen-32b']);
    const after = (await app.inject({ method: 'GET', url: '/v1/cluster' })).json();
    expect(after.figures.allocationLatency.count).toBe(1);
    expect(after.figures.models['qwen-32b'].inferences).toBe(1);
    expect(after.devices[0].warmModels).toEqual(['qwen-32b']);
    await app.close();
  });

  it('GET /v1/scaling shows the forecast, the decision and its reasons', async () => {
    const app = await build(false, true);
    services?.recorder.record(10, 100);
    await services?.autoscaler?.tick();
    const res = await app.inject({ method: 'GET', url: '/v1/scaling' });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({ enabled: true, dryRun: true, target: { namespace: 'default', deployment: 'inferenceflow' } });
    expect(body.forecast.points).toHaveLength(12);
    expect(body.decision.target).toBe(3);
    expect(body.decision.reasons.join(' ')).toMatch(/requests\/s needs/);
    await app.close();
  });

  it('says plainly when no pool or no autoscaler is configured', async () => {
    const app = await build(false, false);
    expect((await app.inject({ method: 'GET', url: '/v1/cluster' })).json()).toMatchObject({ status: 'not_configured' });
    expect((await app.inject({ method: 'GET', url: '/v1/scaling' })).json()).toMatchObject({ enabled: false });
    await app.close();
  });
});
