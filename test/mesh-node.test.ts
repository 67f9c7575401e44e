// The mesh in one process against real Redis: health exclusions with an injected health source and
// clock, no-node retry until the deadline, a Redis disconnect the worker and router ride out, and the
// gateway's `mesh` provider streaming tokens from a node to the official OpenAI client.
import OpenAI from 'openai';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { meshBackendFor } from '../src/mesh/backend.js';
import type { MeshConfig } from '../src/mesh/config.js';
import { StaticHealthSource, type HostHealth } from '../src/mesh/health.js';
import { meshKeys, type NodeHealth } from '../src/mesh/contracts.js';
import { redisTimeMs } from '../src/mesh/clock.js';
import { HealthRegistry } from '../src/mesh/registry.js';
import { MeshRouter } from '../src/mesh/router.js';
import { WorkerAgent } from '../src/mesh/worker.js';
import { createSimulatorProvider } from '../src/providers/simulator.js';
import { createLogger } from '../src/telemetry/logger.js';
import { startTestGateway } from './helpers/gateway.js';
import { CallbackReader, chatRequest, deleteKeys, nodes, publish, REDIS_URL, redisAvailable, testMeshConfig, uniquePrefix, waitFor } from './helpers/mesh.js';

const available = await redisAvailable();
const prefix = uniquePrefix();
const redis = new Redis(REDIS_URL);
const log = createLogger('silent');
const config: MeshConfig = testMeshConfig(prefix);
const cool: HostHealth = { cpu_temp_c: 55, ram_used_pct: 40, ram_total_bytes: 8e9, load1: 0.2, gpus: [] };
const started: { stop(): Promise<void> }[] = [];

function worker(nodeId: string, host: HostHealth, now?: () => number): WorkerAgent {
  const w = new WorkerAgent({
    nodeId,
    redisUrl: REDIS_URL,
    backend: meshBackendFor(createSimulatorProvider(`sim-${nodeId}`, { latency_ms: 5 })),
    config,
    health: new StaticHealthSource(host),
    log,
    maxConcurrency: 4,
    version: 'test',
    now,
    blockMs: 200,
  });
  started.push(w);
  return w;
}

const router = new MeshRouter({ routerId: 'in-process', redisUrl: REDIS_URL, config, log, blockMs: 200 });

