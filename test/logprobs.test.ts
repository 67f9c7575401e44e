// Token log-probabilities end to end, with the official `openai` package: asked for with `logprobs`
// and `top_logprobs`, they come back on JSON answers, on stream chunks, from the response cache and
// on legacy completions; a request for them goes only to deployments that can return them, and is
// refused with a clear 400 when none can (never answered with logprobs silently null).
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

let server: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  server = await startTestGateway({
    config: {
      cache: { enabled: true, semantic: { enabled: false } },
      providers: {
        sim: { type: 'simulator' },
        // The per-provider override: a simulator that says it cannot.
        'sim-no-lp': { type: 'simulator', options: { logprobs: false } },
        // Never reached: an Anthropic deployment cannot return log-probabilities.
        claude: { type: 'anthropic', base_url: 'http://127.0.0.1:9', api_key: 'unused' },
      },
      models: [
        { name: 'sim-chat', deployments: [{ provider: 'sim', model: 'sim-model' }] },
        { name: 'claude-only', deployments: [{ provider: 'claude', model: 'claude-x' }] },
        { name: 'mixed', strategy: 'fallback', deployments: [{ provider: 'claude', model: 'claude-x', priority: 0 }, { provider: 'sim', model: 'sim-model', priority: 1 }] },
        { name: 'no-lp', deployments: [{ provider: 'sim-no-lp', model: 'sim-model' }] },
        // The capable deployment is too short for a long prompt: the context-window fallback answers.
        {
          name: 'short',
          context_window_fallbacks: ['sim-chat'],
          deployments: [{ provider: 'claude', model: 'claude-x' }, { provider: 'sim-no-lp', model: 'x' }, { provider: 'sim', model: 'sim-short', context_window: 64 }],
        },
      ],
    },
  });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'k', maxRetries: 0 });
}, 120_000);
afterAll(() => server?.close());

const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Describe the river at night.' }];

function checkTokens(content: string, tokens: OpenAI.ChatCompletionTokenLogprob[], top: number) {
  expect(tokens.length).toBeGreaterThan(0);
  expect(tokens.map((t) => t.token).join('')).toBe(content);
  for (const t of tokens) {
    expect(t.logprob).toBeLessThanOrEqual(0);
    expect(Buffer.from(t.bytes ?? []).toString('utf8')).toBe(t.token);
    expect(t.top_logprobs).toHaveLength(top);
    const lps = t.top_logprobs.map((a) => a.logprob);
    expect([...lps].sort((a, b) => b - a)).toEqual(lps);
  }
}

