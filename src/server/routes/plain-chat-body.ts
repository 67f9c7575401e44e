// The common chat completions body checked by hand, before zod: text turns, the usual sampling
// parameters. chatCompletionSchema's parse cost ~3 µs and allocated ~5 KB per request (a copy of
// every object and array, the discriminated union's bookkeeping), the largest share of the gateway's
// own garbage on the hot path. Only an accept path: anything else (tools, content parts, extension
// fields, a value out of range, an unknown key) returns undefined and goes through the schema, which
// also words the errors. Accepts only what chatCompletionSchema accepts, and returns what it returns:
// the same keys in the schema's order (the dedup key and the upstream body are serialised from it).
// A body or message whose keys already come in that order is returned as it is, not copied.
import { chatCompletionSchema, type ChatCompletionBody } from './openai-schema.js';

type Check = (v: unknown) => boolean;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const nullable = (check: Check): Check => (v) => v === null || check(v);
const numberIn = (min: number, max: number): Check => (v) => typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max;
/** zod 4's `int()` is a safe integer. */
const intIn = (min: number, max: number): Check => (v) => Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;
const isString: Check = (v) => typeof v === 'string';
const isBoolean: Check = (v) => typeof v === 'boolean';
const stop: Check = (v) => v === null || typeof v === 'string' || (Array.isArray(v) && v.length <= 4 && v.every(isString));
/** Its keys also in the schema's order (include_usage first), as zod would return them. */
const streamOptions: Check = (v) => {
  if (v === null) return true;
  if (!isRecord(v)) return false;
  let obfuscation = false;
  for (const k in v) {
    if ((k !== 'include_usage' && k !== 'include_obfuscation') || !isBoolean(v[k])) return false;
    if (k === 'include_obfuscation') obfuscation = true;
    else if (obfuscation) return false;
  }
  return true;
};

/** The top-level fields this path takes (absent is fine for each), with chatCompletionSchema's rules. */
const FIELDS: Record<string, Check> = {
  temperature: nullable(numberIn(0, 2)),
  top_p: nullable(numberIn(0, 1)),
  n: nullable(intIn(1, 128)),
  stop,
  seed: nullable(intIn(Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)),
  user: isString,
  presence_penalty: nullable(numberIn(-2, 2)),
  frequency_penalty: nullable(numberIn(-2, 2)),
  stream: nullable(isBoolean),
  stream_options: streamOptions,
  max_tokens: nullable(intIn(1, Number.MAX_SAFE_INTEGER)),
  max_completion_tokens: nullable(intIn(1, Number.MAX_SAFE_INTEGER)),
  parallel_tool_calls: isBoolean,
  logprobs: nullable(isBoolean),
  top_logprobs: nullable(intIn(0, 20)),
  store: nullable(isBoolean),
};

/** The schema's keys in its order: zod returns an object's keys in this order, whatever the input's. */
const KEY_ORDER = Object.keys(chatCompletionSchema.shape);
const RANK = new Map(KEY_ORDER.map((k, i) => [k, i]));

/** Roles whose turn here is `content` text and an optional `name`. */
const TEXT_ROLES = new Set(['system', 'developer', 'user', 'assistant']);

/**
 * A text turn (a role above, string content, optionally a string name; no other key) as the schema
 * returns it — role, content, name in that order — or undefined for any other turn.
 */
function plainMessage(m: unknown): unknown {
  if (!isRecord(m) || typeof m.role !== 'string' || !TEXT_ROLES.has(m.role) || typeof m.content !== 'string') return undefined;
  let i = 0;
  let ordered = true;
  for (const k in m) {
    if (k !== 'role' && k !== 'content' && (k !== 'name' || typeof m.name !== 'string')) return undefined;
    if (k !== (i === 0 ? 'role' : i === 1 ? 'content' : 'name')) ordered = false;
    i++;
  }
  if (ordered) return m;
  return m.name === undefined ? { role: m.role, content: m.content } : { role: m.role, content: m.content, name: m.name };
}

/**
 * The body as chatCompletionSchema would return it when it is a plain one (see above), else undefined.
 * A key present with `undefined` cannot come from JSON; it is left to the schema like anything unusual.
 */
export function plainChatBody(raw: unknown): ChatCompletionBody | undefined {
  if (!isRecord(raw) || typeof raw.model !== 'string' || raw.model.length === 0) return undefined;
  const messages = raw.messages;
  if (!Array.isArray(messages) || messages.length === 0) return undefined;
  // Whether the keys already come in the schema's order (then the body is returned as it is).
  let rank = -1;
  let ordered = true;
  for (const k in raw) {
    if (k !== 'model' && k !== 'messages' && (!Object.hasOwn(FIELDS, k) || !(FIELDS[k] as Check)(raw[k]))) return undefined;
    const r = RANK.get(k) as number;
    if (r < rank) ordered = false;
    rank = r;
  }
  let out = messages as unknown[];
  for (let i = 0; i < messages.length; i++) {
    const m: unknown = messages[i];
    const plain = plainMessage(m);
    if (plain === undefined) return undefined;
    if (plain !== m) {
      if (out === messages) out = messages.slice();
      out[i] = plain;
    }
  }
  if (ordered && out === messages) return raw as ChatCompletionBody;
  const body: Record<string, unknown> = {};
  for (const k of KEY_ORDER) if (k in raw) body[k] = k === 'messages' ? out : raw[k];
  return body as ChatCompletionBody;
}
