// The router service (`inferenceflow router`, several may run): consumes the ingress stream in the
// `routers` group, places each request on a node's stream with the sticky decision, and keeps the
// mesh's promise that nothing is lost. While no node can take a request it stays pending here and is
// retried with backoff until its deadline (then an error is delivered); entries abandoned by a dead
// router or worker are reclaimed (XAUTOCLAIM) and placed again, away from the node that held them.
import { compareEntryIds, entryIdMs, isClusterUrl, type RedisClient } from '../store/redis.js';
import type { Logger } from 'pino';
import { backoffMs, connectOrFail, createMeshRedis, ensureGroup, isNoGroupError, sleep, type StreamEntries, type StreamReply } from './connection.js';
import { assertMeshTiming, type MeshConfig } from './config.js';
import {
  decodeHealth,
  decodeRequest,
  encodeRequest,
  entryData,
  ErrNoAvailableNodes,
  meshDeadline,
  meshKeys,
  ROUTER_GROUP,
  WORKER_GROUP,
  type MeshKeys,
  type MeshRequest,
  type NodeHealth,
} from './contracts.js';
import { readMeshBacklog, type MeshBacklog } from './backlog.js';
import { claimIdle, deliverFinal, isDone, placeOnNode, retireEntry, touchPending, type SourceEntry } from './delivery.js';
import { MeshClock } from './clock.js';
import { HealthRegistry } from './registry.js';
import { affinityKeyOf, chooseNode, exclusionReason, type RouteDecision } from './sticky.js';

export interface RouterOptions {
  routerId: string;
  redisUrl: string;
  config: MeshConfig;
  log: Logger;
  /** This machine's clock (injectable in tests), for durations; heartbeats and deadlines go by the mesh's (Redis) clock. */
  now?: () => number;
  blockMs?: number;
}

/** One placement this router made: load the node's heartbeat may not show yet. */
interface Placement {
  /** This machine's clock when it was decided. */
  at: number;
  /** The node stream entry's id, once written. */
  id?: string;
}

export interface RouterStats {
  routed: number;
  rerouted: number;
  reclaimed: number;
  waiting: number;
  expired: number;
  /** Entries this router was about to place that another router had taken over (and placed) meanwhile. */
  taken: number;
  decisions: Record<RouteDecision['reason'], number>;
}

interface Waiting {
  req: MeshRequest;
  source: SourceEntry;
  /** The node a reclaimed request came from: avoided when another node can take it. */
  avoid?: string;
  failures: number;
  timer: NodeJS.Timeout;
}

/** Registry reads are cached this long between decisions (heartbeats come every few seconds). */
const HEALTH_CACHE_MS = 250;

export class MeshRouter {
  private readonly keys: MeshKeys;
  private readonly now: () => number;
  private readonly blockMs: number;
  /** When the commands connection last became ready (this router's clock). */
  private connectedAt = 0;
  private commands!: RedisClient;
  private reader!: RedisClient;
  private registry!: HealthRegistry;
  private clock!: MeshClock;
  private nodes: NodeHealth[] = [];
  /** `nodes` by id: extraLoad looks a node up for every candidate of every decision. */
  private nodeById = new Map<string, NodeHealth>();
  private nodesReadAt = 0;
  /** Placements per node that its last heartbeat does not count yet. */
  private readonly placed = new Map<string, Placement[]>();
  /** Per node, the heartbeat (its ts) this router last saw and when it first saw it (its own clock). */
  private readonly observed = new Map<string, { ts: number; at: number }>();
  /** Unreadable registry records (another version's) and since when each has stayed unchanged. */
  private unreadableSeen = new Map<string, { raw: string; since: number }>();
  private readonly waiting = new Map<string, Waiting>();
  private loop: Promise<void> | undefined;
  private reclaimTimer: NodeJS.Timeout | undefined;
  private reclaiming: Promise<void> | undefined;
  private stopping = false;
  readonly stats: RouterStats = { routed: 0, rerouted: 0, reclaimed: 0, waiting: 0, expired: 0, taken: 0, decisions: { imbalance: 0, loaded: 0, affinity: 0, least_loaded: 0 } };

