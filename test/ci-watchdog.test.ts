import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import StallReporter from './helpers/stall-reporter.js';

interface Run { code: number | null; stdout: string; stderr: string }

function watchdog(script: string, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'scripts/ci-watchdog.ts', '--', 'bash', '-c', script],
      { env: { ...process.env, ...env }, timeout: 25_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

/** Running, as opposed to gone or a zombie waiting for init to reap it. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

let dir = '';
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = '';
});

describe('scripts/ci-watchdog.ts', () => {
  it('passes the output and exit code of a command that ends on its own through, and never runs it again', async () => {
    dir = mkdtempSync(join(tmpdir(), 'watchdog-'));
    const runs = join(dir, 'runs');
    const r = await watchdog(`echo ran >> ${runs}; echo 'Test Files 1 failed'; echo oops >&2; exit 3`, { CI_STALL_SECONDS: '5' });
    expect(r.code).toBe(3);
    expect(r.stdout).toContain('Test Files 1 failed');
    expect(r.stderr).toContain('oops');
    expect(readFileSync(runs, 'utf8')).toBe('ran\n');
  });

  it('kills a command that goes quiet, shows what its processes were doing, and runs it once more', async () => {
    dir = mkdtempSync(join(tmpdir(), 'watchdog-'));
    const runs = join(dir, 'runs');
    // First run: prints a line, then hangs in a child (sleep); the second run finishes.
    const script = `echo ran >> ${runs}; echo started; if [ $(wc -l < ${runs}) -eq 1 ]; then sleep 300; fi; echo done`;
    const r = await watchdog(script, { CI_STALL_SECONDS: '1' });
    expect(r.code).toBe(0);
    expect(readFileSync(runs, 'utf8')).toBe('ran\nran\n');
    expect(r.stderr).toMatch(/printed nothing for \d+ s/);
    expect(r.stderr).toMatch(/WCHAN[\s\S]*sleep 300/);
    expect(r.stderr).toContain('running it again (attempt 2 of 2)');
    expect(r.stdout).toContain('done');
  });

  it('gives up with 124 after the retries, leaving none of the stalled processes behind', async () => {
    dir = mkdtempSync(join(tmpdir(), 'watchdog-'));
    const pids = join(dir, 'pids');
    const r = await watchdog(`sleep 300 & echo $! >> ${pids}; echo waiting; wait`, { CI_STALL_SECONDS: '1', CI_STALL_RETRIES: '1' });
    expect(r.code).toBe(124);
    const started = readFileSync(pids, 'utf8').trim().split('\n').map(Number);
    expect(started).toHaveLength(2);
    expect(started.filter(alive)).toEqual([]);
    expect(r.stderr).toContain('stalled 2 time(s); giving up');
  });

  it('refuses a stall limit that is not a positive number', async () => {
    const r = await watchdog('echo hi', { CI_STALL_SECONDS: 'soon' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('CI_STALL_SECONDS must be a positive number');
  });
});

describe('the stall reporter', () => {
  it('names the files running longer than its period, oldest first, and forgets finished ones', () => {
    const reporter = new StallReporter({ everySeconds: 60 });
    const at = Date.now();
    const mod = (id: string) => ({ moduleId: join(process.cwd(), id) }) as never;
    reporter.onTestModuleStart(mod('test/slow.test.ts'));
    reporter.onTestModuleStart(mod('test/quick.test.ts'));
    reporter.onTestModuleStart(mod('test/done.test.ts'));
    reporter.onTestModuleEnd(mod('test/done.test.ts'));
    expect(reporter.stillRunning(at + 30_000)).toEqual([]);
    const later = reporter.stillRunning(at + 125_000);
    expect(later.map((s) => s.replace(/ \(\d+ s\)$/, ''))).toEqual(['test/slow.test.ts', 'test/quick.test.ts']);
    expect(later[0]).toMatch(/\((124|125) s\)$/);
    reporter.onTestRunEnd();
    expect(reporter.stillRunning(at + 125_000)).toEqual([]);
  });
});
