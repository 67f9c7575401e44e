import { describe, expect, it } from 'vitest';
import { defaultMeshConfig } from './config.js';
import { ErrNoAvailableNodes, type NodeHealth } from './contracts.js';
import { affinityKeyOf, chooseNode, rendezvousWinner, type RouteDecision } from './sticky.js';

const NOW = 1_000_000;
const cfg = defaultMeshConfig();

function node(id: string, over: Partial<NodeHealth> = {}): NodeHealth {
  return {
    node_id: id,
    backend: 'local',
    backend_ok: true,
    models_installed: ['m'],
    models_loaded: [],
    cpu_temp_c: 50,
    ram_used_pct: 40,
    ram_total_bytes: 8e9,
    load1: 0.5,
    gpus: [],
    in_flight: 0,
    max_concurrency: 4,
    draining: false,
    version: 't',
    ts: NOW - 1000,
    ...over,
  };
}

const opts = (extra: Record<string, number> = {}) => ({
  thresholds: cfg.health,
  scoring: cfg.scoring,
  now: NOW,
  extraLoad: (id: string) => extra[id] ?? 0,
});

function pick(nodes: NodeHealth[], extra?: Record<string, number>, affinityKey?: string): RouteDecision {
  const d = chooseNode(nodes, { model: 'm', affinityKey }, opts(extra));
  if (d instanceof ErrNoAvailableNodes) throw d;
  return d;
}

describe('chooseNode health filter', () => {
  it('excludes a node at 80 °C, one at 95 % RAM and one whose heartbeat stopped 16 s ago', () => {
    const nodes = [
      node('hot', { cpu_temp_c: 80, models_loaded: ['m'] }),
      node('full', { ram_used_pct: 95, models_loaded: ['m'] }),
      node('stale', { ts: NOW - 16_000, models_loaded: ['m'] }),
      node('ok', { in_flight: 3 }),
    ];
    expect(pick(nodes).node).toBe('ok');
    const none = chooseNode(nodes.slice(0, 3), { model: 'm' }, opts());
    expect(none).toBeInstanceOf(ErrNoAvailableNodes);
    const reasons = (none as ErrNoAvailableNodes).reasons;
    expect(reasons.hot).toContain('80');
    expect(reasons.full).toContain('RAM 95');
    expect(reasons.stale).toContain('heartbeat 16 s');
  });

  it('keeps nodes exactly at the thresholds (75 °C, 90 %, 15 s) and nodes without a thermal sensor', () => {
    const nodes = [node('edge', { cpu_temp_c: 75, ram_used_pct: 90, ts: NOW - 15_000 }), node('nosensor', { cpu_temp_c: null })];
    const d = chooseNode(nodes, { model: 'm' }, opts());
    expect(d).not.toBeInstanceOf(ErrNoAvailableNodes);
    expect((d as RouteDecision).candidates).toBe(2);
  });

  it('skips draining nodes and nodes without the model, and says why', () => {
    const nodes = [node('leaving', { draining: true }), node('other', { models_installed: ['x'] }), node('down', { backend_ok: false, models_installed: [] })];
    const d = chooseNode(nodes, { model: 'm' }, opts());
    expect(d).toBeInstanceOf(ErrNoAvailableNodes);
    expect((d as ErrNoAvailableNodes).reasons).toEqual({
      leaving: 'draining',
      other: 'model "m" not installed',
      down: 'backend unreachable (no models listed)',
    });
    expect(chooseNode([], { model: 'm' }, opts())).toBeInstanceOf(ErrNoAvailableNodes);
  });
});

