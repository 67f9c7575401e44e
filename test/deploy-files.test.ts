// The deployment files agree with the gateway they deploy: one port everywhere (the config default),
// probes on the gateway's health routes, only variables the gateway reads, a config file the
// gateway's schema accepts, and scaling targets that name the Deployments that exist.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_VARS } from '../src/config/env.js';
import { buildConfig } from '../src/config/load.js';
import { configSchema, serverSchema } from '../src/config/schema.js';
import { CAPACITY_ENV_VARS, capacitySections } from '../src/capacity/config.js';
import { meshConfigSchema } from '../src/mesh/config.js';
import { ROUTER_GROUP, meshKeys } from '../src/mesh/contracts.js';
import { MESH_BACKLOG_METRICS } from '../src/mesh/metrics.js';
import { packageImports, reproduceImage, type ImageLayout } from './helpers/dockerfile.js';

const root = new URL('../', import.meta.url);
const read = (path: string) => readFile(new URL(path, root), 'utf8');

/** The gateway's own constants: default port from the config schema, probe paths from its health routes. */
const PORT = serverSchema.parse({}).port;
const LIVENESS_PATH = '/health';
const READINESS_PATH = '/ready';
const KNOWN_VARS = new Set([...ENV_VARS, ...CAPACITY_ENV_VARS].map((v) => v.name));

/* eslint-disable @typescript-eslint/no-explicit-any -- manifests are walked as plain YAML data */
const manifests: any[] = [];
for (const file of (await readdir(new URL('kubernetes/', root))).filter((f) => f.endsWith('.yaml'))) {
  for (const d of parseAllDocuments(await read(`kubernetes/${file}`))) manifests.push(d.toJS());
}
const find = (kind: string, name: string) => {
  const m = manifests.find((x) => x.kind === kind && x.metadata.name === name);
  expect(m, `${kind}/${name}`).toBeDefined();
  return m;
};

const gateway = find('Deployment', 'inferenceflow');
const gatewayContainer = gateway.spec.template.spec.containers[0];
const worker = find('Deployment', 'inferenceflow-mesh-worker');
const router = find('Deployment', 'inferenceflow-mesh-router');
const envConfigMap = find('ConfigMap', 'inferenceflow-env');
const secret = find('Secret', 'inferenceflow-secrets');

/** Every variable a container sees: env entries plus the keys of the ConfigMaps and Secrets it loads whole. */
function containerVars(container: any): string[] {
  const names: string[] = (container.env ?? []).map((e: any) => e.name);
  for (const from of container.envFrom ?? []) {
    if (from.configMapRef) names.push(...Object.keys(find('ConfigMap', from.configMapRef.name).data));
    if (from.secretRef) names.push(...Object.keys(find('Secret', from.secretRef.name).stringData ?? find('Secret', from.secretRef.name).data));
  }
  return names;
}

/** A variable's value in a container: a literal env entry, a ConfigMap key it references, or a ConfigMap it loads whole. */
function containerValue(container: any, name: string): string | undefined {
  const entry = (container.env ?? []).find((e: any) => e.name === name);
  if (entry?.value !== undefined) return entry.value;
  const ref = entry?.valueFrom?.configMapKeyRef;
  if (ref) return find('ConfigMap', ref.name).data[ref.key];
  for (const from of container.envFrom ?? []) {
    const data = from.configMapRef ? find('ConfigMap', from.configMapRef.name).data : undefined;
    if (data && name in data) return data[name];
  }
  return undefined;
}

/** Variables only there to be expanded in args as $(NAME) (the downward API's pod name). */
function argOnly(container: any, name: string): boolean {
  return (container.args ?? []).some((a: string) => a.includes(`$(${name})`));
}

