// The mesh provider's snapshots: one registry read serves every reader for a heartbeat interval (the
// metrics collectors and the GPU pool poll the same provider), and a failed read is not kept.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { MeshClient } from '../mesh/client.js';
import { defaultMeshConfig } from '../mesh/config.js';
import { MeshProvider } from './mesh.js';
import { nodeHealth } from '../../test/helpers/mesh.js';

/** A Redis with one node in its registry, counting registry reads (HGETALL) and clock reads (EVAL of TIME). */
function fakeRedis() {
  const calls = { hgetall: 0, eval: 0 };
  let fail = false;
  const redis = {
    async hgetall() {
      calls.hgetall++;
      if (fail) throw new Error('connection lost');
      return { pi: JSON.stringify(nodeHealth('pi')) };
    },
    async eval() {
      calls.eval++;
      const now = Date.now();
      return [Math.floor(now / 1000), (now % 1000) * 1000];
    },
  };
  return { redis, calls, failing: (v: boolean) => (fail = v) };
}

describe('MeshProvider.snapshot', () => {
  afterEach(() => vi.useRealTimers());

  it('reuses a snapshot younger than the heartbeat interval, shares one in flight, and does not keep a failed one', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { redis, calls, failing } = fakeRedis();
    const mesh = defaultMeshConfig();
    const provider = new MeshProvider('mesh', { redis } as unknown as MeshClient, mesh);

    const [a, b] = await Promise.all([provider.snapshot(), provider.snapshot()]);
    expect(a).toBe(b);
    expect(a.counts.routable).toBe(1);
    expect(await provider.ready()).toBe(true);
    expect(await provider.listModels()).toEqual(['m']);
    expect(calls).toEqual({ hgetall: 1, eval: 1 });

    vi.advanceTimersByTime(mesh.heartbeat_interval_ms);
    expect(await provider.snapshot()).not.toBe(a);
    expect(calls).toEqual({ hgetall: 2, eval: 1 }); // the clock is re-synced every 30 s, not per read

    vi.advanceTimersByTime(mesh.heartbeat_interval_ms);
    failing(true);
    await expect(provider.snapshot()).rejects.toThrow('connection lost');
    failing(false);
    expect((await provider.snapshot()).counts.routable).toBe(1);
    expect(calls.hgetall).toBe(4);
  });
});

describe("MeshProvider: a node's failure keeps its kind", () => {
  /** A client whose every call yields one error event, as a node that failed reports it. */
  function failingClient(error: { kind: string; message: string; status?: number }) {
    return {
      async submit() {
        const call = {
          request: { id: 'r1' },
          async *[Symbol.asyncIterator]() {
            yield { type: 'error', id: 'r1', exec: 'e1', node: 'pi', error };
          },
        };
        return call;
      },
      abandon() {},
    } as unknown as MeshClient;
  }

  it.each([
    ['quota', 429, false],
    ['rate_limited', 429, true],
    ['context_length', 400, false],
    ['server', 500, true],
  ])('%s stays %s (retryable: %s)', async (kind, status, retryable) => {
    const provider = new MeshProvider('mesh', failingClient({ kind, message: 'upstream said no', status }), defaultMeshConfig());
    const err = await provider.streamChat({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }, { timeoutMs: 1_000, signal: new AbortController().signal, requestId: 'r1' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind, retryable });
  });

  it('an unknown kind is a server error', async () => {
    const provider = new MeshProvider('mesh', failingClient({ kind: 'gremlins', message: '?' }), defaultMeshConfig());
    const err = await provider.streamChat({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }, { timeoutMs: 1_000, signal: new AbortController().signal, requestId: 'r1' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'server' });
  });
});
