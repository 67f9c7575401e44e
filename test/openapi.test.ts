// /docs and the OpenAPI document: generated from the route schemas, structurally valid OpenAPI 3.0
// (every schema compiles, every operation has responses, path parameters declared), listing every
// route the gateway serves, with Swagger UI and its assets served locally.
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

type Operation = { summary?: string; tags?: string[]; responses?: Record<string, unknown>; parameters?: { name: string; in: string; required?: boolean }[]; requestBody?: { content: Record<string, { schema: object }> }; security?: unknown[] };
type OpenApi = { openapi: string; info: { title: string; version: string }; paths: Record<string, Record<string, Operation>>; components?: { securitySchemes?: Record<string, unknown> } };

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

describe('OpenAPI document and /docs', () => {
  let server: RunningServer;
  let doc: OpenApi;
  beforeAll(async () => {
    server = await startTestGateway({ config: { auth: { tokens: ['docs-token-123'] } } });
    const res = await fetch(`${server.url}/docs/json`);
    expect(res.status).toBe(200);
    doc = (await res.json()) as OpenApi;
  });
  afterAll(() => server.close());

  it('is a structurally valid OpenAPI 3.0 document', () => {
    expect(doc.openapi).toMatch(/^3\.0\.\d$/);
    expect(doc.info.title).toBe('InferenceFlow API');
    expect(doc.info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(Object.keys(doc.components?.securitySchemes ?? {})).toEqual(['bearer', 'apiKey']);
    const ajv = new Ajv({ strict: false });
    for (const [path, item] of Object.entries(doc.paths)) {
      expect(path.startsWith('/'), path).toBe(true);
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      for (const [method, op] of Object.entries(item)) {
        expect(METHODS, `${method} ${path}`).toContain(method);
        expect(Object.keys(op.responses ?? {}).length, `${method} ${path} responses`).toBeGreaterThan(0);
        for (const code of Object.keys(op.responses ?? {})) expect(code).toMatch(/^([1-5]\d\d|[1-5]XX|default)$/);
        const declared = (op.parameters ?? []).filter((p) => p.in === 'path');
        expect(declared.map((p) => p.name).sort()).toEqual([...templated].sort());
        for (const p of declared) expect(p.required).toBe(true);
        for (const media of Object.values(op.requestBody?.content ?? {})) {
          expect(() => ajv.compile(media.schema), `${method} ${path} body schema`).not.toThrow();
        }
      }
    }
  });

  it('documents the request bodies from the zod schemas the routes validate with', () => {
    const chat = doc.paths['/v1/chat/completions']?.post;
    expect(chat?.summary).toBeTruthy();
    const schema = chat?.requestBody?.content['application/json']?.schema as { required?: string[]; properties?: Record<string, unknown> };
    expect(schema.required).toEqual(expect.arrayContaining(['model', 'messages']));
    expect(Object.keys(schema.properties ?? {})).toEqual(expect.arrayContaining(['temperature', 'stream', 'tools', 'difficulty', 'priority']));
    const ajv = new Ajv({ strict: false });
    const validate = ajv.compile(schema);
    expect(validate({ model: 'm', messages: [{ role: 'user', content: 'hi' }], temperature: 0.5 })).toBe(true);
    expect(validate({ model: 'm', messages: [{ role: 'user', content: 'hi' }], temperature: 5 })).toBe(false);
    expect(validate({ model: 'm', messages: [{ role: 'user', content: 'hi' }], colour: 'red' })).toBe(false);
    expect(doc.paths['/health']?.get?.security).toEqual([]);
  });

  it('lists every route the gateway serves', async () => {
    const root = (await (await fetch(`${server.url}/`)).json()) as { endpoints: string[] };
    // The root lists every registered route; Swagger UI's own pages and the dashboard's script and
    // stylesheet are assets, not API.
    const api = root.endpoints.filter((e) => !/^GET \/(docs|dashboard\/)/.test(e));
    expect(api.length).toBeGreaterThan(10);
    const documented = new Set(Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${path}`)));
    for (const route of api) expect(documented, route).toContain(route.replace(/:(\w+)/g, '{$1}'));
    expect(documented).toContain('GET /v1/models/{*}');
  });

  it('serves Swagger UI and its assets from the gateway itself, without a key', async () => {
    const page = await fetch(`${server.url}/docs/`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('swagger-ui');
    const scripts = [...html.matchAll(/<(?:script|link)[^>]+(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string);
    expect(scripts.length).toBeGreaterThan(0);
    for (const src of scripts) {
      expect(src, 'no CDN').not.toMatch(/^(https?:)?\/\//);
      const asset = await fetch(new URL(src, `${server.url}/docs/`));
      expect(asset.status, src).toBe(200);
      await asset.arrayBuffer();
    }
  });
});
