// The cluster primary with stand-in workers (in this process, so coverage sees it): one shared port,
// drain on stop, start-up failure and the crash-loop guard. And the default worker count, which
// follows the cores, capped by a container's CPU quota (cgroup v2 or v1).
import { get as httpGet } from 'node:http';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../telemetry/logger.js';
import cluster from 'node:cluster';
import { WORKER_SEMI_SPACE_MB, defaultWorkerCount, localCapacityState, planWorkers, runPrimary, schedulingPolicyFor, workerExecArgv, type PrimaryOptions } from './cluster.js';

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

describe('planWorkers', () => {
  const cores = () => 8;
  const none = { embeddedDatabase: false };
  const pglite = { embeddedDatabase: true };
  it('uses the explicit count, else the cores', () => {
    expect(planWorkers(3, none, cores)).toEqual({ workers: 3 });
    expect(planWorkers(undefined, none, cores)).toEqual({ workers: 8 });
  });

  it('keeps one process on the embedded database: the default drops to one, an explicit count above one is refused', () => {
    const plan = planWorkers(undefined, pglite, cores);
    expect(plan.workers).toBe(1);
    expect(plan.note).toMatch(/DATABASE_URL/);
    expect(planWorkers(1, pglite, cores)).toEqual({ workers: 1 });
    expect(() => planWorkers(2, pglite, cores)).toThrow(/PGlite.*DATABASE_URL/);
  });

  it('keeps one process for the GPU pool and the autoscaler without Redis: one by default, more refused', () => {
    const config = (over: { redis?: string; scaling?: boolean; devices?: number; fromMesh?: boolean } = {}) => ({
      redis: { url: over.redis },
      scaling: { enabled: over.scaling ?? false },
      clusters: { pools: [{ devices: Array.from({ length: over.devices ?? 0 }, () => ({})) }], from_mesh: over.fromMesh ?? false },
    });
    expect(localCapacityState(config())).toBeUndefined();
    expect(localCapacityState(config({ scaling: true, devices: 2, redis: 'redis://r:6379' }))).toBeUndefined();
    expect(localCapacityState(config({ scaling: true }))).toBe('the autoscaler (scaling.enabled)');
    expect(localCapacityState(config({ devices: 1 }))).toMatch(/GPU pool/);
    expect(localCapacityState(config({ fromMesh: true, scaling: true }))).toMatch(/GPU pool .* and the autoscaler/);

    const localCapacity = localCapacityState(config({ scaling: true, devices: 1 }));
    const plan = planWorkers(undefined, { embeddedDatabase: false, localCapacity }, cores);
    expect(plan.workers).toBe(1);
    expect(plan.note).toMatch(/one worker, not 8: without Redis the GPU pool .* REDIS_URL/);
    expect(() => planWorkers(4, { embeddedDatabase: false, localCapacity }, cores)).toThrow(/--workers 4: without Redis .* lease the same GPUs .* set REDIS_URL/);
    expect(planWorkers(1, { embeddedDatabase: false, localCapacity }, cores)).toEqual({ workers: 1 });
    expect(planWorkers(undefined, { embeddedDatabase: false }, cores)).toEqual({ workers: 8 });
    // Both reasons at once are both named.
    expect(planWorkers(undefined, { embeddedDatabase: true, localCapacity }, cores).note).toMatch(/PGlite.*DATABASE_URL.*REDIS_URL/);
  });
});

describe('schedulingPolicyFor', () => {
  it('is round-robin for `rr` only: unset, empty (a templated manifest), `none` or anything else, the workers accept themselves', () => {
    expect(schedulingPolicyFor('rr')).toBe(cluster.SCHED_RR);
    for (const value of [undefined, '', 'none', 'RR', ' rr', 'round-robin']) expect(schedulingPolicyFor(value)).toBe(cluster.SCHED_NONE);
  });
});

