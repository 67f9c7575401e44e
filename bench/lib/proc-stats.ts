// What the kernel says about a benchmarked process and its children (cluster workers): resident
// memory from /proc/<pid>/status and open descriptors from /proc/<pid>/fd. Linux only.
import { readdir, readFile } from 'node:fs/promises';

export interface ProcSample {
  pid: number;
  rssBytes: number;
  fds: number;
}

async function childrenOf(pid: number): Promise<number[]> {
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  const out: number[] = [];
  for (const t of tasks) {
    const raw = await readFile(`/proc/${pid}/task/${t}/children`, 'utf8').catch(() => '');
    for (const c of raw.trim().split(/\s+/)) if (c) out.push(Number(c));
  }
  return out;
}

export async function sampleProcess(pid: number): Promise<ProcSample | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    const fds = (await readdir(`/proc/${pid}/fd`)).length;
    return { pid, rssBytes: kb * 1024, fds };
  } catch {
    return undefined;
  }
}

/** The process and, if it is a cluster primary, its workers. */
export async function sampleTree(pid: number): Promise<ProcSample[]> {
  const pids = [pid, ...(await childrenOf(pid))];
  const samples = await Promise.all(pids.map(sampleProcess));
  return samples.filter((s): s is ProcSample => s !== undefined);
}
