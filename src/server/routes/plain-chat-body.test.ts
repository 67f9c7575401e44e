import { describe, expect, it } from 'vitest';
import { chatCompletionSchema } from './openai-schema.js';
import { plainChatBody } from './plain-chat-body.js';

/** mulberry32: the same bodies on every run. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NUMBERS = [0, 1, 2, 0.5, -1, -2.5, 3, 20, 21, 128, 129, 1.5, 2 ** 53, -(2 ** 53), 1e300, -0];
const VALUES = [...NUMBERS, null, true, false, '', 'x', 'stop', [], ['a'], ['a', 'b', 'c', 'd', 'e'], [1], {}, { include_usage: true }, { include_usage: true, include_obfuscation: false }, { include_obfuscation: false, include_usage: true }, { include_usage: 'yes' }, { other: true }];
const KEYS = [
  'temperature', 'top_p', 'n', 'stop', 'seed', 'user', 'presence_penalty', 'frequency_penalty', 'stream', 'stream_options',
  'max_tokens', 'max_completion_tokens', 'parallel_tool_calls', 'logprobs', 'top_logprobs', 'store',
  // Valid for the schema but not taken here, and keys it rejects.
  'difficulty', 'priority', 'tools', 'metadata', 'functions', 'response_format', 'unknown_field', 'constructor', '__proto__',
];
const ROLES = ['system', 'developer', 'user', 'assistant', 'tool', 'function', 'robot'];
const CONTENTS = ['hello', '', null, [{ type: 'text', text: 'hi' }], 3];

function pick<T>(r: () => number, from: readonly T[]): T {
  return from[Math.floor(r() * from.length)] as T;
}

function shuffled<T>(r: () => number, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
  }
  return xs;
}

function message(r: () => number): unknown {
  const entries: [string, unknown][] = [
    ['role', r() < 0.85 ? pick(r, ROLES.slice(0, 4)) : pick(r, ROLES)],
    ['content', r() < 0.85 ? 'hello' : pick(r, CONTENTS)],
  ];
  if (r() < 0.2) entries.push(['name', r() < 0.8 ? 'ann' : 7]);
  if (r() < 0.05) entries.push([pick(r, ['tool_calls', 'refusal', 'extra']), null]);
  if (r() < 0.05) entries.pop();
  return Object.fromEntries(r() < 0.7 ? entries : shuffled(r, entries));
}

function body(r: () => number): unknown {
  const entries: [string, unknown][] = [];
  if (r() < 0.97) entries.push(['model', r() < 0.95 ? 'gpt-4o-mini' : pick(r, ['', 3, null])]);
  if (r() < 0.97) entries.push(['messages', r() < 0.97 ? Array.from({ length: 1 + Math.floor(r() * 3) }, () => message(r)) : pick(r, [[], 'hi', null])]);
  const extra = Math.floor(r() * 4);
  for (let i = 0; i < extra; i++) {
    const key = pick(r, KEYS);
    // A plausible value most of the time, so the fast path is exercised as well as refused.
    const value = key === 'stream' || key === 'logprobs' || key === 'store' || key === 'parallel_tool_calls' ? (r() < 0.8 ? r() < 0.5 : pick(r, VALUES)) : key === 'user' && r() < 0.7 ? 'u-1' : pick(r, VALUES);
    entries.push([key, value]);
  }
  return JSON.parse(JSON.stringify(Object.fromEntries(r() < 0.5 ? entries : shuffled(r, entries))));
}

describe('plainChatBody', () => {
  it('accepts only what chatCompletionSchema accepts, and returns what it returns (keys in its order)', () => {
    const r = rng(42);
    let accepted = 0;
    let schemaAccepted = 0;
    for (let i = 0; i < 20_000; i++) {
      const b = body(r);
      const fast = plainChatBody(b);
      const parsed = chatCompletionSchema.safeParse(b);
      if (parsed.success) schemaAccepted++;
      if (fast === undefined) continue;
      accepted++;
      expect(parsed.success, JSON.stringify(b)).toBe(true);
      expect(JSON.stringify(fast)).toBe(JSON.stringify(parsed.data));
    }
    // The generator reaches both paths: thousands of bodies take the fast one, and some valid ones the schema's.
    expect(accepted).toBeGreaterThan(2_500);
    expect(accepted).toBeLessThan(schemaAccepted);
  });

  it('takes the bodies SDKs send for text chats', () => {
    const python = { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }], model: 'chat', max_tokens: 64, stream: true, stream_options: { include_usage: true }, temperature: 0.2 };
    const out = plainChatBody(python);
    expect(out).toEqual(chatCompletionSchema.parse(python));
    expect(Object.keys(out ?? {})).toEqual(['model', 'messages', 'temperature', 'stream', 'stream_options', 'max_tokens']);
    // A message already in the schema's key order is the parsed object itself (no copy).
    expect(out?.messages[0]).toBe(python.messages[0]);
    // A body whose keys already come in the schema's order is returned as it is.
    const inOrder = { model: 'chat', messages: [{ role: 'user', content: 'Hi' }], temperature: 0, max_tokens: 8 };
    expect(plainChatBody(inOrder)).toBe(inOrder);
    const reordered = { model: 'chat', messages: [{ content: 'Hi', role: 'user' }] };
    expect(plainChatBody(reordered)?.messages[0]).toEqual({ role: 'user', content: 'Hi' });
    expect(Object.keys(plainChatBody(reordered)?.messages[0] ?? {})).toEqual(['role', 'content']);
  });

  it('leaves everything else to the schema', () => {
    const base = { model: 'chat', messages: [{ role: 'user', content: 'Hi' }] };
    for (const b of [
      { ...base, tools: [{ type: 'function', function: { name: 'f' } }] },
      { ...base, messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi' }] }] },
      { ...base, messages: [{ role: 'assistant', content: null, tool_calls: [] }] },
      { ...base, difficulty: 'hard' },
      { ...base, temperature: 2.5 },
      { ...base, max_tokens: 0 },
      { ...base, n: 1.5 },
      { ...base, stop: ['a', 'b', 'c', 'd', 'e'] },
      { ...base, user: null },
      { ...base, messages: [] },
      { ...base, model: '' },
      { ...base, unknown: 1 },
      // The schema returns stream_options' keys in its own order.
      { ...base, stream_options: { include_obfuscation: false, include_usage: true } },
      JSON.parse('{"model":"chat","messages":[{"role":"user","content":"Hi"}],"__proto__":{"x":1}}'),
    ]) {
      expect(plainChatBody(b), JSON.stringify(b)).toBeUndefined();
    }
  });
});
