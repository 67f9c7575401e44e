// The capacity layer as the assembled gateway feeds it, over the real Redis (unique key prefix): the
// router's queue depth and every chat request — answered or failed — reach the autoscaler's shared
// traffic buckets, and with clusters.from_mesh the GPU pool lists the GPUs of the mesh's routable
// nodes. Nothing here waits on a timer: each check polls a state that holds until the test changes it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { RunningServer } from '../src/cli/serve.js';
import { redisTimeMs } from '../src/mesh/clock.js';
import { meshKeys, type NodeHealth } from '../src/mesh/contracts.js';
import { HealthRegistry } from '../src/mesh/registry.js';
import { UpstreamError } from '../src/providers/errors.js';
import { hashTagged } from '../src/store/redis.js';
import { simulatorAdapter, startTestGateway } from './helpers/gateway.js';
import { REDIS_URL, dropRedisPrefix, redisAvailable, runId } from './helpers/services.js';

const available = await redisAvailable();
const prefix = `test:capwire:${runId()}:`;
const meshPrefix = `${prefix}mesh:`;

/** A provider whose calls wait until `open()`; `broken` calls fail like a 5xx upstream. */
function gatedProvider() {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  let started = 0;
  const provider = simulatorAdapter('gated', async (req, opts, sim) => {
    if (req.model === 'broken') throw new UpstreamError({ provider: 'gated', kind: 'server', status: 500, message: 'upstream broke' });
    started++;
    await gate;
    return sim.chat(req, opts);
  });
  return { provider, open: () => open(), started: () => started };
}

describe.skipIf(!available)('capacity wiring of the assembled gateway', () => {
  let server: RunningServer;
  let redis: Redis;
  const gated = gatedProvider();

  beforeAll(async () => {
    redis = new Redis(REDIS_URL);
    // One mesh node with a 48 GB GPU, heartbeating now (on the Redis clock), before the gateway starts.
    const now = await redisTimeMs(redis, meshKeys(meshPrefix).health);
    const node: NodeHealth = {
      node_id: 'gpu-box',
      backend: 'simulator',
      backend_ok: true,
      models_installed: ['m'],
      models_loaded: [],
      cpu_temp_c: null,
      ram_used_pct: 10,
      ram_total_bytes: 16e9,
      load1: 0.1,
      gpus: [{ name: 'L40S', memory_used_mb: 0, memory_total_mb: 49_152, utilization_pct: null, temp_c: null }],
      in_flight: 0,
      max_concurrency: 4,
      draining: false,
      version: 'test',
      ts: now,
    };
    await new HealthRegistry(redis, meshPrefix).publish(node);
    server = await startTestGateway({
      config: {
        redis: { url: REDIS_URL, key_prefix: prefix },
        providers: { gated: { type: 'ollama', base_url: 'http://127.0.0.1:9' } },
        models: [
          { name: 'm', deployments: [{ provider: 'gated', model: 'm', max_concurrency: 1, timeout_ms: 30_000 }] },
          { name: 'broken', deployments: [{ provider: 'gated', model: 'broken' }], retry: { max_retries: 0 } },
        ],
        scaling: { enabled: true, dry_run: true, interval_s: 1, min_replicas: 1, per_replica: { requests_per_s: 50, queue_depth: 0.5 } },
        clusters: { from_mesh: true, mesh: { key_prefix: meshPrefix } },
      },
      providers: new Map([['gated', gated.provider]]),
    });
  }, 60_000);

  afterAll(async () => {
    gated.open();
    await server?.close();
    await dropRedisPrefix(prefix);
    redis?.disconnect();
  });

  /** The shared traffic buckets this gateway pushed: requests summed, queue depth the deepest. */
  async function shared(): Promise<{ requests: number; queueDepth: number }> {
    const keys = await redis.keys(`${hashTagged(`${prefix}scaling:`)}traffic:*`);
    let requests = 0;
    let queueDepth = 0;
    for (const key of keys) {
      const h = await redis.hgetall(key);
      requests += Number(h.requests ?? 0);
      for (const [field, v] of Object.entries(h)) if (field.startsWith('queue:')) queueDepth = Math.max(queueDepth, Number(v));
    }
    return { requests, queueDepth };
  }

  const chat = (model: string, content: string) =>
    fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, temperature: 0.7, messages: [{ role: 'user', content }] }),
    });

  it('lists the GPUs of the routable mesh nodes in the pool (clusters.from_mesh)', async () => {
    const res = await fetch(`${server.url}/v1/cluster`);
    const body = (await res.json()) as { status: string; devices: Array<{ id: string; memoryGb: number; pool: string }> };
    expect(body.status).toBe('ok');
    expect(body.devices.map((d) => [d.id, d.memoryGb, d.pool])).toEqual([['gpu-box/gpu0', 48, 'mesh']]);
  });

  it('counts failed requests as demand', async () => {
    const answers = await Promise.all([1, 2, 3].map((i) => chat('broken', `fail ${i}`)));
    expect(answers.map((r) => r.status).every((s) => s >= 500)).toBe(true);
    await expect.poll(async () => (await shared()).requests, { timeout: 15_000, interval: 100 }).toBeGreaterThanOrEqual(3);
  });

  it("samples the router's admission queue into the autoscaler's series and sizes on it", async () => {
    // One slot: the first request holds it, the next two wait in the group's queue.
    const pending = [1, 2, 3].map((i) => chat('m', `question ${i}`));
    await expect.poll(() => gated.started(), { timeout: 15_000, interval: 20 }).toBe(1);
    await expect.poll(async () => (await shared()).queueDepth, { timeout: 15_000, interval: 100 }).toBe(2);
    // The autoscaler's decision sees it: 2 queued / 0.5 per replica = 4, 5 with the 20 % headroom.
    await expect
      .poll(async () => ((await (await fetch(`${server.url}/v1/scaling`)).json()) as { decision?: { reasons: string[] } }).decision?.reasons.join('; ') ?? '', {
        timeout: 15_000,
        interval: 100,
      })
      .toContain('queue depth needs 4.00 replicas, 5 with 20% headroom');
    gated.open();
    expect((await Promise.all(pending)).map((r) => r.status)).toEqual([200, 200, 200]);
  });
});
