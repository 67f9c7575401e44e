// The gateway's mesh provider while Redis is unreachable: a call must not wait for Redis past its
// attempt's timeout or its client's abort (as every other provider fails on a dead upstream), but fail
// with a retryable `connect` error so the router can try another deployment. Redis sits behind a TCP
// proxy the test cuts.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { MeshClient } from '../src/mesh/client.js';
import { StaticHealthSource } from '../src/mesh/health.js';
import { MeshRouter } from '../src/mesh/router.js';
import { WorkerAgent } from '../src/mesh/worker.js';
import { meshBackendFor } from '../src/mesh/backend.js';
import { Cancellation } from '../src/providers/cancel.js';
import { MeshProvider } from '../src/providers/mesh.js';
import { createSimulatorProvider } from '../src/providers/simulator.js';
import { meshKeys } from '../src/mesh/contracts.js';
import { chatRequest, meshTestScope, nodeHealth, nodes, publish, REDIS_URL, redisAvailable, TEST_HOST, within } from './helpers/mesh.js';
import { HealthRegistry } from '../src/mesh/registry.js';

const available = await redisAvailable();
const { prefix, config, started, log } = meshTestScope();
const chat = (content: string) => ({ model: 'm', messages: [{ role: 'user' as const, content }] });

/** A TCP proxy to the test Redis; `cut()` closes it and every connection through it. */
async function redisProxy(): Promise<{ url: string; cut: () => Promise<void> }> {
  const target = new URL(REDIS_URL);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect(Number(target.port || 6379), target.hostname);
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    down.pipe(up).pipe(down);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}`,
    cut: async () => {
      const closed = new Promise((resolve) => server.close(resolve));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

describe.skipIf(!available)('the mesh provider while Redis is down', () => {
  let client: MeshClient;
  let provider: MeshProvider;

  beforeAll(async () => {
    const proxy = await redisProxy();
    client = started.add(new MeshClient({ redisUrl: proxy.url, keyPrefix: prefix, log }));
    await client.connect();
    provider = new MeshProvider('mesh', client, config);
    await proxy.cut();
  });

  it("fails with a retryable connect error at the attempt's timeout, and keeps nothing of the call", async () => {
    const base = client.pending;
    const signal = new Cancellation();
    const call = provider.chat(chat('while redis is down'), { signal, timeoutMs: 300, requestId: 'outage-timeout' });
    // Well before the queued command's own retries would give up (the reconnect backoff reaches 2 s).
    await expect(within('the call to fail', call, 1_500)).rejects.toMatchObject({ kind: 'connect', retryable: true });
    expect(client.pending).toBe(base);
  });

  it('a stream fails the same way when its first token cannot come within its timeout', async () => {
    const signal = new Cancellation();
    const call = provider.streamChat(chat('a stream while redis is down'), { signal, timeoutMs: 300, requestId: 'outage-stream' });
    await expect(within('the stream to fail', call, 1_500)).rejects.toMatchObject({ kind: 'connect', retryable: true });
  });

  it('fails when its client goes away before the timeout', async () => {
    const base = client.pending;
    const signal = new Cancellation();
    const call = provider.chat(chat('nobody waits for this'), { signal, timeoutMs: 600_000, requestId: 'outage-abort' });
    setTimeout(() => signal.abort(new Error('client went away')), 100);
    await expect(within('the call to fail', call, 1_500)).rejects.toMatchObject({ kind: 'connect' });
    expect(client.pending).toBe(base);
  });
});

/**
 * A TCP proxy to the test Redis whose connections can go silent one by one: `freeze(i)` stops the
 * i-th connection forwarding anything either way (a host gone without a FIN or RST), while new
 * connections work.
 */
async function freezingProxy(): Promise<{ url: string; freeze: (i: number) => void; close: () => Promise<void> }> {
  const target = new URL(REDIS_URL);
  const links: Array<{ frozen: boolean; sockets: net.Socket[] }> = [];
  const server = net.createServer((down) => {
    const up = net.connect(Number(target.port || 6379), target.hostname);
    const link = { frozen: false, sockets: [down, up] };
    links.push(link);
    for (const s of link.sockets) s.on('error', () => undefined);
    down.on('data', (d: Buffer) => void (link.frozen || up.write(d)));
    up.on('data', (d: Buffer) => void (link.frozen || down.write(d)));
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `redis://127.0.0.1:${(server.address() as AddressInfo).port}`,
    freeze: (i) => void ((links[i] as (typeof links)[number]).frozen = true),
    close: async () => {
      const closed = new Promise((resolve) => server.close(resolve));
      for (const l of links) for (const s of l.sockets) s.destroy();
      await closed;
    },
  };
}

