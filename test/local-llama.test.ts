// The local provider on a real GGUF model: stories260K (a 260K-parameter llama2.c story model with
// no chat template) from the shared models folder beside the repository. Real llama.cpp inference,
// real token counts; the model is tiny, so the whole file runs in a few seconds on a 2-core machine.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatChunk, ChatRequest } from '../src/canonical/chat.js';
import { UpstreamError } from '../src/providers/errors.js';
import type { LocalProvider } from '../src/providers/local.js';
import { createLocalProvider } from '../src/providers/local.js';
import { createProvider } from '../src/providers/registry.js';
import { storiesDir } from './helpers/shared-models.js';
import type { CallOptions } from '../src/providers/types.js';

const MODELS_DIR = storiesDir();
const MODEL = 'stories260K';
if (!MODELS_DIR) {
  const message = 'stories260K.gguf not found in <repo>/../shared/models/stories260K: local llama.cpp tests skipped';
  if (process.env.CI) throw new Error(`${message} (the model must be present when CI is set)`);
  console.warn(message);
}

function callOptions(signal = new AbortController().signal): CallOptions {
  return { signal, timeoutMs: 30_000, requestId: 'test' };
}

function request(overrides: Partial<ChatRequest> = {}): ChatRequest {
  return { model: MODEL, messages: [{ role: 'user', content: 'Once upon a time' }], temperature: 0, max_tokens: 24, ...overrides };
}

async function collect(stream: AsyncIterable<ChatChunk>): Promise<ChatChunk[]> {
  const chunks: ChatChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

async function expectUpstreamError(promise: Promise<unknown>, kind: UpstreamError['kind']): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UpstreamError);
  expect((err as UpstreamError).kind).toBe(kind);
}

