// /v1/completions through the real server with the official `openai` package: a raw prompt reaches a
// vLLM-like server's /completions as the client wrote it (no chat template, no messages), JSON and
// streamed, with suffix, echo and legacy logprobs served natively; a chat-only provider still answers
// through chat, and refuses what only a raw-text deployment can do (400 unsupported_capability)
// unless the model has such a deployment to move on to.
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';
import { startCompletionsUpstream, type CompletionsUpstream } from './helpers/recording-upstream.js';
import { specChecker } from './helpers/spec-check.js';

const expectValid = specChecker('completions-raw.test');
const PROMPT = 'def fib(n):\n   ';

let upstream: CompletionsUpstream;
let gw: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  upstream = await startCompletionsUpstream('Qwen/Qwen2.5-Coder-1.5B');
  gw = await startTestGateway({
    config: {
      providers: {
        vllm: { type: 'openai', base_url: upstream.url },
        // The same server told to take legacy completions through chat (as api.openai.com's chat models are).
        'vllm-chat': { type: 'openai', base_url: upstream.url, options: { completions: 'chat' } },
        sim: { type: 'simulator' },
        // Nothing listens there: every call is refused, and the group falls back.
        gone: { type: 'openai', base_url: 'http://127.0.0.1:9/v1', options: { completions: 'native' } },
      },
      models: [
        { name: 'coder', deployments: [{ provider: 'vllm', model: 'Qwen/Qwen2.5-Coder-1.5B' }] },
        { name: 'coder-via-chat', deployments: [{ provider: 'vllm-chat', model: 'Qwen/Qwen2.5-Coder-1.5B' }] },
        { name: 'chatty', deployments: [{ provider: 'sim', model: 'chatty' }] },
        { name: 'gone-with-fallback', deployments: [{ provider: 'gone', model: 'Qwen/Qwen2.5-Coder-1.5B' }], fallbacks: ['coder'], retry: { max_retries: 0 } },
        // The simulator first: a request it cannot serve moves on to the raw-text server.
        {
          name: 'mixed',
          deployments: [
            { provider: 'sim', model: 'mixed', priority: 0 },
            { provider: 'vllm', model: 'Qwen/Qwen2.5-Coder-1.5B', priority: 1 },
          ],
        },
      ],
    },
  });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

beforeEach(() => {
  upstream.requests.length = 0;
});