describe('log-probabilities through the gateway', () => {
  it('come back on a JSON answer, and the same ones on a stream', async () => {
    const { data, response } = await client.chat.completions.create({ model: 'sim-chat', messages, logprobs: true, top_logprobs: 3 }).withResponse();
    expect(response.headers.get('x-inferenceflow-cache')).toBe('miss');
    const content = data.choices[0]?.message.content ?? '';
    const tokens = data.choices[0]?.logprobs?.content ?? [];
    checkTokens(content, tokens, 3);

    const stream = await client.chat.completions.create({ model: 'sim-chat', messages, logprobs: true, top_logprobs: 3, stream: true, temperature: 0.5 });
    let text = '';
    const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      text += c?.delta.content ?? '';
      streamed.push(...(c?.logprobs?.content ?? []));
    }
    expect(text).toBe(content);
    expect(streamed).toEqual(tokens);
  });

  it('are kept by the response cache, for JSON and for a replayed stream', async () => {
    const ask = () => client.chat.completions.create({ model: 'sim-chat', messages: [{ role: 'user', content: 'Name a quiet mountain.' }], logprobs: true, top_logprobs: 2 }).withResponse();
    const first = await ask();
    await expect.poll(async () => (await ask()).response.headers.get('x-inferenceflow-cache'), { timeout: 5000, interval: 20 }).toBe('exact');
    const hit = await ask();
    expect(hit.data.choices[0]?.logprobs).toEqual(first.data.choices[0]?.logprobs);

    const stream = await client.chat.completions.create({ model: 'sim-chat', messages: [{ role: 'user', content: 'Name a quiet mountain.' }], logprobs: true, top_logprobs: 2, stream: true });
    const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    expect(streamed).toEqual(first.data.choices[0]?.logprobs?.content);
  });

  it('are not mixed up with an answer that did not ask for them', async () => {
    const plain = await client.chat.completions.create({ model: 'sim-chat', messages });
    expect(plain.choices[0]?.logprobs ?? null).toBeNull();
  });

  it('send the request past a deployment that cannot return them', async () => {
    const { data, response } = await client.chat.completions.create({ model: 'mixed', messages, logprobs: true }).withResponse();
    expect(response.headers.get('x-inferenceflow-provider')).toBe('sim');
    checkTokens(data.choices[0]?.message.content ?? '', data.choices[0]?.logprobs?.content ?? [], 0);
  });

  it('are refused with 400 unsupported_capability when no deployment can return them', async () => {
    const err = await client.chat.completions.create({ model: 'claude-only', messages, logprobs: true, top_logprobs: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('unsupported_capability');
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('logprobs');
    expect((err as Error).message).toMatch(/log-probabilities/);
  });

  it('follow a provider\'s options.logprobs, and a too-short capable deployment takes the context-window path', async () => {
    const err = await client.chat.completions.create({ model: 'no-lp', messages, logprobs: true }).catch((e: unknown) => e);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('unsupported_capability');
    // The same provider serves requests that do not ask.
    expect((await client.chat.completions.create({ model: 'no-lp', messages })).choices[0]?.message.content).toBeTruthy();

    const long = [{ role: 'user' as const, content: 'word '.repeat(300) }];
    const { data, response } = await client.chat.completions.create({ model: 'short', messages: long, logprobs: true, max_tokens: 16 }).withResponse();
    // Answered by the fallback group's deployment, not refused for the incapable ones.
    expect(response.headers.get('x-inferenceflow-model')).toBe('sim-model');
    expect(data.choices[0]?.logprobs?.content?.length).toBeGreaterThan(0);
  });

  it('come back in the legacy shape on /v1/completions, JSON and stream', async () => {
    const res = await client.completions.create({ model: 'sim-chat', prompt: 'Once upon a time', logprobs: 2, max_tokens: 8 });
    const lp = res.choices[0]?.logprobs;
    const text = res.choices[0]?.text ?? '';
    expect(lp?.tokens?.join('')).toBe(text);
    expect(lp?.token_logprobs).toHaveLength(lp?.tokens?.length ?? -1);
    expect(lp?.top_logprobs?.every((alts) => Object.keys(alts).length >= 1 && Object.keys(alts).length <= 2)).toBe(true);
    // text_offset: where each token starts in the text.
    expect(lp?.text_offset).toEqual((lp?.tokens ?? []).map((_, i) => (lp?.tokens ?? []).slice(0, i).join('').length));

    const stream = await client.completions.create({ model: 'sim-chat', prompt: 'Once upon a time', logprobs: 2, max_tokens: 8, stream: true });
    const tokens: string[] = [];
    const offsets: number[] = [];
    for await (const chunk of stream) {
      tokens.push(...(chunk.choices[0]?.logprobs?.tokens ?? []));
      offsets.push(...(chunk.choices[0]?.logprobs?.text_offset ?? []));
    }
    expect(tokens).toEqual(lp?.tokens);
    expect(offsets).toEqual(lp?.text_offset);
  });

  it('with echo on legacy completions (the prompt\'s own log-probabilities) are refused with 400', async () => {
    const err = await client.completions.create({ model: 'sim-chat', prompt: 'Hi', logprobs: 1, echo: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('logprobs');
  });
});
