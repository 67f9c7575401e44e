// The Ollama adapter's legacy text completions: the /v1/completions route's raw prompt goes to
// /api/generate with `raw: true` (no template around it), or with `suffix` through the model's own
// fill-in-the-middle template; JSON and NDJSON answers replayed from fixtures written from Ollama's
// API docs. With `options.completions: chat` it goes to /api/chat as the user message.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChatRequest } from '../canonical/chat.js';
import { callOptions, collect, failure, fixture, json, ndjson, ReplayServer } from './__fixtures__/replay-server.js';
import { createOllamaProvider, type OllamaProvider } from './ollama.js';

let upstream: ReplayServer;
let ollama: OllamaProvider;

beforeAll(async () => {
  upstream = await ReplayServer.start();
  ollama = createOllamaProvider('ollama', { type: 'ollama', base_url: upstream.url, options: { keep_alive: '30m' } });
});
afterAll(async () => {
  await ollama.close();
  await upstream.close();
});
beforeEach(() => upstream.reset());

const PROMPT = 'def fib(n):';
const text = (over: Partial<ChatRequest> = {}, raw: Partial<NonNullable<ChatRequest['text_completion']>> = {}): ChatRequest => ({
  model: 'qwen2.5-coder:1.5b-base',
  messages: [{ role: 'user', content: PROMPT }],
  text_completion: { prompt: PROMPT, ...raw },
  ...over,
});

describe('ollama text completions (/api/generate)', () => {
  it('posts the prompt raw with the sampling options and reads response, done_reason and the counts', async () => {
    upstream.reply(json(fixture('ollama-generate.json')));
    const result = await ollama.chat(text({ max_tokens: 12, temperature: 0.2, top_p: 0.9, seed: 7, stop: ['\n\n'] }), callOptions());
    expect(upstream.requests[0]?.pathname).toBe('/api/generate');
    expect(upstream.requests[0]?.json).toEqual({
      model: 'qwen2.5-coder:1.5b-base',
      prompt: PROMPT,
      stream: false,
      raw: true,
      options: { num_predict: 12, temperature: 0.2, top_p: 0.9, seed: 7, stop: ['\n\n'] },
      keep_alive: '30m',
    });
    expect(result.choices).toEqual([{ index: 0, message: { role: 'assistant', content: '\n    if n < 2:\n        return n' }, finish_reason: 'length', logprobs: null }]);
    expect(result.usage).toEqual({ prompt_tokens: 11, completion_tokens: 12, total_tokens: 23 });
    expect(result.prompt_echoed).toBeUndefined();
  });

  it('sends a suffix through the model\'s template (not raw, where Ollama ignores it)', async () => {
    upstream.reply(json(fixture('ollama-generate.json')));
    await ollama.chat(text({}, { suffix: '\n\nprint(fib(10))' }), callOptions());
    const body = upstream.requests[0]?.json as Record<string, unknown>;
    expect(body).toMatchObject({ prompt: PROMPT, suffix: '\n\nprint(fib(10))', stream: false });
    expect(body).not.toHaveProperty('raw');
  });

  it('streams the NDJSON lines as chunks, the done line giving the finish and the usage', async () => {
    upstream.reply(ndjson(fixture('ollama-generate.ndjson')));
    const chunks = await collect(await ollama.streamChat(text({ stream: true }), callOptions()));
    expect((upstream.requests[0]?.json as Record<string, unknown>).stream).toBe(true);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('\n    if n < 2 — «é»:');
    expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe('stop');
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 } });
  });

  it('fans n out over calls, and refuses what Ollama has not: prompt log-probabilities, best_of', async () => {
    upstream.reply(json(fixture('ollama-generate.json')), json(fixture('ollama-generate.json')));
    const two = await ollama.chat(text({ n: 2 }), callOptions());
    expect(two.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(upstream.requests.map((r) => r.pathname)).toEqual(['/api/generate', '/api/generate']);
    for (const raw of [{ echo: true, logprobs: 1 }, { best_of: 2 }]) {
      const err = await failure(ollama.chat(text({}, raw), callOptions()));
      expect(err.kind).toBe('unsupported');
    }
  });

  it('an error line ends the stream with an upstream error', async () => {
    upstream.reply(ndjson('{"error":"model \\"qwen2.5-coder:1.5b-base\\" does not support insert"}\n'));
    const err = await failure(ollama.streamChat(text({ stream: true }, { suffix: 'x' }), callOptions()).then(collect));
    expect(err.message).toMatch(/does not support insert/);
  });
});

describe('ollama with options.completions: chat', () => {
  it('sends the prompt to /api/chat as the user message, and refuses a suffix there', async () => {
    const chatOnly = createOllamaProvider('ollama-chat', { type: 'ollama', base_url: upstream.url, options: { completions: 'chat' } });
    try {
      upstream.reply(json(fixture('ollama-chat.json')));
      await chatOnly.chat(text(), callOptions());
      expect(upstream.requests[0]?.pathname).toBe('/api/chat');
      expect((upstream.requests[0]?.json as { messages: unknown }).messages).toEqual([{ role: 'user', content: PROMPT }]);
      expect((await failure(chatOnly.chat(text({}, { suffix: 'x' }), callOptions()))).kind).toBe('unsupported');
      expect(() => createOllamaProvider('bad', { type: 'ollama', options: { completions: 'generate' } })).toThrow(/options.completions/);
    } finally {
      await chatOnly.close();
    }
  });
});
