// The GPU pool: devices (whole GPUs packed best-fit, or vGPU slices held whole) and the leases on
// them. A lease expires unless its holder renews it, so a crashed holder frees its GPU by itself.
// This file holds the contract, the placement rule and the in-process pool; redis-pool.ts shares
// one pool between gateway replicas with the same rule in Lua.
import { configuredDeviceId, type GpuPoolConfig } from './config.js';

export interface GpuDevice {
  id: string;
  pool: string;
  region: string;
  /** `slice`: exclusive vGPU partition; `gpu`: shared by packing. */
  kind: 'gpu' | 'slice';
  memoryGb: number;
  tflops: number;
  spot: boolean;
  costPerGpuHour: number;
}

export interface LeaseRequest {
  leaseId: string;
  model: string;
  memoryGb: number;
  tflops: number;
  /** Who holds it (replica id), for the status page. */
  holder: string;
  ttlMs: number;
  preferWarm: boolean;
}

export interface Lease {
  leaseId: string;
  deviceId: string;
  model: string;
  /** Memory reserved: the model's need on a GPU, the whole slice on a vGPU slice. */
  allocatedMemoryGb: number;
  /** Memory the model needs. */
  usedMemoryGb: number;
  tflops: number;
  holder: string;
  /** Epoch ms (the pool's clock: Redis server time for the shared pool). */
  expiresAt: number;
  /** The model was already loaded on the chosen device. */
  warm: boolean;
  /** The device's price, for cost per inference. */
  costPerGpuHour: number;
}

export type AcquireResult =
  | { status: 'granted'; lease: Lease }
  /** Fits some device, but none has room now. */
  | { status: 'busy' }
  /** No device of the pool could ever hold it. */
  | { status: 'no_fit' };

export interface DeviceStatus extends GpuDevice {
  allocatedMemoryGb: number;
  usedMemoryGb: number;
  allocatedTflops: number;
  leases: number;
  warmModels: string[];
  /**
   * Identical devices this row stands for, its memory and compute their sum (a hosted provider's pool
   * of `total` GPUs, each held whole by one lease); absent for a single device.
   */
  units?: number;
}

/** Whether a device row can take one more model of `memoryGb` now. */
export function hasRoom(d: DeviceStatus, memoryGb: number): boolean {
  const units = d.units ?? 1;
  // A slice (or each unit of a row of slices) is held whole: room while some unit has no lease.
  if (d.kind === 'slice') return d.leases < units && d.memoryGb / units >= memoryGb;
  return d.memoryGb - d.allocatedMemoryGb >= memoryGb;
}

export interface PoolSnapshot {
  devices: DeviceStatus[];
  leases: Lease[];
}

/**
 * Where devices come from. Each source's list is replaced on its own: every replica writes the
 * configured devices at start, and mesh devices follow the mesh's node registry, so a replica
 * starting does not wipe the mesh GPUs the others have written to a shared pool.
 */
export type DeviceSource = 'config' | 'mesh';

export interface GpuPool {
  /** Replaces the devices of one source (default `config`); the other source's devices and live leases stay. */
  setDevices(devices: GpuDevice[], source?: DeviceSource): Promise<void>;
  acquire(req: LeaseRequest): Promise<AcquireResult>;
  /** Extends a live lease; false when it has already expired (the holder lost its GPU). */
  heartbeat(leaseId: string, ttlMs: number): Promise<boolean>;
  /** Ends a lease and keeps its model marked warm on the device for keepWarmMs. */
  release(leaseId: string, keepWarmMs: number): Promise<boolean>;
  snapshot(): Promise<PoolSnapshot>;
  close?(): Promise<void>;
}

