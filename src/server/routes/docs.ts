// API documentation: an OpenAPI 3.0 document generated from the route schemas (@fastify/swagger)
// and Swagger UI at /docs with its assets served from the package, nothing from a CDN. Routes attach
// their zod body schemas with `describeRoute`, which documents them without a second validation.
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, FastifySchema, RouteShorthandOptions } from 'fastify';
import { z } from 'zod';

export const DOCS_PREFIX = '/docs';

// No upgrade-insecure-requests (swagger-ui's default CSP has it): on plain-HTTP loopback it would
// send the page's own asset requests to https and break the page.
const DOCS_CSP =
  "default-src 'self'; base-uri 'self'; img-src 'self' data:; object-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'";

export interface RouteDoc {
  summary: string;
  description?: string;
  tags: string[];
  /** The zod schema the handler validates the body with; documented, not re-validated by Fastify. */
  body?: z.ZodType;
  /** Callable without credentials. */
  public?: boolean;
}

/** Route options carrying OpenAPI documentation. The handler keeps validating with zod itself. */
export function describeRoute(doc: RouteDoc): RouteShorthandOptions {
  const schema: FastifySchema & Record<string, unknown> = { summary: doc.summary, tags: doc.tags };
  if (doc.description) schema.description = doc.description;
  if (doc.body) schema.body = nullableOnTypes(z.toJSONSchema(doc.body, { target: 'openapi-3.0', io: 'input', unrepresentable: 'any' }));
  if (doc.public) schema.security = [];
  // The handler validates with zod (the gateway's own error codes); Fastify must not validate again.
  return { schema, validatorCompiler: () => () => true };
}

/**
 * OpenAPI 3.0 allows `nullable` only beside `type`; zod puts it on a union (`anyOf`) for
 * `z.union([...]).nullable()`. Moves it onto each typed branch, which means the same thing.
 */
export function nullableOnTypes<T>(node: T): T {
  if (Array.isArray(node)) return node.map((n: unknown) => nullableOnTypes(n)) as T;
  if (node === null || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node as Record<string, unknown>)) out[k] = nullableOnTypes(v);
  if (out.nullable === true && out.type === undefined) {
    const branches = (out.anyOf ?? out.oneOf) as Record<string, unknown>[] | undefined;
    if (branches) {
      delete out.nullable;
      for (const b of branches) if (b.type !== undefined) b.nullable = true;
    }
  }
  return out as T;
}

export async function registerDocs(app: FastifyInstance, opts: { version: string }): Promise<void> {
  // Swagger UI's own routes are public operational pages, like /health.
  app.addHook('onRoute', (route) => {
    if (route.url === DOCS_PREFIX || route.url.startsWith(`${DOCS_PREFIX}/`)) {
      route.config = { ...(route.config as object), public: true, monitoring: true } as typeof route.config;
    }
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'InferenceFlow API',
        version: opts.version,
        description:
          'LLM inference gateway: OpenAI-compatible chat, completions, embeddings and models, plus health, metrics and stats. ' +
          'Send `Authorization: Bearer <key>` (or `x-api-key`) when the gateway has keys configured.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer' },
          apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' },
        },
      },
      security: [{ bearer: [] }, { apiKey: [] }],
      tags: [
        { name: 'openai', description: 'OpenAI-compatible endpoints' },
        { name: 'health', description: 'Liveness, readiness and service information' },
        { name: 'monitoring', description: 'Prometheus metrics, performance summary, dashboard' },
      ],
    },
  });
  await app.register(swaggerUi, {
    routePrefix: DOCS_PREFIX,
    uiConfig: { docExpansion: 'list', deepLinking: true, validatorUrl: null },
    staticCSP: DOCS_CSP,
  });
}
