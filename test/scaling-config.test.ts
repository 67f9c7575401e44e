// config/scaling_config.yaml, seed 000's example, must stay valid: the whole file through the real
// config loader (full schema, as `serve --config` reads it), the capacity sections against their
// schemas, and the catalog's models must fit its pools. Every other YAML file under config/ and
// examples/ must load too.
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { GpuModelCatalog } from '../src/capacity/catalog.js';
import { capacitySections } from '../src/capacity/config.js';
import { devicesFromConfig } from '../src/capacity/pool.js';
import { loadConfig } from '../src/config/load.js';

const raw = parse(await readFile(new URL('../config/scaling_config.yaml', import.meta.url), 'utf8')) as Record<string, unknown>;

/** Every .yaml/.yml file under these folders of the repository, recursively. */
async function yamlFiles(...dirs: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const dir of dirs) {
    const path = fileURLToPath(new URL(`../${dir}/`, import.meta.url));
    if (!existsSync(path)) continue;
    for (const entry of await readdir(path, { recursive: true })) if (/\.ya?ml$/.test(entry)) out.push(`${dir}/${entry}`);
  }
  return out.sort();
}

describe('config/scaling_config.yaml', () => {
  it('loads through the real config loader and the full schema, keeping what it demonstrates', async () => {
    const { config } = await loadConfig({ file: fileURLToPath(new URL('../config/scaling_config.yaml', import.meta.url)), env: {} });
    expect(config.scaling).toMatchObject({ enabled: true, dry_run: true, min_replicas: 3, max_replicas: 20 });
    expect(config.inference.test_time_scaling.difficulty_levels.expert).toMatchObject({ passes: 5, max_tokens: 2048, timeout_s: 60 });
    expect(config.clusters.pools.map((p) => p.name)).toEqual(['a100-eu', 'l4-slices-eu']);
    // Seed 000's per_user / per_session limits, as rules.
    expect(config.rate_limiting.rules).toEqual([
      { name: 'per-user', per: 'user', requests: 100, tokens: 100000, window_s: 60 },
      { name: 'per-session', per: 'session', requests: 30, tokens: 20000, window_s: 60 },
    ]);
    // Seed 000's sample_ratio and alert thresholds, in the schema's terms.
    expect(config.monitoring.tracing).toMatchObject({ sampler: 'parentbased_traceidratio', sampler_arg: 0.1 });
    expect(config.monitoring.alerts).toEqual({ p95_latency_ms: 2000, error_rate: 0.05, queue_depth: 100 });
    expect(config.cost_optimization.spot_instances).toMatchObject({ enabled: true, max_fraction: 0.7 });
  });

  it('is one of the YAML files under config/ and examples/, every one of which loads', async () => {
    const files = await yamlFiles('config', 'examples');
    expect(files).toContain('config/scaling_config.yaml');
    for (const file of files) {
      await expect(loadConfig({ file: fileURLToPath(new URL(`../${file}`, import.meta.url)), env: {} }), file).resolves.toBeDefined();
    }
  });

  it("holds seed 000's six sections", () => {
    expect(Object.keys(raw).sort()).toEqual(['clusters', 'cost_optimization', 'inference', 'monitoring', 'rate_limiting', 'scaling']);
  });

  it('validates the scaling, clusters and cost_optimization sections', () => {
    const { scaling, clusters, cost_optimization } = z
      .object(capacitySections)
      .parse({ scaling: raw.scaling, clusters: raw.clusters, cost_optimization: raw.cost_optimization });
    expect(scaling).toMatchObject({ min_replicas: 3, max_replicas: 20, forecast: { season_s: 86_400, horizon_s: 3_600 } });
    expect(cost_optimization.spot_instances.enabled).toBe(true);
    // Every catalog model, built-in or added, fits at least one configured device.
    const devices = devicesFromConfig(clusters.pools);
    for (const m of new GpuModelCatalog(clusters.models).list()) {
      expect(devices.some((d) => d.memoryGb >= m.memoryGb && d.tflops >= m.tflops), m.name).toBe(true);
    }
  });

  it('is rejected with a named path when a key is mistyped', () => {
    const bad = { ...(raw.scaling as object), max_replica: 30 };
    const result = capacitySections.scaling.safeParse(bad);
    expect(result.success).toBe(false);
    expect(JSON.stringify(result.error?.issues)).toContain('max_replica');
  });

  it("keeps seed 000's difficulty levels in the inference section", () => {
    const levels = (raw.inference as { test_time_scaling: { difficulty_levels: Record<string, unknown> } }).test_time_scaling.difficulty_levels;
    expect(levels).toEqual({
      easy: { passes: 1, max_tokens: 256, timeout_s: 10 },
      medium: { passes: 2, max_tokens: 512, timeout_s: 20 },
      hard: { passes: 3, max_tokens: 1024, timeout_s: 40 },
      expert: { passes: 5, max_tokens: 2048, timeout_s: 60 },
    });
  });
});
