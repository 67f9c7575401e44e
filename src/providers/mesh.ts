// The `mesh` provider: a model group deployment that targets the inference mesh. A call is published
// to the mesh's ingress stream; a router places it on a node; the answer (or its tokens, as they come)
// arrives on this process's callback stream. Redis: `options.redis_url`, else the gateway's own
// `redis.url` (REDIS_URL, REDIS_HOST…, REDIS_CLUSTER_NODES). Mesh settings: the gateway's
// `clusters.mesh` (file and MESH_* variables), `options.key_prefix` overriding its prefix and
// `options.stream_deadline_ms` its stream deadline. Aborts mark the request done so no node starts it
// afterwards and a node running it stops.
import type { ChatChunk, ChatRequest, ChatResult } from '../canonical/chat.js';
import type { EmbeddingRequest, EmbeddingResult } from '../canonical/embeddings.js';
import type { ProviderConfig } from '../config/schema.js';
import type { ProviderContext } from './registry.js';
import { MeshClient } from '../mesh/client.js';
import { defaultMeshConfig, meshConfigSchema, type MeshConfig } from '../mesh/config.js';
import type { MeshErrorBody, MeshEvent } from '../mesh/contracts.js';
import { RegistrySnapshots, type MeshSnapshot } from '../mesh/snapshot.js';
import { UpstreamError, type UpstreamErrorKind } from './errors.js';
import type { CallOptions, ProviderAdapter } from './types.js';
import { asChatRequest } from './text-completion.js';

// Every kind, by construction: a Record over the union fails to compile when a kind is added to
// UpstreamErrorKind and not here (the list this replaced missed `quota`, so a node's exhausted
// provider quota reached routing as a retryable 5xx).
const KIND_TABLE: Record<UpstreamErrorKind, true> = {
  connect: true, timeout: true, rate_limited: true, quota: true, overloaded: true, server: true, bad_request: true,
  context_length: true, content_policy: true, auth: true, not_found: true, malformed: true, stream_interrupted: true,
  aborted: true, unsupported: true,
};
const KINDS: ReadonlySet<string> = new Set(Object.keys(KIND_TABLE));

export async function createMeshProvider(name: string, cfg: ProviderConfig, ctx: ProviderContext = {}): Promise<MeshProvider> {
  const opts = cfg.options ?? {};
  const redisUrl = typeof opts.redis_url === 'string' ? opts.redis_url : ctx.redisUrl;
  if (!redisUrl) throw new Error(`provider ${name}: type mesh needs a Redis: options.redis_url, or the gateway's redis.url (REDIS_URL, REDIS_HOST or REDIS_CLUSTER_NODES)`);
  const base = ctx.mesh ?? defaultMeshConfig();
  const mesh = meshConfigSchema.parse({
    ...base,
    ...(typeof opts.key_prefix === 'string' ? { key_prefix: opts.key_prefix } : {}),
    ...(opts.stream_deadline_ms !== undefined ? { stream_deadline_ms: opts.stream_deadline_ms } : {}),
  });
  const client = new MeshClient({ redisUrl, keyPrefix: mesh.key_prefix });
  await client.connect();
  return new MeshProvider(name, client, mesh);
}

export class MeshProvider implements ProviderAdapter {
  readonly type = 'mesh' as const;
  private readonly snapshots: RegistrySnapshots;
  private last?: { at: number; snap: Promise<MeshSnapshot> };

  constructor(
    readonly name: string,
    readonly client: MeshClient,
    readonly mesh: MeshConfig = defaultMeshConfig(),
  ) {
    this.snapshots = new RegistrySnapshots(client.redis, mesh.key_prefix, mesh.health);
  }

  async chat(req: ChatRequest, opts: CallOptions): Promise<ChatResult> {
    // A legacy text completion goes through chat here (asChatRequest: what chat cannot do is refused).
    req = asChatRequest(this.name, req);
    const call = await this.submit(req, false, opts);
    for await (const event of call) {
      if (event.type === 'result') return event.result;
      if (event.type === 'error') throw this.error(event.error);
    }
    throw this.deadlineError(opts, `no answer within ${opts.timeoutMs} ms`);
  }

  /**
   * A stream's `timeoutMs` is the time to its first token (CallOptions): that is how long this waits
   * for the first event; the run on the mesh gets the whole stream deadline (`stream_deadline_ms`,
   * or `timeoutMs` if longer), so a long answer is not cut off at `timeoutMs`.
   */
  async streamChat(req: ChatRequest, opts: CallOptions): Promise<AsyncIterable<ChatChunk>> {
    // A legacy text completion goes through chat here (asChatRequest: what chat cannot do is refused).
    req = asChatRequest(this.name, req);
    const call = await this.submit(req, true, opts);
    const events = call[Symbol.asyncIterator]();
    // Wait for the first event so that failures before the first token reject here (retryable).
    const firstTimer = setTimeout(() => this.client.abandon(call.request.id, 'timed_out'), opts.timeoutMs);
    let first: IteratorResult<MeshEvent>;
    try {
      first = await events.next();
    } finally {
      clearTimeout(firstTimer);
    }
    if (first.done) throw this.deadlineError(opts, `no first token within ${opts.timeoutMs} ms`);
    if (first.value.type === 'error') {
      // The call's iterator is paused at its yield: finish it, so the client forgets the call.
      await events.return(undefined);
      throw this.error(first.value.error);
    }
    return this.chunks(first.value, events, opts);
  }

