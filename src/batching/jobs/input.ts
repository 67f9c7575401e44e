// Reads a Batch API input file: one JSON request per line, `{"custom_id", "method": "POST", "url",
// "body"}`. A structural problem (bad JSON, a missing or repeated custom_id, a line for another
// endpoint, a NUL character or unpaired surrogate the database cannot store) fails the whole batch at creation with the
// line named, as OpenAI does; a body the endpoint would reject is found when the line runs and lands in the error file.
import type { ItemInput } from './store.js';
import { mayHoldUnstorable, storableText } from '../../store/sql.js';
import { MAX_JSON_DEPTH, nestedDeeperThan } from '../../server/json-depth.js';

export const BATCH_ENDPOINTS = ['/v1/chat/completions', '/v1/embeddings'] as const;
export type BatchEndpoint = (typeof BATCH_ENDPOINTS)[number];

export interface InputError {
  code: string;
  message: string;
  line: number | null;
  param: string | null;
}

export function parseBatchInput(content: string, endpoint: string, maxRequests: number): { items: ItemInput[]; errors: InputError[] } {
  const items: ItemInput[] = [];
  const errors: InputError[] = [];
  const seen = new Set<string>();
  const lines = content.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const text = (lines[i] as string).trim();
    if (!text) continue;
    const line = i + 1;
    const fail = (code: string, message: string, param: string | null = null) => {
      if (errors.length < 100) errors.push({ code, message, line, param });
    };
    // Too deep to store or send (json-depth.ts): refused with its line, as the HTTP routes refuse it.
    if (nestedDeeperThan(text, MAX_JSON_DEPTH)) {
      fail('invalid_request', `This line nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels.`);
      continue;
    }
    let row: unknown;
    let unstorable = false;
    try {
      // A NUL character (`\u0000`) or an unpaired surrogate (`\ud800`) in any key or string: Postgres
      // cannot store either in jsonb or text. The reviver (slower) only for a line with such an escape.
      row = mayHoldUnstorable(text)
        ? JSON.parse(text, (key, value: unknown) => {
            if (!storableText(key) || (typeof value === 'string' && !storableText(value))) unstorable = true;
            return value;
          })
        : JSON.parse(text);
    } catch {
      fail('invalid_json_line', 'This line is not valid JSON.');
      continue;
    }
    if (unstorable) {
      fail('invalid_request', 'This line holds a NUL character (\\u0000) or an unpaired surrogate (\\ud800-\\udfff), which cannot be stored.');
      continue;
    }
    if (!row || typeof row !== 'object' || Array.isArray(row)) {
      fail('invalid_request', 'Each line must be a JSON object.');
      continue;
    }
    const r = row as Record<string, unknown>;
    if (typeof r.custom_id !== 'string' || r.custom_id === '') {
      fail('missing_required_parameter', 'Missing required parameter: custom_id.', 'custom_id');
      continue;
    }
    if (seen.has(r.custom_id)) {
      fail('duplicate_custom_id', `The custom_id "${r.custom_id}" appears more than once.`, 'custom_id');
      continue;
    }
    if (r.method !== 'POST') {
      fail('invalid_value', 'Only POST requests can be batched.', 'method');
      continue;
    }
    if (r.url !== endpoint) {
      fail('mismatched_endpoint', `This line is for ${String(r.url)} but the batch is for ${endpoint}.`, 'url');
      continue;
    }
    if (!r.body || typeof r.body !== 'object' || Array.isArray(r.body)) {
      fail('invalid_request', 'Missing or invalid body.', 'body');
      continue;
    }
    seen.add(r.custom_id);
    items.push({ line, custom_id: r.custom_id, body: r.body as Record<string, unknown> });
  }
  if (errors.length === 0 && items.length === 0) errors.push({ code: 'empty_file', message: 'The input file holds no requests.', line: null, param: null });
  if (items.length > maxRequests) errors.push({ code: 'too_many_requests', message: `A batch holds at most ${maxRequests} requests; this file has ${items.length}.`, line: null, param: null });
  return { items, errors };
}
