// The node agent (`inferenceflow worker`): publishes the node's health every heartbeat, consumes the
// node's own request stream in the `workers` group, runs each request on its backend and writes the
// streamed tokens and the one final response to the request's callback stream. When the backend is
// down it keeps heartbeating (empty model list) and answers with errors, so it recovers in place.
// On stop it drains: marks itself draining, stops reading, finishes what it holds, then leaves.
import { randomHex } from '../gateway/ids.js';
import { compareEntryIds, isClusterUrl, type RedisClient } from '../store/redis.js';
import type { Logger } from 'pino';
import type { ChatChunk } from '../canonical/chat.js';
import { isUpstreamError } from '../providers/errors.js';
import { backoffMs, connectOrFail, createMeshRedis, ensureGroup, isNoGroupError, sleep, type StreamEntries, type StreamReply } from './connection.js';
import { assertMeshTiming, type MeshConfig } from './config.js';
import { MeshClock } from './clock.js';
import { decodeRequest, entryData, meshDeadline, meshKeys, WORKER_GROUP, type MeshErrorBody, type MeshEvent, type MeshKeys, type MeshRequest, type NodeHealth } from './contracts.js';
import { appendChunk, deliverFinal, expireCallback, isDone, retireEntry, touchPending, type SourceEntry } from './delivery.js';
import type { MeshBackend } from './backend.js';
import type { HealthSource, HostHealth } from './health.js';
import { HealthRegistry } from './registry.js';

export interface WorkerOptions {
  nodeId: string;
  redisUrl: string;
  backend: MeshBackend;
  config: MeshConfig;
  health: HealthSource;
  log: Logger;
  /** Requests run at once (local llama.cpp: its max_sequences). */
  maxConcurrency: number;
  version: string;
  /** This machine's clock (injectable in tests); heartbeats and deadlines go by the mesh's (Redis) clock. */
  now?: () => number;
  /** How long one blocking read waits before the loop looks around again, ms. */
  blockMs?: number;
}

export interface WorkerStats {
  completed: number;
  failed: number;
  duplicates: number;
  skipped: number;
  /** Runs stopped because their request was cancelled (or answered elsewhere) while they ran. */
  cancelled: number;
}

export class WorkerAgent {
  private readonly keys: MeshKeys;
  private readonly stream: string;
  private readonly now: () => number;
  private readonly blockMs: number;
  private commands!: RedisClient;
  private reader!: RedisClient;
  private registry!: HealthRegistry;
  private clock!: MeshClock;
  /** The newest entry read from this node's stream (reported in heartbeats with `in_flight`). */
  private readId: string | undefined;
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Requests running on the backend now, by entry id: checked every heartbeat for cancellation. */
  private readonly running = new Map<string, { requestId: string; controller: AbortController }>();
  private slotFreed: (() => void) | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  /** Heartbeats in progress, and whether the node has left the registry (then they publish nothing). */
  private readonly beats = new Set<Promise<void>>();
  private left = false;
  private loop: Promise<void> | undefined;
  private stopping = false;
  private draining = false;
  private lastHost: HostHealth | undefined;
  readonly stats: WorkerStats = { completed: 0, failed: 0, duplicates: 0, skipped: 0, cancelled: 0 };

  constructor(private readonly opts: WorkerOptions) {
    this.keys = meshKeys(opts.config.key_prefix, isClusterUrl(opts.redisUrl));
    this.stream = this.keys.nodeRequests(opts.nodeId);
    this.now = opts.now ?? Date.now;
    this.blockMs = opts.blockMs ?? 1_000;
  }

  get nodeId(): string {
    return this.opts.nodeId;
  }

  /** Connects (failing if Redis is unreachable), registers, and starts consuming. */
  async start(): Promise<void> {
    assertMeshTiming(this.opts.config);
    this.commands = createMeshRedis(this.opts.redisUrl, `worker:${this.opts.nodeId}`);
    this.reader = createMeshRedis(this.opts.redisUrl, `worker:${this.opts.nodeId}:reader`, { blockMs: this.blockMs });
    await connectOrFail(this.commands);
    await connectOrFail(this.reader);
    for (const c of [this.commands, this.reader]) c.on('error', (err: Error) => this.opts.log.debug({ err: err.message }, 'mesh worker: redis connection error'));
    this.registry = new HealthRegistry(this.commands, this.opts.config.key_prefix);
    this.clock = new MeshClock(this.commands, this.keys.health, this.now);
    await this.clock.sync();
    await ensureGroup(this.commands, this.stream, WORKER_GROUP);
    await this.commands.sadd(this.keys.nodeStreams, this.opts.nodeId);
    await this.beat();
    this.heartbeat = setInterval(() => void this.beat(), this.opts.config.heartbeat_interval_ms);
    this.loop = this.consume();
    this.opts.log.info({ node: this.opts.nodeId, backend: this.opts.backend.kind, stream: this.stream }, 'mesh worker started');
  }

