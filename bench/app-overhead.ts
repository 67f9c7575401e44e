// What the gateway's own code costs per request, measured inside one process: the built gateway
// (dist/, as `serve` assembles it, cache and ledger off as in gateway-overhead) answering chat
// completions through Fastify's inject, with a provider that returns a fixed answer at once, against
// a bare Fastify route that does the parsing floor's work (bench/lib/parsing-floor.ts). No sockets,
// no other process: on a shared two-core VM the cross-process CPU figures of gateway-overhead drift
// ±15% between runs, so a change to the hot path is easier to judge here first. Inject itself costs
// tens of µs per request and is in both numbers; the difference is the gateway's code.
// Usage: npm run build && tsx bench/app-overhead.ts [--requests 20000] [--rounds 5] [--alloc]
// --alloc also samples allocations over min(--requests, 5,000) more requests (V8's sampling heap profiler, collected objects
// included) and prints bytes allocated per request by the innermost gateway frame.
import { createWriteStream, existsSync } from 'node:fs';
import { Session } from 'node:inspector';
import type { ChatResult } from '../src/canonical/chat.js';
import Fastify, { type FastifyInstance } from 'fastify';
import { numberFlag } from './lib/args.js';
import { floorAnswer, floorHeaders, floorRequest, type Answer } from './lib/parsing-floor.js';
import { ROOT } from './lib/processes.js';
import { median } from './lib/rounds.js';

const args = process.argv.slice(2);
const arg = (name: string, def: number) => numberFlag(args, name, def);
const REQUESTS = arg('requests', 20_000);
const ROUNDS = Math.max(1, arg('rounds', 5));
const CONCURRENCY = 8;

const payload = JSON.stringify({ model: 'bench', messages: [{ role: 'user', content: 'Say something short.' }], max_tokens: 32 });
/** The upstream's answer as both the gateway's provider stand-in and the floor route parse it. */
const answerText = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion' as const,
  created: 1700000000,
  model: 'bench-model',
  choices: [{ index: 0, message: { role: 'assistant' as const, content: 'The quick brown fox jumps over the lazy dog.' }, finish_reason: 'stop' as const, logprobs: null }],
  usage: { prompt_tokens: 12, completion_tokens: 10, total_tokens: 22 },
});

async function gatewayApp(): Promise<{ app: FastifyInstance; close(): Promise<void> }> {
  if (!existsSync(`${ROOT}/dist/cli/serve.js`)) throw new Error('run `npm run build` first: this measures the built gateway');
  const { buildConfig } = (await import(`${ROOT}/dist/config/load.js`)) as typeof import('../src/config/load.js');
  const { startServer } = (await import(`${ROOT}/dist/cli/serve.js`)) as typeof import('../src/cli/serve.js');
  const { createLogger } = (await import(`${ROOT}/dist/telemetry/logger.js`)) as typeof import('../src/telemetry/logger.js');
  // The provider does the JSON work an adapter does on the wire — write the upstream body, parse the
  // answer — as the floor route does, so the difference between the two is the gateway's own code.
  let written = 0;
  const provider = {
    name: 'upstream',
    type: 'openai' as const,
    chat: async (req: unknown) => {
      written += JSON.stringify(req).length;
      return JSON.parse(answerText) as ChatResult;
    },
    streamChat: async () => Promise.reject(new Error('not used')),
    embed: async () => Promise.reject(new Error('not used')),
    ready: async () => true,
    close: async () => undefined,
  };
  const loaded = buildConfig(
    {
      providers: { upstream: { type: 'openai', base_url: 'http://127.0.0.1:9/v1', api_key: 'bench' } },
      models: [{ name: 'bench', deployments: [{ provider: 'upstream', model: 'bench-model' }] }],
      cache: { enabled: false },
      ledger: { enabled: false },
      batch_jobs: { enabled: false },
    },
    {},
  );
  // Access lines are written (to /dev/null), as a serving gateway writes them.
  const srv = await startServer({ loaded, host: '127.0.0.1', port: 0, logger: createLogger('info', createWriteStream('/dev/null')), providers: new Map([['upstream', provider]]) });
  return { app: srv.app, close: async () => void (await srv.close(), written) };
}

