// The sticky router's decision, a pure function of the nodes' health, the request and the clock:
// filter out stale, hot, memory-starved, draining and model-less nodes; then prefer the node that
// already has the model loaded (no cold load), then the one the prompt prefix hashes to (warm prefix
// cache), minus a load penalty — unless loads are so uneven that the least-loaded node wins outright
// (SGLang's cache-aware router rule). No I/O here: it is unit-tested and benchmarked alone.
import { ErrNoAvailableNodes, type NodeHealth } from './contracts.js';
import type { MeshHealthThresholds, MeshScoring } from './config.js';

export interface RouteInput {
  model: string;
  /** Text whose hash picks an affinity node (the start of the prompt); none means no affinity. */
  affinityKey?: string;
}

export interface DecisionOptions {
  thresholds: MeshHealthThresholds;
  scoring: MeshScoring;
  now: number;
  /** Requests the caller has placed on a node since its last heartbeat (not yet in `in_flight`). */
  extraLoad?: (nodeId: string) => number;
}

export type DecisionReason = 'imbalance' | 'loaded' | 'affinity' | 'least_loaded';

export interface RouteDecision {
  node: string;
  reason: DecisionReason;
  candidates: number;
}

/** Why a node is not routable right now, or undefined when it is (model aside). */
export function exclusionReason(h: NodeHealth, t: MeshHealthThresholds, now: number): string | undefined {
  const age = now - h.ts;
  if (age > t.stale_after_s * 1000) return `heartbeat ${Math.round(age / 1000)} s old`;
  if (h.draining) return 'draining';
  if (h.cpu_temp_c !== null && h.cpu_temp_c > t.max_temp_c) return `${h.cpu_temp_c} °C`;
  if (h.ram_used_pct > t.max_ram_pct) return `RAM ${h.ram_used_pct.toFixed(0)} %`;
  return undefined;
}

export function chooseNode(nodes: readonly NodeHealth[], input: RouteInput, opts: DecisionOptions): RouteDecision | ErrNoAvailableNodes {
  const { thresholds, scoring, now } = opts;
  const model = withTag(input.model);
  const candidates: NodeHealth[] = [];
  const loads: number[] = [];
  let minLoad = Infinity;
  let maxLoad = -Infinity;
  for (const h of nodes) {
    if (exclusionReason(h, thresholds, now) !== undefined || !hasModel(h.models_installed, model)) continue;
    const load = h.in_flight + (opts.extraLoad?.(h.node_id) ?? 0);
    candidates.push(h);
    loads.push(load);
    if (load < minLoad) minLoad = load;
    if (load > maxLoad) maxLoad = load;
  }
  if (candidates.length === 0) return new ErrNoAvailableNodes(input.model, explainExclusions(nodes, input, opts));

  if (candidates.length > 1 && maxLoad - minLoad > scoring.imbalance_abs && maxLoad > minLoad * scoring.imbalance_rel) {
    let best = 0;
    for (let i = 1; i < candidates.length; i++) if (better(loads[i]!, candidates[i]!, loads[best]!, candidates[best]!, model)) best = i;
    return { node: candidates[best]!.node_id, reason: 'imbalance', candidates: candidates.length };
  }

  const affinityNode = input.affinityKey && scoring.affinity_weight > 0 ? rendezvousWinner(candidates, input.affinityKey) : undefined;
  let best = -1;
  let bestScore = -Infinity;
  for (let i = 0; i < candidates.length; i++) {
    const h = candidates[i]!;
    const score =
      (hasModel(h.models_loaded, model) ? scoring.loaded_weight : 0) +
      (h.node_id === affinityNode ? scoring.affinity_weight : 0) -
      (scoring.load_weight * loads[i]!) / Math.max(1, h.max_concurrency);
    if (score > bestScore || (score === bestScore && better(loads[i]!, h, loads[best]!, candidates[best]!, model))) {
      best = i;
      bestScore = score;
    }
  }
  const winner = candidates[best]!;
  const reason: DecisionReason = hasModel(winner.models_loaded, model)
    ? 'loaded'
    : winner.node_id === affinityNode
      ? 'affinity'
      : 'least_loaded';
  return { node: winner.node_id, reason, candidates: candidates.length };
}

/** Lower load wins; then a loaded model; then the lower node id, so every router breaks ties alike. */
function better(loadA: number, a: NodeHealth, loadB: number, b: NodeHealth, model: string): boolean {
  if (loadA !== loadB) return loadA < loadB;
  const warmA = hasModel(a.models_loaded, model);
  if (warmA !== hasModel(b.models_loaded, model)) return warmA;
  return a.node_id < b.node_id;
}

const LATEST = ':latest';

/** Whether a model name carries a tag: a `:` after the last `/` (`host:5000/model` has none). */
function tagged(name: string): boolean {
  return name.lastIndexOf(':') > name.lastIndexOf('/');
}

/**
 * A model name with Ollama's implicit tag: `llama3.2` is `llama3.2:latest`. Ollama lists its models
 * with their tags (`/api/tags`, `/api/ps`), while deployments and clients name them either way.
 */
export function withTag(name: string): string {
  return tagged(name) ? name : name + LATEST;
}

/** Whether a node's model list holds `model` (given `withTag`), untagged names read as `:latest`. */
export function hasModel(list: readonly string[], model: string): boolean {
  for (const m of list) {
    if (m === model) return true;
    // Compared without building `${m}:latest`: this runs for every candidate of every decision.
    if (model.length === m.length + LATEST.length && model.endsWith(LATEST) && model.startsWith(m) && !tagged(m)) return true;
  }
  return false;
}

/**
 * Highest-random-weight hashing: every router maps the same prefix to the same node without shared
 * state, and a node joining or leaving moves only the prefixes that hashed to it.
 */
export function rendezvousWinner(nodes: readonly NodeHealth[], key: string): string | undefined {
  const keyHash = fnv1a(key, 0x811c9dc5);
  let winner: string | undefined;
  let top = -1;
  for (const h of nodes) {
    const w = mix(fnv1a(h.node_id, keyHash));
    if (w > top) {
      top = w;
      winner = h.node_id;
    }
  }
  return winner;
}

function fnv1a(s: string, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** murmur3's finaliser: spreads fnv's weak low bits so the winner is not decided by the last character. */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function explainExclusions(nodes: readonly NodeHealth[], input: RouteInput, opts: DecisionOptions): Record<string, string> {
  const reasons: Record<string, string> = {};
  for (const h of nodes) {
    reasons[h.node_id] =
      exclusionReason(h, opts.thresholds, opts.now) ??
      (h.backend_ok ? `model "${input.model}" not installed` : 'backend unreachable (no models listed)');
  }
  return reasons;
}

/** The affinity key of a chat request: the start of its conversation text. */
export function affinityKeyOf(messages: readonly { role: string; content: unknown }[], chars: number): string {
  let out = '';
  for (const m of messages) {
    const text = typeof m.content === 'string' ? m.content : Array.isArray(m.content) ? m.content.map((p: { text?: string }) => p.text ?? '').join('') : '';
    out += `${m.role}:${text}\n`;
    if (out.length >= chars) break;
  }
  return out.slice(0, chars);
}
