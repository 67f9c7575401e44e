// The mesh in one process on a single Redis and on a Redis Cluster (test/helpers/redis.ts): a router,
// two workers and a requester, connected by `redis://` or `redis+cluster://` URLs. On a cluster the
// final-delivery script (done-key, callback stream, node stream) and the MULTIs over a node stream
// must find their keys in one slot, which the hash-tagged prefix gives; a callback stream an outside
// requester names (outside the tag) still gets exactly one final answer.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { meshBackendFor } from '../src/mesh/backend.js';
import { MeshClient } from '../src/mesh/client.js';
import { encodeRequest, FIELD, meshKeys } from '../src/mesh/contracts.js';
import { StaticHealthSource } from '../src/mesh/health.js';
import { MeshRouter } from '../src/mesh/router.js';
import { WorkerAgent } from '../src/mesh/worker.js';
import { createSimulatorProvider } from '../src/providers/simulator.js';
import { scanKeys } from '../src/store/redis.js';
import { createLogger } from '../src/telemetry/logger.js';
import { Cancellation } from '../src/providers/cancel.js';
import { CallbackReader, chatRequest, ScriptedAdapter, StartedParts, TEST_HOST, testMeshConfig, waitFor } from './helpers/mesh.js';
import { redisTargets } from './helpers/redis.js';

const targets = await redisTargets();
const run = randomBytes(4).toString('hex');
const log = createLogger('silent');
const started = new StartedParts();

afterAll(async () => {
  await started.stopAll();
  for (const t of targets) await t.cleanup(`*ifmesh-test:${run}:*`);
});

