// POST /v1/responses with `truncation: "auto"`: the conversation is tokenized once to truncate it,
// and that count is what admission reserves and routing's context-window check uses — the prompt is
// not tokenized again. Every o200k count is observed (the tokenizer module is wrapped), and the
// upstream is an adapter that counts nothing itself.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ChatRequest } from '../../canonical/chat.js';
import type { RunningServer } from '../../cli/serve.js';
import { countPromptTokens } from '../../providers/tokens.js';
import type { ProviderAdapter } from '../../providers/types.js';
import { carriedPromptTokens, carryPromptTokens, promptTokensOf } from '../../routing/prompt-tokens.js';
import { startTestGateway } from '../../../test/helpers/gateway.js';

/** Every text the o200k tokenizer was asked to count. */
const counted = vi.hoisted(() => [] as string[]);
vi.mock('gpt-tokenizer/encoding/o200k_base', async (importOriginal) => {
  const real = await importOriginal<typeof import('gpt-tokenizer/encoding/o200k_base')>();
  return {
    ...real,
    countTokens: (text: Parameters<typeof real.countTokens>[0]) => {
      counted.push(typeof text === 'string' ? text : JSON.stringify(text));
      return real.countTokens(text);
    },
  };
});

const WINDOW = 600;

describe('truncation "auto" tokenizes the conversation once', () => {
  let gw: RunningServer;
  const seen: ChatRequest[] = [];
  /** The count carried with each request the upstream got: what admission and routing used. */
  const carried: (number | undefined)[] = [];

  beforeAll(async () => {
    const upstream: ProviderAdapter = {
      name: 'plain',
      type: 'ollama',
      chat: async (req) => {
        seen.push(req);
        carried.push(carriedPromptTokens(req));
        return {
          id: 'chatcmpl-plain',
          object: 'chat.completion',
          created: 1,
          model: req.model,
          choices: [{ index: 0, message: { role: 'assistant', content: 'It was about the mill.' }, finish_reason: 'stop', logprobs: null }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        };
      },
      streamChat: async () => {
        throw new Error('not streamed here');
      },
      embed: async () => {
        throw new Error('no embeddings');
      },
      ready: async () => true,
      close: async () => undefined,
    };
    gw = await startTestGateway({
      config: {
        // A token limit: admission counts the prompt to reserve it.
        rate_limiting: { tokens: 1_000_000, window_s: 60 },
        providers: { plain: { type: 'ollama', base_url: 'http://127.0.0.1:9' } },
        models: [{ name: 'small', deployments: [{ provider: 'plain', model: 'small', context_window: WINDOW }] }],
      },
      providers: new Map([['plain', upstream]]),
    });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('counts each turn once however many stages need the prompt size', async () => {
    const turn = (i: number) => `Turn ${i}: ${'the river runs past the old mill '.repeat(12)}`;
    const input: { role: string; content: string }[] = [];
    for (let i = 0; i < 12; i++) input.push({ role: 'user', content: turn(i) }, { role: 'assistant', content: `Answer ${i}.` });
    const last = 'What was the last turn about? (the question counted once)';
    input.push({ role: 'user', content: last });
    counted.length = 0;
    seen.length = 0;
    const res = await fetch(`${gw.url}/v1/responses`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'small', instructions: 'Answer briefly.', input, truncation: 'auto', max_output_tokens: 50 }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(seen).toHaveLength(1);
    // Turns were dropped to fit, and the last question was sent.
    expect(seen[0]?.messages.length).toBeLessThan(input.length + 1);
    expect(seen[0]?.messages.at(-1)?.content).toBe(last);
    // The truncation counted every turn; admission (the token limit) and routing (the context window)
    // counted nothing again.
    expect(counted.filter((t) => t === last)).toHaveLength(1);
    expect(counted.filter((t) => t === turn(11))).toHaveLength(1);
  });

  it('carries the count of the prompt as truncated and sent — instructions, tools and a stored chain included', async () => {
    const post = async (body: Record<string, unknown>) => {
      const res = await fetch(`${gw.url}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const text = await res.text();
      expect(res.status, text).toBe(200);
      return JSON.parse(text) as { id: string };
    };
    const tools = [{ type: 'function', name: 'look_up', description: 'Look a word up', parameters: { type: 'object', properties: { word: { type: 'string' } } } }];
    const words = (i: number) => `Chapter ${i}: ${'a heron stood in the shallows and waited '.repeat(10)}`;
    seen.length = 0;
    carried.length = 0;
    let previous: string | undefined;
    for (let i = 0; i < 6; i++) {
      const r = await post({ model: 'small', instructions: 'Answer in one line.', tools, input: words(i), truncation: 'auto', max_output_tokens: 40, ...(previous ? { previous_response_id: previous } : {}) });
      previous = r.id;
    }
    expect(seen).toHaveLength(6);
    // The chain outgrew the window: later requests were truncated.
    expect(countPromptTokens(seen[5]?.messages ?? [], seen[5]?.tools)).toBeLessThanOrEqual(WINDOW - 40);
    expect(seen[5]?.messages.some((m) => m.content === words(0))).toBe(false);
    for (const [i, req] of seen.entries()) {
      // Exactly what the prompt that went out counts to: not the conversation before truncation, not
      // the turns without the instructions or the tools.
      expect(carried[i], `request ${i}`).toBe(countPromptTokens(req.messages, req.tools));
    }
  });
});

describe('a count carried with a request', () => {
  const req: ChatRequest = { model: 'm', messages: [{ role: 'user', content: 'How far is the moon?' }] };

  it('goes with copies of the request, not with other messages, more of them or other tools', () => {
    const real = countPromptTokens(req.messages);
    carryPromptTokens(req, real);
    const copy: ChatRequest = { ...req, seed: 3 };
    expect(carriedPromptTokens(copy)).toBe(real);
    expect(carriedPromptTokens({ ...req, messages: [...req.messages] })).toBeUndefined();
    expect(carriedPromptTokens({ ...req, tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] })).toBeUndefined();
    const grown: ChatRequest = { model: 'm', messages: [{ role: 'user', content: 'Hello' }] };
    expect(promptTokensOf(grown)).toBe(countPromptTokens(grown.messages));
    grown.messages.push({ role: 'user', content: 'And goodbye, in many more words than before.' });
    expect(carriedPromptTokens(grown)).toBeUndefined();
    expect(promptTokensOf(grown)).toBe(countPromptTokens(grown.messages));
  });
});