describe('kubernetes/ agrees with the gateway', () => {
  it('serves and probes one port: the config default, named http, behind the Service', () => {
    expect(gateway.spec.replicas).toBe(3);
    expect(gatewayContainer.ports).toEqual([{ name: 'http', containerPort: PORT, protocol: 'TCP' }]);
    expect(gatewayContainer.env.find((e: any) => e.name === 'PORT').value).toBe(String(PORT));
    expect(gatewayContainer.env.find((e: any) => e.name === 'HOST').value).toBe('0.0.0.0');
    expect(gatewayContainer.livenessProbe.httpGet).toEqual({ path: LIVENESS_PATH, port: 'http' });
    expect(gatewayContainer.readinessProbe.httpGet).toEqual({ path: READINESS_PATH, port: 'http' });
    const service = find('Service', 'inferenceflow');
    expect(service.spec.ports[0].targetPort).toBe('http');
    expect(service.spec.selector).toEqual(gateway.spec.template.metadata.labels);
    expect(gateway.spec.selector.matchLabels).toEqual(gateway.spec.template.metadata.labels);
  });

  it("sets seed 002's requests and limits", () => {
    expect(gatewayContainer.resources).toEqual({ requests: { cpu: '500m', memory: '512Mi' }, limits: { cpu: '1000m', memory: '1Gi' } });
  });

  it('gives the containers only variables the gateway reads', () => {
    for (const [name, container] of [
      ['gateway', gatewayContainer],
      ['mesh worker', worker.spec.template.spec.containers[0]],
      ['mesh router', router.spec.template.spec.containers[0]],
    ] as const) {
      const unknown = containerVars(container).filter((v) => !KNOWN_VARS.has(v) && !argOnly(container, v));
      expect(unknown, name).toEqual([]);
    }
    // The Secret template carries the secrets, the ConfigMap none.
    expect(Object.keys(secret.stringData)).toEqual(expect.arrayContaining(['TRUTHGPT_API_TOKEN', 'HOSTED_AI_API_KEY']));
    expect(Object.keys(envConfigMap.data).filter((k) => /KEY|TOKEN|PASSWORD/.test(k))).toEqual([]);
  });

  it("mounts a config file the gateway's schema (with the capacity sections) accepts", () => {
    const configMap = find('ConfigMap', 'inferenceflow-config');
    const mount = gatewayContainer.volumeMounts.find((m: any) => m.name === 'config');
    const file = gatewayContainer.env.find((e: any) => e.name === 'INFERENCEFLOW_CONFIG').value;
    const key = file.slice(mount.mountPath.length + 1);
    expect(Object.keys(configMap.data)).toContain(key);
    const parsed = configSchema.extend(capacitySections).parse(parse(configMap.data[key]));
    expect(parsed.server.port).toBe(PORT);
    expect(parsed.scaling.kubernetes.deployment).toBe(gateway.metadata.name);
    expect(parsed.scaling.min_replicas).toBe(find('HorizontalPodAutoscaler', 'inferenceflow-hpa').spec.minReplicas);
  });

  it('scales the Deployments that exist: HPA 3-20 on CPU 70 % and memory 80 %, KEDA on the workers', () => {
    const hpa = find('HorizontalPodAutoscaler', 'inferenceflow-hpa');
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: gateway.metadata.name });
    expect([hpa.spec.minReplicas, hpa.spec.maxReplicas]).toEqual([3, 20]);
    expect(Object.fromEntries(hpa.spec.metrics.map((m: any) => [m.resource.name, m.resource.target.averageUtilization]))).toEqual({ cpu: 70, memory: 80 });
    const keda = find('ScaledObject', 'inferenceflow-mesh-worker');
    expect(keda.spec.scaleTargetRef.name).toBe(worker.metadata.name);
    // The autoscaler's Role may patch the scale subresource of the Deployment the config names.
    const role = find('Role', 'inferenceflow-autoscaler');
    expect(role.rules[0]).toMatchObject({ apiGroups: ['apps'], resources: ['deployments/scale'], verbs: ['get', 'patch'] });
    expect(role.rules[0].resourceNames).toContain(gateway.metadata.name);
    expect(gateway.spec.template.spec.serviceAccountName).toBe(find('RoleBinding', 'inferenceflow-autoscaler').subjects[0].name);
  });

  it('runs the mesh worker and router with the CLI the gateway ships', () => {
    const args: string[] = worker.spec.template.spec.containers[0].args;
    expect(args[0]).toBe('worker');
    expect(args).toEqual(expect.arrayContaining(['--node-id', '--redis-url', '--backend']));
    const routerArgs: string[] = router.spec.template.spec.containers[0].args;
    expect(routerArgs[0]).toBe('router');
    expect(routerArgs).toEqual(expect.arrayContaining(['--redis-url']));
  });

  it('KEDA scales the workers on the demand the routers export, one worker per request a worker runs at once', () => {
    const keda = find('ScaledObject', 'inferenceflow-mesh-worker');
    const trigger = keda.spec.triggers.find((t: any) => t.type === 'prometheus');
    expect(trigger, 'a prometheus trigger').toBeDefined();
    // The query reads what the routers export (src/mesh/metrics.ts), taking max over routers: each
    // reports the whole mesh. test/mesh-backlog.test.ts runs it through a real Prometheus.
    const query: string = trigger.metadata.query;
    const names = [...query.matchAll(/\binference_[a-z0-9_]+/g)].map(([name]) => name);
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) expect(Object.values(MESH_BACKLOG_METRICS), name).toContain(name);
    expect(query).toMatch(/\bmax\b/);
    // AverageValue (the default): the HPA asks for ceil(demand / threshold) workers, so the threshold
    // is what one worker runs at once — its --max-concurrency, which the manifest states.
    expect(trigger.metricType ?? 'AverageValue').toBe('AverageValue');
    const workerArgs: string[] = worker.spec.template.spec.containers[0].args;
    const flag = workerArgs.indexOf('--max-concurrency');
    expect(flag, 'the worker sets --max-concurrency').toBeGreaterThanOrEqual(0);
    expect(Number(trigger.metadata.threshold)).toBe(Number(workerArgs[flag + 1]));
    // An empty answer (routers not scraped) is an error, never a demand of zero that scales down.
    expect(trigger.metadata.ignoreNullValues).toBe('false');
    expect(new URL(trigger.metadata.serverAddress).protocol).toMatch(/^https?:$/);
    // The routers serve the metrics: the flag, the container port and a Service in front of them.
    const routerContainer = router.spec.template.spec.containers[0];
    const routerArgs: string[] = routerContainer.args;
    const port = Number(routerArgs[routerArgs.indexOf('--metrics-port') + 1]);
    expect(port).toBeGreaterThan(0);
    expect(routerContainer.ports).toEqual([{ name: 'metrics', containerPort: port, protocol: 'TCP' }]);
    const service = find('Service', 'inferenceflow-mesh-router');
    expect(service.spec.selector).toEqual(router.spec.template.metadata.labels);
    expect(service.spec.ports).toEqual([{ name: 'metrics', port, targetPort: 'metrics', protocol: 'TCP' }]);
    expect(router.spec.template.metadata.annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(port) });
  });

  it("KEDA also watches the stream and group the mesh's routers consume, on the Redis everyone uses", () => {
    const keda = find('ScaledObject', 'inferenceflow-mesh-worker');
    const trigger = keda.spec.triggers.find((t: any) => t.type === 'redis-streams');
    expect(trigger, 'a redis-streams trigger').toBeDefined();
    // The prefix every mesh party uses: MESH_KEY_PREFIX where set (they must agree), else the gateway
    // config file's clusters.mesh.key_prefix, else the schema default.
    const configMap = find('ConfigMap', 'inferenceflow-config');
    const fileMesh = (parse(configMap.data['config.yaml']) as any).clusters?.mesh?.key_prefix as string | undefined;
    const prefixes = [gatewayContainer, worker.spec.template.spec.containers[0], router.spec.template.spec.containers[0]].map(
      (c) => containerValue(c, 'MESH_KEY_PREFIX') ?? (c === gatewayContainer ? fileMesh : undefined) ?? meshConfigSchema.parse({}).key_prefix,
    );
    expect(new Set(prefixes).size, `mesh key prefixes disagree: ${prefixes.join(', ')}`).toBe(1);
    expect(trigger.metadata.stream).toBe(meshKeys(prefixes[0] as string).requests);
    expect(trigger.metadata.consumerGroup).toBe(ROUTER_GROUP);
    expect(Number(trigger.metadata.pendingEntriesCount)).toBeGreaterThan(0);
    // The Redis: REDIS_URL's service and port, named from KEDA's namespace.
    const redisUrl = new URL(containerValue(router.spec.template.spec.containers[0], 'REDIS_URL') as string);
    expect(containerValue(worker.spec.template.spec.containers[0], 'REDIS_URL')).toBe(redisUrl.href);
    expect(containerValue(gatewayContainer, 'REDIS_URL')).toBe(redisUrl.href);
    const [host, port] = (trigger.metadata.address as string).split(':');
    expect(host?.split('.')[0]).toBe(redisUrl.hostname);
    expect(port).toBe(redisUrl.port || '6379');
    expect(trigger.metadata.databaseIndex ?? '0').toBe(redisUrl.pathname.slice(1) || '0');
  });
});