async function post(body: unknown) {
  const res = await request(`${gw.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.statusCode, headers: res.headers, json: (await res.body.json()) as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
}

describe('/v1/completions to a server that completes raw text', () => {
  it('sends the prompt as it is to /completions (no chat template, no messages) and answers a text completion', async () => {
    const res = await client.completions.create({ model: 'coder', prompt: PROMPT, max_tokens: 9, temperature: 0, stop: ['\n\n'] });
    expect(upstream.requests).toHaveLength(1);
    const [sent] = upstream.requests;
    expect(sent?.path).toBe('/v1/completions');
    expect(sent?.body).toEqual({ model: 'Qwen/Qwen2.5-Coder-1.5B', prompt: PROMPT, max_tokens: 9, temperature: 0, stop: ['\n\n'] });
    expectValid('CreateCompletionRequest', sent?.body);
    expect(res.object).toBe('text_completion');
    expect(res.id).toBe('cmpl-vllm-1');
    expect(res.choices).toEqual([{ index: 0, text: ' return n if n < 2 else fib(n - 1) + fib(n - 2)', logprobs: null, finish_reason: 'length' }]);
    expect(res.usage).toEqual({ prompt_tokens: 4, completion_tokens: 9, total_tokens: 13 });
    expectValid('CreateCompletionResponse', res);
  });

  it('streams: the raw prompt upstream with stream_options, the text back in text_completion chunks, usage last', async () => {
    const stream = await client.completions.create({ model: 'coder', prompt: PROMPT, max_tokens: 9, stream: true, stream_options: { include_usage: true } });
    let text = '';
    const chunks = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      for (const c of chunk.choices) text += c.text;
    }
    expect(upstream.requests[0]?.path).toBe('/v1/completions');
    expect(upstream.requests[0]?.body).toMatchObject({ prompt: PROMPT, stream: true, stream_options: { include_usage: true } });
    expect(upstream.requests[0]?.body).not.toHaveProperty('messages');
    expectValid('CreateCompletionRequest', upstream.requests[0]?.body);
    expect(text).toBe(' return n if n < 2 else fib(n - 1) + fib(n - 2)');
    expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe('length');
    expect(chunks.at(-1)?.choices).toEqual([]);
    expect(chunks.at(-1)?.usage).toEqual({ prompt_tokens: 4, completion_tokens: 9, total_tokens: 13 });
    for (const c of chunks) expect(c.object).toBe('text_completion');
  });

  it('passes suffix on, and echo with logprobs: the prompt once in front, its first token without a logprob', async () => {
    const res = await client.completions.create({ model: 'coder', prompt: 'def fib(n):', suffix: '\n\nprint(fib(10))', echo: true, logprobs: 1, max_tokens: 9 });
    expect(upstream.requests[0]?.body).toMatchObject({ prompt: 'def fib(n):', suffix: '\n\nprint(fib(10))', echo: true, logprobs: 1 });
    expectValid('CreateCompletionRequest', upstream.requests[0]?.body);
    const choice = res.choices[0]!;
    expect(choice.text.startsWith('def fib(n): return')).toBe(true);
    expect(choice.text.indexOf('def fib(n):', 1)).toBe(-1);
    expect(choice.logprobs?.tokens?.slice(0, 3)).toEqual(['def', ' fib(n):', ' return']);
    expect(choice.logprobs?.token_logprobs?.[0]).toBeNull();
    expect(choice.logprobs?.text_offset?.slice(0, 3)).toEqual([0, 3, 11]);

    // Streamed with echo and logprobs: the upstream's first piece is the prompt, sent on once.
    const stream = await client.completions.create({ model: 'coder', prompt: 'def fib(n):', echo: true, logprobs: 0, max_tokens: 9, stream: true });
    let text = '';
    for await (const chunk of stream) for (const c of chunk.choices) text += c.text;
    expect(upstream.requests.at(-1)?.body).toMatchObject({ echo: true, logprobs: 0 });
    expect(text).toBe('def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)');

    // Echo alone is the gateway's (llama.cpp's server refuses `echo`): not sent, the prompt put in front once.
    const alone = await client.completions.create({ model: 'coder', prompt: 'def fib(n):', echo: true, max_tokens: 9, stream: true });
    let aloneText = '';
    for await (const chunk of alone) for (const c of chunk.choices) aloneText += c.text;
    expect(upstream.requests.at(-1)?.body).not.toHaveProperty('echo');
    expect(aloneText).toBe(text);
  });

  it('moves a suffix past a deployment that serves completions through chat to one that completes raw text', async () => {
    const res = await post({ model: 'mixed', prompt: 'def fib(n):', suffix: '\n', max_tokens: 9 });
    expect(res.status).toBe(200);
    expect(res.headers['x-inferenceflow-provider']).toBe('vllm');
    expect(upstream.requests.map((r) => r.path)).toEqual(['/v1/completions']);
    // Without a suffix the simulator, first in the group, answers.
    const plain = await post({ model: 'mixed', prompt: 'def fib(n):', max_tokens: 9 });
    expect(plain.headers['x-inferenceflow-provider']).toBe('sim');
  });
});

describe('/v1/completions to providers that take it through chat', () => {
  it('a chat-only deployment gets the prompt as one user message, and its echo is put in front by the gateway', async () => {
    const res = await client.completions.create({ model: 'coder-via-chat', prompt: 'Say hello', echo: true, max_tokens: 5 });
    expect(upstream.requests).toHaveLength(1);
    expect(upstream.requests[0]?.path).toBe('/v1/chat/completions');
    expect(upstream.requests[0]?.body).toEqual({ model: 'Qwen/Qwen2.5-Coder-1.5B', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 5 });
    expect(res.choices[0]?.text).toBe('Say hellochat says hello');

    const sim = await client.completions.create({ model: 'chatty', prompt: 'Once upon a time', max_tokens: 6 });
    expect(sim.choices[0]?.text.length).toBeGreaterThan(0);
  });

  it('refuses suffix, echo with logprobs and best_of where no deployment of the model completes raw text: 400 unsupported_capability', async () => {
    for (const [extra, param] of [
      [{ suffix: 'The end.' }, 'suffix'],
      [{ echo: true, logprobs: 1 }, 'logprobs'],
      [{ best_of: 2 }, 'best_of'],
      [{ max_tokens: 0, echo: true }, 'max_tokens'],
    ] as const) {
      for (const model of ['chatty', 'coder-via-chat']) {
        const res = await post({ model, prompt: 'Once upon a time', max_tokens: 4, ...extra });
        expect([res.status, res.json.error.code, res.json.error.param]).toEqual([400, 'unsupported_capability', param]);
      }
    }
    expect(upstream.requests).toHaveLength(0);
  });

  it('refuses best_of with a stream, or below n (400 invalid_value)', async () => {
    const streamed = await post({ model: 'coder', prompt: 'x', best_of: 2, stream: true });
    expect([streamed.status, streamed.json.error.code, streamed.json.error.param]).toEqual([400, 'invalid_value', 'best_of']);
    const below = await post({ model: 'coder', prompt: 'x', best_of: 2, n: 3 });
    expect([below.status, below.json.error.code, below.json.error.param]).toEqual([400, 'invalid_value', 'best_of']);
    const before = upstream.requests.length;
    const ok = await post({ model: 'coder', prompt: 'x', best_of: 3, n: 2 });
    expect(ok.status).toBe(200);
    // The stand-in answers one choice whatever n says: the adapter asks for the second with n: 1.
    expect(upstream.requests[before]?.body).toMatchObject({ best_of: 3, n: 2 });
    expect(ok.json.choices).toHaveLength(2);
  });
});

describe('/v1/completions with prompts of token ids (evaluation harnesses)', () => {
  it("passes token ids through as the prompt, and answers lm-eval's loglikelihood request (several prompts, echo, logprobs, max_tokens 1)", async () => {
    const single = await client.completions.create({ model: 'coder', prompt: [755, 16178, 1471, 1680], max_tokens: 9, temperature: 0 });
    expect(upstream.requests[0]?.body).toEqual({ model: 'Qwen/Qwen2.5-Coder-1.5B', prompt: [755, 16178, 1471, 1680], max_tokens: 9, temperature: 0 });
    expectValid('CreateCompletionRequest', upstream.requests[0]?.body);
    expect(single.choices[0]?.text).toBe(' return n if n < 2 else fib(n - 1) + fib(n - 2)');

    // lm-evaluation-harness's `local-completions` payload for log-likelihoods, prompts tokenized.
    const ids = [[755, 16178, 1471], [755, 16178, 1471, 1680, 220]];
    const res = await post({ model: 'coder', prompt: ids, temperature: 0, max_tokens: 1, logprobs: 1, seed: 1234, echo: true });
    expect(res.status).toBe(200);
    expect(upstream.requests.slice(1).map((r) => r.body)).toEqual(ids.map((prompt) => ({ model: 'Qwen/Qwen2.5-Coder-1.5B', prompt, temperature: 0, max_tokens: 1, logprobs: 1, seed: 1234, echo: true })));
    expect(res.json.choices.map((c: { index: number }) => c.index)).toEqual([0, 1]);
    for (const [i, c] of (res.json.choices as { text: string; logprobs: { tokens: string[]; token_logprobs: (number | null)[] } }[]).entries()) {
      // The upstream's echo is the text: the gateway, which cannot read ids as text, adds nothing in front.
      expect(c.text).toBe(c.logprobs.tokens.join(''));
      expect(c.text.startsWith(String(ids[i]))).toBe(true);
      expect(c.logprobs.token_logprobs[0]).toBeNull();
    }
  });

  it('refuses token ids where no deployment of the model takes them (400 unsupported_capability, param prompt), and ids that are not token ids (400)', async () => {
    for (const model of ['chatty', 'coder-via-chat']) {
      const res = await post({ model, prompt: [1, 2, 3], max_tokens: 4 });
      expect([res.status, res.json.error.code, res.json.error.param]).toEqual([400, 'unsupported_capability', 'prompt']);
      // Says what can take them, and not Ollama, which cannot.
      expect(res.json.error.message).toMatch(/token ids.*OpenAI-compatible server that completes raw text/);
      expect(res.json.error.message).not.toMatch(/Ollama/);
    }
    expect(upstream.requests).toHaveLength(0);
    // A deployment that cannot take them is passed over for one that can.
    const mixed = await post({ model: 'mixed', prompt: [1, 2, 3], max_tokens: 4 });
    expect(mixed.status).toBe(200);
    expect(upstream.requests[0]?.body).toMatchObject({ prompt: [1, 2, 3] });
    // Token ids are of their model's tokenizer: never sent on to a fallback group's model; text is.
    const text = await post({ model: 'gone-with-fallback', prompt: 'def fib(n):', max_tokens: 4 });
    expect(text.status).toBe(200);
    const before = upstream.requests.length;
    const ids = await post({ model: 'gone-with-fallback', prompt: [1, 2, 3], max_tokens: 4 });
    expect(ids.status).toBeGreaterThanOrEqual(500);
    expect(upstream.requests.length).toBe(before);
    for (const prompt of [[1, -2], [1.5], [[1], []], [[]], []]) {
      const res = await post({ model: 'coder', prompt, max_tokens: 4 });
      expect(res.status).toBe(400);
      expect(res.json.error.param).toMatch(/^prompt\b/);
    }
  });
});

describe('/v1/completions scoring a prompt alone (max_tokens 0 with echo, as perplexity scripts ask vLLM)', () => {
  it('passes max_tokens 0 to a raw-text server, and moves past a deployment that serves completions through chat', async () => {
    for (const model of ['coder', 'mixed']) {
      upstream.requests.length = 0;
      const res = await post({ model, prompt: PROMPT, max_tokens: 0, echo: true, logprobs: 1, temperature: 0 });
      expect(res.status).toBe(200);
      expect(upstream.requests.map((r) => r.body)).toEqual([{ model: 'Qwen/Qwen2.5-Coder-1.5B', prompt: PROMPT, max_tokens: 0, echo: true, logprobs: 1, temperature: 0 }]);
      expectValid('CreateCompletionRequest', upstream.requests[0]?.body);
    }
  });
});

describe('/v1/completions with several prompts to a raw-text server', () => {
  it('puts each prompt once in front of its own choice, whichever side echoed it', async () => {
    const res = await client.completions.create({ model: 'coder', prompt: ['def a():', 'def b():'], echo: true, logprobs: 0, max_tokens: 9 });
    expect(upstream.requests.every((r) => r.body.echo === true)).toBe(true);
    expect(upstream.requests.map((r) => r.body.prompt)).toEqual(['def a():', 'def b():']);
    expect(res.choices.map((c) => c.text.slice(0, 8))).toEqual(['def a():', 'def b():']);
    for (const c of res.choices) expect(c.text.indexOf(c.text.slice(0, 8), 1)).toBe(-1);
  });
});

describe('/v1/completions and the response cache', () => {
  let cached: RunningServer;
  beforeAll(async () => {
    cached = await startTestGateway({
      config: {
        cache: { enabled: true },
        providers: { vllm: { type: 'openai', base_url: upstream.url } },
        models: [{ name: 'coder', deployments: [{ provider: 'vllm', model: 'Qwen/Qwen2.5-Coder-1.5B' }] }],
      },
    });
  }, 60_000);
  afterAll(async () => {
    await cached?.close();
  });

  const call = async (path: string, body: unknown) => {
    const res = await request(`${cached.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { cache: res.headers['x-inferenceflow-cache'], json: (await res.body.json()) as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
  };

  it('never answers a raw prompt with the chat answer to the same text, and replays a native echo as it was', async () => {
    const prompt = 'cache me';
    await call('/v1/chat/completions', { model: 'coder', messages: [{ role: 'user', content: prompt }], max_tokens: 9, temperature: 0 });
    const first = await call('/v1/completions', { model: 'coder', prompt, max_tokens: 9, temperature: 0, echo: true, logprobs: 1 });
    expect(first.cache).toBe('miss');
    expect(upstream.requests.map((r) => r.path)).toEqual(['/v1/chat/completions', '/v1/completions']);
    const again = await call('/v1/completions', { model: 'coder', prompt, max_tokens: 9, temperature: 0, echo: true, logprobs: 1 });
    expect(again.cache).toBe('exact');
    expect(upstream.requests).toHaveLength(2);
    expect(again.json.choices[0].text).toBe(first.json.choices[0].text);
    expect(again.json.choices[0].logprobs).toEqual(first.json.choices[0].logprobs);
    expect(first.json.choices[0].logprobs.token_logprobs[0]).toBeNull();
    expect(again.json.choices[0].text.startsWith('cache me return')).toBe(true);
  });
});