  /** Graceful stop: no new work, finish what is held, leave the registry. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.draining = true;
    await this.beat().catch(() => undefined);
    this.slotFreed?.();
    await this.loop;
    await Promise.allSettled([...this.inFlight.values()]);
    clearInterval(this.heartbeat);
    // A heartbeat still collecting must not publish after the node has left: its record would stay
    // behind (draining) with no one to remove it.
    this.left = true;
    await Promise.allSettled([...this.beats]);
    await this.registry.remove(this.opts.nodeId).catch((err: unknown) => this.opts.log.warn({ err }, 'mesh worker: could not leave the registry'));
    await Promise.all([this.commands.quit().catch(() => this.commands.disconnect()), this.reader.quit().catch(() => this.reader.disconnect())]);
    this.opts.log.info({ node: this.opts.nodeId, ...this.stats }, 'mesh worker stopped');
  }

  /** This node's health record as it would be published now. */
  async healthRecord(): Promise<NodeHealth> {
    const [host, models] = await Promise.all([
      this.opts.health.collect().catch(() => this.lastHost ?? emptyHost()),
      this.modelLists(),
      // The heartbeat's stamp is on the mesh clock: this machine's may be anything (no RTC).
      this.clock.sync().catch((err: unknown) => this.opts.log.debug({ err: (err as Error).message }, 'mesh worker: could not read the Redis clock (keeping the last offset)')),
    ]);
    this.lastHost = host;
    return {
      node_id: this.opts.nodeId,
      backend: this.opts.backend.kind,
      ...models,
      ...host,
      in_flight: this.inFlight.size,
      max_concurrency: this.opts.maxConcurrency,
      draining: this.draining,
      version: this.opts.version,
      ts: this.clock.now(),
      ...(this.readId !== undefined ? { read_id: this.readId } : {}),
    };
  }

  private async modelLists(): Promise<Pick<NodeHealth, 'backend_ok' | 'models_installed' | 'models_loaded'>> {
    try {
      const [installed, loaded] = await Promise.all([this.opts.backend.installed(), this.opts.backend.loaded()]);
      return { backend_ok: true, models_installed: installed, models_loaded: loaded };
    } catch (err) {
      this.opts.log.debug({ err: (err as Error).message }, 'mesh worker: backend not answering');
      return { backend_ok: false, models_installed: [], models_loaded: [] };
    }
  }

  /** One heartbeat: publish health and keep held entries fresh. Failures are logged, never fatal. */
  private beat(): Promise<void> {
    const p = this.beatOnce().finally(() => this.beats.delete(p));
    this.beats.add(p);
    return p;
  }

  private async beatOnce(): Promise<void> {
    await Promise.all([
      (async () => {
        const record = await this.healthRecord();
        if (this.left) return;
        await this.registry.publish(record);
        await touchPending(this.commands, this.stream, WORKER_GROUP, this.opts.nodeId, [...this.inFlight.keys()]);
      })().catch((err: unknown) => this.opts.log.warn({ err: (err as Error).message }, 'mesh worker: heartbeat failed (will retry)')),
      this.stopCancelled().catch((err: unknown) => this.opts.log.warn({ err: (err as Error).message }, 'mesh worker: checking for cancelled requests failed (will retry)')),
    ]);
  }

  /**
   * Aborts the runs whose request has its done-key set meanwhile: the requester cancelled or gave up
   * (or another execution answered). One MGET per heartbeat; on Redis Cluster every done-key carries
   * the mesh prefix's hash tag, so they share one slot.
   */
  private async stopCancelled(): Promise<void> {
    const runs = [...this.running.values()];
    if (runs.length === 0) return;
    const done = await this.commands.mget(...runs.map((r) => this.keys.done(r.requestId)));
    runs.forEach((r, i) => {
      if (done[i] === null || r.controller.signal.aborted) return;
      this.stats.cancelled++;
      this.opts.log.info({ request: r.requestId, why: done[i] }, 'mesh worker: stopping a request that was cancelled or answered elsewhere');
      r.controller.abort(new RequestCancelled(done[i]!));
    });
  }

