import { describe, expect, it } from 'vitest';
import type { ChatRequest } from '../canonical/chat.js';
import { canonicalJson, entryKey, exactKey, globToRegExp, semanticKey } from './keys.js';

const base: ChatRequest = {
  model: 'gpt-4o',
  messages: [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'What is the capital of France?' },
  ],
  temperature: 0,
};

describe('exactKey', () => {
  it('ignores fields that do not change the answer', () => {
    const k = exactKey(base);
    expect(exactKey({ ...base, stream: true, stream_options: { include_usage: true } })).toBe(k);
    expect(exactKey({ ...base, user: 'u-1', metadata: { a: 'b' }, store: true, service_tier: 'auto' })).toBe(k);
    expect(exactKey({ ...base, prompt_cache_key: 'c-1', safety_identifier: 'h-1', prompt_cache_retention: '24h' })).toBe(k);
    expect(exactKey({ ...base, n: 1, presence_penalty: 0, frequency_penalty: 0 })).toBe(k);
    // Key order and text-part form do not matter.
    const parts: ChatRequest = { temperature: 0, model: 'gpt-4o', messages: [base.messages[0]!, { role: 'user', content: [{ type: 'text', text: 'What is the capital of France?' }] }] };
    expect(exactKey(parts)).toBe(k);
  });

  it('changes with the model, messages, tools and output parameters', () => {
    const k = exactKey(base);
    const variants: Partial<ChatRequest>[] = [
      { model: 'gpt-4o-mini' },
      { temperature: 0.7 },
      { top_k: 5 },
      { verbosity: 'low' },
      { reasoning_effort: 'none' },
      { modalities: ['text', 'audio'] },
      { max_tokens: 10 },
      { stop: ['\n'] },
      { seed: 7 },
      { response_format: { type: 'json_object' } },
      { tools: [{ type: 'function', function: { name: 'lookup' } }] },
      { messages: [{ role: 'user', content: 'What is the capital of France?' }] },
    ];
    const keys = variants.map((v) => exactKey({ ...base, ...v }));
    for (const key of keys) expect(key).not.toBe(k);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('ignores prompt-cache breakpoints, which change what the provider bills and not the answer', () => {
    const marked = { type: 'ephemeral' as const };
    const tool = { type: 'function' as const, function: { name: 'f', parameters: { type: 'object' } } };
    const image = { type: 'image_url' as const, image_url: { url: 'https://example.com/a.png' } };
    const plain: ChatRequest = { ...base, tools: [tool], messages: [{ role: 'user', content: [{ type: 'text', text: 'Look' }, image] }] };
    const withBreakpoints: ChatRequest = { ...base, tools: [{ ...tool, cache_control: marked }], messages: [{ role: 'user', content: [{ type: 'text', text: 'Look', cache_control: marked }, { ...image, cache_control: marked }] }] };
    expect(exactKey(withBreakpoints)).toBe(exactKey(plain));
    expect(semanticKey(withBreakpoints)).toEqual(semanticKey(plain));
  });

  it("counts an assistant turn's spoken answer (its audio reference) in the history", () => {
    const turn = (id?: string) => ({ role: 'assistant' as const, content: null, ...(id ? { audio: { id } } : {}) });
    const withHistory = (id?: string) => exactKey({ ...base, messages: [...base.messages, turn(id), { role: 'user', content: 'And then?' }] });
    expect(withHistory('audio_abc')).not.toBe(withHistory('audio_def'));
    expect(withHistory('audio_abc')).toBe(withHistory('audio_abc'));
    expect(withHistory('audio_abc')).not.toBe(withHistory());
    // The semantic fingerprint covers the history the same way.
    const fingerprint = (id: string) => semanticKey({ ...base, messages: [...base.messages, turn(id), { role: 'user', content: 'And then?' }] })?.fingerprint;
    expect(fingerprint('audio_abc')).not.toBe(fingerprint('audio_def'));
  });

  it("counts an assistant turn's refusal in the history", () => {
    const turn = (refusal?: string) => ({ role: 'assistant' as const, content: null, ...(refusal ? { refusal } : {}) });
    const withHistory = (refusal?: string) => exactKey({ ...base, messages: [...base.messages, turn(refusal), { role: 'user', content: 'Then say ok.' }] });
    expect(withHistory('I cannot.')).not.toBe(withHistory('I will not.'));
    expect(withHistory('I cannot.')).not.toBe(withHistory());
  });

  it("keys the Anthropic route's thinking, betas and Anthropic-defined tools, and thinking sent back", () => {
    const plain = exactKey(base);
    const thinking = exactKey({ ...base, thinking: { type: 'enabled', budget_tokens: 2000 } });
    expect(thinking).not.toBe(plain);
    expect(exactKey({ ...base, thinking: { type: 'enabled', budget_tokens: 4000 } })).not.toBe(thinking);
    expect(exactKey({ ...base, anthropic_beta: ['context-1m-2025-08-07'] })).not.toBe(plain);
    expect(exactKey({ ...base, anthropic_beta: ['b', 'a'] })).toBe(exactKey({ ...base, anthropic_beta: ['a', 'b'] }));
    expect(exactKey({ ...base, anthropic_beta: [] })).toBe(plain);
    const bash = exactKey({ ...base, anthropic_tools: [{ position: 0, tool: { type: 'bash_20250124', name: 'bash' } }] });
    expect(bash).not.toBe(plain);
    expect(exactKey({ ...base, anthropic_tools: [{ position: 0, tool: { type: 'text_editor_20250728', name: 'str_replace_based_edit_tool' } }] })).not.toBe(bash);
    // A breakpoint on an Anthropic-defined tool changes what is billed, not the answer.
    expect(exactKey({ ...base, anthropic_tools: [{ position: 0, tool: { type: 'bash_20250124', name: 'bash', cache_control: { type: 'ephemeral' } } }] })).toBe(bash);
    const history = (signature?: string) =>
      exactKey({
        ...base,
        messages: [
          ...base.messages,
          { role: 'assistant', content: 'Paris.', ...(signature ? { thinking_blocks: [{ type: 'thinking' as const, thinking: 'Capital: Paris.', signature }] } : {}) },
          { role: 'user', content: 'And Spain?' },
        ],
      });
    expect(history('sig-1')).not.toBe(history());
    expect(history('sig-1')).not.toBe(history('sig-2'));
    // The semantic fingerprint too: a thinking answer is no semantic hit for a request without thinking.
    expect(semanticKey({ ...base, thinking: { type: 'enabled', budget_tokens: 2000 } })?.fingerprint).not.toBe(semanticKey(base)?.fingerprint);
  });
});

describe('the requested difficulty', () => {
  it('is part of the exact key and the semantic fingerprint, canonical, and absent when not asked for', () => {
    const k = exactKey(base);
    const s = semanticKey(base)?.fingerprint;
    expect(exactKey(base, {})).toBe(k);
    const levels = ['easy', 'medium', 'hard', 'expert', 'auto'];
    const keys = levels.map((difficulty) => exactKey(base, { difficulty }));
    const prints = levels.map((difficulty) => semanticKey(base, { difficulty })?.fingerprint);
    expect(new Set([k, ...keys]).size).toBe(levels.length + 1);
    expect(new Set([s, ...prints]).size).toBe(levels.length + 1);
    expect(exactKey(base, { difficulty: 'EXPERT' })).toBe(exactKey(base, { difficulty: 'expert' }));
    expect(exactKey(base, { difficulty: '4' })).toBe(exactKey(base, { difficulty: 'expert' }));
    expect(semanticKey(base, { difficulty: ' Auto' })?.fingerprint).toBe(semanticKey(base, { difficulty: 'auto' })?.fingerprint);
  });

  it('keys the aggregation the client asked for too, beside the level', () => {
    const voted = exactKey(base, { difficulty: 'hard', aggregation: 'self_consistency' });
    const judged = exactKey(base, { difficulty: 'hard', aggregation: 'best_of_n' });
    expect(voted).not.toBe(judged);
    expect(voted).not.toBe(exactKey(base, { difficulty: 'hard' }));
    expect(exactKey(base, { difficulty: 'hard', aggregation: ' Best_of_N' })).toBe(judged);
    expect(semanticKey(base, { aggregation: 'best_of_n' })?.fingerprint).not.toBe(semanticKey(base)?.fingerprint);
  });
});

describe('semanticKey', () => {
  it('embeds the last user turn and fingerprints the rest without temperature', () => {
    const s = semanticKey(base);
    expect(s?.text).toBe('What is the capital of France?');
    const warmer = semanticKey({ ...base, temperature: 0.5, messages: [base.messages[0]!, { role: 'user', content: 'Capital of France?' }] });
    expect(warmer?.fingerprint).toBe(s?.fingerprint);
    const otherSystem = semanticKey({ ...base, messages: [{ role: 'system', content: 'Answer in French.' }, base.messages[1]!] });
    expect(otherSystem?.fingerprint).not.toBe(s?.fingerprint);
    const withTools = semanticKey({ ...base, tools: [{ type: 'function', function: { name: 'search' } }] });
    expect(withTools?.fingerprint).not.toBe(s?.fingerprint);
  });

  it('fingerprints top_k: a greedy top_k: 1 answer is no semantic hit for a top_k: 40 request', () => {
    const fingerprint = (top_k?: number) => semanticKey({ ...base, ...(top_k !== undefined ? { top_k } : {}) })?.fingerprint;
    expect(fingerprint(1)).not.toBe(fingerprint(40));
    expect(fingerprint(1)).not.toBe(fingerprint());
    expect(fingerprint(40)).toBe(fingerprint(40));
    // Versioned: a request without top_k no longer falls in the partition of entries stored with a
    // top_k before it was fingerprinted (this was base's fingerprint then).
    expect(fingerprint()).not.toBe('JS019hO8DPTbVF8xbQomFyaCJIcTlzVR');
  });

  it("fingerprints who says the last turn (its name): in a group chat Bob's question is no hit for Alice's answer", () => {
    const ask = (name?: string) => semanticKey({ ...base, messages: [base.messages[0]!, { role: 'user', content: 'What is my name?', ...(name ? { name } : {}) }] });
    expect(ask('alice')?.fingerprint).not.toBe(ask('bob')?.fingerprint);
    expect(ask('alice')?.fingerprint).toBe(ask('alice')?.fingerprint);
    // A turn without a name keeps the fingerprint it always had.
    expect(ask()?.fingerprint).toBe(semanticKey({ ...base, messages: [base.messages[0]!, { role: 'user', content: 'What is my name?' }] })?.fingerprint);
  });

  it('reads text parts one per line: parts whose words would run together are not the same prompt', () => {
    const parts = { model: 'm', messages: [{ role: 'user' as const, content: [{ type: 'text' as const, text: 'Is 12' }, { type: 'text' as const, text: '3 prime?' }] }] };
    const whole = { model: 'm', messages: [{ role: 'user' as const, content: 'Is 123 prime?' }] };
    expect(exactKey(parts)).not.toBe(exactKey(whole));
    expect(semanticKey(parts)?.text).toBe('Is 12\n3 prime?');
    // One text part is the same as the plain string.
    expect(exactKey({ model: 'm', messages: [{ role: 'user', content: [{ type: 'text', text: 'Is 123 prime?' }] }] })).toBe(exactKey(whole));
  });

  it('is undefined when the last turn is not a user text turn', () => {
    expect(semanticKey({ ...base, messages: [...base.messages, { role: 'assistant', content: 'Paris' }] })).toBeUndefined();
    expect(
      semanticKey({ ...base, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:,' } }] }] }),
    ).toBeUndefined();
  });
});

describe('a legacy text completion (the /v1/completions route\'s raw prompt)', () => {
  const prompt = 'def fib(n):';
  const chat: ChatRequest = { model: 'base-model', messages: [{ role: 'user', content: prompt }], temperature: 0 };
  const raw: ChatRequest = { ...chat, text_completion: { prompt } };

  it('is keyed apart from the chat request of the same text, exactly and semantically', () => {
    expect(exactKey(raw)).not.toBe(exactKey(chat));
    expect(semanticKey(raw)?.fingerprint).not.toBe(semanticKey(chat)?.fingerprint);
    expect(exactKey({ ...raw, text_completion: { prompt } })).toBe(exactKey(raw));
  });

  it('keys its suffix, echo and best_of, not a best_of of 1', () => {
    const k = exactKey(raw);
    const variants = [{ suffix: '    return x' }, { echo: true }, { best_of: 3 }].map((extra) => exactKey({ ...raw, text_completion: { prompt, ...extra } }));
    for (const v of variants) expect(v).not.toBe(k);
    expect(new Set(variants).size).toBe(3);
    expect(exactKey({ ...raw, text_completion: { prompt, best_of: 1, echo: false, suffix: '' } })).toBe(k);
  });

  it('keys a prompt of token ids by its ids, and never looks it up by meaning (it has no text)', () => {
    const ids = (prompt_ids: number[]): ChatRequest => ({ ...chat, messages: [{ role: 'user', content: '' }], text_completion: { prompt: '', prompt_ids } });
    expect(exactKey(ids([1, 2, 3]))).toBe(exactKey(ids([1, 2, 3])));
    expect(new Set([exactKey(ids([1, 2, 3])), exactKey(ids([1, 2, 4])), exactKey(ids([3, 2, 1])), exactKey(ids([1, 2]))]).size).toBe(4);
    expect(semanticKey(ids([1, 2, 3]))).toBeUndefined();
  });
});

describe('entry keys and globs', () => {
  it('escapes separators so a tenant cannot spell another tenant prefix', () => {
    expect(entryKey('a:b', 'm', 'h')).toBe('a%3Ab:m:h');
    expect(entryKey('a*', 'm', 'h')).toBe('a%2A:m:h');
    expect(globToRegExp('a:*').test(entryKey('a:b', 'm', 'h'))).toBe(false);
  });

  it('matches Redis-style globs', () => {
    expect(globToRegExp('acme:gpt-4o:*').test('acme:gpt-4o:abc')).toBe(true);
    expect(globToRegExp('acme:gpt-4o:*').test('acme:gpt-4o-mini:abc')).toBe(false);
    expect(globToRegExp('*:gpt-?o:*').test('x:gpt-4o:y')).toBe(true);
    expect(globToRegExp('[ab]x').test('bx')).toBe(true);
    expect(globToRegExp('a.b').test('axb')).toBe(false);
  });

  it('serialises canonically', () => {
    expect(canonicalJson({ b: 1, a: [1, { d: undefined, c: 2 }] })).toBe('{"a":[1,{"c":2}],"b":1}');
  });
});
