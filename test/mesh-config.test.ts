// The mesh's settings come from the configuration the gateway loads: `inferenceflow worker` and
// `router` read the config file (INFERENCEFLOW_CONFIG or TRUTHGPT_CONFIG) with its environment
// overrides (MESH_*, REDIS_URL / REDIS_HOST / REDIS_CLUSTER_NODES), flags on top; the gateway's `mesh`
// provider uses the gateway's redis.url and clusters.mesh, its own options overriding them.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { meshSettings } from '../src/cli/mesh.js';
import type { RunningServer } from '../src/cli/serve.js';
import type { NodeHealth } from '../src/mesh/contracts.js';
import { HealthRegistry } from '../src/mesh/registry.js';
import { MeshProvider } from '../src/providers/mesh.js';
import { startTestGateway } from './helpers/gateway.js';
import { deleteKeys, redisAvailable, REDIS_URL, uniquePrefix } from './helpers/mesh.js';

async function configFile(text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'if-mesh-config-'));
  const file = join(dir, 'config.yaml');
  await writeFile(file, text);
  return file;
}

describe('inferenceflow worker / router settings', () => {
  const yaml = `redis: { url: "redis://from-file:6379" }
clusters:
  mesh:
    key_prefix: "file:"
    heartbeat_interval_ms: 1000
`;

  it('read the config file named by INFERENCEFLOW_CONFIG or TRUTHGPT_CONFIG, with MESH_* over it', async () => {
    const file = await configFile(yaml);
    for (const name of ['INFERENCEFLOW_CONFIG', 'TRUTHGPT_CONFIG']) {
      const { mesh, redisUrl } = await meshSettings({}, { [name]: file, MESH_MAX_TEMP_C: '60', MESH_MAX_RAM_PCT: '80', MESH_STALE_AFTER_S: '7', MESH_IDLE_RECLAIM_MS: '20000' });
      expect(redisUrl).toBe('redis://from-file:6379');
      expect(mesh.key_prefix).toBe('file:');
      expect(mesh.heartbeat_interval_ms).toBe(1000);
      expect(mesh.health).toEqual({ max_temp_c: 60, max_ram_pct: 80, stale_after_s: 7 });
      expect(mesh.idle_reclaim_ms).toBe(20000);
    }
  });

  it('take MESH_KEY_PREFIX, MESH_HEARTBEAT_INTERVAL_MS and the Redis variables the gateway takes', async () => {
    const file = await configFile(yaml);
    const env = { INFERENCEFLOW_CONFIG: file, MESH_KEY_PREFIX: 'env:', MESH_HEARTBEAT_INTERVAL_MS: '500' };
    const a = await meshSettings({}, { ...env, REDIS_URL: 'redis://from-env:6379' });
    expect([a.mesh.key_prefix, a.mesh.heartbeat_interval_ms, a.redisUrl]).toEqual(['env:', 500, 'redis://from-env:6379']);
    expect((await meshSettings({}, { REDIS_HOST: 'cache', REDIS_PORT: '6380' })).redisUrl).toBe('redis://cache:6380');
    // The log level as the gateway reads it (LOG_LEVEL), the flag on top.
    expect((await meshSettings({}, { REDIS_URL: 'redis://r:6379', LOG_LEVEL: 'WARN' })).logLevel).toBe('warn');
    expect((await meshSettings({ logLevel: 'debug' }, { REDIS_URL: 'redis://r:6379', LOG_LEVEL: 'warn' })).logLevel).toBe('debug');
    expect((await meshSettings({}, { REDIS_URL: 'redis://r:6379' })).logLevel).toBe('info');
    expect((await meshSettings({}, { REDIS_CLUSTER_NODES: 'n1:7001, n2:7002' })).redisUrl).toBe('redis+cluster://n1:7001,n2:7002');
  });

  it('let flags win over file and environment', async () => {
    const file = await configFile(yaml);
    const { mesh, redisUrl } = await meshSettings(
      { config: file, redisUrl: 'redis://flag:6379', keyPrefix: 'flag:', heartbeatMs: 250, staleAfterS: 3 },
      { MESH_KEY_PREFIX: 'env:', MESH_STALE_AFTER_S: '30', REDIS_URL: 'redis://from-env:6379' },
    );
    expect([redisUrl, mesh.key_prefix, mesh.heartbeat_interval_ms, mesh.health.stale_after_s]).toEqual(['redis://flag:6379', 'flag:', 250, 3]);
  });

  it('need a Redis from somewhere and report a bad config file like the gateway does', async () => {
    await expect(meshSettings({}, {})).rejects.toThrow(/Redis URL is needed/);
    const bad = await configFile('clusters:\n  mesh:\n    heartbeat_ms: 5\n');
    await expect(meshSettings({ config: bad }, { REDIS_URL: 'redis://x:1' })).rejects.toThrow(/clusters\.mesh/);
  });

  it('refuse an idle_reclaim_ms that would reclaim requests still running', async () => {
    // The default 3 s heartbeat and 5 s reclaim passes: 3 s of idleness is less than one tick.
    await expect(meshSettings({}, { REDIS_URL: 'redis://x:1', MESH_IDLE_RECLAIM_MS: '3000' })).rejects.toThrow(
      /clusters\.mesh\.idle_reclaim_ms.*idle_reclaim_ms \(3000\) must be at least 3 × the larger of heartbeat_interval_ms \(3000\) and reclaim_interval_ms \(5000\)/s,
    );
  });
});

