// What the kernel says about a benchmarked process and its children (cluster workers): resident
// memory from /proc/<pid>/status, CPU time from /proc/<pid>/stat, and open descriptors by kind from
// /proc/<pid>/fd (fdKinds). Linux only.
import { readdir, readFile, readlink } from 'node:fs/promises';

export interface ProcSample {
  pid: number;
  rssBytes: number;
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
    return { pid, rssBytes: kb * 1024 };
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

/** Linux's USER_HZ: /proc reports CPU time in these ticks on every mainstream architecture. */
const TICKS_PER_S = 100;

/**
 * CPU time (user + system, ms) used so far by the process and its descendants that are alive
 * (cluster workers). Fields 14 and 15 of /proc/<pid>/stat, after the parenthesised command name.
 */
export async function cpuTimeMs(pid: number): Promise<number> {
  const pids = [pid, ...(await childrenOf(pid))];
  let ticks = 0;
  for (const p of pids) {
    const raw = await readFile(`/proc/${p}/stat`, 'utf8').catch(() => '');
    const fields = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
    // After the command name, utime and stime are the 12th and 13th fields (stat's 14 and 15).
    ticks += Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
  }
  return (ticks * 1000) / TICKS_PER_S;
}

/** A process tree's descriptors by what they are: TCP sockets by the port at either end, the rest. */
export type FdKinds = Record<string, number>;

/** Inode → [local port, remote port] of every TCP socket on the machine (IPv4 and IPv6). */
async function tcpSockets(): Promise<Map<string, [number, number]>> {
  const out = new Map<string, [number, number]>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const raw = await readFile(table, 'utf8').catch(() => '');
    for (const line of raw.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const port = (addr: string | undefined) => parseInt(addr?.slice(addr.lastIndexOf(':') + 1) ?? '', 16);
      out.set(f[9] as string, [port(f[1]), port(f[2])]);
    }
  }
  return out;
}

/**
 * Counts the processes' descriptors by kind: a TCP socket is named by `byPort` (its local port
 * first, so a listening or accepted socket of the gateway's own port is the gateway's, then its
 * remote port), else `tcp other`; other sockets `socket`; the rest `other` (files, pipes, eventfds).
 * Shows which of a descriptor count's parts come and go with the load (bench/soak.ts).
 */
export async function fdKinds(pids: readonly number[], byPort: ReadonlyMap<number, string>): Promise<FdKinds> {
  const tcp = await tcpSockets();
  const kinds: FdKinds = {};
  const add = (k: string) => (kinds[k] = (kinds[k] ?? 0) + 1);
  for (const pid of pids) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
      if (inode === undefined) {
        add('other');
        continue;
      }
      const ports = tcp.get(inode);
      if (!ports) add('socket');
      else add(byPort.get(ports[0]) ?? byPort.get(ports[1]) ?? 'tcp other');
    }
  }
  return kinds;
}