  private async consume(): Promise<void> {
    // Entries this node held when it last died come first (an id reads the consumer's own pending list).
    let cursor = '0-0';
    let failures = 0;
    while (!this.stopping) {
      const free = this.opts.maxConcurrency - this.inFlight.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
        continue;
      }
      try {
        const reply = (await this.reader.xreadgroup(
          'GROUP', WORKER_GROUP, this.opts.nodeId,
          'COUNT', free,
          'BLOCK', this.blockMs,
          'STREAMS', this.stream, cursor,
        )) as StreamReply;
        failures = 0;
        const entries: StreamEntries = reply?.[0]?.[1] ?? [];
        // Reading history: walk on past what was read; once it is exhausted, take new entries.
        if (cursor !== '>') cursor = entries.length ? entries[entries.length - 1]![0] : '>';
        for (const [id, fields] of entries) {
          if (this.readId === undefined || compareEntryIds(id, this.readId) > 0) this.readId = id;
          if (!this.inFlight.has(id)) this.run(id, fields);
        }
      } catch (err) {
        if (this.stopping) break;
        if (isNoGroupError(err)) await ensureGroup(this.commands, this.stream, WORKER_GROUP).catch(() => undefined);
        failures++;
        this.opts.log.warn({ err: (err as Error).message, failures }, 'mesh worker: reading requests failed (retrying)');
        await sleep(backoffMs(failures));
      }
    }
  }

  private run(entryId: string, fields: string[]): void {
    const task = this.execute(entryId, fields)
      .catch((err: unknown) => this.opts.log.error({ err, entryId }, 'mesh worker: request handling failed'))
      .finally(() => {
        this.inFlight.delete(entryId);
        const wake = this.slotFreed;
        this.slotFreed = undefined;
        wake?.();
      });
    this.inFlight.set(entryId, task);
  }

  private async execute(entryId: string, fields: string[]): Promise<void> {
    const source: SourceEntry = { stream: this.stream, group: WORKER_GROUP, id: entryId };
    // An entry deleted while pending comes back without fields.
    const raw = Array.isArray(fields) ? entryData(fields) : undefined;
    const req = raw === undefined ? undefined : decodeRequest(raw);
    if (!req) {
      this.opts.log.error({ entryId }, 'mesh worker: dropping a malformed request entry');
      await retireEntry(this.commands, source);
      return;
    }
    const exec = `${this.opts.nodeId}:${req.attempt}:${randomHex(3)}`;
    const base = { id: req.id, exec, node: this.opts.nodeId };
    if (await isDone(this.commands, this.keys, req.id)) {
      // Answered by another execution, or its requester gave up: nothing to run.
      this.stats.skipped++;
      await retireEntry(this.commands, source);
      return;
    }
    // The deadline on this machine's clock: what is left of the request's budget on the mesh clock
    // (its time on the ingress stream and here so far counted in Redis time), from now.
    const deadline = meshDeadline(req, entryId);
    const remaining = deadline - this.clock.now();
    if (remaining <= 0) {
      await this.finish(req, { ...base, type: 'error', error: { kind: 'timeout', message: 'the request passed its deadline before a node could start it', status: 504 } }, source, deadline);
      return;
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), remaining);
    this.running.set(entryId, { requestId: req.id, controller });
    const callOpts = { signal: controller.signal, timeoutMs: remaining, requestId: req.id };
    const payload = { ...req.payload, model: req.model };
    try {
      if (req.stream) {
        const chunks = await this.opts.backend.adapter.streamChat({ ...payload, stream: true }, callOpts);
        for await (const chunk of chunks) await appendChunk(this.commands, req.callback, { ...base, type: 'chunk', chunk: chunk as ChatChunk });
        await this.finish(req, { ...base, type: 'done' }, source, deadline);
      } else {
        const result = await this.opts.backend.adapter.chat({ ...payload, stream: false }, callOpts);
        await this.finish(req, { ...base, type: 'result', result }, source, deadline);
      }
    } catch (err) {
      if (controller.signal.reason instanceof RequestCancelled) {
        // Its done-key is set: no answer is wanted any more; the entry is only retired, and the
        // chunks it wrote expire (they may have recreated a stream its requester deleted).
        await Promise.all([retireEntry(this.commands, source), expireCallback(this.commands, req.callback)]);
        return;
      }
      this.stats.failed++;
      await this.finish(req, { ...base, type: 'error', error: errorBody(err, controller.signal.aborted) }, source, deadline);
    } finally {
      clearTimeout(timer);
      this.running.delete(entryId);
    }
  }

  private async finish(req: MeshRequest, event: MeshEvent, source: SourceEntry, deadline: number): Promise<void> {
    // Its run is over: the done-key this sets is not a cancellation for the heartbeat to act on.
    this.running.delete(source.id);
    // The answer must reach Redis even through a disconnect: the connection queues and retries.
    const delivered = await deliverFinal(this.commands, this.keys, req, event, source, deadline - this.clock.now());
    if (!delivered) this.stats.duplicates++;
    else if (event.type !== 'error') this.stats.completed++;
  }
}

/** The abort reason of a run whose request was marked done (cancelled, timed out, answered) meanwhile. */
class RequestCancelled extends Error {
  constructor(readonly why: string) {
    super(`request done elsewhere (${why})`);
  }
}

function errorBody(err: unknown, deadlinePassed: boolean): MeshErrorBody {
  if (deadlinePassed) return { kind: 'timeout', message: 'the request passed its deadline while running', status: 504 };
  if (isUpstreamError(err)) return { kind: err.kind, message: err.message, ...(err.status ? { status: err.status } : {}) };
  return { kind: 'server', message: (err as Error)?.message ?? String(err) };
}

function emptyHost(): HostHealth {
  return { cpu_temp_c: null, ram_used_pct: 0, ram_total_bytes: 0, load1: 0, gpus: [] };
}