describe('chooseNode stickiness and balance', () => {
  it('prefers the node with the model loaded until the imbalance rule fires, then the least loaded', () => {
    const nodes = [node('warm', { models_loaded: ['m'] }), node('cold1'), node('cold2')];
    const placed: Record<string, number> = { warm: 0, cold1: 0, cold2: 0 };
    const order: string[] = [];
    for (let i = 0; i < 12; i++) {
      const d = pick(nodes, placed);
      order.push(`${d.node}:${d.reason}`);
      placed[d.node]!++;
    }
    // Sticky while the gap is at most imbalance_abs (4): five requests go to the warm node.
    expect(order.slice(0, 5)).toEqual(Array(5).fill('warm:loaded'));
    // Then the imbalance rule sends work to the idle cold nodes until loads even out.
    expect(order[5]).toMatch(/^cold[12]:imbalance$/);
    expect(placed.cold1! + placed.cold2!).toBeGreaterThan(0);
    expect(Math.max(...Object.values(placed)) - Math.min(...Object.values(placed))).toBeLessThanOrEqual(cfg.scoring.imbalance_abs + 1);
  });

  it('the relative threshold keeps stickiness when every node is busy', () => {
    // Gap 5 > 4 but 25 < 20 * 1.5: not uneven enough, the warm node keeps the request.
    const nodes = [node('warm', { models_loaded: ['m'], in_flight: 25, max_concurrency: 64 }), node('cold', { in_flight: 20, max_concurrency: 64 })];
    expect(pick(nodes)).toMatchObject({ node: 'warm', reason: 'loaded' });
  });

  it('sends the same prompt prefix to the same node, the same way from any router', () => {
    const nodes = ['a', 'b', 'c', 'd', 'e'].map((id) => node(id));
    const key = affinityKeyOf([{ role: 'user', content: 'Tell me a story about a dragon' }], 256);
    const first = pick(nodes, {}, key);
    expect(first.reason).toBe('affinity');
    expect(first.node).toBe(rendezvousWinner(nodes, key));
    expect(pick([...nodes].reverse(), {}, key).node).toBe(first.node);
    // Different prefixes spread over the nodes.
    const winners = new Set(Array.from({ length: 50 }, (_, i) => rendezvousWinner(nodes, `user:prompt ${i}`)));
    expect(winners.size).toBeGreaterThanOrEqual(4);
    // Removing a node only moves the prefixes that were on it.
    const without = nodes.filter((n) => n.node_id !== 'a');
    for (let i = 0; i < 50; i++) {
      const k = `user:prompt ${i}`;
      const before = rendezvousWinner(nodes, k)!;
      if (before !== 'a') expect(rendezvousWinner(without, k)).toBe(before);
    }
  });

  it('a loaded model outweighs prefix affinity; load breaks ties', () => {
    const nodes = ['a', 'b', 'c'].map((id) => node(id));
    const key = 'user:hello';
    const aff = rendezvousWinner(nodes, key)!;
    const other = nodes.find((n) => n.node_id !== aff)!;
    other.models_loaded = ['m'];
    expect(pick(nodes, {}, key)).toMatchObject({ node: other.node_id, reason: 'loaded' });
    const plain = [node('x', { in_flight: 2 }), node('y', { in_flight: 1 })];
    expect(pick(plain)).toMatchObject({ node: 'y', reason: 'least_loaded' });
  });
});

describe("chooseNode and Ollama's implicit :latest tag", () => {
  const route = (nodes: NodeHealth[], model: string) => chooseNode(nodes, { model }, opts());

  it('routes an untagged model to nodes that list it as :latest, and the reverse', () => {
    expect(route([node('ollama', { backend: 'ollama', models_installed: ['llama3.2:latest'] })], 'llama3.2')).toMatchObject({ node: 'ollama' });
    expect(route([node('bare', { models_installed: ['llama3.2'] })], 'llama3.2:latest')).toMatchObject({ node: 'bare' });
    // A host:port in the name is not a tag: that model is still the registry's :latest.
    expect(route([node('reg', { models_installed: ['registry:5000/llama3.2:latest'] })], 'registry:5000/llama3.2')).toMatchObject({ node: 'reg' });
  });

  it('does not take another tag, or a longer name, for the model', () => {
    expect(route([node('small', { models_installed: ['llama3.2:3b'] })], 'llama3.2')).toBeInstanceOf(ErrNoAvailableNodes);
    expect(route([node('other', { models_installed: ['llama3.2-vision:latest'] })], 'llama3.2')).toBeInstanceOf(ErrNoAvailableNodes);
    expect(route([node('bare', { models_installed: ['llama3'] })], 'llama3.2:latest')).toBeInstanceOf(ErrNoAvailableNodes);
  });

  it('scores a node that has the untagged model loaded as :latest as loaded', () => {
    const nodes = [
      node('a-cold', { models_installed: ['llama3.2:latest'] }),
      node('b-warm', { models_installed: ['llama3.2:latest'], models_loaded: ['llama3.2:latest'] }),
    ];
    expect(route(nodes, 'llama3.2')).toMatchObject({ node: 'b-warm', reason: 'loaded' });
  });
});