/** Devices from the `clusters.pools` config, expanding `count`. */
export function devicesFromConfig(pools: readonly GpuPoolConfig[]): GpuDevice[] {
  const out: GpuDevice[] = [];
  for (const p of pools) {
    for (const d of p.devices) {
      for (let i = 0; i < d.count; i++) {
        out.push({
          id: configuredDeviceId(d.id, d.count, i),
          pool: p.name,
          region: p.region,
          kind: d.kind,
          memoryGb: d.memory_gb,
          tflops: d.tflops,
          spot: p.spot,
          costPerGpuHour: p.cost_per_gpu_hour,
        });
      }
    }
  }
  return out;
}

/** What a mesh node reports of its GPUs (the mesh's heartbeat carries this). */
export interface MeshNodeGpus {
  nodeId: string;
  region?: string;
  /**
   * `index`: the GPU's place in the node's own report, which names the device (`<node>/gpu<index>`),
   * so a GPU left out (one briefly reporting memory 0) does not renumber the others; by default its
   * place in this list.
   */
  gpus: Array<{ memoryGb: number; tflops?: number; name?: string; index?: number }>;
}

/** One device per GPU a mesh node reports; compute defaults to a conservative figure when unknown. */
export function devicesFromMeshNodes(nodes: readonly MeshNodeGpus[], costPerGpuHour = 0): GpuDevice[] {
  return nodes.flatMap((n) =>
    n.gpus.map((g, i) => ({
      id: `${n.nodeId}/gpu${g.index ?? i}`,
      pool: 'mesh',
      region: n.region ?? 'mesh',
      kind: 'gpu' as const,
      memoryGb: g.memoryGb,
      tflops: g.tflops ?? 20,
      spot: false,
      costPerGpuHour,
    })),
  );
}

interface Candidate {
  device: GpuDevice;
  allocatedMemoryGb: number;
  leftoverGb: number;
  warm: boolean;
}

/**
 * The placement rule: among devices with room, a device where the model is warm first (when asked),
 * then the tightest fit (least memory left over), then the lowest id so the choice is deterministic.
 * The Lua script in redis-pool.ts implements the same rule.
 */
export function choosePlacement(
  devices: readonly GpuDevice[],
  live: readonly Lease[],
  warmUntil: ReadonlyMap<string, number>,
  req: Pick<LeaseRequest, 'model' | 'memoryGb' | 'tflops' | 'preferWarm'>,
  now: number,
): { status: 'no_fit' } | { status: 'busy' } | { status: 'ok'; candidate: Candidate } {
  let everFits = false;
  let best: Candidate | undefined;
  for (const device of devices) {
    if (device.memoryGb < req.memoryGb || device.tflops < req.tflops) continue;
    everFits = true;
    const on = live.filter((l) => l.deviceId === device.id);
    const usedMem = on.reduce((s, l) => s + l.allocatedMemoryGb, 0);
    const usedTf = on.reduce((s, l) => s + l.tflops, 0);
    let allocated: number;
    if (device.kind === 'slice') {
      if (on.length > 0) continue;
      allocated = device.memoryGb;
    } else {
      if (device.memoryGb - usedMem < req.memoryGb || device.tflops - usedTf < req.tflops) continue;
      allocated = req.memoryGb;
    }
    const leftover = device.kind === 'slice' ? device.memoryGb - req.memoryGb : device.memoryGb - usedMem - req.memoryGb;
    const warm = on.some((l) => l.model === req.model) || (warmUntil.get(`${device.id}|${req.model}`) ?? 0) > now;
    const cand: Candidate = { device, allocatedMemoryGb: allocated, leftoverGb: leftover, warm };
    if (!best || better(cand, best, req.preferWarm)) best = cand;
  }
  if (!everFits) return { status: 'no_fit' };
  return best ? { status: 'ok', candidate: best } : { status: 'busy' };
}

function better(a: Candidate, b: Candidate, preferWarm: boolean): boolean {
  if (preferWarm && a.warm !== b.warm) return a.warm;
  if (a.leftoverGb !== b.leftoverGb) return a.leftoverGb < b.leftoverGb;
  return a.device.id < b.device.id;
}