describe.skipIf(!MODELS_DIR)('local provider (llama.cpp, stories260K)', () => {
  let provider: LocalProvider;

  // This provider stays open for the whole file, so the llama.cpp backend (1-3 s to start here) is
  // started once and shared by the other providers below (same threads, CPU only, same log level).
  beforeAll(async () => {
    // Through the registry, as the gateway builds it.
    provider = (await createProvider('llama', {
      type: 'local',
      options: { models_dir: MODELS_DIR, threads: 1, context_size: 256, max_sequences: 4 },
    })) as LocalProvider;
  });

  afterAll(async () => {
    await provider?.close();
  });

  it('lists the GGUF files and loads a model only when first used', async () => {
    expect(await provider.listModels()).toEqual([MODEL]);
    expect(await provider.installedModels()).toContain(MODEL);
    expect(provider.loadedModels()).toEqual([]);
    expect(await provider.ready()).toBe(true);
    await provider.chat(request({ max_tokens: 4 }), callOptions());
    expect(provider.loadedModels()).toEqual([MODEL]);
  });

  it('answers a chat completion with text, a finish reason and usage from the model tokenizer', async () => {
    const result = await provider.chat(request(), callOptions());
    expect(result.object).toBe('chat.completion');
    expect(result.model).toBe(MODEL);
    const choice = result.choices[0]!;
    expect(choice.message.role).toBe('assistant');
    expect(choice.message.content?.trim().length).toBeGreaterThan(0);
    expect(['stop', 'length']).toContain(choice.finish_reason);
    const { usage } = result;
    expect(usage.prompt_tokens).toBeGreaterThan(1);
    expect(usage.completion_tokens).toBeGreaterThan(0);
    expect(usage.completion_tokens).toBeLessThanOrEqual(24);
    expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);

    const longer = await provider.chat(request({ messages: [{ role: 'user', content: 'Once upon a time there was a little dog who liked to run' }] }), callOptions());
    expect(longer.usage.prompt_tokens).toBeGreaterThan(usage.prompt_tokens);
  });

  it('stops at max_tokens with finish_reason length and counts exactly the tokens generated', async () => {
    for (const max of [1, 8]) {
      const result = await provider.chat(request({ max_tokens: max }), callOptions());
      expect(result.choices[0]!.finish_reason).toBe('length');
      expect(result.usage.completion_tokens).toBe(max);
    }
    const viaNewField = await provider.chat(request({ max_tokens: undefined, max_completion_tokens: 5 }), callOptions());
    expect(viaNewField.usage.completion_tokens).toBe(5);
  });

  it('streams content chunks, then the finish chunk, then a usage chunk, matching the non-streamed answer', async () => {
    const chunks = await collect(await provider.streamChat(request(), callOptions()));
    const contentChunks = chunks.filter((c) => c.choices[0]?.delta.content);
    expect(contentChunks.length).toBeGreaterThan(1);
    const finishAt = chunks.findIndex((c) => c.choices[0]?.finish_reason);
    expect(finishAt).toBe(chunks.length - 2);
    expect(chunks.indexOf(contentChunks.at(-1)!)).toBeLessThan(finishAt);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage!.completion_tokens).toBeGreaterThan(0);
    expect(last.usage!.completion_tokens).toBeLessThanOrEqual(24);

    const whole = await provider.chat(request(), callOptions());
    expect(contentChunks.map((c) => c.choices[0]!.delta.content).join('')).toBe(whole.choices[0]!.message.content);
    expect(last.usage).toEqual(whole.usage);
  });

  it('is deterministic at temperature 0, and for a given seed when sampling', async () => {
    const a = await provider.chat(request({ seed: 11 }), callOptions());
    const b = await provider.chat(request({ seed: 11 }), callOptions());
    expect(a.choices[0]!.message.content).toBe(b.choices[0]!.message.content);

    const sampled = request({ temperature: 1, seed: 1234, max_tokens: 32 });
    const c = await provider.chat(sampled, callOptions());
    const d = await provider.chat(sampled, callOptions());
    expect(c.choices[0]!.message.content).toBe(d.choices[0]!.message.content);
  });

  it('cuts the answer at a stop sequence without including it', async () => {
    const full = (await provider.chat(request({ max_tokens: 32 }), callOptions())).choices[0]!.message.content!;
    const words = full.split(/\s+/).filter((w) => /^[A-Za-z]{3,}$/.test(w));
    const stop = words[Math.floor(words.length / 2)]!;
    const cut = await provider.chat(request({ max_tokens: 32, stop: [stop] }), callOptions());
    expect(cut.choices[0]!.finish_reason).toBe('stop');
    expect(cut.choices[0]!.message.content).toBe(full.slice(0, full.indexOf(stop)));
    // Which sequence ended it (an Anthropic client's stop_reason "stop_sequence"), here and streamed;
    // an answer no sequence ended names none.
    expect(cut.choices[0]!.stop_sequence).toBe(stop);
    const chunks = await provider.streamChat(request({ max_tokens: 32, stop: ['never-in-a-story', stop] }), callOptions());
    const finishing: ChatChunk['choices'] = [];
    for await (const c of chunks) finishing.push(...c.choices.filter((ch) => ch.finish_reason));
    expect(finishing.map((ch) => [ch.finish_reason, ch.stop_sequence])).toEqual([['stop', stop]]);
    expect((await provider.chat(request({ max_tokens: 4 }), callOptions())).choices[0]!.stop_sequence).toBeUndefined();
  });

  it('runs concurrent requests on the sequences of one context, queueing beyond max_sequences', async () => {
    const prompts = ['Once upon a time', 'The little dog', 'Lily wanted to', 'One day, a bird', 'The sun was', 'Tom had a'];
    const results = await Promise.all(
      prompts.map((content, i) => provider.chat(request({ messages: [{ role: 'user', content }], temperature: 0.8, seed: i, max_tokens: 16 }), callOptions())),
    );
    for (const r of results) {
      expect(r.choices[0]!.message.content!.length).toBeGreaterThan(0);
      expect(r.usage.completion_tokens).toBeLessThanOrEqual(16);
    }
    // Sequences are created only when none is idle: all four were in use at once, and all are back.
    expect(provider.sequenceStats()[MODEL]).toEqual({ capacity: 4, created: 4, busy: 0, waiting: 0 });
  });

  it('serves n choices in one call', async () => {
    const result = await provider.chat(request({ n: 2, temperature: 1, seed: 5, max_tokens: 12 }), callOptions());
    expect(result.choices.map((c) => c.index)).toEqual([0, 1]);
    for (const c of result.choices) expect(c.message.content!.length).toBeGreaterThan(0);
  });

  it('constrains the answer to a JSON schema with a llama.cpp grammar', async () => {
    const schema = { type: 'object', properties: { name: { type: 'string' }, age: { type: 'integer' } }, required: ['name', 'age'] };
    const result = await provider.chat(
      request({ temperature: 0, max_tokens: 200, response_format: { type: 'json_schema', json_schema: { name: 'person', schema } } }),
      callOptions(),
    );
    expect(result.choices[0]!.finish_reason).toBe('stop');
    const parsed = JSON.parse(result.choices[0]!.message.content!) as Record<string, unknown>;
    expect(Object.keys(parsed).sort()).toEqual(['age', 'name']);
    expect(typeof parsed.name).toBe('string');
    expect(Number.isInteger(parsed.age)).toBe(true);
  });

  it('rejects unknown models, prompts longer than the context, and embeddings', async () => {
    await expectUpstreamError(provider.chat(request({ model: 'no-such-model' }), callOptions()), 'not_found');
    const long = 'Once upon a time there was a little girl. '.repeat(60);
    await expectUpstreamError(provider.chat(request({ messages: [{ role: 'user', content: long }] }), callOptions()), 'context_length');
    await expectUpstreamError(provider.streamChat(request({ messages: [{ role: 'user', content: long }] }), callOptions()), 'context_length');
    await expectUpstreamError(provider.embed({ model: MODEL, input: 'hello' }, callOptions()), 'unsupported');
  });

  describe('cancellation and prompt formats', () => {
    let single: LocalProvider;

    beforeAll(async () => {
      // One sequence: a sequence that was not given back would make the next request wait forever.
      single = await createLocalProvider('llama-one', {
        type: 'local',
        options: { models_dir: path.dirname(MODELS_DIR!), threads: 1, context_size: 512, max_sequences: 1 },
      });
    });

    afterAll(async () => {
      await single?.close();
    });

    it('finds models one folder down', async () => {
      expect(await single.installedModels()).toContain(MODEL);
    });

    it('stops generating when the signal aborts mid-stream and frees the sequence', async () => {
      const controller = new AbortController();
      const stream = await single.streamChat(request({ max_tokens: 400, temperature: 0.8, seed: 3 }), callOptions(controller.signal));
      let contentChunks = 0;
      const read = (async () => {
        for await (const chunk of stream) {
          if (chunk.choices[0]?.delta.content) {
            contentChunks++;
            if (contentChunks === 2) controller.abort();
          }
        }
      })();
      await expectUpstreamError(read, 'aborted');
      expect(contentChunks).toBeLessThan(400);
      expect(single.sequenceStats()[MODEL]!.busy).toBe(0);

      const after = await single.chat(request({ max_tokens: 8 }), callOptions());
      expect(after.usage.completion_tokens).toBe(8);
    });

    it('frees the sequence when the reader leaves a stream early', async () => {
      const stream = await single.streamChat(request({ max_tokens: 400, temperature: 0.8, seed: 4 }), callOptions());
      for await (const chunk of stream) if (chunk.choices[0]?.delta.content) break;
      expect(single.sequenceStats()[MODEL]!.busy).toBe(0);
      const after = await single.chat(request({ max_tokens: 4 }), callOptions());
      expect(after.choices[0]!.message.content!.length).toBeGreaterThan(0);
    });

    it('gives up waiting for a busy sequence when the caller aborts', async () => {
      const first = single.chat(request({ max_tokens: 64 }), callOptions());
      const controller = new AbortController();
      const second = single.chat(request({ max_tokens: 64 }), callOptions(controller.signal));
      controller.abort();
      await expectUpstreamError(second, 'aborted');
      // A wait longer than the attempt's time is a timeout (retryable elsewhere), not a cancellation.
      await expectUpstreamError(single.chat(request({ max_tokens: 4 }), { ...callOptions(), timeoutMs: 1 }), 'timeout');
      expect((await first).usage.completion_tokens).toBeGreaterThan(0);
      expect(single.sequenceStats()[MODEL]).toMatchObject({ busy: 0, waiting: 0 });
    });

    it('renders conversations through a named chat wrapper or as a transcript', async () => {
      const messages: ChatRequest['messages'] = [
        { role: 'system', content: 'You tell short stories.' },
        { role: 'user', content: 'Tell me about a cat.' },
      ];
      for (const chat_template of ['chatML', 'transcript']) {
        const p = await createLocalProvider(`llama-${chat_template}`, {
          type: 'local',
          options: { models_dir: MODELS_DIR, threads: 1, context_size: 256, max_sequences: 1, chat_template },
        });
        try {
          const result = await p.chat(request({ messages, max_tokens: 12 }), callOptions());
          expect(result.usage.completion_tokens).toBeGreaterThan(0);
          expect(result.usage.prompt_tokens).toBeGreaterThan(10);
        } finally {
          await p.close();
        }
      }
      // Closing those providers left the shared llama.cpp backend working for the others.
      expect((await single.chat(request({ max_tokens: 4 }), callOptions())).usage.completion_tokens).toBe(4);
    });

    it('completes a legacy text completion\'s raw prompt as it is, without the chat template, and refuses a suffix', async () => {
      const prompt = 'Once upon a time';
      const raw = request({ messages: [{ role: 'user', content: prompt }], text_completion: { prompt }, max_tokens: 12 });
      const templated = await createLocalProvider('llama-raw-chatML', {
        type: 'local',
        options: { models_dir: MODELS_DIR, threads: 1, context_size: 256, max_sequences: 1, chat_template: 'chatML' },
      });
      try {
        const { text_completion: _raw, ...asChat } = raw;
        const chat = await templated.chat(asChat, callOptions());
        const completed = await templated.chat(raw, callOptions());
        // The plain provider (no template) reads exactly the prompt's text: the raw completion there is the same.
        const plain = await single.chat(asChat, callOptions());
        expect(completed.usage.prompt_tokens).toBe(plain.usage.prompt_tokens);
        expect(completed.choices[0]!.message.content).toBe(plain.choices[0]!.message.content);
        expect(chat.usage.prompt_tokens).toBeGreaterThan(completed.usage.prompt_tokens);
        await expectUpstreamError(templated.chat(request({ text_completion: { prompt, suffix: ' The end.' } }), callOptions()), 'unsupported');
      } finally {
        await templated.close();
      }
    });

    it('refuses bad options with a message naming them', async () => {
      await expect(createLocalProvider('bad', { type: 'local', options: { models_dir: MODELS_DIR, threds: 2 } })).rejects.toThrow(/threds/);
      await expect(createLocalProvider('bad', { type: 'local', options: {} })).rejects.toThrow(/models_dir/);
      await expect(createLocalProvider('bad', { type: 'local', options: { models_dir: MODELS_DIR, chat_template: 'nope' } })).rejects.toThrow(/chat_template/);
    });
  });
});