afterAll(async () => {
  for (const s of started.reverse()) await s.stop().catch(() => undefined);
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

describe.skipIf(!available)('mesh nodes in process', () => {
  beforeAll(async () => {
    await router.start();
    started.push(router);
  });

  it('forgets the request stream of a node that left once it is empty', async () => {
    const stream = `${prefix}requests:leaver`;
    const leaver = worker('leaver', cool);
    await leaver.start();
    expect(await redis.sismember(`${prefix}nodes`, 'leaver')).toBe(1);
    await leaver.stop();
    await waitFor('the stream to be forgotten', async () => (await redis.exists(stream)) === 0 && (await redis.sismember(`${prefix}nodes`, 'leaver')) === 0, 10_000, 50);
  });

  it('a stopping worker waits for a heartbeat in progress, which then publishes nothing: no record is left behind', async () => {
    let release: (() => void) | undefined;
    let holdNext = false;
    let held = 0;
    const source = {
      collect: (): Promise<HostHealth> => {
        if (!holdNext) return Promise.resolve(cool);
        holdNext = false;
        held++;
        return new Promise<HostHealth>((resolve) => (release = () => resolve(cool)));
      },
    };
    const w = new WorkerAgent({ nodeId: 'slow-beat', redisUrl: REDIS_URL, backend: meshBackendFor(createSimulatorProvider('sim-slow', {})), config, health: source, log, maxConcurrency: 1, version: 'test', blockMs: 200 });
    await w.start();
    expect((await nodes(redis, prefix)).has('slow-beat')).toBe(true);
    // The next heartbeat (every 200 ms here) stalls collecting its reading.
    holdNext = true;
    await waitFor('a heartbeat collecting', async () => held === 1, 5_000, 10);
    let stopped = false;
    const stopping = w.stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 400));
    expect(stopped).toBe(false); // before the fix, it had left and the stalled beat published afterwards
    release?.();
    await stopping;
    await new Promise((r) => setTimeout(r, 50));
    expect((await nodes(redis, prefix)).has('slow-beat')).toBe(false);
  });

  it('routers forget a node record silent for longer than forget_after_s, and keep fresh ones', async () => {
    // Its own key prefix and router, whose clock the test moves with no reclaim timer: the shared
    // router's passes would race these, and the jumps would forget the other tests' live nodes.
    const own = `${prefix}forget:`;
    const registry = new HealthRegistry(redis, own);
    const base: NodeHealth = { node_id: '', backend: 'simulator', backend_ok: true, models_installed: ['simulator'], models_loaded: ['simulator'], ...cool, in_flight: 0, max_concurrency: 4, draining: false, version: 'test', ts: 0 };
    await registry.publish({ ...base, node_id: 'crashed-long-ago', ts: Date.now() - (config.forget_after_s + 60) * 1000 });
    await registry.publish({ ...base, node_id: 'quiet-for-a-minute', ts: Date.now() - 60_000 });
    // A record of another version (unreadable here): kept while it changes, or until it has stayed the
    // same for forget_after_s.
    let clock = Date.now();
    const watcher = new MeshRouter({ routerId: 'forgetting', redisUrl: REDIS_URL, config: { ...config, key_prefix: own, reclaim_interval_ms: 3_600_000, idle_reclaim_ms: 3 * 3_600_000 }, log, blockMs: 200, now: () => clock });
    await watcher.start();
    const health = meshKeys(own).health;
    await redis.hset(health, 'other-version', '{"node":"x"}');
    await watcher.reclaim();
    const left = await nodes(redis, own);
    expect(left.has('crashed-long-ago')).toBe(false);
    expect(left.has('quiet-for-a-minute')).toBe(true);
    clock += config.forget_after_s * 1000 - 1000;
    await watcher.reclaim();
    expect(await redis.hexists(health, 'other-version')).toBe(1); // unchanged, but not for long enough
    await redis.hset(health, 'other-version', '{"node":"x","beat":2}'); // a live node of that version
    clock += 2000;
    await watcher.reclaim();
    expect(await redis.hexists(health, 'other-version')).toBe(1);
    clock += config.forget_after_s * 1000 + 1000;
    await watcher.reclaim();
    expect(await redis.hexists(health, 'other-version')).toBe(0);
    await watcher.stop();
    await registry.remove('quiet-for-a-minute');
  });

  it("routers leave the queue of a live node whose record they cannot read (a rolling upgrade's) alone", async () => {
    const own = `${prefix}upgrade:`;
    const keys = meshKeys(own);
    let clock = Date.now();
    const watcher = new MeshRouter({ routerId: 'older', redisUrl: REDIS_URL, config: { ...config, key_prefix: own, reclaim_interval_ms: 3_600_000, idle_reclaim_ms: 3 * 3_600_000 }, log, blockMs: 200, now: () => clock });
    await watcher.start();
    // A node of a newer version: a record this router cannot decode, and a request queued for it.
    const stream = keys.nodeRequests('newer');
    await redis.hset(keys.health, 'newer', '{"node":"newer","beat":1}');
    await redis.xgroup('CREATE', stream, 'workers', '0', 'MKSTREAM');
    await redis.sadd(keys.nodeStreams, 'newer');
    await publish(redis, own, [chatRequest(own, 'simulator', 'queued on a newer node')], stream);
    const takenFromIt = async () => Number(((await redis.xpending(stream, 'workers')) as [number])[0]);

    await watcher.reclaim();
    expect(await takenFromIt()).toBe(0);
    // Its record keeps changing (it heartbeats): still alive, however long this router watches.
    await redis.hset(keys.health, 'newer', '{"node":"newer","beat":2}');
    clock += config.health.stale_after_s * 1000 + 1000;
    await watcher.reclaim();
    expect(await takenFromIt()).toBe(0);
    expect(await redis.sismember(keys.nodeStreams, 'newer')).toBe(1);
    // Unchanged for longer than stale_after_s: the node went silent, its queue is moved (the stream
    // stays while its record is registered).
    clock += config.health.stale_after_s * 1000 + 1000;
    await watcher.reclaim();
    expect(await takenFromIt()).toBe(1);
    expect(await redis.sismember(keys.nodeStreams, 'newer')).toBe(1);
    await watcher.stop();
    await deleteKeys(redis, own);
  });

  it('routes around a node at 80 °C, one at 95 % RAM and one whose heartbeat stopped 16 s ago', async () => {
    const hot = worker('hot', { ...cool, cpu_temp_c: 80 });
    const full = worker('full', { ...cool, ram_used_pct: 95 });
    const ok = worker('ok', cool);
    await Promise.all([hot.start(), full.start(), ok.start()]);
    // A node whose heartbeats stopped 16 s ago on the mesh (Redis) clock, which stamps them: its last
    // record is left behind. (A node whose own clock is off is not stale: test/mesh-clocks.test.ts.)
    const meshNow = await redisTimeMs(redis, meshKeys(prefix).health);
    const last: NodeHealth = { node_id: 'stale', backend: 'simulator', backend_ok: true, models_installed: ['simulator'], models_loaded: ['simulator'], ...cool, in_flight: 0, max_concurrency: 4, draining: false, version: 'test', ts: meshNow - 16_000 };
    await new HealthRegistry(redis, prefix).publish(last);

    const reqs = Array.from({ length: 10 }, (_, i) => chatRequest(prefix, 'simulator', `question ${i}`));
    const reader = new CallbackReader(redis, reqs[0]!.callback);
    await publish(redis, prefix, reqs);
    await waitFor('10 answers', async () => (await reader.poll(), reader.finals().length >= 10), 20_000, 50);
    expect(reader.finals().map((e) => e.node)).toEqual(Array(10).fill('ok'));
    expect(reader.finals().every((e) => e.type === 'result')).toBe(true);

    // With the healthy node gone, a request waits (retried with backoff) and fails at its deadline.
    await ok.stop();
    expect((await nodes(redis, prefix)).has('ok')).toBe(false);
    const late = chatRequest(prefix, 'simulator', 'anyone there?', { deadlineMs: 800 });
    await publish(redis, prefix, [late]);
    await waitFor('the deadline error', async () => (await reader.poll(), reader.finals().length >= 11), 20_000, 50);
    const err = reader.finals()[10]!;
    expect(err).toMatchObject({ id: late.id, type: 'error', error: { kind: 'no_available_nodes', status: 503 } });
    const message = err.type === 'error' ? err.error.message : '';
    expect(message).toContain('hot: 80 °C');
    expect(message).toContain('full: RAM 95 %');
    // Its record ages from 16 s on while the test runs (longer on a loaded machine).
    expect(Number(/stale: heartbeat (\d+) s old/.exec(message)?.[1])).toBeGreaterThanOrEqual(16);

    // A request waiting for a node is placed as soon as one appears (before its deadline).
    const patient = chatRequest(prefix, 'simulator', 'I can wait', { deadlineMs: 20_000 });
    await publish(redis, prefix, [patient]);
    await new Promise((r) => setTimeout(r, 400));
    await worker('late-joiner', cool).start();
    await waitFor('the waiting request answered', async () => (await reader.poll(), reader.finals().length >= 12), 20_000, 50);
    expect(reader.finals()[11]).toMatchObject({ id: patient.id, type: 'result', node: 'late-joiner' });
    for (const w of [hot, full]) await w.stop();
    await new HealthRegistry(redis, prefix).remove('stale');
  }, 60_000);

  it('a worker and the router ride out a Redis disconnect (CLIENT KILL) and keep answering', async () => {
    const w = worker('blip', cool);
    await w.start();
    const killed = await killClients(/^inferenceflow:mesh:(worker:blip|router:in-process)/);
    expect(killed).toBeGreaterThanOrEqual(4);

    const reqs = Array.from({ length: 5 }, (_, i) => chatRequest(prefix, 'simulator', `after the blip ${i}`));
    reqs.forEach((r) => (r.callback = `${prefix}blip-callback`));
    const reader = new CallbackReader(redis, reqs[0]!.callback);
    await publish(redis, prefix, reqs);
    await waitFor('5 answers', async () => (await reader.poll(), reader.finals().length >= 5), 20_000, 50);
    expect(new Set(reader.finals().map((e) => e.id)).size).toBe(5);
    expect(reader.finals().every((e) => e.type === 'result')).toBe(true);
  }, 30_000);

  it('spreads a burst the router reads in one batch over the healthy nodes, even with one prompt', async () => {
    // Two healthy nodes are up (late-joiner and blip). One prompt: the same affinity node for all,
    // so only the load the router counts per placement can send some to the other.
    // blip re-registers on its next heartbeat after the previous test's connection kill.
    await waitFor('both nodes registered', async () => [...(await nodes(redis, prefix)).keys()].sort().join() === 'blip,late-joiner', 10_000, 50);
    // The router's cached view may predate blip's re-registration too, and a heartbeat from the previous
    // test's burst may still report work in flight: the split below needs both seen, idle.
    await waitFor('the router sees both nodes idle', async () => {
      const live = (await router.health()).filter((h) => h.node_id === 'blip' || h.node_id === 'late-joiner');
      return live.length === 2 && live.every((h) => h.in_flight === 0);
    }, 10_000, 50);
    const reqs = Array.from({ length: 40 }, () => chatRequest(prefix, 'simulator', 'the same question every time'));
    reqs.forEach((r) => (r.callback = `${prefix}burst-callback`));
    const reader = new CallbackReader(redis, reqs[0]!.callback);
    await publish(redis, prefix, reqs);
    await waitFor('40 answers', async () => (await reader.poll(), reader.finals().length >= 40), 20_000, 50);
    const byNode = new Map<string, number>();
    for (const e of reader.finals()) byNode.set(e.node, (byNode.get(e.node) ?? 0) + 1);
    expect([...byNode.keys()].sort()).toEqual(['blip', 'late-joiner']);
    expect(Math.min(...byNode.values())).toBeGreaterThanOrEqual(10);
  }, 30_000);

  describe('gateway provider type mesh', () => {
    let gateway: RunningServer;
    let client: OpenAI;

    beforeAll(async () => {
      gateway = await startTestGateway({
        config: {
          providers: { mesh: { type: 'mesh', options: { redis_url: REDIS_URL, key_prefix: prefix } } },
          models: [{ name: 'story', deployments: [{ provider: 'mesh', model: 'simulator' }] }],
        },
      });
      client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    });
    afterAll(async () => {
      await gateway?.close();
    });

    it('answers through the mesh, plain and streamed', async () => {
      const plain = await client.chat.completions.create({ model: 'story', messages: [{ role: 'user', content: 'hello mesh' }] });
      expect(plain.choices[0]!.message.content).toEqual(expect.any(String));
      expect(plain.choices[0]!.message.content!.length).toBeGreaterThan(0);

      const stream = await client.chat.completions.create({ model: 'story', stream: true, messages: [{ role: 'user', content: 'hello mesh' }] });
      let text = '';
      let chunks = 0;
      for await (const chunk of stream) {
        chunks++;
        text += chunk.choices[0]?.delta.content ?? '';
      }
      expect(chunks).toBeGreaterThan(3);
      // The simulator is deterministic: the streamed text is the plain answer.
      expect(text).toBe(plain.choices[0]!.message.content);
    });

    it('lists the mesh models and reports nodes in its snapshot', async () => {
      const provider = gateway.gateway.providers.get('mesh') as import('../src/providers/mesh.js').MeshProvider;
      expect(await provider.listModels()).toEqual(['simulator']);
      const snap = await provider.snapshot();
      expect(snap.counts.routable).toBeGreaterThanOrEqual(1);
      expect(snap.nodes.find((n) => n.node_id === 'blip')).toMatchObject({ routable: true, backend: 'simulator' });
    });
  });
});

async function killClients(name: RegExp): Promise<number> {
  const list = (await redis.client('LIST')) as string;
  let n = 0;
  for (const line of list.split('\n')) {
    const id = /\bid=(\d+)/.exec(line)?.[1];
    const client = /\bname=(\S*)/.exec(line)?.[1] ?? '';
    if (id && name.test(client)) {
      await redis.client('KILL', 'ID', id);
      n++;
    }
  }
  return n;
}