  constructor(private readonly opts: RouterOptions) {
    this.keys = meshKeys(opts.config.key_prefix, isClusterUrl(opts.redisUrl));
    this.now = opts.now ?? Date.now;
    this.blockMs = opts.blockMs ?? 1_000;
  }

  private get consumer(): string {
    return this.opts.routerId;
  }

  async start(): Promise<void> {
    assertMeshTiming(this.opts.config);
    this.commands = createMeshRedis(this.opts.redisUrl, `router:${this.opts.routerId}`);
    this.reader = createMeshRedis(this.opts.redisUrl, `router:${this.opts.routerId}:reader`, { blockMs: this.blockMs });
    await connectOrFail(this.commands);
    await connectOrFail(this.reader);
    for (const c of [this.commands, this.reader]) c.on('error', (err: Error) => this.opts.log.debug({ err: err.message }, 'mesh router: redis connection error'));
    this.connectedAt = this.now();
    this.commands.on('ready', () => (this.connectedAt = this.now()));
    this.registry = new HealthRegistry(this.commands, this.opts.config.key_prefix);
    this.clock = new MeshClock(this.commands, this.keys.health, this.now);
    await this.clock.sync();
    await ensureGroup(this.commands, this.keys.requests, ROUTER_GROUP);
    this.loop = this.consume();
    this.reclaimTimer = setInterval(() => {
      this.reclaiming ??= this.reclaim().finally(() => (this.reclaiming = undefined));
    }, this.opts.config.reclaim_interval_ms);
    this.opts.log.info({ router: this.opts.routerId, stream: this.keys.requests }, 'mesh router started');
  }

  /** Stops reading; requests still waiting for a node stay pending in Redis for another router. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.reclaimTimer);
    await this.loop;
    await this.reclaiming;
    for (const w of this.waiting.values()) clearTimeout(w.timer);
    this.waiting.clear();
    await Promise.all([this.commands.quit().catch(() => this.commands.disconnect()), this.reader.quit().catch(() => this.reader.disconnect())]);
  }

  private refreshing: Promise<void> | undefined;

  /** The current health view (cached briefly), for decisions and the dashboard. */
  async health(): Promise<NodeHealth[]> {
    const now = this.now();
    if (now - this.nodesReadAt > HEALTH_CACHE_MS) {
      // One read for every placement of a batch that finds the view stale.
      this.refreshing ??= this.registry.readAll().then(
        (nodes) => {
          this.view(nodes, now);
          this.refreshing = undefined;
        },
        (err: unknown) => {
          this.refreshing = undefined;
          throw err;
        },
      );
      await this.refreshing;
    }
    return this.nodes;
  }

  /**
   * The whole mesh's backlog as Redis holds it now (src/mesh/backlog.ts): requests not placed yet,
   * queued on each node and started there, and the routable nodes' capacity — what the router's
   * metrics listener exports, read at every scrape; the registry through the routing view (`health()`,
   * at most 250 ms old and shared with the routing loop). Every router reads the same, so any one of
   * them answers for the mesh.
   */
  async backlog(): Promise<MeshBacklog> {
    return readMeshBacklog(this.commands, this.keys, this.opts.config.health, await this.health(), this.clock.now());
  }

