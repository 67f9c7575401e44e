// Dynamic batching gain on embeddings (seed 001 BATCH_MAX_SIZE / BATCH_FLUSH_TIMEOUT_MS): the same
// single-input embedding requests sent concurrently, once straight to the upstream and once through
// the micro-batcher. The upstream is the simulator behind a connection limit, with a fixed cost per
// call (a network round trip) plus a small cost per input — the shape of a hosted embeddings API.
// The local model's gain (several sequences of one llama.cpp context) is bench/local-batching.ts.
//
//   npx tsx bench/embedding-batching.ts [--requests 512] [--concurrency 64] [--call-ms 20] [--connections 8]
import os from 'node:os';
import { parseArgs } from 'node:util';
import type { EmbeddingRequest, EmbeddingResult } from '../src/canonical/embeddings.js';
import { EmbeddingBatchingProvider } from '../src/batching/embedding-batcher.js';
import { createSimulatorProvider } from '../src/providers/simulator.js';
import type { CallOptions, ProviderAdapter } from '../src/providers/types.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '512' },
    concurrency: { type: 'string', default: '64' },
    'call-ms': { type: 'string', default: '20' },
    'per-input-ms': { type: 'string', default: '0.2' },
    connections: { type: 'string', default: '8' },
    'max-size': { type: 'string', default: '32' },
    'flush-ms': { type: 'string', default: '20' },
  },
});
const REQUESTS = Number(values.requests);
const CONCURRENCY = Number(values.concurrency);
const CALL_MS = Number(values['call-ms']);
const PER_INPUT_MS = Number(values['per-input-ms']);
const CONNECTIONS = Number(values.connections);

/** The simulator behind `connections` slots, each call costing CALL_MS + PER_INPUT_MS per input. */
function limitedUpstream(): ProviderAdapter & { calls: number } {
  const sim = createSimulatorProvider('upstream', {});
  let free = CONNECTIONS;
  const waiting: (() => void)[] = [];
  const acquire = () => (free > 0 ? (free--, Promise.resolve()) : new Promise<void>((r) => waiting.push(r)));
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else free++;
  };
  const wrapped = Object.create(sim) as ProviderAdapter & { calls: number };
  wrapped.calls = 0;
  wrapped.embed = async (req: EmbeddingRequest, opts: CallOptions): Promise<EmbeddingResult> => {
    await acquire();
    try {
      wrapped.calls++;
      const n = Array.isArray(req.input) ? req.input.length : 1;
      await new Promise((r) => setTimeout(r, CALL_MS + PER_INPUT_MS * n));
      return await sim.embed(req, opts);
    } finally {
      release();
    }
  };
  return wrapped;
}

async function run(provider: ProviderAdapter): Promise<{ seconds: number; p50: number; p95: number }> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < REQUESTS) {
        const i = next++;
        const t = performance.now();
        await provider.embed({ model: 'text-embedding-3-small', input: `document ${i}: a few words to embed` }, { signal: new AbortController().signal, timeoutMs: 60_000, requestId: `b${i}` });
        latencies.push(performance.now() - t);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] as number;
  return { seconds: (performance.now() - started) / 1000, p50: at(0.5), p95: at(0.95) };
}

const direct = limitedUpstream();
const unbatched = await run(direct);
const upstream = limitedUpstream();
const batcher = new EmbeddingBatchingProvider(upstream, { maxSize: Number(values['max-size']), flushTimeoutMs: Number(values['flush-ms']), maxConcurrency: CONNECTIONS });
const batched = await run(batcher);

const row = (name: string, r: { seconds: number; p50: number; p95: number }, calls: number) =>
  `${name.padEnd(10)} ${(REQUESTS / r.seconds).toFixed(0).padStart(8)} req/s  p50 ${r.p50.toFixed(1).padStart(7)} ms  p95 ${r.p95.toFixed(1).padStart(7)} ms  upstream calls ${calls}`;
console.log(`embeddings: ${REQUESTS} single-input requests, ${CONCURRENCY} concurrent; upstream ${CONNECTIONS} connections, ${CALL_MS} ms a call + ${PER_INPUT_MS} ms an input`);
console.log(row('unbatched', unbatched, direct.calls));
console.log(row('batched', batched, upstream.calls));
console.log(`throughput gain x${(unbatched.seconds / batched.seconds).toFixed(2)} (BATCH_MAX_SIZE ${values['max-size']}, BATCH_FLUSH_TIMEOUT_MS ${values['flush-ms']})`);
console.log(JSON.stringify({ bench: 'embedding-batching', node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, unbatched, batched }));
