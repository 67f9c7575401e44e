// Calling a gateway in a test: `call` (a JSON call: GET without a body, POST with one, an optional
// bearer key), and what tests build on it: `createKey` (an API key through the admin API), `keySpend`
// (a key's line of GET /v1/spend) and `expertBurst` (concurrent expert-difficulty requests against a
// budget).
import { request } from 'undici';
import type { SpendRow } from '../../src/store/ledger.js';

// Test answers are read field by field; their shape is what the test asserts.
export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The body parsed, when it is a JSON object. */
  json: Json;
}

export async function call(url: string, path: string, opts: { key?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<Answer> {
  const res = await request(`${url}${path}`, {
    method: opts.body === undefined ? 'GET' : 'POST',
    headers: { ...(opts.key ? { authorization: `Bearer ${opts.key}` } : {}), ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: (text.startsWith('{') ? JSON.parse(text) : undefined) as Json };
}

/**
 * Creates an API key through the admin API (POST /admin/keys with the admin token) and gives back its
 * secret and id; any answer but 201 throws, with the status and body.
 */
export async function createKey(url: string, adminToken: string, body: Record<string, unknown>): Promise<{ key: string; id: string }> {
  const res = await call(url, '/admin/keys', { key: adminToken, body });
  if (res.status !== 201) throw new Error(`POST /admin/keys answered ${res.status}, not 201: ${res.text}`);
  return res.json as { key: string; id: string };
}

/**
 * A key's line of the ledger's spend by key (GET /v1/spend?group_by=key with the admin token), or
 * undefined while the ledger holds none of its requests.
 */
export async function keySpend(url: string, adminToken: string, keyId: string): Promise<SpendRow | undefined> {
  const res = await call(url, '/v1/spend?group_by=key', { key: adminToken });
  if (res.status !== 200) throw new Error(`GET /v1/spend answered ${res.status}: ${res.text}`);
  return (res.json.data as SpendRow[]).find((d) => d.group === keyId);
}

/**
 * `count` expert-difficulty chat requests to `model` with `key`, all at once (max_tokens 20, each its
 * own question, tagged `tag`), split into those answered 200 and the rest: a burst against a budget.
 */
export async function expertBurst(url: string, key: string, model: string, count: number, tag: string): Promise<{ ok: Answer[]; refused: Answer[] }> {
  const results = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      call(url, '/v1/chat/completions', { key, headers: { 'x-inferenceflow-difficulty': 'expert' }, body: { model, max_tokens: 20, messages: [{ role: 'user', content: `Question ${i} (${tag}).` }] } }),
    ),
  );
  return { ok: results.filter((r) => r.status === 200), refused: results.filter((r) => r.status !== 200) };
}
