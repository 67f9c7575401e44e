import { describe, expect, it } from 'vitest';
import { parseBatchInput } from './input.js';

const line = (custom_id: string, body: Record<string, unknown>) => JSON.stringify({ custom_id, method: 'POST', url: '/v1/chat/completions', body });

describe('parseBatchInput', () => {
  it('names a line whose JSON holds a \\u0000 escape (jsonb cannot store it) instead of accepting it', () => {
    const content = [
      line('ok', { model: 'm', messages: [{ role: 'user', content: 'fine' }] }),
      line('nul-body', { model: 'm', messages: [{ role: 'user', content: 'a\u0000b' }] }),
      line('nul\u0000id', { model: 'm', messages: [] }),
      // A backslash followed by "u0000" is ordinary text, not a NUL.
      line('escaped', { model: 'm', messages: [{ role: 'user', content: 'literal \\u0000' }] }),
    ].join('\n');
    const { items, errors } = parseBatchInput(content, '/v1/chat/completions', 100);
    expect(errors.map((e) => [e.code, e.line])).toEqual([
      ['invalid_request', 2],
      ['invalid_request', 3],
    ]);
    expect(items.map((i) => i.custom_id)).toEqual(['ok', 'escaped']);
  });

  it('names a line holding an unpaired surrogate escape (jsonb refuses it); a surrogate pair is fine', () => {
    const content = [
      '{"custom_id":"lone","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"a\\uD800b"}]}}',
      '{"custom_id":"low","method":"POST","url":"/v1/chat/completions","body":{"model":"m","x\\udc00":1}}',
      '{"custom_id":"pair","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"\\ud83d\\ude00"}]}}',
    ].join('\n');
    const { items, errors } = parseBatchInput(content, '/v1/chat/completions', 100);
    expect(errors.map((e) => [e.code, e.line])).toEqual([
      ['invalid_request', 1],
      ['invalid_request', 2],
    ]);
    expect(items.map((i) => i.custom_id)).toEqual(['pair']);
    expect((items[0]?.body.messages as { content: string }[])[0]?.content).toBe('\u{1F600}');
  });

  it('names a line nesting deeper than the HTTP routes accept (it could be neither stored nor sent), and keeps the rest', () => {
    const deep = (depth: number) => `{"custom_id":"d${depth}","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"a":${'['.repeat(depth)}${']'.repeat(depth)}}}}]}}`;
    const { items, errors } = parseBatchInput([deep(12_000), deep(20)].join('\n'), '/v1/chat/completions', 100);
    expect(errors.map((e) => [e.code, e.line])).toEqual([['invalid_request', 1]]);
    expect(items.map((i) => i.custom_id)).toEqual(['d20']);
  });
});
