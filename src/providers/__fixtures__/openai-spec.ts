// Validators for request bodies against OpenAI's published OpenAPI document
// (/work/shared/specs/openai-openapi.json, or OPENAI_OPENAPI_SPEC). OpenAPI-only keywords are
// stripped and `nullable` is rewritten as a JSON-Schema null type so ajv can compile the schemas.
import { existsSync, readFileSync } from 'node:fs';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

export const OPENAI_SPEC_PATH = process.env.OPENAI_OPENAPI_SPEC ?? '/work/shared/specs/openai-openapi.json';

export function openAISpecAvailable(): boolean {
  return existsSync(OPENAI_SPEC_PATH);
}

type Json = unknown;

/** OpenAPI 3.x schema -> JSON Schema: drop x-*, discriminator and example; turn nullable into a null type. */
function toJsonSchema(node: Json): Json {
  if (Array.isArray(node)) return node.map(toJsonSchema);
  if (node === null || typeof node !== 'object') return node;
  const out: Record<string, Json> = {};
  for (const [key, value] of Object.entries(node)) {
    if (key.startsWith('x-') || key === 'discriminator' || key === 'example') continue;
    out[key] = toJsonSchema(value);
  }
  if ('nullable' in out) {
    const nullable = out.nullable === true;
    delete out.nullable;
    if (nullable) {
      if (out.type !== undefined) out.type = Array.isArray(out.type) ? [...out.type, 'null'] : [out.type, 'null'];
      else return { anyOf: [out, { type: 'null' }] };
    }
  }
  return out;
}

export interface OpenAISpec {
  validator(schemaName: string): ValidateFunction;
  /** Why a value is not valid against a component schema: empty when it is. */
  errors(schemaName: string, value: unknown): unknown[];
  /** Every top-level property name a component schema allows (allOf parts merged). */
  properties(schemaName: string): Set<string>;
}

/**
 * The spec for a test file's checks: loaded when present, and always under CI (where a missing file
 * fails the run); otherwise undefined, with a warning that names the test.
 */
export function specForTests(testName: string): OpenAISpec | undefined {
  const ready = openAISpecAvailable();
  if (!ready && !process.env.CI) console.warn(`${testName}: ${OPENAI_SPEC_PATH} missing; nothing is checked against the OpenAPI spec`);
  return ready || process.env.CI ? loadOpenAISpec() : undefined;
}

export function loadOpenAISpec(): OpenAISpec {
  const spec = JSON.parse(readFileSync(OPENAI_SPEC_PATH, 'utf8')) as { components: { schemas: Record<string, Json> } };
  const components = toJsonSchema(spec.components) as { schemas: Record<string, Json> };
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  (addFormatsModule as unknown as (a: Ajv2020) => void)(ajv);
  // OpenAI's own format for Unix timestamps in responses: an integer, which the type already checks.
  ajv.addFormat('unixtime', true);
  ajv.addSchema({ $id: 'openai', components });
  const cache = new Map<string, ValidateFunction>();
  return {
    validator(name) {
      let v = cache.get(name);
      if (!v) {
        v = ajv.compile({ $ref: `openai#/components/schemas/${name}` });
        cache.set(name, v);
      }
      return v;
    },
    errors(name, value) {
      const validate = this.validator(name);
      return validate(value) ? [] : [...(validate.errors ?? [])];
    },
    properties(name) {
      const out = new Set<string>();
      const visit = (schema: Json): void => {
        if (!schema || typeof schema !== 'object') return;
        const s = schema as { $ref?: string; allOf?: Json[]; properties?: Record<string, Json> };
        if (s.$ref) visit(components.schemas[s.$ref.replace('#/components/schemas/', '')]);
        for (const part of s.allOf ?? []) visit(part);
        for (const key of Object.keys(s.properties ?? {})) out.add(key);
      };
      visit(components.schemas[name]);
      return out;
    },
  };
}
