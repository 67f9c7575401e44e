// The timing rule reclaim depends on: holders refresh their entries every heartbeat (workers) or
// reclaim pass (routers), so idle_reclaim_ms must span several of those ticks, or requests still
// running are reclaimed and rerun on every pass.
import { describe, expect, it } from 'vitest';
import { createLogger } from '../telemetry/logger.js';
import { defaultMeshConfig, meshConfigSchema } from './config.js';
import { MeshRouter } from './router.js';
import { WorkerAgent } from './worker.js';
import { meshBackendFor } from './backend.js';
import { StaticHealthSource } from './health.js';
import { createSimulatorProvider } from '../providers/simulator.js';
import { TEST_HOST } from '../../test/helpers/mesh.js';

const log = createLogger('silent');

describe('mesh timing settings', () => {
  it('accept the defaults and an idle_reclaim_ms of three ticks', () => {
    expect(defaultMeshConfig().idle_reclaim_ms).toBe(30_000);
    expect(meshConfigSchema.parse({ heartbeat_interval_ms: 1_000, reclaim_interval_ms: 2_000, idle_reclaim_ms: 6_000 }).idle_reclaim_ms).toBe(6_000);
  });

  it('refuse an idle_reclaim_ms under three heartbeats or reclaim passes, naming the fields', () => {
    const heartbeat = meshConfigSchema.safeParse({ heartbeat_interval_ms: 3_000, reclaim_interval_ms: 1_000, idle_reclaim_ms: 3_000 });
    expect(heartbeat.success).toBe(false);
    expect(heartbeat.error?.issues[0]).toMatchObject({ path: ['idle_reclaim_ms'], message: expect.stringMatching(/heartbeat_interval_ms \(3000\).*reclaim_interval_ms \(1000\), i\.e\. 9000/) });
    expect(meshConfigSchema.safeParse({ heartbeat_interval_ms: 1_000, reclaim_interval_ms: 5_000, idle_reclaim_ms: 14_999 }).success).toBe(false);
  });

  it('keep a router or worker from starting on such timings laid over checked settings (the flags)', async () => {
    const config = { ...defaultMeshConfig(), idle_reclaim_ms: 3_000 };
    // Refused before connecting: the Redis URL is never dialled.
    const router = new MeshRouter({ routerId: 'r', redisUrl: 'redis://127.0.0.1:1', config, log });
    await expect(router.start()).rejects.toThrow(/idle_reclaim_ms \(3000\) must be at least 3 ×.*--idle-reclaim-ms/);
    const worker = new WorkerAgent({ nodeId: 'w', redisUrl: 'redis://127.0.0.1:1', backend: meshBackendFor(createSimulatorProvider('sim', {})), config, health: new StaticHealthSource(TEST_HOST), log, maxConcurrency: 1, version: 'test' });
    await expect(worker.start()).rejects.toThrow(/idle_reclaim_ms \(3000\) must be at least 3 ×/);
  });
});
