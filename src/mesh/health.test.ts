import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseNvidiaSmi, ProcHealthSource } from './health.js';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function fakeHost(meminfo: string, zones: Record<string, string>): Promise<{ proc: string; sys: string }> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'mesh-health-'));
  dirs.push(root);
  const proc = path.join(root, 'proc');
  const sys = path.join(root, 'sys');
  await mkdir(proc, { recursive: true });
  await writeFile(path.join(proc, 'meminfo'), meminfo);
  for (const [zone, temp] of Object.entries(zones)) {
    await mkdir(path.join(sys, 'class/thermal', zone), { recursive: true });
    await writeFile(path.join(sys, 'class/thermal', zone, 'temp'), temp);
  }
  return { proc, sys };
}

describe('ProcHealthSource', () => {
  it('reads RAM use from MemAvailable and the hottest thermal zone', async () => {
    const { proc, sys } = await fakeHost('MemTotal:        8000000 kB\nMemFree:          100000 kB\nMemAvailable:    2000000 kB\n', {
      thermal_zone0: '48500\n',
      thermal_zone1: '61250\n',
    });
    const h = await new ProcHealthSource({ procRoot: proc, sysRoot: sys, nvidiaSmi: false }).collect();
    expect(h.ram_used_pct).toBe(75);
    expect(h.ram_total_bytes).toBe(8000000 * 1024);
    expect(h.cpu_temp_c).toBe(61.3);
    expect(h.gpus).toEqual([]);
  });

  it('reports no temperature where the host has no thermal zones', async () => {
    const { proc, sys } = await fakeHost('MemTotal: 1000 kB\nMemAvailable: 1000 kB\n', {});
    const h = await new ProcHealthSource({ procRoot: proc, sysRoot: sys, nvidiaSmi: false }).collect();
    expect(h.cpu_temp_c).toBeNull();
    expect(h.ram_used_pct).toBe(0);
  });
});

describe('parseNvidiaSmi', () => {
  it('parses one line per GPU and tolerates [N/A] fields', () => {
    const gpus = parseNvidiaSmi('NVIDIA A10G, 1024, 23028, 37, 41\nTesla T4, 0, 15360, [N/A], [N/A]\n');
    expect(gpus).toEqual([
      { name: 'NVIDIA A10G', memory_used_mb: 1024, memory_total_mb: 23028, utilization_pct: 37, temp_c: 41 },
      { name: 'Tesla T4', memory_used_mb: 0, memory_total_mb: 15360, utilization_pct: null, temp_c: null },
    ]);
  });
});
