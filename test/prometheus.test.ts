// The monitoring deploy files against real tools (Debian's `prometheus` package, which ships
// `promtool`): the shipped config and alert rules pass promtool (rules with their unit tests), a real
// Prometheus scrapes a running gateway and a metric reads back through its query API, and every
// query of the Grafana dashboard is valid PromQL over metrics the gateway really exports.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';
import { stopChild } from './helpers/child-gateway.js';
import { freePort } from './helpers/serve-cluster.js';
import { isCI } from './helpers/services.js';

const run = promisify(execFile);
const PROMETHEUS = process.env.PROMETHEUS_PATH ?? '/usr/bin/prometheus';
const PROMTOOL = process.env.PROMTOOL_PATH ?? '/usr/bin/promtool';
const available = existsSync(PROMETHEUS) && existsSync(PROMTOOL);
if (!available && isCI) throw new Error(`CI=true but ${PROMETHEUS} or ${PROMTOOL} is missing: apt-get install -y prometheus`);
if (!available) console.warn('skipping the Prometheus tests: prometheus/promtool not found (apt-get install -y prometheus)');

const DEPLOY = resolve('deploy');

describe.skipIf(!available)('promtool', () => {
  it('accepts deploy/prometheus.yml and its rule file', async () => {
    const { stdout } = await run(PROMTOOL, ['check', 'config', join(DEPLOY, 'prometheus.yml')]);
    expect(stdout).toContain('SUCCESS');
  });

  it('accepts deploy/alerts.yml, and the alerts fire as their unit tests expect', async () => {
    const check = await run(PROMTOOL, ['check', 'rules', join(DEPLOY, 'alerts.yml')]);
    expect(check.stdout).toMatch(/SUCCESS: \d+ rules found/);
    const test = await run(PROMTOOL, ['test', 'rules', join(DEPLOY, 'alerts.test.yml')]);
    expect(test.stdout).toContain('SUCCESS');
  });
});

describe.skipIf(!available)('a real Prometheus scraping the gateway', () => {
  let gateway: RunningServer;
  let prometheus: ChildProcess;
  let dir: string;
  let api: string;
  let stderr = '';

  beforeAll(async () => {
    gateway = await startTestGateway({
      config: { providers: { sim: { type: 'simulator' } }, models: [{ name: 'chat', deployments: [{ provider: 'sim', model: 'sim-chat' }] }] },
    });
    for (let i = 0; i < 4; i++) {
      await fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hello' }] }),
      }).then((r) => r.text());
    }
    dir = await mkdtemp(join(tmpdir(), 'inferenceflow-prometheus-'));
    const target = new URL(gateway.url).host;
    await writeFile(
      join(dir, 'prometheus.yml'),
      [
        'global:',
        '  scrape_interval: 1s',
        '  evaluation_interval: 1s',
        'rule_files:',
        `  - ${join(DEPLOY, 'alerts.yml')}`,
        'scrape_configs:',
        '  - job_name: inferenceflow',
        '    metrics_path: /metrics',
        '    static_configs:',
        `      - targets: ["${target}"]`,
        '',
      ].join('\n'),
    );
    const port = await freePort();
    api = `http://127.0.0.1:${port}`;
    prometheus = spawn(PROMETHEUS, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    prometheus.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
  });

  afterAll(async () => {
    if (prometheus) await stopChild(prometheus);
    await gateway?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function query(promql: string): Promise<{ status: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] }; error?: string }> {
    const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(promql)}`);
    return (await res.json()) as never;
  }

  it('reads the gateway request counter back through the query API', async () => {
    await expect
      .poll(
        async () => {
          if (prometheus.exitCode !== null) throw new Error(`prometheus exited: ${stderr}`);
          const r = await query('inference_requests_total{route="/v1/chat/completions"}').catch(() => undefined);
          return r?.data.result[0];
        },
        { timeout: 30_000, interval: 500 },
      )
      .toBeDefined();
    const r = await query('sum(inference_requests_total{route="/v1/chat/completions",status="200"})');
    expect(r.status).toBe('success');
    expect(Number(r.data.result[0]?.value[1])).toBe(4);
    const up = await query('up{job="inferenceflow"}');
    expect(up.data.result[0]?.value[1]).toBe('1');
    const labels = (await query('inference_requests_total')).data.result[0]?.metric;
    expect(labels).toMatchObject({ model: 'sim-chat', provider: 'sim', route: '/v1/chat/completions', status: '200' });
  });

  it('loaded the shipped alert rules', async () => {
    const res = (await (await fetch(`${api}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string }[] }[] } };
    const rules = res.data.groups.flatMap((g) => g.rules);
    expect(rules.map((r) => r.name)).toEqual(expect.arrayContaining(['InferenceHighErrorRate', 'InferenceHighP95Latency', 'CircuitBreakerOpen', 'InferenceQueueBacklog']));
  });

  it('runs every Grafana dashboard query, over metrics the gateway exports', async () => {
    const dashboard = JSON.parse(await readFile(join(DEPLOY, 'grafana/dashboards/inference-api.json'), 'utf8')) as {
      panels: { title: string; targets?: { expr: string }[] }[];
      templating: { list: { query: { query: string } }[] };
    };
    const exported = new Set([...(await (await fetch(`${gateway.url}/metrics`)).text()).matchAll(/^# TYPE (\S+) (\w+)/gm)].flatMap(([, name, type]) =>
      type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name as string],
    ));
    const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })));
    expect(exprs.length).toBeGreaterThan(20);
    for (const { title, expr } of exprs) {
      for (const [name] of expr.matchAll(/\b(inference_[a-z0-9_]+|circuit_breaker_[a-z_]+)/g)) expect(exported, `${title}: ${name}`).toContain(name);
      const promql = expr.replaceAll('$__rate_interval', '1m').replaceAll('$route', '.*').replaceAll('$provider', '.*');
      const r = await query(promql);
      expect(r.status, `${title}: ${r.error ?? ''}`).toBe('success');
    }
    for (const v of dashboard.templating.list) expect(v.query.query).toMatch(/^label_values\((inference_\w+), \w+\)$/);
  });
});
