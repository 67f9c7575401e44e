// A request's life through the mesh as the gateway's `mesh` provider sees it, against real Redis with
// a router and a worker in this process and a backend the test drives (ScriptedAdapter): what the
// requester keeps track of (nothing, once a call is over, however it ended), and a cancelled request
// stopping on the node that runs it.
import { beforeAll, describe, expect, it } from 'vitest';
import { MeshClient } from '../src/mesh/client.js';
import type { WorkerAgent } from '../src/mesh/worker.js';
import { Cancellation } from '../src/providers/cancel.js';
import { MeshProvider } from '../src/providers/mesh.js';
import { meshTestScope, REDIS_URL, redisAvailable, ScriptedAdapter, startInProcessMesh, waitFor, within } from './helpers/mesh.js';

const available = await redisAvailable();
const scope = meshTestScope(5_000);
const { redis, config, prefix, log } = scope;
const chat = (content: string) => ({ model: 'scripted', messages: [{ role: 'user' as const, content }] });

describe.skipIf(!available)('mesh requests through the provider', () => {
  const backend = new ScriptedAdapter();
  let client: MeshClient;
  let provider: MeshProvider;
  let worker: WorkerAgent;

  beforeAll(async () => {
    ({ client, provider, worker } = await startInProcessMesh(scope, backend, { name: 'scripted', maxConcurrency: 8 }));
  });

  it('a stream that fails before its first token rejects, and the client keeps nothing of it', async () => {
    const signal = new Cancellation();
    const base = client.pending;
    await expect(provider.streamChat(chat('fail at once'), { signal, timeoutMs: 20_000, requestId: 'fails' })).rejects.toMatchObject({ kind: 'server' });
    expect(client.pending).toBe(base);
  });

  it('a call nobody reads is forgotten when it is given up at its deadline', async () => {
    // No node serves this model: nothing answers before the deadline (plus no grace, here).
    const base = client.pending;
    await client.submit({ model: 'nobody-serves-this', messages: [{ role: 'user', content: 'anyone?' }] }, { stream: true, deadline: Date.now() + 100 });
    expect(client.pending).toBe(base + 1);
    await waitFor('the call to be given up', async () => client.pending === base, 10_000, 20);
  });

  it('a call nobody reads is forgotten at once when it is aborted, and an aborted signal publishes nothing', async () => {
    const signal = new Cancellation();
    const base = client.pending;
    const call = await client.submit({ model: 'nobody-serves-this', messages: [{ role: 'user', content: 'never mind' }] }, { stream: true, deadline: Date.now() + 60_000, signal });
    expect(client.pending).toBe(base + 1);
    signal.abort();
    expect(client.pending).toBe(base);
    await waitFor('the request marked cancelled', async () => (await redis.get(client.keys.done(call.request.id))) === 'cancelled', 10_000, 20);

    const before = await redis.xlen(client.keys.requests);
    await client.submit(chat('too late'), { stream: true, deadline: Date.now() + 60_000, signal });
    expect(client.pending).toBe(base);
    expect(await redis.xlen(client.keys.requests)).toBe(before);
  });

  it('cancelling a streamed request stops the node that is running it', async () => {
    const signal = new Cancellation();
    backend.release('a long story');
    const stream = await provider.streamChat(chat('a long story'), { signal, timeoutMs: 20_000, requestId: 'cancelled' });
    const it = stream[Symbol.asyncIterator]();
    expect((await it.next()).value).toMatchObject({ choices: [{ delta: { content: 't0 ' } }] });
    const run = await within('the node to start the run', backend.started('a long story'));
    const cancelledBefore = worker.stats.cancelled;
    signal.abort(new Error('client went away'));
    // The node sees the done-key on its next heartbeat (every 200 ms here) and aborts the backend call.
    await within('the node to abort the run', run.aborted);
    await waitFor('the run counted as cancelled', async () => worker.stats.cancelled === cancelledBefore + 1, 10_000, 20);
    await it.return?.(undefined);
  });

  it('a stream whose reader stops early, without aborting, is given up and stopped on the node', async () => {
    const base = client.pending;
    const signal = new Cancellation();
    backend.release('read no further');
    const stream = await provider.streamChat(chat('read no further'), { signal, timeoutMs: 20_000, requestId: 'early-stop' });
    const it = stream[Symbol.asyncIterator]();
    expect((await it.next()).value).toMatchObject({ choices: [{ delta: { content: 't0 ' } }] });
    const run = await within('the node to start the run', backend.started('read no further'));
    // What the gateway does when it ends a stream itself (stream_interrupted) or its reader is gone.
    await it.return?.(undefined);
    expect(client.pending).toBe(base);
    await within('the node to abort the run', run.aborted);
    expect(signal.aborted).toBe(false);
  });

  it('closing the client stops the nodes running its requests', async () => {
    const other = new MeshClient({ redisUrl: REDIS_URL, keyPrefix: prefix, log });
    await other.connect();
    backend.release('left behind');
    const call = await other.submit(chat('left behind'), { stream: true, deadline: Date.now() + 60_000 });
    const events = call[Symbol.asyncIterator]();
    expect((await within('the first chunk', events.next())).value).toMatchObject({ type: 'chunk' });
    const run = await within('the node to start the run', backend.started('left behind'));
    await other.close();
    expect(await redis.get(client.keys.done(call.request.id))).toBe('cancelled');
    await within('the node to abort the run', run.aborted);
  });

  it("a stream outlives the attempt's timeout, which only bounds the wait for its first token", async () => {
    const long = new MeshProvider('mesh', client, { ...config, stream_deadline_ms: 60_000 });
    const signal = new Cancellation();
    backend.release('a stream longer than its timeout');
    const stream = await long.streamChat(chat('a stream longer than its timeout'), { signal, timeoutMs: 300, requestId: 'long' });
    const run = await within('the node to start the run', backend.started('a stream longer than its timeout'));
    // The node got the whole stream deadline, not the 300 ms to the first token.
    expect(run.opts.timeoutMs).toBeGreaterThan(30_000);
    const texts: string[] = [];
    const reading = (async () => {
      for await (const chunk of stream) texts.push(chunk.choices[0]?.delta.content ?? '');
    })();
    // Well past the 300 ms (when the node used to abort the run), more tokens, then the end.
    await new Promise((r) => setTimeout(r, 1_000));
    backend.release('a stream longer than its timeout', 2);
    backend.finish('a stream longer than its timeout');
    await within('the stream to end', reading);
    expect(texts).toEqual(['t0 ', 't1 ', 't2 ']);
  });

  it('a stream whose first token does not come within timeoutMs is given up, and stopped on the node', async () => {
    const base = client.pending;
    const signal = new Cancellation();
    const attempt = provider.streamChat(chat('a slow start'), { signal, timeoutMs: 300, requestId: 'slow-start' });
    const run = await within('the node to start the run', backend.started('a slow start'));
    await expect(attempt).rejects.toMatchObject({ kind: 'timeout', message: expect.stringContaining('no first token within 300 ms') });
    expect(client.pending).toBe(base);
    await within('the node to abort the run', run.aborted);
  });
});
