// Host health for a mesh node: CPU temperature, memory, load and GPU memory. The design names
// systeminformation for this, but it is not installed, so the Linux sources are read directly
// (/proc/meminfo, /sys/class/thermal, os.loadavg, `nvidia-smi` when present) behind HealthSource;
// tests inject their own source to play a hot or memory-starved node.
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import type { GpuHealth } from './contracts.js';

export interface HostHealth {
  cpu_temp_c: number | null;
  ram_used_pct: number;
  ram_total_bytes: number;
  load1: number;
  gpus: GpuHealth[];
}

export interface HealthSource {
  collect(): Promise<HostHealth>;
}

/** A fixed reading, or one a test changes between heartbeats. */
export class StaticHealthSource implements HealthSource {
  constructor(public reading: HostHealth) {}
  async collect(): Promise<HostHealth> {
    return { ...this.reading, gpus: [...this.reading.gpus] };
  }
}

export interface ProcHealthOptions {
  procRoot?: string;
  sysRoot?: string;
  /** Set false to never run nvidia-smi. */
  nvidiaSmi?: boolean;
}

/** Reads Linux's own files; falls back to os.freemem/totalmem elsewhere. */
export class ProcHealthSource implements HealthSource {
  private readonly procRoot: string;
  private readonly sysRoot: string;
  /** Once nvidia-smi is found missing it is not looked for again. */
  private nvidiaSmi: boolean;

  constructor(opts: ProcHealthOptions = {}) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.sysRoot = opts.sysRoot ?? '/sys';
    this.nvidiaSmi = opts.nvidiaSmi ?? true;
  }

  async collect(): Promise<HostHealth> {
    const [memory, temp, gpus] = await Promise.all([this.memory(), this.cpuTemperature(), this.gpus()]);
    return { ...memory, cpu_temp_c: temp, load1: os.loadavg()[0] ?? 0, gpus };
  }

  private async memory(): Promise<{ ram_used_pct: number; ram_total_bytes: number }> {
    try {
      const text = await readFile(`${this.procRoot}/meminfo`, 'utf8');
      const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
      const total = kb('MemTotal');
      // MemAvailable counts reclaimable cache; "free" alone would call every busy Linux box full.
      const available = kb('MemAvailable');
      if (Number.isFinite(total) && Number.isFinite(available) && total > 0) {
        return { ram_used_pct: round1(((total - available) / total) * 100), ram_total_bytes: total * 1024 };
      }
    } catch {
      // not Linux: fall through
    }
    const total = os.totalmem();
    return { ram_used_pct: round1(((total - os.freemem()) / total) * 100), ram_total_bytes: total };
  }

  /** The hottest CPU-ish thermal zone (Raspberry Pi: cpu-thermal; x86: x86_pkg_temp/acpitz), °C. */
  private async cpuTemperature(): Promise<number | null> {
    const base = `${this.sysRoot}/class/thermal`;
    let zones: string[];
    try {
      zones = (await readdir(base)).filter((z) => z.startsWith('thermal_zone'));
    } catch {
      return null;
    }
    const readings = await Promise.all(
      zones.map(async (zone) => {
        try {
          const milli = Number((await readFile(`${base}/${zone}/temp`, 'utf8')).trim());
          return Number.isFinite(milli) ? milli / 1000 : null;
        } catch {
          return null;
        }
      }),
    );
    const valid = readings.filter((r): r is number => r !== null && r > -50 && r < 200);
    return valid.length ? round1(Math.max(...valid)) : null;
  }

  private async gpus(): Promise<GpuHealth[]> {
    if (!this.nvidiaSmi) return [];
    const out = await new Promise<string | null>((resolve) => {
      execFile(
        'nvidia-smi',
        ['--query-gpu=name,memory.used,memory.total,utilization.gpu,temperature.gpu', '--format=csv,noheader,nounits'],
        { timeout: 2_000 },
        (err, stdout) => {
          if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') this.nvidiaSmi = false;
          resolve(err ? null : stdout);
        },
      );
    });
    return out ? parseNvidiaSmi(out) : [];
  }
}

/** Parses `nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu,temperature.gpu --format=csv,noheader,nounits`. */
export function parseNvidiaSmi(csv: string): GpuHealth[] {
  const num = (s: string | undefined) => {
    const n = Number(s?.trim());
    return s !== undefined && s.trim() !== '' && Number.isFinite(n) ? n : null;
  };
  return csv
    .split('\n')
    .map((line) => line.split(','))
    .filter((cols) => cols.length >= 3 && cols[0]!.trim() !== '')
    .map((cols) => ({
      name: cols[0]!.trim(),
      memory_used_mb: num(cols[1]) ?? 0,
      memory_total_mb: num(cols[2]) ?? 0,
      utilization_pct: num(cols[3]),
      temp_c: num(cols[4]),
    }));
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
