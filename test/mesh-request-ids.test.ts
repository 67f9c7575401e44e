// Mesh request ids do not come from the client: a client may send the same x-request-id with two
// requests at once, or again later, and each request must still get its own answer (and never
// another's, which may be another tenant's). Real Redis, a router and a worker whose backend (the simulator)
// quotes the prompt. The gateway's random-id helper is pinned here, so that a mesh id built from the
// x-request-id plus a nonce from it (as one was) collides every time rather than once in 2^32.
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { Cancellation } from '../src/providers/cancel.js';
import type { MeshProvider } from '../src/providers/mesh.js';
import { createSimulatorProvider } from '../src/providers/simulator.js';
import { meshTestScope, redisAvailable, startInProcessMesh } from './helpers/mesh.js';

vi.mock('../src/gateway/ids.js', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../src/gateway/ids.js')>()),
  randomHex: (bytes: number) => '00'.repeat(bytes),
}));

const available = await redisAvailable();
const scope = meshTestScope();
const chat = (content: string) => ({ model: 'simulator', messages: [{ role: 'user' as const, content }] });

describe.skipIf(!available)('mesh request ids', () => {
  let provider: MeshProvider;

  beforeAll(async () => {
    ({ provider } = await startInProcessMesh(scope, createSimulatorProvider('sim-ids', {}), { name: 'ids', maxConcurrency: 4 }));
  });

  const ask = (content: string, requestId: string) => provider.chat(chat(content), { signal: new Cancellation(), timeoutMs: 5_000, requestId });

  it('two requests in flight with one x-request-id each get their own answer', async () => {
    const [a, b] = await Promise.all([ask('question a', 'same-id'), ask('question b', 'same-id')]);
    // The simulator quotes the prompt it answers.
    expect(a.choices[0]?.message.content).toContain('"question a"');
    expect(b.choices[0]?.message.content).toContain('"question b"');
  });

  it('a request that reuses an earlier x-request-id is answered', async () => {
    expect((await ask('first', 'reused-id')).choices[0]?.message.content).toContain('"first"');
    expect((await ask('again', 'reused-id')).choices[0]?.message.content).toContain('"again"');
  });
});
