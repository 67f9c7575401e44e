// Added latency of the mesh path (client -> ingress stream -> router -> node stream -> worker ->
// callback stream) against calling the same backend directly: non-streaming total time and time to
// first token. One llama.cpp backend on stories260K (threads 1), real Redis, worker and router in
// this process. Short by design: `npx tsx bench/mesh-latency.ts [requests]` (default 100 each way).
// The two paths share one llama.cpp sequence, which keeps the last prompt it evaluated: each request
// has a prompt of its own (neither path can reuse the other's evaluated prompt), and the order of the
// two calls alternates from one pair to the next (neither path always runs second).
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import type { ChatChunk, ChatRequest } from '../src/canonical/chat.js';
import { meshBackendFor } from '../src/mesh/backend.js';
import { MeshClient } from '../src/mesh/client.js';
import { meshConfigSchema } from '../src/mesh/config.js';
import { StaticHealthSource } from '../src/mesh/health.js';
import { MeshRouter } from '../src/mesh/router.js';
import { WorkerAgent } from '../src/mesh/worker.js';
import { createLocalProvider } from '../src/providers/local.js';
import { createLogger } from '../src/telemetry/logger.js';

const N = Number(process.argv[2] ?? 100);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** `<clone>/../shared/models/stories260K`, or one or two levels further up from a git worktree. */
const modelsDir = [1, 2, 3]
  .map((up) => path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', ...new Array<string>(up).fill('..'), 'shared/models/stories260K'))
  .find((dir) => existsSync(path.join(dir, 'stories260K.gguf')));
if (!modelsDir) throw new Error('stories260K.gguf not found under ../shared/models');
const prefix = `ifmesh-bench:${randomBytes(4).toString('hex')}:`;
const log = createLogger('silent');
const config = meshConfigSchema.parse({ key_prefix: prefix, heartbeat_interval_ms: 500 });

const backend = await createLocalProvider('bench-local', { type: 'local', options: { models_dir: modelsDir, threads: 1, max_sequences: 1, context_size: 128 } });
const worker = new WorkerAgent({
  nodeId: 'bench-node',
  redisUrl: REDIS_URL,
  backend: meshBackendFor(backend),
  config,
  health: new StaticHealthSource({ cpu_temp_c: null, ram_used_pct: 10, ram_total_bytes: 8e9, load1: 0, gpus: [] }),
  log,
  maxConcurrency: 1,
  version: 'bench',
});
const router = new MeshRouter({ routerId: 'bench', redisUrl: REDIS_URL, config, log });
const client = new MeshClient({ redisUrl: REDIS_URL, keyPrefix: prefix });
await Promise.all([worker.start(), router.start(), client.connect()]);

const req = (i: number): ChatRequest => ({ model: 'stories260K', messages: [{ role: 'user', content: `Once upon a time ${i}` }], max_tokens: 16, temperature: 0 });
const opts = () => ({ signal: new AbortController().signal, timeoutMs: 30_000, requestId: 'bench' });
const hasText = (c: ChatChunk) => c.choices.some((ch) => ch.delta.content);

async function direct(i: number, stream: boolean): Promise<number> {
  const t0 = performance.now();
  if (!stream) {
    await backend.chat(req(i), opts());
    return performance.now() - t0;
  }
  let first = 0;
  for await (const c of await backend.streamChat({ ...req(i), stream: true }, opts())) if (!first && hasText(c)) first = performance.now() - t0;
  return first;
}

async function viaMesh(i: number, stream: boolean): Promise<number> {
  const t0 = performance.now();
  const call = await client.submit(req(i), { stream, deadline: Date.now() + 30_000 });
  let first = 0;
  for await (const e of call) {
    if (e.type === 'error') throw new Error(e.error.message);
    if (stream && !first && e.type === 'chunk' && hasText(e.chunk)) first = performance.now() - t0;
    if (!stream && e.type === 'result') first = performance.now() - t0;
  }
  return first;
}

const p = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
const results: Record<string, unknown> = {};
// Load the model on both paths before measuring (the first call is a cold load).
await direct(0, false);
await viaMesh(0, false);
let prompt = 1;
for (const stream of [false, true]) {
  const d: number[] = [];
  const m: number[] = [];
  for (let i = 1; i <= N; i++) {
    if (i % 2) {
      d.push(await direct(prompt++, stream));
      m.push(await viaMesh(prompt++, stream));
    } else {
      m.push(await viaMesh(prompt++, stream));
      d.push(await direct(prompt++, stream));
    }
  }
  const name = stream ? 'ttft' : 'non_stream';
  results[name] = {
    direct_p50_ms: +p(d, 0.5).toFixed(2),
    mesh_p50_ms: +p(m, 0.5).toFixed(2),
    added_p50_ms: +(p(m, 0.5) - p(d, 0.5)).toFixed(2),
    // Median of each pair's difference (the two calls of a pair run back to back).
    added_paired_p50_ms: +p(m.map((x, k) => x - d[k]!), 0.5).toFixed(2),
    direct_p90_ms: +p(d, 0.9).toFixed(2),
    mesh_p90_ms: +p(m, 0.9).toFixed(2),
  };
}
console.log(JSON.stringify({ benchmark: 'mesh-latency', requests_each: N, ...results, machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, load ${os.loadavg()[0]!.toFixed(1)}` }, null, 2));

await client.close();
await router.stop();
await worker.stop();
await backend.close();
const redis = new Redis(REDIS_URL);
let cursor = '0';
do {
  const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
  cursor = next;
  if (keys.length) await redis.del(...keys);
} while (cursor !== '0');
redis.disconnect();