/** Devices with their current load, from the raw state (shared by both pools). */
export function describeDevices(
  devices: readonly GpuDevice[],
  live: readonly Lease[],
  warmUntil: ReadonlyMap<string, number>,
  now: number,
): DeviceStatus[] {
  return devices.map((d) => {
    const on = live.filter((l) => l.deviceId === d.id);
    const warm = new Set(on.map((l) => l.model));
    for (const [key, until] of warmUntil) {
      const [id, model] = splitWarmKey(key);
      if (id === d.id && until > now && model) warm.add(model);
    }
    return {
      ...d,
      allocatedMemoryGb: on.reduce((s, l) => s + l.allocatedMemoryGb, 0),
      usedMemoryGb: on.reduce((s, l) => s + l.usedMemoryGb, 0),
      allocatedTflops: on.reduce((s, l) => s + l.tflops, 0),
      leases: on.length,
      warmModels: [...warm].sort(),
    };
  });
}

function splitWarmKey(key: string): [string, string | undefined] {
  const at = key.lastIndexOf('|');
  return at < 0 ? [key, undefined] : [key.slice(0, at), key.slice(at + 1)];
}

/** The pool of one process: correct for a single replica, and the fallback when Redis is not configured. */
export class InMemoryGpuPool implements GpuPool {
  private readonly bySource = new Map<DeviceSource, GpuDevice[]>();
  private devices: GpuDevice[] = [];
  private readonly leases = new Map<string, Lease>();
  private readonly warmUntil = new Map<string, number>();

  constructor(
    devices: GpuDevice[] = [],
    private readonly now: () => number = Date.now,
  ) {
    this.bySource.set('config', [...devices]);
    this.devices = [...devices];
  }

  async setDevices(devices: GpuDevice[], source: DeviceSource = 'config'): Promise<void> {
    this.bySource.set(source, [...devices]);
    this.devices = [...this.bySource.values()].flat();
  }

  async acquire(req: LeaseRequest): Promise<AcquireResult> {
    const now = this.now();
    const placed = choosePlacement(this.devices, this.live(now), this.warmUntil, req, now);
    if (placed.status !== 'ok') return placed;
    const c = placed.candidate;
    const lease: Lease = {
      leaseId: req.leaseId,
      deviceId: c.device.id,
      model: req.model,
      allocatedMemoryGb: c.allocatedMemoryGb,
      usedMemoryGb: req.memoryGb,
      tflops: req.tflops,
      holder: req.holder,
      expiresAt: now + req.ttlMs,
      warm: c.warm,
      costPerGpuHour: c.device.costPerGpuHour,
    };
    this.leases.set(lease.leaseId, lease);
    return { status: 'granted', lease: { ...lease } };
  }

  async heartbeat(leaseId: string, ttlMs: number): Promise<boolean> {
    const now = this.now();
    const lease = this.leases.get(leaseId);
    if (!lease || lease.expiresAt <= now) {
      this.leases.delete(leaseId);
      return false;
    }
    lease.expiresAt = now + ttlMs;
    return true;
  }

  async release(leaseId: string, keepWarmMs: number): Promise<boolean> {
    const lease = this.leases.get(leaseId);
    if (!lease) return false;
    this.leases.delete(leaseId);
    if (keepWarmMs > 0) this.warmUntil.set(`${lease.deviceId}|${lease.model}`, this.now() + keepWarmMs);
    return true;
  }

  async snapshot(): Promise<PoolSnapshot> {
    const now = this.now();
    const live = this.live(now);
    return { devices: describeDevices(this.devices, live, this.warmUntil, now), leases: live.map((l) => ({ ...l })) };
  }

  /** Live leases; expired ones are dropped on the way (that is how a dead holder's GPU comes back). */
  private live(now: number): Lease[] {
    const out: Lease[] = [];
    for (const [id, l] of this.leases) {
      if (l.expiresAt <= now) this.leases.delete(id);
      else out.push(l);
    }
    for (const [key, until] of this.warmUntil) if (until <= now) this.warmUntil.delete(key);
    return out;
  }
}
