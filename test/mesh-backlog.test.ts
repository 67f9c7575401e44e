// The mesh's real backlog, as the routers export it for the autoscaler: a router places a request on
// a node at once, so the ingress stream's pending count (what KEDA's redis-streams trigger reads)
// stays at zero while a node's own stream backs up. Against real Redis: a worker that runs two
// requests at a time on a backend that never finishes, so the rest queue on its stream, and two
// routers started by the CLI with their metrics listener. Then a real Prometheus scrapes both routers
// and evaluates the query of kubernetes/keda-scaledobject.yaml and every query of the mesh dashboard.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { meshBackendFor } from '../src/mesh/backend.js';
import { meshKeys, ROUTER_GROUP } from '../src/mesh/contracts.js';
import { StaticHealthSource } from '../src/mesh/health.js';
import { WorkerAgent } from '../src/mesh/worker.js';
import { createLogger } from '../src/telemetry/logger.js';
import { chatRequest, deleteKeys, publish, REDIS_URL, redisAvailable, ROOT, ScriptedAdapter, spawnMesh, TEST_HOST, testMeshConfig, uniquePrefix, waitFor, type MeshProcess } from './helpers/mesh.js';
import { stopChild } from './helpers/child-gateway.js';
import { freePort, samples, total } from './helpers/serve-cluster.js';
import { isCI } from './helpers/services.js';

const PROMETHEUS = process.env.PROMETHEUS_PATH ?? '/usr/bin/prometheus';
const prometheusAvailable = existsSync(PROMETHEUS);
if (!prometheusAvailable && isCI) throw new Error(`CI=true but ${PROMETHEUS} is missing: apt-get install -y prometheus`);

const available = await redisAvailable();
const prefix = uniquePrefix();
const keys = meshKeys(prefix);
const redis = new Redis(REDIS_URL);
const log = createLogger('silent');
// Held entries are refreshed every heartbeat; nothing here should be reclaimed while the test reads.
const config = testMeshConfig(prefix, 600_000);
const backend = new ScriptedAdapter();
const CONCURRENCY = 2;
const worker = new WorkerAgent({ nodeId: 'busy-1', redisUrl: REDIS_URL, backend: meshBackendFor(backend), config, health: new StaticHealthSource(TEST_HOST), log, maxConcurrency: CONCURRENCY, version: 'test', blockMs: 200 });
const routers: Array<{ proc: MeshProcess; url: string }> = [];
const prompts: string[] = [];

/** A metric summed over several scrapes (each router reports its own counters). */
const sumOver = (texts: string[], name: string, labels: Record<string, string>) => texts.reduce((sum, t) => sum + total(t, name, labels), 0);

