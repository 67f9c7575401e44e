// The mesh end to end with real processes and real inference: three llama.cpp workers on stories260K
// behind two routers; 200 requests; one worker SIGKILLed mid-run. Every request gets exactly one final
// answer. Then graceful stop, and a node whose backend is down: routable, answering with errors,
// recovering in place when its backend returns.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { meshKeys, WORKER_GROUP } from '../src/mesh/contracts.js';
import {
  attemptOf,
  CallbackReader,
  chatRequest,
  deleteKeys,
  nodes,
  publish,
  redisAvailable,
  REDIS_URL,
  spawnMesh,
  STORIES,
  timingFlags,
  uniquePrefix,
  waitFor,
  type MeshProcess,
} from './helpers/mesh.js';

const available = await redisAvailable();
const prefix = uniquePrefix();
const redis = new Redis(REDIS_URL);
const procs: MeshProcess[] = [];

function worker(nodeId: string, extra: string[]): MeshProcess {
  const p = spawnMesh(['worker', '--node-id', nodeId, ...extra, ...timingFlags(prefix)]);
  procs.push(p);
  return p;
}

afterAll(async () => {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

describe.skipIf(!available)('mesh cluster (real processes, llama.cpp on stories260K)', () => {
  const local = ['--backend', 'local', '--models-dir', STORIES, '--threads', '1', '--max-sequences', '2', '--context-size', '128'];
  let workers: Record<string, MeshProcess> = {};
  /** Set by the first test: the worker it SIGKILLed. */
  let killed: string | undefined;

  /** Entries a worker has read from its own stream and not acknowledged. */
  async function held(id: string): Promise<number> {
    // XPENDING's summary: [count, first id, last id, [[consumer, count], …]].
    const summary = (await redis.xpending(meshKeys(prefix).nodeRequests(id), WORKER_GROUP).catch(() => null)) as [number, string, string, [string, string][] | null] | null;
    return Number(summary?.[3]?.find(([consumer]) => consumer === id)?.[1] ?? 0);
  }

  /** The worker holding the most read-but-unacknowledged entries, if any holds one. */
  async function busiestWorker(ids: string[]): Promise<string | undefined> {
    let best: string | undefined;
    let most = 0;
    for (const id of ids) {
      const n = await held(id);
      if (n > most) [best, most] = [id, n];
    }
    return best;
  }

  beforeAll(async () => {
    workers = { w1: worker('w1', local), w2: worker('w2', local), w3: worker('w3', local) };
    for (const id of ['r1', 'r2']) procs.push(spawnMesh(['router', '--router-id', id, ...timingFlags(prefix)]));
    await waitFor('three workers in the registry', async () => {
      const n = await nodes(redis, prefix);
      return ['w1', 'w2', 'w3'].every((id) => n.get(id)?.models_installed.includes('stories260K'));
      // Generous: five processes compile the sources through tsx and load llama.cpp on 2 cores.
    }, 180_000);
  }, 210_000);

  it('answers all 200 requests exactly once when a worker is SIGKILLed mid-run', async () => {
    const reqs = Array.from({ length: 200 }, (_, i) => chatRequest(prefix, 'stories260K', `Once upon a time there was a cat number ${i}`));
    const reader = new CallbackReader(redis, reqs[0]!.callback);
    await publish(redis, prefix, reqs);

    // Kill a worker while it holds work (entries it read and has not acknowledged): which one that is
    // depends on the routers' health scores under this machine's load, so pick it at that moment.
    let killedAt = -1;
    await waitFor('200 answers', async () => {
      await reader.poll();
      const answered = new Set(reader.finals().map((e) => e.id)).size;
      if (killedAt < 0 && answered >= 40 && answered < 160) {
        const busiest = await busiestWorker(Object.keys(workers));
        if (busiest) {
          // Freeze it, then make sure it still holds work (it may have acknowledged everything since
          // the count): only then kill it; otherwise let it go on and look again.
          workers[busiest]!.child.kill('SIGSTOP');
          if ((await held(busiest)) > 0) {
            killedAt = answered;
            killed = busiest;
            workers[busiest]!.child.kill('SIGKILL');
          } else {
            workers[busiest]!.child.kill('SIGCONT');
          }
        }
      }
      return answered >= 200;
    }, 120_000, 50);
    // Give late duplicates (a reclaimed request finishing twice) time to show up, then count.
    await new Promise((r) => setTimeout(r, 2_500));
    await reader.poll();

    const finals = reader.finals();
    const perRequest = new Map<string, number>();
    for (const e of finals) perRequest.set(e.id, (perRequest.get(e.id) ?? 0) + 1);
    expect(killed).toBeDefined();
    expect(killedAt).toBeGreaterThanOrEqual(40);
    expect(killedAt).toBeLessThan(200);
    expect(perRequest.size).toBe(200);
    expect([...perRequest.values()].every((n) => n === 1)).toBe(true);
    expect(new Set(finals.map((e) => e.id))).toEqual(new Set(reqs.map((r) => r.id)));
    expect(finals.filter((e) => e.type !== 'result')).toEqual([]);
    for (const e of finals) if (e.type === 'result') expect(e.result.choices[0]!.message.content).toEqual(expect.any(String));
    // The dead node's work was reclaimed and run again elsewhere.
    const rerun = finals.filter((e) => attemptOf(e) >= 2);
    expect(rerun.length).toBeGreaterThan(0);
    expect(rerun.every((e) => e.node !== killed)).toBe(true);
    // Nothing is left pending on the requests stream or any node stream.
    const keys = meshKeys(prefix);
    await waitFor('empty streams', async () => (await redis.xlen(keys.requests)) === 0 && (await redis.xlen(keys.nodeRequests(killed!))) === 0, 10_000);
  }, 150_000);

  it('streams tokens through the callback stream, ending with one done event', async () => {
    const req = chatRequest(prefix, 'stories260K', 'Once upon a time', { stream: true, maxTokens: 12 });
    req.callback = `${prefix}stream-callback`;
    const reader = new CallbackReader(redis, req.callback);
    await publish(redis, prefix, [req]);
    await waitFor('done', async () => (await reader.poll(), reader.finals().length > 0), 30_000, 50);
    const chunks = reader.events.filter((e) => e.type === 'chunk');
    expect(chunks.length).toBeGreaterThan(2);
    expect(reader.finals()).toEqual([expect.objectContaining({ type: 'done', id: req.id, exec: chunks[0]!.exec })]);
    const text = chunks.map((e) => (e.type === 'chunk' ? (e.chunk.choices[0]?.delta.content ?? '') : '')).join('');
    expect(text.length).toBeGreaterThan(0);
    const usage = chunks.at(-1)!.type === 'chunk' ? (chunks.at(-1) as { chunk: { usage?: { completion_tokens: number } } }).chunk.usage : undefined;
    expect(usage?.completion_tokens).toBeGreaterThan(0);
  }, 60_000);

  it('SIGTERM drains a worker: it exits cleanly, leaves the registry, and the rest keep answering', async () => {
    // The two that survived the first test: one drains, the other keeps answering.
    expect(killed, 'the first test killed no worker').toBeDefined();
    const [drained, survivor] = Object.keys(workers).filter((id) => id !== killed) as [string, string];
    workers[drained]!.child.kill('SIGTERM');
    expect(await workers[drained]!.exited).toBe(0);
    const n = await nodes(redis, prefix);
    expect(n.has(drained)).toBe(false);
    expect(n.has(survivor)).toBe(true);

    const reqs = Array.from({ length: 5 }, (_, i) => chatRequest(prefix, 'stories260K', `After the stop ${i}`));
    const reader = new CallbackReader(redis, reqs[0]!.callback);
    await reader.poll(); // skip earlier events
    const before = reader.events.length;
    await publish(redis, prefix, reqs);
    await waitFor('5 answers', async () => (await reader.poll(), reader.events.length - before >= 5), 30_000, 50);
    const finals = reader.events.slice(before).filter((e) => e.type !== 'chunk');
    expect(finals.map((e) => e.node)).toEqual(Array(5).fill(survivor));
  }, 60_000);

  it('a node whose backend is down keeps heartbeating, answers with errors, and recovers in place', async () => {
    // A port with nothing listening (yet): the Ollama backend is unreachable.
    const probe = http.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    worker('ollama-node', ['--backend', 'ollama', '--base-url', `http://127.0.0.1:${port}`]);

    const down = await waitFor('the node registered', async () => (await nodes(redis, prefix)).get('ollama-node'), 60_000);
    expect(down).toMatchObject({ backend: 'ollama', backend_ok: false, models_installed: [], draining: false });

    // Work that reaches it (here: straight onto its stream) is answered with an error, not dropped.
    const direct = chatRequest(prefix, 'tiny', 'hello');
    direct.callback = `${prefix}down-callback`;
    const reader = new CallbackReader(redis, direct.callback);
    await publish(redis, prefix, [direct], meshKeys(prefix).nodeRequests('ollama-node'));
    await waitFor('an error answer', async () => (await reader.poll(), reader.finals().length > 0), 20_000, 50);
    expect(reader.finals()).toEqual([
      expect.objectContaining({ type: 'error', node: 'ollama-node', error: expect.objectContaining({ kind: 'connect' }) }),
    ]);

    // A request for its model through the router waits (no node has it) and fails at its deadline.
    const waiting = chatRequest(prefix, 'tiny', 'hello again', { deadlineMs: 1_500 });
    waiting.callback = direct.callback;
    await publish(redis, prefix, [waiting]);
    await waitFor('the deadline error', async () => (await reader.poll(), reader.finals().length > 1), 20_000, 50);
    expect(reader.finals()[1]).toMatchObject({ id: waiting.id, type: 'error', error: { kind: 'no_available_nodes' } });

    // The backend comes back on the same port: the node lists its model and serves it.
    const ollama = fakeOllama();
    await new Promise<void>((r) => ollama.listen(port, '127.0.0.1', r));
    try {
      await waitFor('the model listed', async () => (await nodes(redis, prefix)).get('ollama-node')?.models_installed.includes('tiny'), 20_000);
      const again = chatRequest(prefix, 'tiny', 'hello at last');
      again.callback = direct.callback;
      await publish(redis, prefix, [again]);
      await waitFor('an answer', async () => (await reader.poll(), reader.finals().length > 2), 20_000, 50);
      expect(reader.finals()[2]).toMatchObject({ id: again.id, type: 'result', node: 'ollama-node' });
      expect((reader.finals()[2] as { result: { choices: { message: { content: string } }[] } }).result.choices[0]!.message.content).toBe('hi from fake ollama');
    } finally {
      ollama.closeAllConnections();
      await new Promise((r) => ollama.close(r));
    }
  }, 90_000);
});

/** Just enough of Ollama's API: one installed model, nothing loaded, a fixed non-streamed answer. */
function fakeOllama(): http.Server {
  return http.createServer((req, res) => {
    const send = (body: unknown) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.url === '/api/tags') return send({ models: [{ name: 'tiny', model: 'tiny' }] });
    if (req.url === '/api/ps') return send({ models: [] });
    if (req.url === '/api/chat') {
      req.resume();
      return req.on('end', () =>
        send({ model: 'tiny', message: { role: 'assistant', content: 'hi from fake ollama' }, done: true, done_reason: 'stop', prompt_eval_count: 3, eval_count: 4 }),
      );
    }
    res.writeHead(404).end();
  });
}