  private async consume(): Promise<void> {
    let cursor = '0-0'; // this router's own pending entries first (a restart with the same id)
    let failures = 0;
    while (!this.stopping) {
      try {
        const reply = (await this.reader.xreadgroup(
          'GROUP', ROUTER_GROUP, this.consumer,
          'COUNT', 100,
          'BLOCK', this.blockMs,
          'STREAMS', this.keys.requests, cursor,
        )) as StreamReply;
        failures = 0;
        const entries: StreamEntries = reply?.[0]?.[1] ?? [];
        if (cursor !== '>') cursor = entries.length ? entries[entries.length - 1]![0] : '>';
        // The batch is placed concurrently: each placement is two Redis round trips (is it done
        // already? then XADD + XACK), and one after another they capped the router at what Redis
        // answers in sequence, with every request behind them waiting. Concurrently, a batch's
        // commands leave together (coalesced writes) and the decisions still see each other
        // (a placement is counted when it is decided).
        await Promise.all(
          entries.map(([id, fields]) =>
            this.waiting.has(waitKey(this.keys.requests, id)) ? undefined : this.placeEntry({ stream: this.keys.requests, group: ROUTER_GROUP, id }, fields, undefined, false),
          ),
        );
      } catch (err) {
        if (this.stopping) break;
        if (isNoGroupError(err)) await ensureGroup(this.commands, this.keys.requests, ROUTER_GROUP).catch(() => undefined);
        failures++;
        this.opts.log.warn({ err: (err as Error).message, failures }, 'mesh router: reading requests failed (retrying)');
        await sleep(backoffMs(failures));
      }
    }
  }

  private async placeEntry(source: SourceEntry, fields: string[] | null, avoid: string | undefined, reroute: boolean): Promise<void> {
    const raw = Array.isArray(fields) ? entryData(fields) : undefined;
    const req = raw === undefined ? undefined : decodeRequest(raw);
    if (!req) {
      this.opts.log.error({ entry: source.id, stream: source.stream }, 'mesh router: dropping a malformed request entry');
      await this.retire(source);
      return;
    }
    if (reroute) req.attempt += 1;
    // Where its budget is counted from, on the mesh clock: when its ingress entry was written.
    if (req.enqueued_at === undefined && source.stream === this.keys.requests) req.enqueued_at = entryIdMs(source.id);
    await this.place(req, source, avoid, 0);
  }

  /** Places a request on a node, or keeps it pending and retries, or gives up at its deadline. */
  private async place(req: MeshRequest, source: SourceEntry, avoid: string | undefined, failures: number): Promise<void> {
    if (await isDone(this.commands, this.keys, req.id)) {
      await this.retire(source);
      return;
    }
    const { decision, placement } = await this.decide(req, avoid);
    if (!(decision instanceof ErrNoAvailableNodes)) {
      const target = this.keys.nodeRequests(decision.node);
      let placed: string | undefined;
      try {
        placed = await placeOnNode(this.commands, target, this.keys.nodeStreams, decision.node, encodeRequest(req), source);
      } catch (err) {
        this.unnotePlaced(decision.node, placement);
        throw err;
      }
      if (placed !== undefined && placement) placement.id = placed;
      if (placed === undefined) {
        // Another router took the entry over while this one stalled and has placed or answered it.
        this.unnotePlaced(decision.node, placement);
        this.stats.taken++;
        this.opts.log.warn({ request: req.id, entry: source.id, stream: source.stream }, 'mesh router: the entry was taken over by another router; dropped here');
        return;
      }
      this.stats.decisions[decision.reason]++;
      if (avoid !== undefined || req.attempt > 1) this.stats.rerouted++;
      else this.stats.routed++;
      return;
    }
    // Deadlines are on the mesh clock (see meshDeadline): this machine's may be off.
    const now = this.clock.now();
    const deadline = meshDeadline(req, source.id);
    if (now >= deadline) {
      // Only while this router still holds the entry: one that took it over may have placed it.
      const delivered = await deliverFinal(this.commands, this.keys, req, {
        type: 'error',
        id: req.id,
        exec: `router:${this.opts.routerId}`,
        node: '',
        error: { kind: 'no_available_nodes', message: decision.message, status: 503 },
      }, source, deadline - now, { requireHeld: true });
      if (delivered) this.stats.expired++;
      return;
    }
    // ErrNoAvailableNodes: the entry stays pending (un-acked) and is tried again after a backoff.
    const delay = Math.min(this.opts.config.retry_initial_ms * 2 ** failures, this.opts.config.retry_max_ms, Math.max(0, deadline - now));
    if (failures === 0) this.opts.log.info({ request: req.id, model: req.model, reason: decision.message }, 'mesh router: no available node; retrying until the deadline');
    const timer = setTimeout(() => {
      this.waiting.delete(waitKey(source.stream, source.id));
      this.stats.waiting = this.waiting.size;
      this.place(req, source, avoid, failures + 1).catch((err: unknown) => {
        // Redis trouble: the entry is still pending and will be reclaimed.
        this.opts.log.warn({ err: (err as Error).message, request: req.id }, 'mesh router: retry failed');
      });
    }, delay);
    this.waiting.set(waitKey(source.stream, source.id), { req, source, avoid, failures, timer });
    this.stats.waiting = this.waiting.size;
  }

