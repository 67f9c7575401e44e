// Helpers for mesh integration tests: real Redis under a unique key prefix, real worker and router
// processes (`node --import tsx src/cli/main.ts worker|router …`), and a raw reader of callback streams
// so a test sees every event — duplicates included — rather than what a client would filter.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { storiesDir } from './shared-models.js';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { decodeEvent, encodeRequest, entryData, FIELD, meshKeys, type MeshEvent, type MeshRequest, type NodeHealth } from '../../src/mesh/contracts.js';
import { meshConfigSchema, type MeshConfig } from '../../src/mesh/config.js';
import { HealthRegistry } from '../../src/mesh/registry.js';
import type { RedisClient } from '../../src/store/redis.js';
import type { ChatChunk, ChatRequest, ChatResult } from '../../src/canonical/chat.js';
import type { EmbeddingResult } from '../../src/canonical/embeddings.js';
import type { CallOptions, ProviderAdapter } from '../../src/providers/types.js';
import { UpstreamError } from '../../src/providers/errors.js';
import { afterAll } from 'vitest';
import type { Logger } from 'pino';
import { meshBackendFor } from '../../src/mesh/backend.js';
import { MeshClient } from '../../src/mesh/client.js';
import { StaticHealthSource } from '../../src/mesh/health.js';
import { MeshRouter } from '../../src/mesh/router.js';
import { WorkerAgent } from '../../src/mesh/worker.js';
import { MeshProvider } from '../../src/providers/mesh.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { pollUntil } from './wait.js';

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const STORIES = storiesDir() ?? path.resolve(ROOT, '../shared/models/stories260K');

/** Redis reachable? One probe for every suite (test/helpers/services.ts). */
export { redisAvailable } from './services.js';

export function uniquePrefix(): string {
  return `ifmesh-test:${randomBytes(5).toString('hex')}:`;
}

export async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== '0');
}

/** Mesh settings quick enough for tests: 200 ms heartbeats and reclaim passes, short retries. */
export function testMeshConfig(prefix: string, idleReclaimMs = 1_500): MeshConfig {
  return meshConfigSchema.parse({
    key_prefix: prefix,
    heartbeat_interval_ms: 200,
    idle_reclaim_ms: idleReclaimMs,
    reclaim_interval_ms: 200,
    retry_initial_ms: 50,
    retry_max_ms: 200,
  });
}

/** A healthy node's host reading, for StaticHealthSource. */
export const TEST_HOST = { cpu_temp_c: 50, ram_used_pct: 30, ram_total_bytes: 8e9, load1: 0.1, gpus: [] };

/** A routable node's health record (model `m`, no GPUs, stamped now unless `over` says otherwise). */
export function nodeHealth(id: string, over: Partial<NodeHealth> = {}): NodeHealth {
  return {
    node_id: id,
    backend: 'simulator',
    backend_ok: true,
    models_installed: ['m'],
    models_loaded: [],
    cpu_temp_c: null,
    ram_used_pct: 20,
    ram_total_bytes: 8e9,
    load1: 0.1,
    gpus: [],
    in_flight: 0,
    max_concurrency: 4,
    draining: false,
    version: 'test',
    ts: Date.now(),
    ...over,
  };
}

/** Routers, workers and clients a test file started; `stopAll` stops them newest first. */
export class StartedParts {
  private readonly parts: { stop?(): Promise<void>; close?(): Promise<void> }[] = [];
  add<T extends { stop?(): Promise<void>; close?(): Promise<void> }>(part: T): T {
    this.parts.push(part);
    return part;
  }
  async stopAll(): Promise<void> {
    for (const s of this.parts.reverse()) await (s.stop ?? s.close)?.call(s).catch(() => undefined);
    this.parts.length = 0;
  }
}