describe.skipIf(!available)('a mesh worker whose Redis connection goes silent', () => {
  const scope = meshTestScope();

  it('gives the silent reading connection up and reads its requests again, instead of heartbeating while nothing reads them', async () => {
    const { config, started, log, prefix, redis } = scope;
    const proxy = await freezingProxy();
    try {
      await started.add(new MeshRouter({ routerId: 'silent-r', redisUrl: REDIS_URL, config, log, blockMs: 200 })).start();
      const worker = new WorkerAgent({ nodeId: 'silent-w', redisUrl: proxy.url, backend: meshBackendFor(createSimulatorProvider('sim', { latency_ms: 1 })), config, health: new StaticHealthSource(TEST_HOST), log, maxConcurrency: 4, version: 'test', blockMs: 200 });
      await worker.start(); // connection 0: its commands; connection 1: its blocking reader
      const model = (await nodes(redis, prefix)).get('silent-w')?.models_installed[0] as string;
      const client = started.add(new MeshClient({ redisUrl: REDIS_URL, keyPrefix: prefix, log, deadlineGraceMs: 0 }));
      await client.connect();
      const provider = new MeshProvider('mesh', client, config);
      const ask = (content: string) => provider.chat({ model, messages: [{ role: 'user', content }] }, { signal: new Cancellation(), timeoutMs: 15_000, requestId: content });
      expect((await ask('before')).choices).toHaveLength(1);
      // The reader's host goes silent mid-read; the node's heartbeats (the other connection) go on.
      proxy.freeze(1);
      const answer = await within('an answer after the reader went silent', ask('after'), 20_000);
      expect(answer.choices).toHaveLength(1);
      await worker.stop();
    } finally {
      await proxy.close();
    }
  }, 40_000);
});

describe.skipIf(!available)('a router that has just (re)connected to Redis', () => {
  const scope = meshTestScope();

  it('does not take a running request from its node on idle time that spans its own time without Redis, and does once connected that long', async () => {
    const { redis, config, log, prefix } = scope;
    const keys = meshKeys(prefix);
    const stream = keys.nodeRequests('busy');
    // A node alive and running one request, whose entry Redis has seen idle for longer than
    // idle_reclaim_ms: its refreshes could not reach Redis while it was away.
    await new HealthRegistry(redis, prefix).publish(nodeHealth('busy', { models_installed: ['m'] }));
    await redis.xgroup('CREATE', stream, 'workers', '0', 'MKSTREAM');
    await redis.sadd(keys.nodeStreams, 'busy');
    await publish(redis, prefix, [chatRequest(prefix, 'm', 'a long generation')], stream);
    const read = (await redis.xreadgroup('GROUP', 'workers', 'busy', 'COUNT', 1, 'STREAMS', stream, '>')) as [string, [string, string[]][]][];
    const entry = read[0]![1][0]![0];
    await new Promise((r) => setTimeout(r, config.idle_reclaim_ms + 200));
    /** Whether the node still holds its entry (a router that takes it re-places and retires it). */
    const held = async () => ((await redis.xpending(stream, 'workers', '-', '+', 10)) as Array<[string, string]>).some(([id, who]) => id === entry && who === 'busy');

    let clock = Date.now();
    const router = scope.started.add(new MeshRouter({ routerId: 'reconnected', redisUrl: REDIS_URL, config, log, blockMs: 200, now: () => clock }));
    await router.start();
    await router.reclaim();
    expect(await held()).toBe(true);
    // Reconnected later: the clock starts again.
    clock += config.idle_reclaim_ms + 100;
    (router as unknown as { commands: { disconnect(reconnect: boolean): void } }).commands.disconnect(true);
    await new Promise((r) => setTimeout(r, 300));
    await router.reclaim();
    expect(await held()).toBe(true);
    // Connected for idle_reclaim_ms and the entry still idle: the node really holds it too long.
    clock += config.idle_reclaim_ms + 100;
    await router.reclaim();
    expect(await held()).toBe(false);
  }, 30_000);
});