/**
 * The parsing floor's work (bench/lib/parsing-floor.ts) as a Fastify route, the upstream call left
 * out as it is from the gateway here: check the body, write the upstream body, parse an answer of the
 * upstream's size, write the client's answer with the gateway's five headers.
 */
async function bareApp(): Promise<{ app: FastifyInstance; close(): Promise<void> }> {
  const app = Fastify({ logger: false });
  let sink = 0;
  app.post('/v1/chat/completions', async (request, reply) => {
    const started = performance.now();
    const req = floorRequest(request.body);
    if (!req) return reply.code(400).send({ error: { message: 'model and messages are required' } });
    sink += req.upstream.length;
    const text = floorAnswer(req.model, JSON.parse(answerText) as Answer);
    return reply.headers(floorHeaders(started)).type('application/json').send(text);
  });
  await app.ready();
  return { app, close: async () => void (await app.close(), sink) };
}

async function drive(app: FastifyInstance, n: number): Promise<number> {
  let next = 0;
  let failed = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < n) {
        const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, payload });
        if (res.statusCode !== 200) failed++;
      }
    }),
  );
  if (failed) throw new Error(`${failed} of ${n} requests failed`);
  return ((performance.now() - t0) * 1000) / n;
}

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

/** Bytes allocated per request over `n` requests, by the innermost gateway (dist/) frame on the stack. */
async function allocations(app: FastifyInstance, n: number): Promise<void> {
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object) => new Promise<unknown>((ok, fail) => session.post(method, params ?? {}, (err, res) => (err ? fail(err) : ok(res))));
  await post('HeapProfiler.enable');
  await post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  await drive(app, n);
  const { profile } = (await post('HeapProfiler.stopSampling')) as { profile: { head: HeapNode } };
  session.disconnect();
  const byOwner = new Map<string, number>();
  let total = 0;
  const short = (u: string) => u.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/dist\//, 'dist/');
  const walk = (node: HeapNode, owner: string) => {
    const f = node.callFrame;
    const here = f.url.includes('/dist/') ? `${f.functionName || '(anonymous)'} ${short(f.url)}:${f.lineNumber + 1}` : owner;
    if (node.selfSize) {
      total += node.selfSize;
      byOwner.set(here, (byOwner.get(here) ?? 0) + node.selfSize);
    }
    for (const c of node.children) walk(c, here);
  };
  walk(profile.head, '(outside the gateway: Node, Fastify, inject)');
  console.log(`\nallocated per request (sampled): ${(total / n / 1024).toFixed(1)} KiB; by the innermost gateway frame:`);
  for (const [k, v] of [...byOwner].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`  ${(v / n).toFixed(0).padStart(6)} B  ${k}`);
}

async function main() {
  const gateway = await gatewayApp();
  const bare = await bareApp();
  try {
    // Warm-up: the JIT sees both paths before anything is timed.
    await drive(gateway.app, REQUESTS);
    await drive(bare.app, REQUESTS);
    const g: number[] = [];
    const b: number[] = [];
    // Alternating rounds, so a slow phase of the machine falls on both.
    for (let r = 0; r < ROUNDS; r++) {
      b.push(await drive(bare.app, REQUESTS));
      g.push(await drive(gateway.app, REQUESTS));
    }
    console.log(`in-process, ${REQUESTS} requests per round, ${CONCURRENCY} in flight, ${ROUNDS} alternating rounds (µs per request, inject included):`);
    console.log(`  the parsing floor's work in a Fastify route: median ${median(b).toFixed(1)}  (${b.map((x) => x.toFixed(1)).join(' ')})`);
    console.log(`  gateway:                                    median ${median(g).toFixed(1)}  (${g.map((x) => x.toFixed(1)).join(' ')})`);
    console.log(`  the gateway's own code: ${(median(g) - median(b)).toFixed(1)} µs per request`);
    if (args.includes('--alloc')) await allocations(gateway.app, Math.min(REQUESTS, 5_000));
  } finally {
    await gateway.close();
    await bare.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
