// The default worker count follows the cores, capped by a container's CPU quota (cgroup v2 or v1).
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { defaultWorkerCount } from './cluster.js';

function files(map: Record<string, string>) {
  return (path: string) => {
    const v = map[path];
    if (v === undefined) throw Object.assign(new Error(`ENOENT ${path}`), { code: 'ENOENT' });
    return v;
  };
}

describe('defaultWorkerCount', () => {
  const cores = availableParallelism();

  it('is the core count with no quota', () => {
    expect(defaultWorkerCount(files({}))).toBe(cores);
    expect(defaultWorkerCount(files({ '/sys/fs/cgroup/cpu.max': 'max 100000\n' }))).toBe(cores);
  });

  it('rounds a cgroup v2 quota up, never below one worker, never above the cores', () => {
    expect(defaultWorkerCount(files({ '/sys/fs/cgroup/cpu.max': '50000 100000\n' }))).toBe(1);
    expect(defaultWorkerCount(files({ '/sys/fs/cgroup/cpu.max': `${(cores + 8) * 100000} 100000` }))).toBe(cores);
    if (cores >= 2) expect(defaultWorkerCount(files({ '/sys/fs/cgroup/cpu.max': '150000 100000' }))).toBe(2);
  });

  it('reads a cgroup v1 quota when v2 is absent; -1 means none', () => {
    expect(defaultWorkerCount(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '100000', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' }))).toBe(1);
    expect(defaultWorkerCount(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' }))).toBe(cores);
  });
});