  private async decide(req: MeshRequest, avoid: string | undefined): Promise<{ decision: RouteDecision | ErrNoAvailableNodes; placement?: Placement }> {
    const all = await this.health();
    const nodes = avoid === undefined ? all : all.filter((h) => h.node_id !== avoid);
    const opts = {
      thresholds: this.opts.config.health,
      scoring: this.opts.config.scoring,
      // Heartbeat ages on the mesh clock, which stamped them.
      now: this.clock.now(),
      extraLoad: (node: string) => this.extraLoad(node),
    };
    const input = { model: req.model, affinityKey: affinityKeyOf(req.payload.messages, this.opts.config.scoring.prefix_chars) };
    let decision = chooseNode(nodes, input, opts);
    // The node it came from is better than none.
    if (decision instanceof ErrNoAvailableNodes && avoid !== undefined) decision = chooseNode(all, input, opts);
    // Counted now, in the same synchronous step as the choice, so the placements of a batch that
    // are decided meanwhile see it in extraLoad (until the node's heartbeat shows it has read the
    // entry; a write that fails or finds the entry taken over un-counts it).
    if (decision instanceof ErrNoAvailableNodes) return { decision };
    return { decision, placement: this.notePlaced(decision.node) };
  }

  /** Takes a registry read as the routing view. */
  private view(nodes: NodeHealth[], now: number): void {
    this.nodes = nodes;
    this.nodeById = new Map(nodes.map((h) => [h.node_id, h]));
    this.nodesReadAt = now;
    const seen = new Set<string>();
    for (const h of nodes) {
      seen.add(h.node_id);
      if (this.observed.get(h.node_id)?.ts !== h.ts) this.observed.set(h.node_id, { ts: h.ts, at: now });
    }
    for (const node of this.observed.keys()) if (!seen.has(node)) this.observed.delete(node);
    this.prunePlaced();
  }

  /**
   * Whether the node's current heartbeat leaves out a placement. A heartbeat names the newest entry
   * the node had read when it counted `in_flight` (`read_id`): entries after it (or not yet written)
   * are extra. A record without it (an older worker) is taken to count what was placed before this
   * router first saw it — no clock but this router's own is compared.
   */
  private unseen(p: Placement, h: NodeHealth | undefined): boolean {
    if (!h) return false;
    if (h.read_id !== undefined) return p.id === undefined || compareEntryIds(p.id, h.read_id) > 0;
    return p.at >= (this.observed.get(h.node_id)?.at ?? 0);
  }