for (const t of targets) {
  describe.skipIf(!t.available)(`mesh on ${t.name}`, () => {
    const prefix = `ifmesh-test:${run}:${t.name}:`;
    const config = testMeshConfig(prefix);
    const host = TEST_HOST;

    it('answers plain and streamed requests exactly once through router and workers', async () => {
      const router = new MeshRouter({ routerId: `r-${t.name}`, redisUrl: t.url, config, log, blockMs: 200 });
      started.add(router);
      await router.start();
      for (const id of ['a', 'b']) {
        const w = new WorkerAgent({ nodeId: `${t.name}-${id}`, redisUrl: t.url, backend: meshBackendFor(createSimulatorProvider(`sim-${id}`, { latency_ms: 5 })), config, health: new StaticHealthSource(host), log, maxConcurrency: 4, version: 'test', blockMs: 200 });
        started.add(w);
        await w.start();
      }
      const client = new MeshClient({ redisUrl: t.url, keyPrefix: prefix, log });
      started.add(client);
      await client.connect();

      const calls = await Promise.all(
        Array.from({ length: 8 }, (_, i) => client.submit({ model: 'simulator', messages: [{ role: 'user', content: `question ${i}` }], max_tokens: 8 }, { stream: i % 2 === 1, deadline: Date.now() + 20_000 })),
      );
      for (const [i, call] of calls.entries()) {
        const events = [];
        for await (const e of call) events.push(e);
        const finals = events.filter((e) => e.type !== 'chunk');
        expect(finals.map((e) => e.type)).toEqual([i % 2 === 1 ? 'done' : 'result']);
        if (i % 2 === 1) expect(events.filter((e) => e.type === 'chunk').length).toBeGreaterThan(0);
      }

      // On a cluster every mesh key carries the prefix as its hash tag (one slot per deployment).
      const keys = await scanKeys(t.connect(), `*${prefix}*`);
      expect(keys.length).toBeGreaterThan(0);
      if (t.name === 'redis-cluster') expect(keys.every((k) => k.startsWith(`{${prefix}}`))).toBe(true);
      else expect(keys.every((k) => k.startsWith(prefix))).toBe(true);
    }, 30_000);

    it('delivers one final answer to a callback stream an outside requester named', async () => {
      const redis = t.connect();
      const req = { ...chatRequest(prefix, 'simulator', 'from outside'), callback: `ifmesh-test:${run}:${t.name}:outside-callback` };
      const reader = new CallbackReader(redis, req.callback);
      await redis.xadd(meshKeys(prefix, t.name === 'redis-cluster').requests, '*', FIELD, encodeRequest(req));
      await waitFor('the answer', async () => (await reader.poll(), reader.finals().length >= 1), 15_000, 50);
      await new Promise((r) => setTimeout(r, 300));
      await reader.poll();
      expect(reader.finals()).toHaveLength(1);
      expect(reader.finals()[0]).toMatchObject({ id: req.id, type: 'result' });
    }, 30_000);

    it('stops the runs of cancelled requests (the done-keys of a node\'s runs read in one MGET)', async () => {
      const router = new MeshRouter({ routerId: `r-cancel-${t.name}`, redisUrl: t.url, config, log, blockMs: 200 });
      started.add(router);
      await router.start();
      const backend = new ScriptedAdapter();
      const w = new WorkerAgent({ nodeId: `${t.name}-scripted`, redisUrl: t.url, backend: meshBackendFor(backend), config, health: new StaticHealthSource(host), log, maxConcurrency: 4, version: 'test', blockMs: 200 });
      started.add(w);
      await w.start();
      const client = new MeshClient({ redisUrl: t.url, keyPrefix: prefix, log });
      started.add(client);
      await client.connect();
      const prompts = ['cancel me', 'cancel me too', 'and me'];
      const signals = prompts.map(() => new Cancellation());
      for (const p of prompts) backend.release(p);
      const calls = await Promise.all(prompts.map((p, i) => client.submit({ model: 'scripted', messages: [{ role: 'user', content: p }] }, { stream: true, deadline: Date.now() + 60_000, signal: signals[i] })));
      for (const call of calls) expect((await call[Symbol.asyncIterator]().next()).value).toMatchObject({ type: 'chunk' });
      const runs = await Promise.all(prompts.map((p) => backend.started(p)));
      for (const s of signals) s.abort();
      await Promise.all(runs.map((r) => r.aborted));
      await waitFor('the runs counted as cancelled', async () => w.stats.cancelled === prompts.length, 10_000, 20);
    }, 30_000);

    it("reads the backlog in one script: what waits on a node behind the requests it runs, and its capacity", async () => {
      // A mesh of its own: the other cases' workers serve the same model.
      const own = testMeshConfig(`${prefix}backlog:`);
      const router = new MeshRouter({ routerId: `r-backlog-${t.name}`, redisUrl: t.url, config: own, log, blockMs: 200 });
      started.add(router);
      await router.start();
      const backend = new ScriptedAdapter();
      const node = `${t.name}-one-at-a-time`;
      const w = new WorkerAgent({ nodeId: node, redisUrl: t.url, backend: meshBackendFor(backend), config: own, health: new StaticHealthSource(host), log, maxConcurrency: 1, version: 'test', blockMs: 200 });
      started.add(w);
      await w.start();
      const client = new MeshClient({ redisUrl: t.url, keyPrefix: own.key_prefix, log });
      started.add(client);
      await client.connect();
      const prompts = ['first in line', 'second in line', 'third in line'];
      for (const p of prompts) await client.submit({ model: 'scripted', messages: [{ role: 'user', content: p }] }, { stream: true, deadline: Date.now() + 60_000 });
      await backend.started('first in line');
      const backlog = await waitFor('two queued behind the running one', async () => {
        const b = await router.backlog();
        return b.totals.queued === 2 && b;
      }, 10_000, 50);
      expect(backlog).toEqual({ unplaced: 0, nodes: [{ node, queued: 2, in_flight: 1, capacity: 1 }], totals: { unplaced: 0, queued: 2, in_flight: 1, capacity: 1 } });
      for (const p of prompts) backend.finish(p);
    }, 30_000);
  });
}