describe('runPrimary', () => {
  const exec = fileURLToPath(new URL('./__fixtures__/cluster-worker.mjs', import.meta.url));
  const log = createLogger('silent');
  const start = (mode: string, extra: Partial<PrimaryOptions> = {}) =>
    runPrimary({ workers: 2, log, shutdownTimeoutMs: 2_000, host: '127.0.0.1', exec, env: { FIXTURE_MODE: mode }, exit: () => undefined, handleSignals: false, ...extra });

  /** A GET's body, on its own connection (the fixture's `/` answers with the worker's pid). */
  const getText = (url: string, path = '/') =>
    new Promise<string>((resolve, reject) => {
      httpGet(`${url}${path}`, { agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });

  it('starts the workers on one shared port, then drains them all and exits 0', async () => {
    const primary = start('listen');
    const { url, pids } = await primary.listening;
    // Set before the first fork: the workers accept from the shared socket themselves.
    expect(cluster.schedulingPolicy).toBe(process.env.NODE_CLUSTER_SCHED_POLICY === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(new Set(pids).size).toBe(2);
    const seen = new Set<string>();
    for (let i = 0; i < 20 && seen.size < 2; i++) seen.add(await getText(url));
    expect([...seen].sort()).toEqual(pids.map(String).sort());
    primary.stop();
    expect(await primary.exited).toBe(0);
  });

  it('answers a metrics scrape of any worker with every worker’s report, process metrics by slot; a replacement takes the dead worker’s slot', async () => {
    const primary = start('listen');
    try {
      const { url, pids } = await primary.listening;
      const get = (path: string) => getText(url, path);
      // Each request on a new connection, until both workers have answered: the workers accept from the
      // shared socket themselves, and on a busy machine one of them may take many in a row.
      const answeredBy = new Set<string>();
      let sent = 0;
      while (answeredBy.size < 2 && sent < 500) {
        answeredBy.add(await get('/'));
        sent++;
      }
      expect(answeredBy.size).toBe(2);
      for (let i = 0; i < 6; i++) {
        const text = await get('/metrics');
        expect(text).toContain(`fixture_requests_total ${sent}\n`);
        expect(text).toContain('inference_metrics_workers{state="answered"} 2');
        expect(text).toMatch(new RegExp(`nodejs_fixture_pid\\{worker="0"\\} (${pids.join('|')})\n`));
        expect(text).toMatch(new RegExp(`nodejs_fixture_pid\\{worker="1"\\} (${pids.join('|')})\n`));
      }
      // The first worker's slot, and whose pid it was: its replacement takes that slot.
      const before = await get('/metrics');
      const slot0 = /nodejs_fixture_pid\{worker="0"\} (\d+)/.exec(before)?.[1];
      process.kill(Number(slot0), 'SIGKILL');
      let after = '';
      await expect
        .poll(async () => {
          after = await get('/metrics');
          return /inference_metrics_workers\{state="answered"\} 2/.test(after) && !after.includes(`} ${slot0}\n`);
        }, { timeout: 15_000 })
        .toBe(true);
      expect(after).toMatch(/nodejs_fixture_pid\{worker="0"\} \d+/);
      expect(after).toMatch(/nodejs_fixture_pid\{worker="1"\} \d+/);
      expect(after).not.toMatch(/worker="2"/);
    } finally {
      primary.stop();
      await primary.exited;
    }
  }, 30_000);

  it('starts workers with a 64 MiB young-generation semi-space unless the operator chose one', async () => {
    expect(workerExecArgv(['--enable-source-maps'], '')).toEqual(['--enable-source-maps', `--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`]);
    expect(workerExecArgv(['--max-semi-space-size=8'], '')).toEqual(['--max-semi-space-size=8']);
    expect(workerExecArgv([], '--max_semi_space_size=32 --trace-gc')).toEqual([]);
    const primary = start('listen', { workers: 1 });
    try {
      const { url } = await primary.listening;
      const res = await fetch(`${url}/heap`);
      const { execArgv } = (await res.json()) as { execArgv: string[] };
      expect(execArgv).toContain(`--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`);
    } finally {
      primary.stop();
      await primary.exited;
    }
  });

  it('stops with exit code 1 when a worker exits before it ever listened', async () => {
    const primary = start('no-listen');
    await expect(primary.listening).rejects.toThrow(/before every worker listened/);
    expect(await primary.exited).toBe(1);
  });

  it('replaces crashing workers until the crash-loop guard stops the cluster with exit code 1', async () => {
    const lines: string[] = [];
    const recording = createLogger('info', { write: (line: string) => lines.push(line) } as unknown as NodeJS.WritableStream);
    const primary = start('crash', { workers: 1, maxRestarts: 2, log: recording });
    expect(await primary.exited).toBe(1);
    const msgs = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(msgs.filter((m) => m === 'worker died unexpectedly; starting a new one')).toHaveLength(2);
    expect(msgs).toContain('workers keep dying; stopping the cluster');
  });
});