async function scrape(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

async function startRouter(id: string): Promise<{ proc: MeshProcess; url: string }> {
  const port = await freePort();
  const proc = spawnMesh([
    'router', '--router-id', id, '--redis-url', REDIS_URL, '--key-prefix', prefix,
    '--heartbeat-ms', '300', '--stale-after-s', '5', '--idle-reclaim-ms', '600000', '--reclaim-interval-ms', '300', '--log-level', 'warn',
    '--metrics-port', String(port), '--metrics-host', '127.0.0.1',
  ]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`router ${id}'s metrics listener (${proc.output()})`, async () => {
    if (proc.child.exitCode !== null) throw new Error(`router ${id} exited: ${proc.output()}`);
    return fetch(`${url}/metrics`).then((r) => r.ok, () => false);
  }, 30_000);
  return { proc, url };
}

beforeAll(async () => {
  if (!available) return;
  await worker.start();
  routers.push(...(await Promise.all([startRouter('backlog-a'), startRouter('backlog-b')])));
}, 60_000);

afterAll(async () => {
  for (const p of prompts) backend.finish(p);
  if (available) await worker.stop();
  await Promise.all(
    routers.map(async ({ proc }) => {
      if (proc.child.exitCode === null) {
        proc.child.kill('SIGTERM');
        await proc.exited;
      }
    }),
  );
  await deleteKeys(redis, prefix);
  redis.disconnect();
}, 30_000);

describe.skipIf(!available)('the mesh backlog the routers export', () => {
  it('counts the requests a node has queued but not started, while the ingress stream has nothing pending', async () => {
    const reqs = Array.from({ length: 10 }, (_, i) => chatRequest(prefix, 'scripted', `long answer ${i}`, { stream: true, deadlineMs: 300_000 }));
    prompts.push(...reqs.map((r) => String(r.payload.messages[0]?.content)));
    await publish(redis, prefix, reqs);
    // The routers placed all ten on the node; it started two and the rest wait on its stream.
    await waitFor('all ten placed on the node', async () => (await redis.xlen(keys.nodeRequests('busy-1'))) === 10, 20_000);
    await waitFor('two started on the backend', async () => backend.calls.length === CONCURRENCY, 20_000);
    // What the redis-streams trigger sees: nothing pending in the routers' group, so no reason to scale.
    const [pendingOnIngress] = (await redis.xpending(keys.requests, ROUTER_GROUP)) as [number];
    expect(pendingOnIngress).toBe(0);

    // Every router reports the whole mesh: the same numbers from either.
    for (const { url } of routers) {
      const text = await scrape(url);
      expect(samples(text, 'inference_mesh_requests').sort()).toEqual([
        'inference_mesh_requests{state="in_flight"} 2',
        'inference_mesh_requests{state="queued"} 8',
        'inference_mesh_requests{state="unplaced"} 0',
      ]);
      expect(samples(text, 'inference_mesh_capacity')).toEqual([`inference_mesh_capacity ${CONCURRENCY}`]);
      expect(samples(text, 'inference_mesh_node_requests').sort()).toEqual([
        'inference_mesh_node_requests{node="busy-1",state="in_flight"} 2',
        'inference_mesh_node_requests{node="busy-1",state="queued"} 8',
      ]);
      expect(samples(text, 'inference_mesh_node_capacity')).toEqual([`inference_mesh_node_capacity{node="busy-1"} ${CONCURRENCY}`]);
    }
    // Each router counts its own placements: summed over the two, every request placed once.
    const texts = await Promise.all(routers.map(({ url }) => scrape(url)));
    expect(sumOver(texts, 'inference_mesh_router_events_total', { event: 'routed' })).toBe(10);
    expect(sumOver(texts, 'inference_mesh_router_events_total', { event: 'rerouted' })).toBe(0);
    expect(sumOver(texts, 'inference_mesh_router_placements_total', {})).toBe(10);
  }, 30_000);

  it('counts requests no node can take as unplaced: they wait on the ingress stream', async () => {
    const reqs = Array.from({ length: 3 }, (_, i) => chatRequest(prefix, 'nobody-serves-this', `stranded ${i}`, { stream: true, deadlineMs: 300_000 }));
    await publish(redis, prefix, reqs);
    // The routers keep them pending in their group, retrying until a node can take them.
    await waitFor('the routers holding all three', async () => ((await redis.xpending(keys.requests, ROUTER_GROUP)) as [number])[0] === 3, 20_000);
    const text = await scrape(routers[0]!.url);
    expect(samples(text, 'inference_mesh_requests').sort()).toEqual([
      'inference_mesh_requests{state="in_flight"} 2',
      'inference_mesh_requests{state="queued"} 8',
      'inference_mesh_requests{state="unplaced"} 3',
    ]);
    // Held by the routers between tries: the routers' own waiting gauges add up to them. A router
    // counts a request as waiting only between tries (from a try that found no node until the next
    // try starts), so one scrape can fall inside a try: read until they add up.
    const texts = await waitFor(
      "the routers' waiting gauges",
      async () => {
        const t = await Promise.all(routers.map(({ url }) => scrape(url)));
        return sumOver(t, 'inference_mesh_router_waiting', {}) === 3 ? t : undefined;
      },
      20_000,
    );
    expect(sumOver(texts, 'inference_mesh_router_waiting', {})).toBe(3);
    expect(sumOver(texts, 'inference_mesh_router_events_total', { event: 'expired' })).toBe(0);
  }, 30_000);

  describe.skipIf(!prometheusAvailable)('through a real Prometheus scraping both routers', () => {
    let prometheus: ChildProcess | undefined;
    let dir: string | undefined;
    let api = '';
    let stderr = '';
    const query = async (promql: string) =>
      (await (await fetch(`${api}/api/v1/query?query=${encodeURIComponent(promql)}`)).json()) as {
        status: string;
        error?: string;
        data: { result: { metric: Record<string, string>; value: [number, string] }[] };
      };

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'inferenceflow-mesh-prometheus-'));
      const targets = routers.map(({ url }) => `"${new URL(url).host}"`).join(', ');
      await writeFile(
        join(dir, 'prometheus.yml'),
        ['global:', '  scrape_interval: 1s', 'scrape_configs:', '  - job_name: inferenceflow-mesh-router', '    static_configs:', `      - targets: [${targets}]`, ''].join('\n'),
      );
      const port = await freePort();
      api = `http://127.0.0.1:${port}`;
      prometheus = spawn(PROMETHEUS, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      prometheus.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
      // Both routers scraped: two copies of every series, one per router.
      await waitFor(`Prometheus scraping both routers (${stderr})`, async () => {
        if (prometheus?.exitCode !== null) throw new Error(`prometheus exited: ${stderr}`);
        const r = await query('count(inference_mesh_requests{state="queued"} == 8)').catch(() => undefined);
        return r?.data.result[0]?.value[1] === '2';
      }, 30_000, 250);
    }, 60_000);

    afterAll(async () => {
      if (prometheus) await stopChild(prometheus);
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it("the ScaledObject's query reads the whole demand once, and asks for enough workers to run it", async () => {
      const manifest = parseAllDocuments(await readFile(join(ROOT, 'kubernetes/keda-scaledobject.yaml'), 'utf8')).map((d) => d.toJS() as { kind: string; spec: { triggers: { type: string; metadata: Record<string, string> }[]; maxReplicaCount: number } });
      const scaled = manifest.find((d) => d.kind === 'ScaledObject')!;
      const trigger = scaled.spec.triggers.find((t) => t.type === 'prometheus');
      expect(trigger, 'a prometheus trigger').toBeDefined();
      const r = await query(trigger!.metadata.query as string);
      expect(r.status, r.error).toBe('success');
      // 2 running + 8 queued on the node + 3 unplaced: counted once, though two routers report it.
      expect(r.data.result).toHaveLength(1);
      const demand = Number(r.data.result[0]!.value[1]);
      expect(demand).toBe(13);
      // KEDA's default AverageValue target: the HPA asks for ceil(demand / threshold) workers, which
      // the Deployment's bounds must allow.
      const threshold = Number(trigger!.metadata.threshold);
      expect(Math.ceil(demand / threshold)).toBeGreaterThan(1);
      expect(Math.ceil(demand / threshold)).toBeLessThanOrEqual(scaled.spec.maxReplicaCount);
    });

    it('runs every query of the mesh dashboard over metrics the routers export', async () => {
      const dashboard = JSON.parse(await readFile(join(ROOT, 'deploy/grafana/dashboards/inference-mesh.json'), 'utf8')) as { panels: { title: string; targets?: { expr: string }[] }[] };
      const exported = new Set([...(await scrape(routers[0]!.url)).matchAll(/^# TYPE (\S+) /gm)].map(([, name]) => name as string));
      const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })));
      expect(exprs.length).toBeGreaterThan(0);
      for (const { title, expr } of exprs) {
        for (const [name] of expr.matchAll(/\binference_[a-z0-9_]+/g)) expect(exported, `${title}: ${name}`).toContain(name);
        const r = await query(expr.replaceAll('$__rate_interval', '1m'));
        expect(r.status, `${title}: ${r.error ?? ''}`).toBe('success');
        expect(r.data.result.length, `${title}: ${expr} returns nothing`).toBeGreaterThan(0);
      }
    });
  });
});