export interface MeshProcess {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

export function spawnMesh(args: string[]): MeshProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

export function timingFlags(prefix: string): string[] {
  return ['--redis-url', REDIS_URL, '--key-prefix', prefix, '--heartbeat-ms', '300', '--stale-after-s', '2', '--idle-reclaim-ms', '1500', '--reclaim-interval-ms', '300', '--log-level', 'warn'];
}

export function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  return pollUntil(probe, what, timeoutMs, everyMs);
}

/** Resolves with `p`, or fails the test after a generous wait instead of hanging it. */
export async function within<T>(what: string, p: Promise<T>, ms = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

export async function nodes(redis: Redis, prefix: string): Promise<Map<string, NodeHealth>> {
  return new Map((await new HealthRegistry(redis, prefix).readAll()).map((h) => [h.node_id, h]));
}

export function chatRequest(prefix: string, model: string, content: string, opts: { stream?: boolean; deadlineMs?: number; maxTokens?: number } = {}): MeshRequest {
  return {
    id: randomUUID(),
    model,
    payload: { model, messages: [{ role: 'user', content }], max_tokens: opts.maxTokens ?? 8, temperature: 0 },
    stream: opts.stream ?? false,
    callback: `${prefix}test-callback`,
    deadline: Date.now() + (opts.deadlineMs ?? 60_000),
    attempt: 1,
    created: Date.now(),
  };
}

/**
 * Publishes requests in one MULTI/EXEC: a router blocked on the stream sees them all at once (a plain
 * pipeline wakes it after the first XADD on a fast machine, and it reads the burst piecemeal).
 */
export async function publish(redis: Redis, prefix: string, reqs: MeshRequest[], stream = meshKeys(prefix).requests): Promise<void> {
  const pipe = redis.multi();
  for (const r of reqs) pipe.xadd(stream, '*', FIELD, encodeRequest(r));
  await pipe.exec();
}

/** Reads a callback stream from the start, incrementally; keeps every event. */
export class CallbackReader {
  readonly events: MeshEvent[] = [];
  private last = '0-0';
  constructor(
    private readonly redis: RedisClient,
    private readonly stream: string,
  ) {}
  async poll(): Promise<MeshEvent[]> {
    const entries = (await this.redis.xrange(this.stream, `(${this.last}`, '+', 'COUNT', 5000)) as [string, string[]][];
    const fresh: MeshEvent[] = [];
    for (const [id, fields] of entries) {
      this.last = id;
      const e = decodeEvent(entryData(fields) ?? '');
      if (e) fresh.push(e);
    }
    this.events.push(...fresh);
    return fresh;
  }
  finals(): MeshEvent[] {
    return this.events.filter((e) => e.type !== 'chunk');
  }
}

/** The attempt number an execution id (`node:attempt:nonce`) carries. */
export function attemptOf(e: MeshEvent): number {
  return Number(e.exec.split(':')[1]);
}

/** What one call to a ScriptedAdapter saw, and how it ended. */
export interface ScriptedCall {
  prompt: string;
  opts: CallOptions;
  /** Settles when the call's signal aborts (never, if it does not). */
  aborted: Promise<void>;
}

/**
 * A worker backend whose streams the test drives: a prompt starting `fail` fails before its first
 * token; any other streams one chunk per `release()` (or `releaseAll`), and ends on `finish()`, or
 * fails when its signal aborts. Serves the model `scripted`. Every call is recorded with its options.
 */
export class ScriptedAdapter implements ProviderAdapter {
  readonly name = 'scripted';
  readonly type = 'simulator' as const;
  readonly calls: ScriptedCall[] = [];
  private readonly waiters: (() => void)[] = [];
  private readonly gates = new Map<string, { tokens: number; done: boolean; wake?: () => void }>();

  async listModels(): Promise<string[]> {
    return ['scripted'];
  }

  /** Resolves once a call for this prompt has started. */
  async started(prompt: string): Promise<ScriptedCall> {
    for (;;) {
      const call = this.calls.find((c) => c.prompt === prompt);
      if (call) return call;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Lets the stream of `prompt` send `n` more chunks. */
  release(prompt: string, n = 1): void {
    const g = this.gate(prompt);
    g.tokens += n;
    g.wake?.();
  }

  /** Lets the stream of `prompt` end (after the chunks released so far). */
  finish(prompt: string): void {
    const g = this.gate(prompt);
    g.done = true;
    g.wake?.();
  }

  private gate(prompt: string) {
    let g = this.gates.get(prompt);
    if (!g) this.gates.set(prompt, (g = { tokens: 0, done: false }));
    return g;
  }

  private record(req: ChatRequest, opts: CallOptions): ScriptedCall {
    const prompt = String(req.messages.at(-1)?.content ?? '');
    const aborted = new Promise<void>((resolve) => {
      if (opts.signal.aborted) resolve();
      else opts.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    const call = { prompt, opts, aborted };
    this.calls.push(call);
    for (const w of this.waiters.splice(0)) w();
    return call;
  }

  async streamChat(req: ChatRequest, opts: CallOptions): Promise<AsyncIterable<ChatChunk>> {
    const call = this.record(req, opts);
    if (call.prompt.startsWith('fail')) throw new UpstreamError({ provider: this.name, kind: 'server', status: 500, message: 'scripted failure before the first token' });
    const gate = this.gate(call.prompt);
    const name = this.name;
    return (async function* () {
      for (let i = 0; ; i++) {
        while (gate.tokens === 0 && !gate.done && !opts.signal.aborted) {
          await Promise.race([new Promise<void>((resolve) => (gate.wake = resolve)), call.aborted]);
        }
        if (opts.signal.aborted) throw new UpstreamError({ provider: name, kind: 'aborted', message: 'aborted' });
        if (gate.tokens === 0) return;
        gate.tokens--;
        yield { id: 'scripted', object: 'chat.completion.chunk', created: 0, model: req.model, choices: [{ index: 0, delta: { content: `t${i} ` }, finish_reason: null }] } satisfies ChatChunk;
      }
    })();
  }

  async chat(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    this.record(req, opts);
    throw new UpstreamError({ provider: this.name, kind: 'unsupported', message: 'scripted streams only' });
  }

  async embed(): Promise<EmbeddingResult> {
    throw new UpstreamError({ provider: this.name, kind: 'unsupported', message: 'no embeddings' });
  }

  async ready(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {}
}

/**
 * What an in-process mesh test file shares: a key prefix of its own, a Redis client, its config and
 * the parts it starts — stopped, their keys deleted and the client closed after the file's tests.
 */
export function meshTestScope(idleReclaimMs?: number): { prefix: string; redis: Redis; config: MeshConfig; started: StartedParts; log: Logger } {
  const prefix = uniquePrefix();
  const redis = new Redis(REDIS_URL);
  const started = new StartedParts();
  afterAll(async () => {
    await started.stopAll();
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });
  return { prefix, redis, config: testMeshConfig(prefix, idleReclaimMs), started, log: createLogger('silent') };
}

/** A router and one worker over `adapter` in this process, and the gateway's mesh provider in front of them. */
export async function startInProcessMesh(
  scope: ReturnType<typeof meshTestScope>,
  adapter: ProviderAdapter,
  opts: { name: string; maxConcurrency: number },
): Promise<{ client: MeshClient; provider: MeshProvider; worker: WorkerAgent }> {
  const { config, started, log, prefix } = scope;
  const router = started.add(new MeshRouter({ routerId: opts.name, redisUrl: REDIS_URL, config, log, blockMs: 200 }));
  await router.start();
  const worker = started.add(new WorkerAgent({ nodeId: `${opts.name}-1`, redisUrl: REDIS_URL, backend: meshBackendFor(adapter), config, health: new StaticHealthSource(TEST_HOST), log, maxConcurrency: opts.maxConcurrency, version: 'test', blockMs: 200 }));
  await worker.start();
  const client = started.add(new MeshClient({ redisUrl: REDIS_URL, keyPrefix: prefix, log, deadlineGraceMs: 0 }));
  await client.connect();
  return { client, provider: new MeshProvider('mesh', client, config), worker };
}
