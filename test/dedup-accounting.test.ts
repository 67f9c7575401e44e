// Deduplicated streams (identical temperature-0 requests of one tenant share one upstream call) are
// billed to each client as if it had been called alone — also a client that leaves mid-stream, which
// is charged what it was sent (estimated, as without dedup), not nothing.
import { Writable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { createLogger } from '../src/telemetry/logger.js';
import { startTestGateway } from './helpers/gateway.js';

const lines: Record<string, unknown>[] = [];
const sink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
    cb();
  },
});
let gw: RunningServer;

beforeAll(async () => {
  gw = await startTestGateway({
    logger: createLogger('info', sink),
    config: {
      // About 40 tokens a second: a stream runs long enough to leave it halfway.
      providers: { slow: { type: 'simulator', options: { tokens_per_second: 40, answer_words: 60 } } },
      models: [{ name: 'slow', deployments: [{ provider: 'slow', model: 'slow', price: { input: 1000, output: 1000 } }] }],
    },
  });
});
afterAll(() => gw?.close());

function open(id: string, signal?: AbortSignal) {
  return request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': id },
    body: JSON.stringify({ model: 'slow', stream: true, temperature: 0, messages: [{ role: 'user', content: 'Tell me a story.' }] }),
    ...(signal ? { signal } : {}),
  });
}

const requestLine = (id: string) => lines.find((l) => l.msg === 'request' && l.reqId === id);

for (const leaving of ['joiner', 'leader'] as const) {
  it(`charges a ${leaving} that leaves a shared stream halfway for what it was sent`, async () => {
    const ids = { leader: `${leaving}-leader`, joiner: `${leaving}-joiner` };
    const controller = new AbortController();
    const leader = await open(ids.leader, leaving === 'leader' ? controller.signal : undefined);
    const joiner = await open(ids.joiner, leaving === 'joiner' ? controller.signal : undefined);
    expect(joiner.headers['x-inferenceflow-route']).toContain('dedup=joined');
    const [gone, stays] = leaving === 'leader' ? [leader, joiner] : [joiner, leader];
    const it = gone.body[Symbol.asyncIterator]();
    for (let i = 0; i < 5; i++) await it.next();
    controller.abort();
    await stays.body.text();
    await expect.poll(() => requestLine(ids[leaving]), { timeout: 5000 }).toMatchObject({ status: 499 });
    const line = requestLine(ids[leaving]) as { costUsd: number; tokens?: { output: number } };
    expect(line.tokens?.output).toBeGreaterThan(0);
    expect(line.costUsd).toBeGreaterThan(0);
  });
}