  /**
   * Placements the node's heartbeat does not count yet. They are kept in placement order, which is
   * also their entry ids' order on the node's stream (and their `at` order), so the ones the
   * heartbeat counts are a prefix: dropped here as they are met, which keeps each decision's cost to
   * the placements still outstanding (counting them all on every decision cost the router half of
   * its CPU with a thousand streams in flight). prunePlaced, at each registry read, does a full pass.
   */
  private extraLoad(node: string): number {
    const placements = this.placed.get(node);
    if (!placements) return 0;
    const h = this.nodeById.get(node);
    let seen = 0;
    while (seen < placements.length && !this.unseen(placements[seen] as Placement, h)) seen++;
    if (seen === 0) return placements.length;
    placements.splice(0, seen);
    if (placements.length === 0) this.placed.delete(node);
    return placements.length;
  }

  private notePlaced(node: string): Placement {
    let placements = this.placed.get(node);
    if (!placements) this.placed.set(node, (placements = []));
    const p: Placement = { at: this.now() };
    placements.push(p);
    return p;
  }

  private unnotePlaced(node: string, p: Placement | undefined): void {
    const placements = this.placed.get(node);
    if (!placements || !p) return;
    const i = placements.indexOf(p);
    if (i >= 0) placements.splice(i, 1);
    if (placements.length === 0) this.placed.delete(node);
  }

  /** Forgets placements the nodes' heartbeats now count, and those of nodes no longer registered. */
  private prunePlaced(): void {
    for (const [node, placements] of this.placed) {
      const h = this.nodeById.get(node);
      const keep = placements.filter((p) => this.unseen(p, h));
      if (keep.length) this.placed.set(node, keep);
      else this.placed.delete(node);
    }
  }

  private async retire(source: SourceEntry): Promise<void> {
    await retireEntry(this.commands, source);
  }