const available = await redisAvailable();

describe.skipIf(!available)('the gateway mesh provider', () => {
  const prefix = uniquePrefix();
  const redis = new Redis(REDIS_URL);
  const servers: RunningServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.close();
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });

  function health(node: string, tempC: number): NodeHealth {
    return {
      node_id: node, backend: 'simulator', backend_ok: true, models_installed: [`model-of-${node}`], models_loaded: [],
      cpu_temp_c: tempC, ram_used_pct: 40, ram_total_bytes: 8e9, load1: 0.1, gpus: [], in_flight: 0, max_concurrency: 4,
      draining: false, version: 'test', ts: Date.now(),
    };
  }

  it("uses the gateway's Redis (REDIS_HOST form) and clusters.mesh with MESH_* applied", async () => {
    const { hostname, port } = new URL(REDIS_URL);
    const server = await startTestGateway({
      config: { providers: { pis: { type: 'mesh' } }, models: [{ name: 'pi', deployments: [{ provider: 'pis', model: 'm' }] }] },
      env: { REDIS_HOST: hostname, REDIS_PORT: port || '6379', MESH_KEY_PREFIX: prefix, MESH_MAX_TEMP_C: '60' },
    });
    servers.push(server);
    const provider = server.gateway.providers.get('pis');
    expect(provider).toBeInstanceOf(MeshProvider);
    const mesh = provider as MeshProvider;
    expect(mesh.mesh.key_prefix).toBe(prefix);
    expect(mesh.mesh.health.max_temp_c).toBe(60);
    expect(mesh.mesh.stream_deadline_ms).toBe(600_000);

    // A node at 65 °C is routable by the default 75 °C, not by MESH_MAX_TEMP_C=60.
    const registry = new HealthRegistry(redis, prefix);
    await registry.publish(health('cool', 50));
    await registry.publish(health('warm', 65));
    const snap = await mesh.snapshot();
    expect(Object.fromEntries(snap.nodes.map((n) => [n.node_id, n.routable]))).toEqual({ cool: true, warm: false });
    expect(await mesh.listModels()).toEqual(['model-of-cool']);
  });

  it('lets options.redis_url, options.key_prefix and options.stream_deadline_ms override the gateway settings', async () => {
    const other = `${prefix}other:`;
    const server = await startTestGateway({
      config: { providers: { pis: { type: 'mesh', options: { redis_url: REDIS_URL, key_prefix: other, stream_deadline_ms: 120_000 } } }, models: [{ name: 'pi', deployments: [{ provider: 'pis', model: 'm' }] }] },
      // The gateway itself has no Redis here: only the provider's own option connects.
      env: { MESH_KEY_PREFIX: prefix, MESH_MAX_TEMP_C: '60' },
    });
    servers.push(server);
    const mesh = server.gateway.providers.get('pis') as MeshProvider;
    expect(mesh.mesh.key_prefix).toBe(other);
    expect(mesh.mesh.stream_deadline_ms).toBe(120_000);
    expect(mesh.mesh.health.max_temp_c).toBe(60);
    await new HealthRegistry(redis, other).publish(health('elsewhere', 40));
    expect((await mesh.snapshot()).nodes.map((n) => n.node_id)).toEqual(['elsewhere']);
  });
});
