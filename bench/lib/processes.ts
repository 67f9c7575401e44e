// Starts benchmark participants as separate processes (so each has its own event loop) and waits
// for their READY line.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { WORKER_SEMI_SPACE_MB } from '../../src/cli/cluster.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Proc {
  child: ChildProcess;
  port: number;
  stop(): void;
}

/** The node flags the Docker image gives every InferenceFlow process (Dockerfile, docs/scaling.md). */
export const IMAGE_NODE_OPTIONS = `--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`;

/**
 * Starts `node --import tsx <args>`. InferenceFlow's own processes (`dist/…`) run with the Docker
 * image's NODE_OPTIONS unless the environment sets NODE_OPTIONS; the stand-ins run with Node's defaults.
 * BENCH_NODE_FLAGS adds node flags to InferenceFlow's processes only (flags NODE_OPTIONS refuses, such
 * as `--cpu-prof --cpu-prof-dir=/tmp/prof`; `serve --workers N` passes them on to its workers).
 */
export function startProcess(args: string[], env: Record<string, string> = {}, ready = /READY (\d+)/): Promise<Proc> {
  // This checkout's dist/ or another's (bench/build-ab.ts): both get the image's flags.
  const own = /(^|\/)dist\//.test(args[0] ?? '');
  const image = own && process.env.NODE_OPTIONS === undefined ? { NODE_OPTIONS: IMAGE_NODE_OPTIONS } : {};
  const flags = own ? (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean) : [];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...flags, '--import', 'tsx', ...args], { cwd: ROOT, env: { ...process.env, ...image, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (m) {
        child.stdout?.off('data', onData);
        child.stdout?.resume();
        resolve({ child, port: m[1] === undefined ? 0 : Number(m[1]), stop: () => killTree(child) });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${out.slice(-2000)}`)));
  });
}

/** Every descendant of `pid` (cluster workers and theirs), from /proc; empty where there is none. */
function descendants(pid: number): number[] {
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const t of tasks) {
    let raw = '';
    try {
      raw = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const c of raw.trim().split(/\s+/)) if (c) out.push(Number(c), ...descendants(Number(c)));
  }
  return out;
}

/**
 * SIGKILLs the process and its descendants. A cluster worker should exit when its primary's IPC
 * channel closes, but one whose event loop is busy with a backlog may not get to it: an orphaned
 * gateway worker kept a core 55% busy for ten minutes after a soak here, and skewed every run after it.
 */
function killTree(child: ChildProcess): void {
  const kids = child.pid === undefined ? [] : descendants(child.pid);
  if (process.env.BENCH_NODE_FLAGS && child.exitCode === null && child.signalCode === null) {
    // Profiling: a graceful stop (the serve primary stops its workers), so --cpu-prof and the like
    // write their files on exit; killed outright only if it has not exited in 20 s.
    child.kill('SIGTERM');
    setTimeout(() => kill(child, kids), 20_000).unref();
    return;
  }
  kill(child, kids);
}

function kill(child: ChildProcess, kids: number[]): void {
  child.kill('SIGKILL');
  for (const pid of kids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