  /**
   * One reclaim pass: keep this router's waiting entries fresh; take over ingress entries another
   * router abandoned; take over node-stream entries a worker held too long (it died) and entries
   * queued on nodes that left or went silent; forget empty streams of departed nodes.
   */
  async reclaim(): Promise<void> {
    try {
      const cfg = this.opts.config;
      for (const w of this.waiting.values()) await touchPending(this.commands, w.source.stream, w.source.group, this.consumer, [w.source.id]);
      // Idle times and heartbeat ages that span this router's own time without Redis (an outage, a
      // restart, a lost path) say nothing about the holders: they could not refresh either, and may
      // reconnect after this router. Entries are judged idle, and nodes silent, only once this router
      // has been connected for as long as the judgement takes.
      const connectedMs = this.now() - this.connectedAt;
      const judgeIdle = connectedMs >= cfg.idle_reclaim_ms;
      const judgeSilence = connectedMs >= cfg.health.stale_after_s * 1000;

      for (const [id, fields] of judgeIdle ? await claimIdle(this.commands, this.keys.requests, ROUTER_GROUP, this.consumer, cfg.idle_reclaim_ms) : []) {
        if (this.waiting.has(waitKey(this.keys.requests, id))) continue;
        this.stats.reclaimed++;
        await this.placeEntry({ stream: this.keys.requests, group: ROUTER_GROUP, id }, fields, undefined, false);
      }

      await this.clock.sync().catch((err: unknown) => this.opts.log.debug({ err: (err as Error).message }, 'mesh router: could not read the Redis clock (keeping the last offset)'));
      const now = this.clock.now();
      const localNow = this.now();
      // One read of the registry: silent records are forgotten, the rest become the routing view.
      this.view(await this.forgetSilentNodes(now, localNow), localNow);
      const health = this.nodeById;
      const staleMs = cfg.health.stale_after_s * 1000;
      for (const node of await this.commands.smembers(this.keys.nodeStreams)) {
        const stream = this.keys.nodeRequests(node);
        const held = judgeIdle
          ? await claimIdle(this.commands, stream, WORKER_GROUP, this.consumer, cfg.idle_reclaim_ms).catch((err: unknown) => {
              if (isNoGroupError(err)) return [] as StreamEntries;
              throw err;
            })
          : [];
        for (const [id, fields] of held) {
          if (this.waiting.has(waitKey(stream, id))) continue;
          this.stats.reclaimed++;
          this.opts.log.warn({ node, entry: id }, 'mesh router: reclaiming a request its node held too long');
          await this.placeEntry({ stream, group: WORKER_GROUP, id }, fields, node, true);
        }
        const h = health.get(node);
        // A record this router cannot read (another version's, in a rolling upgrade) has no heartbeat
        // time it understands: its node is alive while the record changes, and gone once it has stayed
        // the same for stale_after_s while this router watched it (its stream is kept: still registered).
        const unreadable = h ? undefined : this.unreadableSeen.get(node);
        const unregistered = h === undefined && unreadable === undefined;
        // A node that said it is leaving (draining, or its record deleted) is gone at once; one that
        // went silent only once this router has been connected long enough to tell silence.
        const silent = h ? exclusionReason(h, cfg.health, now)?.startsWith('heartbeat') === true : unreadable !== undefined && localNow - unreadable.since > staleMs;
        const gone = h?.draining === true || unregistered || (silent && judgeSilence);
        if (gone) await this.drainDeparted(node, stream, unregistered);
      }
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'mesh router: reclaim pass failed (next tick retries)');
    }
  }

  /**
   * Deletes the records of nodes silent for longer than forget_after_s (crashed workers never leave).
   * A record this router cannot read (another version's, during a rolling upgrade) has no timestamp
   * it understands: it is forgotten once it has stayed the same for forget_after_s, as long as this
   * router has watched it (a live node rewrites its record every heartbeat). `now` is the mesh clock
   * (heartbeats are stamped with it), `localNow` this router's (how long it has watched a record).
   * Returns the readable records it kept.
   */
  private async forgetSilentNodes(now: number, localNow: number): Promise<NodeHealth[]> {
    const limit = this.opts.config.forget_after_s * 1000;
    const unreadable = new Map<string, { raw: string; since: number }>();
    const kept: NodeHealth[] = [];
    for (const [node, raw] of Object.entries(await this.registry.readRaw())) {
      const h = decodeHealth(raw);
      if (h && now - h.ts <= limit) {
        kept.push(h);
        continue;
      }
      if (!h) {
        const seen = this.unreadableSeen.get(node);
        const since = seen?.raw === raw ? seen.since : localNow;
        unreadable.set(node, { raw, since });
        if (localNow - since <= limit) continue;
      }
      if (await this.registry.forgetIfUnchanged(node, raw)) this.opts.log.info({ node, lastHeartbeat: h ? new Date(h.ts).toISOString() : null }, 'mesh router: forgot a node silent for longer than forget_after_s');
    }
    this.unreadableSeen = unreadable;
    return kept;
  }

  /** Moves entries queued on a node that left (or went silent) to other nodes; forgets empty streams. */
  private async drainDeparted(node: string, stream: string, unregistered: boolean): Promise<void> {
    await ensureGroup(this.commands, stream, WORKER_GROUP);
    const reply = (await this.commands.xreadgroup('GROUP', WORKER_GROUP, this.consumer, 'COUNT', 100, 'STREAMS', stream, '>')) as StreamReply;
    for (const [id, fields] of reply?.[0]?.[1] ?? []) {
      this.stats.reclaimed++;
      await this.placeEntry({ stream, group: WORKER_GROUP, id }, fields, node, true);
    }
    if (!unregistered) return;
    // Checked and deleted in one step: a request another router queues on this stream in between
    // (the node came back) must not be deleted with it.
    await this.commands.eval(FORGET_EMPTY_STREAM, 2, stream, this.keys.nodeStreams, WORKER_GROUP, node);
  }
}

/** Deletes a departed node's stream and forgets it, only if it holds no entry and nothing pending. */
const FORGET_EMPTY_STREAM = `
if redis.call('XLEN', KEYS[1]) ~= 0 then return 0 end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
if tonumber(pending[1]) ~= 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
`;

function waitKey(stream: string, id: string): string {
  return `${stream} ${id}`;
}