describe('docker-compose.yml agrees with the gateway', () => {
  it('maps the gateway port, wires known variables only, and runs one mesh worker', async () => {
    const compose = parse(await read('docker-compose.yml'), { merge: true }) as any;
    expect(Object.keys(compose.services).sort()).toEqual(['gateway', 'grafana', 'mesh-router', 'mesh-worker', 'postgres', 'prometheus', 'redis']);
    const gw = compose.services.gateway;
    expect(gw.ports.map((p: string) => p.split(':').at(-1))).toEqual([String(PORT)]);
    expect(gw.environment.PORT).toBe(String(PORT));
    for (const svc of ['gateway', 'mesh-worker', 'mesh-router']) {
      const unknown = Object.keys(compose.services[svc].environment).filter((v) => !KNOWN_VARS.has(v));
      expect(unknown, svc).toEqual([]);
    }
    expect(gw.environment.REDIS_URL).toMatch(/^redis:\/\/redis:6379/);
    expect(gw.environment.DATABASE_URL).toMatch(/@postgres:5432\//);
    expect(compose.services['mesh-worker'].command.slice(0, 1)).toEqual(['worker']);
  });

  it("passes the seeds' settings through to the gateway: RATE_LIMIT_RPM=100 docker compose up limits", async () => {
    const compose = parse(await read('docker-compose.yml'), { merge: true }) as any;
    const env = compose.services.gateway.environment as Record<string, string>;
    const seeds = ['RATE_LIMIT_RPM', 'RATE_LIMIT_REQUESTS', 'RATE_LIMIT_WINDOW', 'CACHE_BACKEND', 'CACHE_TTL', 'SIMILARITY_THRESHOLD', 'BATCH_MAX_SIZE', 'BATCH_FLUSH_TIMEOUT_MS', 'ENABLE_METRICS', 'ENABLE_TRACING', 'PROMETHEUS_PORT', 'GRAFANA_URL', 'TRUTHGPT_CONFIG'];
    for (const name of seeds) expect(env[name], name).toMatch(new RegExp(`^\\$\\{${name}(:-[^}]*)?\\}$`));
    // Compose's interpolation of ${VAR:-default} / ${VAR:?message} from a shell that sets `shell`.
    const interpolate = (shell: Record<string, string>) =>
      Object.fromEntries(
        Object.entries(env).map(([k, v]) => [k, String(v).replace(/\$\{(\w+)(?::([-?])([^}]*))?\}/g, (_, name: string, op?: string, word?: string) => shell[name] || (op === '-' ? (word ?? '') : op === '?' ? 'set-by-the-operator' : ''))]),
      );
    // Nothing set: the gateway loads as with no variables (empty is unset), the dashboard links the stack's Grafana.
    const plain = buildConfig({}, interpolate({})).config;
    expect(plain.rate_limiting.requests).toBeUndefined();
    expect(plain.monitoring.dashboard.grafana_url).toBe(`http://localhost:${compose.services.grafana.ports[0].split(':').at(-2)}`);
    const seeded = buildConfig({}, interpolate({ RATE_LIMIT_RPM: '100', CACHE_TTL: '60', ENABLE_TRACING: 'false' })).config;
    expect(seeded.rate_limiting.requests).toBe(100);
    expect(seeded.cache.ttl_s).toBe(60);
    expect(seeded.monitoring.tracing.enabled).toBe(false);
  });

  it('runs a mesh router (without one nothing sent to the mesh is placed) that Prometheus scrapes', async () => {
    const compose = parse(await read('docker-compose.yml'), { merge: true }) as any;
    const router = compose.services['mesh-router'];
    const args = router.command as string[];
    expect(args[0]).toBe('router');
    const flag = (name: string) => args[args.indexOf(name) + 1];
    // The same Redis (and so the same streams) as the worker and the gateway.
    expect(flag('--redis-url')).toBe(compose.services['mesh-worker'].command[compose.services['mesh-worker'].command.indexOf('--redis-url') + 1]);
    expect(flag('--redis-url')).toBe(compose.services.gateway.environment.REDIS_URL);
    const prom = parse(await read('deploy/prometheus.yml')) as { scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[] };
    const targets = prom.scrape_configs.flatMap((j) => j.static_configs.flatMap((c) => c.targets));
    expect(targets).toContain(`mesh-router:${flag('--metrics-port')}`);
    expect(compose.services.prometheus.volumes).toContain('./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro');
  });

  it("mounts every file Prometheus's config names (rule files resolve beside the config inside the container)", async () => {
    const compose = parse(await read('docker-compose.yml'), { merge: true }) as any;
    const mounts = new Map<string, string>(
      (compose.services.prometheus.volumes as string[])
        .map((v) => v.split(':'))
        .filter(([host]) => host?.startsWith('./'))
        .map(([host, container]) => [container as string, host as string]),
    );
    const configPath = '/etc/prometheus/prometheus.yml';
    const configHost = mounts.get(configPath) as string;
    expect(configHost).toBe('./deploy/prometheus.yml');
    const prom = parse(await read(configHost)) as { rule_files?: string[] };
    expect(prom.rule_files?.length).toBeGreaterThan(0);
    for (const rules of prom.rule_files ?? []) {
      const inContainer = posix.resolve(posix.dirname(configPath), rules);
      const host = mounts.get(inContainer);
      expect(host, `${rules} (${inContainer}) is not mounted`).toBeDefined();
      await expect(read(host as string), host).resolves.toMatch(/groups:/);
    }
  });
});

