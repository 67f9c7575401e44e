// config/scaling_config.yaml, seed 000's example, must stay valid: the capacity sections against
// their schemas, the catalog's models must fit its pools, and the other sections must be present
// (their schemas belong to the scaling, telemetry and limits modules).
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { GpuModelCatalog } from '../src/capacity/catalog.js';
import { capacitySections } from '../src/capacity/config.js';
import { devicesFromConfig } from '../src/capacity/pool.js';

const raw = parse(await readFile(new URL('../config/scaling_config.yaml', import.meta.url), 'utf8')) as Record<string, unknown>;

describe('config/scaling_config.yaml', () => {
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
