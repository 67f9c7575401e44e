// The mesh clock: Redis TIME (on the node holding the mesh's keys), this machine's offset from it,
// deadlines counted from a request's budget on it, and stream entry ids as its timestamps.
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { nodeHealth } from '../../test/helpers/mesh.js';
import { redisTargets } from '../../test/helpers/redis.js';
import { compareEntryIds, entryIdMs } from '../store/redis.js';
import { MeshClock, redisTimeMs } from './clock.js';
import { defaultMeshConfig } from './config.js';
import { meshDeadline, meshKeys } from './contracts.js';
import { HealthRegistry } from './registry.js';
import { CLOCK_RESYNC_MS, RegistrySnapshots } from './snapshot.js';

const targets = await redisTargets();
const run = randomBytes(4).toString('hex');

afterAll(async () => {
  for (const t of targets) await t.cleanup(`*clock-test:${run}:*`);
});

describe('stream entry ids as mesh time', () => {
  it('reads the time of an id and orders ids as Redis does', () => {
    expect(entryIdMs('1700000000123-4')).toBe(1_700_000_000_123);
    expect(entryIdMs('1700000000123')).toBe(1_700_000_000_123);
    expect(entryIdMs('not-an-id')).toBeUndefined();
    expect(compareEntryIds('1700000000123-4', '1700000000123-10')).toBeLessThan(0);
    expect(compareEntryIds('1700000000124-0', '1700000000123-10')).toBeGreaterThan(0);
    expect(compareEntryIds('5-5', '5-5')).toBe(0);
  });
});

describe('meshDeadline', () => {
  const base = { deadline: 42 };
  it('counts the budget from the ingress entry on the mesh clock, whatever the requester\'s clock said', () => {
    expect(meshDeadline({ ...base, budget_ms: 30_000, enqueued_at: 1_000_000 })).toBe(1_030_000);
    // Not stamped by a router yet (or an older one): from the entry it was read from.
    expect(meshDeadline({ ...base, budget_ms: 30_000 }, '2000000-0')).toBe(2_030_000);
  });
  it('falls back to the absolute deadline for requests without a budget (older or outside requesters)', () => {
    expect(meshDeadline(base, '2000000-0')).toBe(42);
    expect(meshDeadline({ ...base, budget_ms: 30_000 })).toBe(42);
  });
});

describe.each(targets.map((t) => [t.name, t] as const))('MeshClock on %s', (_name, target) => {
  const it_ = target.available ? it : it.skip;

  it_('tells mesh time on a machine whose clock is a year off', async () => {
    const redis = target.connect();
    const key = meshKeys(`clock-test:${run}:${target.name}:`, target.name === 'redis-cluster').health;
    const yearAgo = () => Date.now() - 365 * 24 * 3_600_000;
    const clock = new MeshClock(redis, key, yearAgo);
    await clock.sync();
    const before = await redisTimeMs(redis, key);
    const now = clock.now();
    const after = await redisTimeMs(redis, key);
    // Within the round trips of a loaded machine: a year's error would be 3e10 ms.
    expect(now).toBeGreaterThan(before - 5_000);
    expect(now).toBeLessThan(after + 5_000);
  });

  it_('judges snapshots on it, reading Redis TIME once and again every CLOCK_RESYNC_MS, not per snapshot', async () => {
    const redis = target.connect();
    const prefix = `clock-test:${run}:${target.name}:snap:`;
    const key = meshKeys(prefix, target.name === 'redis-cluster').health;
    let local = Date.now() - 365 * 24 * 3_600_000;
    const snapshots = new RegistrySnapshots(redis, prefix, defaultMeshConfig().health, () => local);
    const ts = await redisTimeMs(redis, key);
    await new HealthRegistry(redis, prefix).publish(nodeHealth('pi', { ts }));
    const evals = vi.spyOn(redis, 'eval');
    const first = await snapshots.take();
    expect(first.nodes[0]).toMatchObject({ node_id: 'pi', routable: true });
    expect(Math.abs(first.nodes[0]!.heartbeat_age_ms)).toBeLessThan(5_000);
    await snapshots.take();
    await snapshots.take();
    expect(evals).toHaveBeenCalledTimes(1);
    local += CLOCK_RESYNC_MS;
    await snapshots.take();
    expect(evals).toHaveBeenCalledTimes(2);
  });
});
