// Applies scaling decisions to a Deployment's scale subresource
// (`PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale`, JSON merge patch) over undici.
// Credentials come from the pod's service account in a cluster, else from a kubeconfig (token or
// client certificate; exec plugins are not supported). @kubernetes/client-node is not a dependency.
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Agent, request, type Dispatcher } from 'undici';
import { parse as parseYaml } from 'yaml';
import type { ScaleApplier } from './scaler-service.js';

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubernetesConnection {
  /** API server base URL, e.g. https://10.0.0.1:443. */
  server: string;
  /** Bearer token, or a reader (the in-cluster token rotates, so it is re-read per call). */
  token?: string | (() => Promise<string>);
  ca?: string;
  cert?: string;
  key?: string;
  insecureSkipTlsVerify?: boolean;
  /** Namespace the credentials name (in-cluster: the pod's own), used when config names none. */
  namespace?: string;
  source: 'in-cluster' | 'kubeconfig';
}

export class KubernetesApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'KubernetesApiError';
  }
}

type Env = Record<string, string | undefined>;

/** In-cluster service account when running in a pod (and no kubeconfig was named), else a kubeconfig. */
export async function resolveKubernetesConnection(
  opts: { kubeconfig?: string; context?: string; env?: Env; serviceAccountDir?: string } = {},
): Promise<KubernetesConnection> {
  const env = opts.env ?? process.env;
  const saDir = opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  if (!opts.kubeconfig && env.KUBERNETES_SERVICE_HOST) {
    const tokenFile = join(saDir, 'token');
    const [ca, namespace] = await Promise.all([
      readFile(join(saDir, 'ca.crt'), 'utf8'),
      readFile(join(saDir, 'namespace'), 'utf8').catch(() => undefined),
    ]);
    const host = env.KUBERNETES_SERVICE_HOST.includes(':') ? `[${env.KUBERNETES_SERVICE_HOST}]` : env.KUBERNETES_SERVICE_HOST;
    return {
      server: `https://${host}:${env.KUBERNETES_SERVICE_PORT ?? '443'}`,
      token: async () => (await readFile(tokenFile, 'utf8')).trim(),
      ca,
      namespace: namespace?.trim(),
      source: 'in-cluster',
    };
  }
  const path = opts.kubeconfig ?? env.KUBECONFIG?.split(':')[0] ?? join(homedir(), '.kube', 'config');
  return loadKubeconfig(path, opts.context);
}

interface KubeconfigFile {
  'current-context'?: string;
  contexts?: Array<{ name: string; context: { cluster: string; user: string; namespace?: string } }>;
  clusters?: Array<{
    name: string;
    cluster: { server: string; 'certificate-authority'?: string; 'certificate-authority-data'?: string; 'insecure-skip-tls-verify'?: boolean };
  }>;
  users?: Array<{
    name: string;
    user: {
      token?: string;
      tokenFile?: string;
      'client-certificate'?: string;
      'client-certificate-data'?: string;
      'client-key'?: string;
      'client-key-data'?: string;
      exec?: unknown;
    };
  }>;
}

export async function loadKubeconfig(path: string, contextName?: string): Promise<KubernetesConnection> {
  const doc = parseYaml(await readFile(path, 'utf8')) as KubeconfigFile;
  const name = contextName ?? doc['current-context'];
  const ctx = doc.contexts?.find((c) => c.name === name)?.context;
  if (!ctx) throw new Error(`kubeconfig ${path}: no context ${name ?? '(current-context unset)'}`);
  const cluster = doc.clusters?.find((c) => c.name === ctx.cluster)?.cluster;
  if (!cluster) throw new Error(`kubeconfig ${path}: no cluster ${ctx.cluster}`);
  const user = doc.users?.find((u) => u.name === ctx.user)?.user ?? {};
  if (user.exec && !user.token && !user.tokenFile && !user['client-certificate-data'] && !user['client-certificate']) {
    throw new Error(`kubeconfig ${path}: user ${ctx.user} uses an exec plugin, which is not supported; give it a token or a client certificate`);
  }
  const b64 = (s?: string) => (s ? Buffer.from(s, 'base64').toString('utf8') : undefined);
  const file = async (p?: string) => (p ? readFile(p, 'utf8') : undefined);
  const tokenFile = user.tokenFile;
  return {
    server: cluster.server.replace(/\/+$/, ''),
    token: user.token ?? (tokenFile ? async () => (await readFile(tokenFile, 'utf8')).trim() : undefined),
    ca: b64(cluster['certificate-authority-data']) ?? (await file(cluster['certificate-authority'])),
    cert: b64(user['client-certificate-data']) ?? (await file(user['client-certificate'])),
    key: b64(user['client-key-data']) ?? (await file(user['client-key'])),
    insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] ?? false,
    namespace: ctx.namespace,
    source: 'kubeconfig',
  };
}

/** The scale subresource of Deployments in one namespace. */
export class KubernetesScaleClient implements ScaleApplier {
  private readonly dispatcher: Dispatcher;

  constructor(
    private readonly conn: KubernetesConnection,
    readonly namespace: string,
    private readonly timeoutMs = 10_000,
  ) {
    this.dispatcher = new Agent({
      connect: { ca: conn.ca || undefined, cert: conn.cert, key: conn.key, rejectUnauthorized: !conn.insecureSkipTlsVerify },
      keepAliveTimeout: 30_000,
    });
  }

  async getReplicas(deployment: string): Promise<number> {
    const body = (await this.call('GET', deployment)) as { spec?: { replicas?: number } };
    return body.spec?.replicas ?? 0;
  }

  async setReplicas(deployment: string, replicas: number): Promise<void> {
    await this.call('PATCH', deployment, { spec: { replicas } });
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  private scalePath(deployment: string): string {
    return `/apis/apps/v1/namespaces/${encodeURIComponent(this.namespace)}/deployments/${encodeURIComponent(deployment)}/scale`;
  }

  private async call(method: 'GET' | 'PATCH', deployment: string, patch?: unknown): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json' };
    const token = typeof this.conn.token === 'function' ? await this.conn.token() : this.conn.token;
    if (token) headers.authorization = `Bearer ${token}`;
    if (patch !== undefined) headers['content-type'] = 'application/merge-patch+json';
    const res = await request(this.conn.server + this.scalePath(deployment), {
      method,
      headers,
      body: patch === undefined ? undefined : JSON.stringify(patch),
      dispatcher: this.dispatcher,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
    const text = await res.body.text();
    if (res.statusCode >= 400) {
      let message = text.slice(0, 300);
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? message;
      } catch {
        // not a Status object; keep the raw text
      }
      throw new KubernetesApiError(res.statusCode, `${method} ${this.scalePath(deployment)}: ${res.statusCode} ${message}`);
    }
    return text ? (JSON.parse(text) as unknown) : {};
  }
}
