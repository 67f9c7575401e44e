// The Kubernetes applier against a local HTTP stand-in of the API server: the exact request a real
// cluster would receive (method, path, content type, bearer token, merge-patch body), credentials
// from a kubeconfig and from an in-cluster service account, and API errors surfaced.
import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KubernetesApiError, KubernetesScaleClient, resolveKubernetesConnection } from './kubernetes.js';
import { clustersSchema, costOptimizationSchema, scalingSchema } from './config.js';
import { createCapacityServices } from './service.js';

interface Seen {
  method?: string;
  url?: string;
  headers: IncomingMessage['headers'];
  body: string;
}

let server: Server;
let base: string;
let seen: Seen[] = [];
let replicas = 3;
let dir: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      const m = /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/deployments\/([^/]+)\/scale$/.exec(req.url ?? '');
      if (!m || m[2] === 'missing') {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', status: 'Failure', message: `deployments.apps "${m?.[2]}" not found`, code: 404 }));
        return;
      }
      if (req.method === 'PATCH') replicas = (JSON.parse(body) as { spec: { replicas: number } }).spec.replicas;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Scale', apiVersion: 'autoscaling/v1', metadata: { name: m[2], namespace: m[1] }, spec: { replicas } }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dir = await mkdtemp(join(tmpdir(), 'inferenceflow-k8s-'));
});

afterAll(() => {
  server.close();
});

beforeEach(() => {
  seen = [];
  replicas = 3;
});

async function kubeconfig(): Promise<string> {
  const path = join(dir, 'config');
  await writeFile(
    path,
    [
      'apiVersion: v1',
      'kind: Config',
      'current-context: test',
      'contexts:',
      '- name: test',
      '  context: { cluster: local, user: scaler, namespace: serving }',
      '- name: other',
      '  context: { cluster: nowhere, user: scaler }',
      'clusters:',
      '- name: local',
      `  cluster: { server: "${base}/" }`,
      'users:',
      '- name: scaler',
      '  user: { token: kubeconfig-token }',
    ].join('\n'),
  );
  return path;
}

describe('KubernetesScaleClient', () => {
  it('PATCHes the scale subresource with a JSON merge patch and the kubeconfig token', async () => {
    const conn = await resolveKubernetesConnection({ kubeconfig: await kubeconfig(), env: {} });
    expect([conn.source, conn.namespace, conn.server]).toEqual(['kubeconfig', 'serving', base]);
    const client = new KubernetesScaleClient(conn, 'serving');
    await client.setReplicas('inferenceflow', 7);
    expect(seen).toHaveLength(1);
    const [req] = seen;
    expect(req?.method).toBe('PATCH');
    expect(req?.url).toBe('/apis/apps/v1/namespaces/serving/deployments/inferenceflow/scale');
    expect(req?.headers['content-type']).toBe('application/merge-patch+json');
    expect(req?.headers.authorization).toBe('Bearer kubeconfig-token');
    expect(JSON.parse(req?.body ?? '')).toEqual({ spec: { replicas: 7 } });
    expect(await client.getReplicas('inferenceflow')).toBe(7);
    expect(seen[1]?.method).toBe('GET');
    await client.close();
  });

  it("uses the pod's service account in a cluster, re-reading the token on every call", async () => {
    const sa = join(dir, 'sa');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(sa, { recursive: true });
    await writeFile(join(sa, 'token'), 'sa-token-1\n');
    await writeFile(join(sa, 'ca.crt'), '');
    await writeFile(join(sa, 'namespace'), 'prod');
    const port = new URL(base).port;
    const conn = await resolveKubernetesConnection({ env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: port }, serviceAccountDir: sa });
    expect([conn.source, conn.namespace, conn.server]).toEqual(['in-cluster', 'prod', `https://127.0.0.1:${port}`]);
    // The stand-in speaks plain HTTP; point the same credentials at it.
    const client = new KubernetesScaleClient({ ...conn, server: base }, 'prod');
    await client.getReplicas('inferenceflow');
    await writeFile(join(sa, 'token'), 'sa-token-2\n');
    await client.setReplicas('inferenceflow', 4);
    expect(seen.map((s) => s.headers.authorization)).toEqual(['Bearer sa-token-1', 'Bearer sa-token-2']);
    await client.close();
  });

  it("scales in the credentials' namespace when scaling.kubernetes.namespace is unset, else in the configured one", async () => {
    const path = await kubeconfig();
    const services = async (kubernetes: Record<string, unknown>) =>
      createCapacityServices({
        clusters: clustersSchema.parse({}),
        scaling: scalingSchema.parse({ enabled: true, dry_run: false, interval_s: 3600, kubernetes: { kubeconfig: path, ...kubernetes } }),
        cost: costOptimizationSchema.parse({}),
        env: {},
      });
    const fromContext = await services({});
    await fromContext.autoscaler?.tick();
    expect(seen[0]?.url).toBe('/apis/apps/v1/namespaces/serving/deployments/inferenceflow/scale');
    expect(fromContext.autoscaler?.report().target).toEqual({ namespace: 'serving', deployment: 'inferenceflow' });
    await fromContext.close();
    seen = [];
    const configured = await services({ namespace: 'batch' });
    await configured.autoscaler?.tick();
    expect(seen[0]?.url).toBe('/apis/apps/v1/namespaces/batch/deployments/inferenceflow/scale');
    await configured.close();
  });

  it('surfaces the API status message on failure', async () => {
    const client = new KubernetesScaleClient(await resolveKubernetesConnection({ kubeconfig: await kubeconfig(), env: {} }), 'serving');
    const err = await client.setReplicas('missing', 2).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubernetesApiError);
    expect((err as KubernetesApiError).status).toBe(404);
    expect((err as Error).message).toContain('deployments.apps "missing" not found');
    await client.close();
  });

  it('rejects a kubeconfig context that does not exist', async () => {
    await expect(resolveKubernetesConnection({ kubeconfig: await kubeconfig(), context: 'nope', env: {} })).rejects.toThrow(/no context nope/);
    await expect(resolveKubernetesConnection({ kubeconfig: await kubeconfig(), context: 'other', env: {} })).rejects.toThrow(/no cluster nowhere/);
  });
});
