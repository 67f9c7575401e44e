// Every document in kubernetes/*.yaml validates against the Kubernetes OpenAPI schema of its kind
// (kubernetes-models, and @kubernetes-models/keda for the ScaledObject). An unknown kind fails too,
// so a new manifest cannot slip in unvalidated.
import { readdir, readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { meshConfigSchema } from '../src/mesh/config.js';

type Validatable = { validate(): void };
const MODELS: Record<string, new (data: never) => Validatable> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
};

const dir = new URL('../kubernetes/', import.meta.url);
const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml')).sort();
const docs: Array<{ file: string; doc: { apiVersion: string; kind: string; metadata: { name: string } } }> = [];
for (const file of files) {
  for (const d of parseAllDocuments(await readFile(new URL(file, dir), 'utf8'))) {
    expect(d.errors, file).toEqual([]);
    docs.push({ file, doc: d.toJS() });
  }
}

describe('kubernetes/*.yaml against the Kubernetes schemas', () => {
  it('has the manifests issue 9 asks for', () => {
    const kinds = docs.map(({ doc }) => `${doc.kind}/${doc.metadata.name}`).sort();
    expect(kinds).toEqual(
      expect.arrayContaining([
        'ConfigMap/inferenceflow-config',
        'Deployment/inferenceflow',
        'Deployment/inferenceflow-mesh-router',
        'Deployment/inferenceflow-mesh-worker',
        'HorizontalPodAutoscaler/inferenceflow-hpa',
        'Secret/inferenceflow-secrets',
        'Service/inferenceflow',
        'Service/inferenceflow-mesh-router',
        'ScaledObject/inferenceflow-mesh-worker',
      ]),
    );
  });

  it.each(docs.map(({ file, doc }) => [`${file}: ${doc.kind}/${doc.metadata.name}`, doc] as const))('%s is valid', (_label, doc) => {
    const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
    expect(Model, `no schema known for ${doc.apiVersion} ${doc.kind}`).toBeDefined();
    expect(() => new (Model as new (d: unknown) => Validatable)(doc).validate()).not.toThrow();
  });

  it('rejects a manifest that breaks its schema (the validator is live)', () => {
    const deployment = structuredClone(docs.find(({ doc }) => doc.kind === 'Deployment')?.doc) as unknown as {
      spec: { template: { spec: { containers: Array<{ ports: Array<{ containerPort: unknown }> }> } } };
    };
    (deployment.spec.template.spec.containers[0] as { ports: Array<{ containerPort: unknown }> }).ports[0] = { containerPort: 'eighty' };
    expect(() => new Deployment(deployment as never).validate()).toThrow(/containerPort/);
  });

  it("rejects a ScaledObject trigger whose metadata is not all strings (KEDA's CRD schema is live too)", () => {
    const scaled = structuredClone(docs.find(({ doc }) => doc.kind === 'ScaledObject')?.doc) as unknown as { spec: { triggers: Array<{ metadata: Record<string, unknown> }> } };
    (scaled.spec.triggers[0] as { metadata: Record<string, unknown> }).metadata.threshold = 4;
    expect(() => new ScaledObject(scaled as never).validate()).toThrow(/threshold|string/);
  });

  it("gives a mesh worker's drain time to finish the longest request it may run before the kill", () => {
    const worker = docs.find(({ doc }) => doc.kind === 'Deployment' && doc.metadata.name === 'inferenceflow-mesh-worker')?.doc as unknown as { spec: { template: { spec: { terminationGracePeriodSeconds: number } } } };
    const longest = meshConfigSchema.parse({}).stream_deadline_ms / 1000;
    expect(worker.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(longest);
  });
});
