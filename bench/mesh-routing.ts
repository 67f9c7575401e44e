// Routing decision cost of the mesh's sticky router with 100 nodes (target: p99 at most 1 ms).
// Pure CPU: chooseNode over a registry snapshot with mixed health, loaded models and load, plus the
// affinity key it hashes. `npx tsx bench/mesh-routing.ts [decisions]`.
import os from 'node:os';
import { defaultMeshConfig } from '../src/mesh/config.js';
import type { NodeHealth } from '../src/mesh/contracts.js';
import { affinityKeyOf, chooseNode } from '../src/mesh/sticky.js';

const DECISIONS = Number(process.argv[2] ?? 20_000);
const NODES = 100;
const cfg = defaultMeshConfig();
const now = Date.now();
const models = ['llama3.2:3b', 'qwen2.5:7b', 'phi3:mini', 'mistral:7b', 'gemma2:2b'];

const nodes: NodeHealth[] = Array.from({ length: NODES }, (_, i) => ({
  node_id: `pi-${String(i).padStart(3, '0')}`,
  backend: 'ollama',
  backend_ok: true,
  models_installed: models.filter((_, m) => (i + m) % 3 !== 0),
  models_loaded: [models[i % models.length]!],
  cpu_temp_c: i % 17 === 0 ? 80 : 45 + (i % 20),
  ram_used_pct: i % 23 === 0 ? 95 : 30 + (i % 50),
  ram_total_bytes: 8e9,
  load1: 1,
  gpus: [],
  in_flight: i % 7,
  max_concurrency: 4,
  draining: false,
  version: 'bench',
  ts: i % 29 === 0 ? now - 20_000 : now - (i % 5) * 1000,
}));

const prompts = Array.from({ length: 64 }, (_, i) => [
  { role: 'system', content: 'You are a helpful assistant running on a Raspberry Pi cluster.' },
  { role: 'user', content: `Question ${i}: explain routing decision number ${i} in detail, please.` },
]);
const extra = new Map<string, number>();
const opts = { thresholds: cfg.health, scoring: cfg.scoring, now, extraLoad: (id: string) => extra.get(id) ?? 0 };

// Warm-up, then measure each decision (affinity key included: the router computes it per request).
for (let i = 0; i < 2_000; i++) chooseNode(nodes, { model: models[i % 5]!, affinityKey: affinityKeyOf(prompts[i % 64]!, 256) }, opts);
const samples = new Float64Array(DECISIONS);
for (let i = 0; i < DECISIONS; i++) {
  const t0 = process.hrtime.bigint();
  const d = chooseNode(nodes, { model: models[i % 5]!, affinityKey: affinityKeyOf(prompts[i % 64]!, cfg.scoring.prefix_chars) }, opts);
  samples[i] = Number(process.hrtime.bigint() - t0) / 1e6;
  if ('node' in d) extra.set(d.node, ((extra.get(d.node) ?? 0) + 1) % 8);
}
samples.sort();
const q = (p: number) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))]!;
console.log(
  JSON.stringify(
    {
      benchmark: 'mesh-routing',
      nodes: NODES,
      decisions: DECISIONS,
      p50_ms: +q(0.5).toFixed(4),
      p99_ms: +q(0.99).toFixed(4),
      max_ms: +samples[samples.length - 1]!.toFixed(4),
      target_p99_ms: 1,
      machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, load ${os.loadavg()[0]!.toFixed(1)}`,
    },
    null,
    2,
  ),
);
