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
import { HealthRegistry } from '../../src/mesh/registry.js';
import type { RedisClient } from '../../src/store/redis.js';

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

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}`);
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
