// The gateway's mesh provider while Redis is unreachable: a call must not wait for Redis past its
// attempt's timeout or its client's abort (as every other provider fails on a dead upstream), but fail
// with a retryable `connect` error so the router can try another deployment. Redis sits behind a TCP
// proxy the test cuts.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { MeshClient } from '../src/mesh/client.js';
import { Cancellation } from '../src/providers/cancel.js';
import { MeshProvider } from '../src/providers/mesh.js';
import { meshTestScope, REDIS_URL, redisAvailable, within } from './helpers/mesh.js';

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
