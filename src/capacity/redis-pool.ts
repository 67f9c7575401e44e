// The GPU pool shared by every gateway replica: devices, leases and warm marks live in three Redis
// hashes, and each operation is one Lua script, so two replicas can never place two models in the
// same free gigabytes. Lease expiry uses the Redis server's clock, so replicas' clocks need not agree.
// The three keys share a hash tag, so the scripts also run on Redis Cluster.
import { hashTagged, type RedisClient } from '../store/redis.js';
import {
  describeDevices,
  type AcquireResult,
  type DeviceSource,
  type GpuDevice,
  type GpuPool,
  type Lease,
  type LeaseRequest,
  type PoolSnapshot,
} from './pool.js';

// KEYS: devices, leases, warm. ARGV[1]: operation. Same placement rule as choosePlacement() in pool.ts:
// warm first (if asked), then least leftover memory, then lowest id.
const SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]

local function live_leases()
  local raw = redis.call('HGETALL', KEYS[2])
  local out = {}
  for i = 1, #raw, 2 do
    local l = cjson.decode(raw[i + 1])
    if l.expiresAt <= now then redis.call('HDEL', KEYS[2], raw[i]) else out[#out + 1] = l end
  end
  return out
end

if op == 'acquire' then
  local leaseId, model = ARGV[2], ARGV[3]
  local mem, tf, holder, ttl, preferWarm = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]), ARGV[8] == '1'
  local leases = live_leases()
  local usedMem, usedTf, count, loaded = {}, {}, {}, {}
  for _, l in ipairs(leases) do
    usedMem[l.deviceId] = (usedMem[l.deviceId] or 0) + l.allocatedMemoryGb
    usedTf[l.deviceId] = (usedTf[l.deviceId] or 0) + l.tflops
    count[l.deviceId] = (count[l.deviceId] or 0) + 1
    if l.model == model then loaded[l.deviceId] = true end
  end
  local devices = redis.call('HGETALL', KEYS[1])
  local everFits = false
  local best, bestWarm, bestLeft, bestAlloc, bestCost
  for i = 1, #devices, 2 do
    local id = devices[i]
    local d = cjson.decode(devices[i + 1])
    if d.memoryGb >= mem and d.tflops >= tf then
      everFits = true
      local fits, alloc, left = false, 0, 0
      if d.kind == 'slice' then
        fits = (count[id] or 0) == 0
        alloc = d.memoryGb
        left = d.memoryGb - mem
      else
        local freeMem = d.memoryGb - (usedMem[id] or 0)
        local freeTf = d.tflops - (usedTf[id] or 0)
        fits = freeMem >= mem and freeTf >= tf
        alloc = mem
        left = freeMem - mem
      end
      if fits then
        local warm = loaded[id] == true
        if not warm then
          local w = redis.call('HGET', KEYS[3], id .. '|' .. model)
          warm = w ~= false and tonumber(w) > now
        end
        local take = false
        if best == nil then take = true
        elseif preferWarm and warm ~= bestWarm then take = warm
        elseif left ~= bestLeft then take = left < bestLeft
        else take = id < best end
        if take then best, bestWarm, bestLeft, bestAlloc, bestCost = id, warm, left, alloc, d.costPerGpuHour or 0 end
      end
    end
  end
  if not everFits then return cjson.encode({ status = 'no_fit' }) end
  if best == nil then return cjson.encode({ status = 'busy' }) end
  local lease = {
    leaseId = leaseId, deviceId = best, model = model, allocatedMemoryGb = bestAlloc, usedMemoryGb = mem,
    tflops = tf, holder = holder, expiresAt = now + ttl, warm = bestWarm, costPerGpuHour = bestCost
  }
  redis.call('HSET', KEYS[2], leaseId, cjson.encode(lease))
  return cjson.encode({ status = 'granted', lease = lease })
elseif op == 'heartbeat' then
  local raw = redis.call('HGET', KEYS[2], ARGV[2])
  if not raw then return 0 end
  local l = cjson.decode(raw)
  if l.expiresAt <= now then redis.call('HDEL', KEYS[2], ARGV[2]); return 0 end
  l.expiresAt = now + tonumber(ARGV[3])
  redis.call('HSET', KEYS[2], ARGV[2], cjson.encode(l))
  return 1
elseif op == 'release' then
  local raw = redis.call('HGET', KEYS[2], ARGV[2])
  if not raw then return 0 end
  redis.call('HDEL', KEYS[2], ARGV[2])
  local l = cjson.decode(raw)
  local keep = tonumber(ARGV[3])
  if keep > 0 then redis.call('HSET', KEYS[3], l.deviceId .. '|' .. l.model, now + keep) end
  return 1