describe('Dockerfile', () => {
  it('is multi-stage, runs as a non-root user, exposes the port and checks /health', async () => {
    const text = await read('Dockerfile');
    expect(text.match(/^FROM /gm)?.length).toBeGreaterThanOrEqual(2);
    const users = [...text.matchAll(/^USER (\S+)/gm)].map((m) => m[1]);
    expect(users.at(-1)).not.toMatch(/^(root|0)$/);
    expect(text).toMatch(new RegExp(`^EXPOSE ${PORT}$`, 'm'));
    expect(text).toMatch(new RegExp(`PORT=${PORT}`));
    const healthcheck = text.slice(text.indexOf('HEALTHCHECK'));
    expect(healthcheck).toContain(`'${LIVENESS_PATH}'`);
    expect(text).toMatch(/^ENTRYPOINT \["node", "dist\/cli\/main\.js"\]$/m);
  });
});

// What `docker build` would produce, reproduced in a temporary directory (test/helpers/dockerfile.ts):
// the build stage runs the real `npm run build`, the runtime stage gets exactly what its COPY lines
// copy, and the gateway must start from it the way the image starts it.
describe('the image the Dockerfile builds', () => {
  let tmp: string;
  let image: ImageLayout;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'inferenceflow-image-'));
    image = await reproduceImage({ context: fileURLToPath(root), dockerfile: 'Dockerfile', into: tmp, nodeModules: fileURLToPath(new URL('node_modules', root)) });
  }, 240_000);
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('runs `serve` from the runtime stage alone: it listens, is healthy and ready, and serves the dashboard', async () => {
    expect(image.command.slice(0, 2)).toEqual(['node', 'dist/cli/main.js']);
    expect(image.command.slice(2)).toEqual(['serve']);
    const token = 'image-test-token-0123456789';
    // The image's environment only (no REDIS_URL or keys from this shell); loopback and any free port.
    const child = spawn(process.execPath, image.command.slice(1), {
      cwd: image.workdir,
      env: { PATH: process.env.PATH, HOME: image.workdir, ...image.env, HOST: '127.0.0.1', PORT: '0', TRUTHGPT_API_TOKEN: token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout }).on('line', (line) => {
          output += `${line}\n`;
          try {
            const rec = JSON.parse(line) as { msg?: string; url?: string };
            if (rec.msg === 'inferenceflow listening' && rec.url) resolve(rec.url);
          } catch {
            // not a log record
          }
        });
        void exited.then((code) => reject(new Error(`the gateway exited (${code}) before listening:\n${output}`)));
      });
      expect((await fetch(`${url}/health`)).status).toBe(200);
      expect((await fetch(`${url}/ready`)).status).toBe(200);
      const page = await fetch(`${url}/dashboard`);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toMatch(/text\/html/);
      expect(await page.text()).toContain('<html');
      const models = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${token}` } });
      expect(models.status).toBe(200);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  }, 60_000);

  it('ships production dependencies only: the build installs optional ones for their types, then prunes them with the dev ones', async () => {
    const pkg = JSON.parse(await read('package.json')) as { optionalDependencies: Record<string, string>; devDependencies: Record<string, string> };
    const lock = JSON.parse(await read('package-lock.json')) as { packages: Record<string, { dev?: boolean; devOptional?: boolean }> };
    // The build stage compiled (its tsc resolved node-llama-cpp's and transformers' types) ...
    expect(existsSync(join(image.workdir, 'dist/cli/main.js'))).toBe(true);
    // ... and the image carries neither group (NPM_OMIT defaults to optional); a dev dependency that a
    // production one needs too (@types/node) stays, as npm keeps it.
    const devOnly = Object.keys(pkg.devDependencies).filter((name) => lock.packages[`node_modules/${name}`]?.dev || lock.packages[`node_modules/${name}`]?.devOptional);
    expect(devOnly).toEqual(expect.arrayContaining(['typescript', 'vitest']));
    for (const name of [...Object.keys(pkg.optionalDependencies), ...devOnly]) {
      expect(existsSync(join(image.workdir, 'node_modules', name)), name).toBe(false);
    }
    expect(existsSync(join(image.workdir, 'node_modules/fastify/package.json'))).toBe(true);
  });

  it('loads at start-up only production dependencies (the image prunes dev dependencies and omits optional ones)', async () => {
    const pkg = JSON.parse(await read('package.json')) as { dependencies: Record<string, string>; optionalDependencies: Record<string, string> };
    const imports = packageImports(join(image.workdir, 'dist/cli/main.js'));
    const bad = [...imports]
      .filter(([name]) => !isBuiltin(name))
      .filter(([name, kind]) => !(name in pkg.dependencies) && !(kind === 'dynamic' && name in pkg.optionalDependencies))
      .map(([name, kind]) => `${name} (${kind})`);
    expect(bad).toEqual([]);
    expect(imports.get('fastify')).toBe('static');
  });
});

describe('.github/workflows/ci-cd.yml', () => {
  it('checks, audits, builds the image and runs the k6 smoke test', async () => {
    const wf = parse(await read('.github/workflows/ci-cd.yml')) as any;
    const runs = Object.values(wf.jobs)
      .flatMap((j: any) => j.steps)
      .map((s: any) => `${s.run ?? ''} ${s.uses ?? ''}`)
      .join('\n');
    for (const step of [/^npm ci\b/m, /^npm run typecheck\b/m, /^npm run lint\b/m, /^npm test\b/m, /^npm audit\b/m, /^docker build\b/m, /^k6 run .*bench\/k6\/smoke\.js/m]) {
      expect(runs, String(step)).toMatch(step);
    }
    const services = wf.jobs.test.services;
    expect(Object.keys(services).sort()).toEqual(['postgres', 'redis']);
  });
});
