// The mesh with machines whose clocks disagree (Raspberry Pis have no real-time clock): a router an
// hour ahead, nodes an hour behind or two hours ahead, against real Redis. Heartbeats, their ages and
// request deadlines go by the Redis clock, so routing, forgetting, load counting and run deadlines
// work as if the clocks agreed.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { meshBackendFor } from '../src/mesh/backend.js';
import { MeshClient } from '../src/mesh/client.js';
import type { MeshConfig } from '../src/mesh/config.js';
import { redisTimeMs } from '../src/mesh/clock.js';
import { meshKeys, type MeshEvent, type NodeHealth } from '../src/mesh/contracts.js';
import { StaticHealthSource } from '../src/mesh/health.js';
import { HealthRegistry } from '../src/mesh/registry.js';
import { MeshRouter } from '../src/mesh/router.js';
import { WorkerAgent } from '../src/mesh/worker.js';
import { MeshProvider } from '../src/providers/mesh.js';
import { createSimulatorProvider } from '../src/providers/simulator.js';
import { createLogger } from '../src/telemetry/logger.js';
import { CallbackReader, chatRequest, deleteKeys, nodes, publish, REDIS_URL, redisAvailable, ScriptedAdapter, StartedParts, TEST_HOST, testMeshConfig, uniquePrefix, waitFor, within } from './helpers/mesh.js';

const available = await redisAvailable();
const prefix = uniquePrefix();
const redis = new Redis(REDIS_URL);
const log = createLogger('silent');
const HOUR = 3_600_000;
const config: MeshConfig = testMeshConfig(prefix, 5_000);
const host = TEST_HOST;
const started = new StartedParts();

afterAll(async () => {
  await started.stopAll();
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

describe.skipIf(!available)('mesh machines whose clocks disagree', () => {
  const router = new MeshRouter({ routerId: 'an-hour-ahead', redisUrl: REDIS_URL, config, log, blockMs: 200, now: () => Date.now() + HOUR });
  let client: MeshClient;

  beforeAll(async () => {
    started.add(router);
    await router.start();
    client = new MeshClient({ redisUrl: REDIS_URL, keyPrefix: prefix, log });
    started.add(client);
    await client.connect();
  });

  it('a node an hour behind is routed to by a router an hour ahead, stays registered, and runs on what is left of the budget', async () => {
    const budget = 20_000;
    const submitted = Date.now();
    const call = await client.submit({ model: 'scripted', messages: [{ role: 'user', content: 'a late clock' }] }, { stream: true, deadline: submitted + budget });
    // The request waits on the router (no node serves the model yet): queue time its run must not get.
    await new Promise((r) => setTimeout(r, 1_500));
    const backend = new ScriptedAdapter();
    const worker = new WorkerAgent({ nodeId: 'an-hour-behind', redisUrl: REDIS_URL, backend: meshBackendFor(backend), config, health: new StaticHealthSource(host), log, maxConcurrency: 4, version: 'test', blockMs: 200, now: () => Date.now() - HOUR });
    started.add(worker);
    await worker.start();
    const run = await within('the node to start the run', backend.started('a late clock'));
    const waited = Date.now() - submitted;
    backend.release('a late clock', 2);
    backend.finish('a late clock');
    const events: MeshEvent[] = [];
    for await (const e of call) events.push(e);
    expect(events.map((e) => e.type)).toEqual(['chunk', 'chunk', 'done']);
    // Its own clock says the deadline is an hour and more away; the budget says what is left.
    expect(run.opts.timeoutMs).toBeLessThanOrEqual(budget - 1_500 + 1_000);
    expect(run.opts.timeoutMs).toBeGreaterThan(budget - waited - 1_000);

    // Reclaim passes (the router's clock an hour ahead of the node's) do not forget it, and the
    // gateway's snapshot (this machine's clock) counts it routable.
    await router.reclaim();
    await router.reclaim();
    expect((await nodes(redis, prefix)).has('an-hour-behind')).toBe(true);
    const snap = await new MeshProvider('mesh', client, config).snapshot();
    expect(snap.nodes.find((n) => n.node_id === 'an-hour-behind')).toMatchObject({ routable: true });
    expect(Math.abs(snap.nodes.find((n) => n.node_id === 'an-hour-behind')!.heartbeat_age_ms)).toBeLessThan(15_000);
  });

  it('a burst read in one batch is spread over nodes two hours ahead (load counted by entry, not by time)', async () => {
    for (const id of ['ahead-1', 'ahead-2']) {
      const w = new WorkerAgent({ nodeId: id, redisUrl: REDIS_URL, backend: meshBackendFor(createSimulatorProvider(`sim-${id}`, { latency_ms: 5 })), config, health: new StaticHealthSource(host), log, maxConcurrency: 4, version: 'test', blockMs: 200, now: () => Date.now() + 2 * HOUR });
      started.add(w);
      await w.start();
    }
    await waitFor('the router sees both nodes idle', async () => {
      const live = (await router.health()).filter((h) => h.node_id.startsWith('ahead-'));
      return live.length === 2 && live.every((h) => h.in_flight === 0);
    }, 10_000, 50);
    const reqs = Array.from({ length: 40 }, () => chatRequest(prefix, 'simulator', 'the same question every time'));
    const reader = new CallbackReader(redis, reqs[0]!.callback);
    await publish(redis, prefix, reqs);
    await waitFor('40 answers', async () => (await reader.poll(), reader.finals().length >= 40), 20_000, 50);
    const byNode = new Map<string, number>();
    for (const e of reader.finals()) byNode.set(e.node, (byNode.get(e.node) ?? 0) + 1);
    expect([...byNode.keys()].sort()).toEqual(['ahead-1', 'ahead-2']);
    expect(Math.min(...byNode.values())).toBeGreaterThanOrEqual(10);
  }, 30_000);

  it('records of older workers (no read_id, a clock two hours ahead): a burst is still spread', async () => {
    // Two nodes of an older version, as their records show them (nobody consumes their streams here):
    // the router counts its placements until it sees a newer heartbeat, whatever their stamps say.
    const registry = new HealthRegistry(redis, prefix);
    const meshNow = await redisTimeMs(redis, meshKeys(prefix).health);
    for (const id of ['old-1', 'old-2']) {
      const record: NodeHealth = { node_id: id, backend: 'simulator', backend_ok: true, models_installed: ['old-model'], models_loaded: ['old-model'], ...host, in_flight: 0, max_concurrency: 4, draining: false, version: 'older', ts: meshNow + 2 * HOUR };
      await registry.publish(record);
    }
    await waitFor('the router sees both records', async () => (await router.health()).filter((h) => h.node_id.startsWith('old-')).length === 2, 10_000, 50);
    const reqs = Array.from({ length: 40 }, () => chatRequest(prefix, 'old-model', 'the same old question'));
    await publish(redis, prefix, reqs);
    const queued = async (id: string) => redis.xlen(meshKeys(prefix).nodeRequests(id));
    await waitFor('40 placements', async () => (await queued('old-1')) + (await queued('old-2')) === 40, 20_000, 50);
    expect(Math.min(await queued('old-1'), await queued('old-2'))).toBeGreaterThanOrEqual(10);
  }, 30_000);
});