  /**
   * Chunks of one execution. If a node dies mid-answer and the request reruns elsewhere, chunks of a
   * second execution appear: before any text was forwarded the stream follows the new execution;
   * after, it ends with `stream_interrupted` rather than splice two different answers.
   */
  private async *chunks(first: MeshEvent, events: AsyncIterator<MeshEvent>, opts: CallOptions): AsyncGenerator<ChatChunk> {
    let exec = first.exec;
    let forwarded = false;
    let event: MeshEvent | undefined = first;
    try {
      while (event) {
        if (event.type === 'error') {
          if (event.exec === exec || !forwarded) throw this.error(event.error);
        } else if (event.type === 'done') {
          if (event.exec === exec) return;
          if (forwarded) throw this.interrupted();
          return;
        } else if (event.type === 'chunk') {
          if (event.exec !== exec) {
            if (forwarded) throw this.interrupted();
            exec = event.exec;
          }
          if (event.chunk.choices.some((c) => c.delta.content || c.delta.tool_calls)) forwarded = true;
          yield event.chunk;
        }
        const next = await events.next();
        event = next.done ? undefined : next.value;
      }
      throw this.deadlineError(opts, `the stream did not end within its ${Math.max(opts.timeoutMs, this.mesh.stream_deadline_ms)} ms deadline`);
    } finally {
      await events.return?.();
    }
  }

  private async submit(req: ChatRequest, stream: boolean, opts: CallOptions) {
    try {
      const budget = stream ? Math.max(opts.timeoutMs, this.mesh.stream_deadline_ms) : opts.timeoutMs;
      // Publishing waits for Redis no longer than the attempt may take: during an outage the call
      // fails (retryably) at its timeout or abort rather than wait for Redis to return.
      return await this.client.submit(req, { stream, deadline: Date.now() + budget, requestId: opts.requestId, signal: opts.signal, publishTimeoutMs: opts.timeoutMs });
    } catch (err) {
      throw new UpstreamError({ provider: this.name, kind: 'connect', message: `${this.name}: could not publish to the mesh: ${(err as Error).message}`, cause: err });
    }
  }

  private error(e: MeshErrorBody): UpstreamError {
    if (e.kind === 'no_available_nodes') {
      return new UpstreamError({ provider: this.name, kind: 'overloaded', status: 503, message: `${this.name}: ${e.message}` });
    }
    const kind = (KINDS.has(e.kind) ? e.kind : 'server') as UpstreamErrorKind;
    return new UpstreamError({ provider: this.name, kind, status: e.status, message: `${this.name}: ${e.message}` });
  }

  private interrupted(): UpstreamError {
    return new UpstreamError({ provider: this.name, kind: 'stream_interrupted', message: `${this.name}: the node streaming this answer died; it was rerun elsewhere` });
  }

  private deadlineError(opts: CallOptions, what: string): UpstreamError {
    if (opts.signal.aborted) return new UpstreamError({ provider: this.name, kind: 'aborted', message: `${this.name}: request aborted` });
    return new UpstreamError({ provider: this.name, kind: 'timeout', message: `${this.name}: ${what}` });
  }

  async embed(_req: EmbeddingRequest): Promise<EmbeddingResult> {
    throw new UpstreamError({ provider: this.name, kind: 'unsupported', message: `${this.name}: the mesh serves chat only` });
  }

  /** Models installed on routable nodes. */
  async listModels(): Promise<string[]> {
    const snap = await this.snapshot();
    return [...new Set(snap.nodes.filter((n) => n.routable).flatMap((n) => n.models_installed))].sort();
  }

  async ready(): Promise<boolean> {
    try {
      return (await this.snapshot()).counts.routable > 0;
    } catch {
      return false;
    }
  }

  /**
   * Nodes, their health and routability, for the dashboard and metrics. A snapshot taken (or being
   * taken) less than a heartbeat interval ago is reused: nodes report no more often than that, and the
   * gateway's readers — the metrics collectors, the GPU pool following the mesh, readiness — share
   * one registry read rather than each making its own.
   */
  async snapshot(): Promise<MeshSnapshot> {
    const now = Date.now();
    if (this.last && now - this.last.at < this.mesh.heartbeat_interval_ms) return this.last.snap;
    // Heartbeat ages on the mesh (Redis) clock that stamped them, not this machine's.
    const last = { at: now, snap: this.snapshots.take() };
    this.last = last;
    // A failed read is not reused: the next caller tries again.
    last.snap.catch(() => {
      if (this.last === last) this.last = undefined;
    });
    return last.snap;
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