elseif op == 'set_devices' then
  -- Replace the devices of one source (ARGV[2]); ARGV[3..] are id, JSON pairs. Devices written
  -- before sources existed carry none and count as configured.
  local source = ARGV[2]
  local raw = redis.call('HGETALL', KEYS[1])
  for i = 1, #raw, 2 do
    local d = cjson.decode(raw[i + 1])
    if (d.source or 'config') == source then redis.call('HDEL', KEYS[1], raw[i]) end
  end
  for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
  return 1
elseif op == 'snapshot' then
  local leases = live_leases()
  local warm = redis.call('HGETALL', KEYS[3])
  for i = 1, #warm, 2 do
    if tonumber(warm[i + 1]) <= now then redis.call('HDEL', KEYS[3], warm[i]) end
  end
  return cjson.encode({ now = now, devices = redis.call('HGETALL', KEYS[1]), leases = leases, warm = warm })
end
return redis.error_reply('unknown operation ' .. tostring(op))
`;

type PoolCommand = (devicesKey: string, leasesKey: string, warmKey: string, ...args: (string | number)[]) => Promise<unknown>;

export interface RedisGpuPoolOptions {
  redis: RedisClient;
  /** Namespace of the three hashes, e.g. `inferenceflow:gpu:` (keys become `{inferenceflow:gpu:}leases`). */
  keyPrefix: string;
}

export class RedisGpuPool implements GpuPool {
  private readonly redis: RedisClient;
  private readonly keys: [string, string, string];
  private readonly run: PoolCommand;

  constructor(opts: RedisGpuPoolOptions) {
    this.redis = opts.redis;
    const ns = hashTagged(opts.keyPrefix);
    this.keys = [`${ns}devices`, `${ns}leases`, `${ns}warm`];
    if (!(this.redis as unknown as Record<string, unknown>).inferenceflowGpuPool) {
      this.redis.defineCommand('inferenceflowGpuPool', { numberOfKeys: 3, lua: SCRIPT });
    }
    const cmd = (this.redis as unknown as Record<string, PoolCommand>).inferenceflowGpuPool as PoolCommand;
    this.run = cmd.bind(this.redis);
  }

  async setDevices(devices: GpuDevice[], source: DeviceSource = 'config'): Promise<void> {
    // One script: readers never see a half list, and the other source's devices stay (every replica
    // writes the configured list at start; mesh devices come from whichever replica saw the registry last).
    await this.run(...this.keys, 'set_devices', source, ...devices.flatMap((d) => [d.id, JSON.stringify({ ...d, source })]));
  }

  async acquire(req: LeaseRequest): Promise<AcquireResult> {
    const raw = (await this.run(
      ...this.keys,
      'acquire',
      req.leaseId,
      req.model,
      req.memoryGb,
      req.tflops,
      req.holder,
      req.ttlMs,
      req.preferWarm ? '1' : '0',
    )) as string;
    return JSON.parse(raw) as AcquireResult;
  }

  async heartbeat(leaseId: string, ttlMs: number): Promise<boolean> {
    return (await this.run(...this.keys, 'heartbeat', leaseId, ttlMs)) === 1;
  }

  async release(leaseId: string, keepWarmMs: number): Promise<boolean> {
    return (await this.run(...this.keys, 'release', leaseId, keepWarmMs)) === 1;
  }

  async snapshot(): Promise<PoolSnapshot> {
    const raw = JSON.parse((await this.run(...this.keys, 'snapshot')) as string) as {
      now: number;
      devices: string[] | Record<string, never>;
      leases: Lease[] | Record<string, never>;
      warm: string[] | Record<string, never>;
    };
    // cjson encodes an empty Lua table as {} rather than [].
    const pairs = (v: string[] | Record<string, never>): string[] => (Array.isArray(v) ? v : []);
    const devices: GpuDevice[] = [];
    const d = pairs(raw.devices);
    for (let i = 0; i < d.length; i += 2) {
      const { source: _source, ...device } = JSON.parse(d[i + 1] as string) as GpuDevice & { source?: DeviceSource };
      devices.push(device);
    }
    devices.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const warm = new Map<string, number>();
    const w = pairs(raw.warm);
    for (let i = 0; i < w.length; i += 2) warm.set(w[i] as string, Number(w[i + 1]));
    const leases = Array.isArray(raw.leases) ? raw.leases : [];
    return { devices: describeDevices(devices, leases, warm, raw.now), leases };
  }
}
