// What only the Anthropic route reports never reaches an OpenAI client: Claude's signed thinking
// blocks, its answer as sent (anthropic_content) and the matched stop sequence; an answer's message
// always has `refusal`.
import { describe, expect, it } from 'vitest';
import type { ChatChunk, ChatResult } from '../../canonical/chat.js';
import { openAiChunk, openAiResult } from './openai.js';

const usage = { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 };
const result = (message: ChatResult['choices'][number]['message'], extra: Record<string, unknown> = {}): ChatResult => ({
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1,
  model: 'm',
  choices: [{ index: 0, message, finish_reason: 'stop', logprobs: null, ...extra }],
  usage,
});

describe('openAiResult', () => {
  it('leaves out the Anthropic-only parts and keeps the portable ones', () => {
    const out = openAiResult(
      result(
        {
          role: 'assistant',
          content: 'Paris.',
          reasoning_content: 'Capital.',
          thinking_blocks: [{ type: 'thinking', thinking: 'Capital.', signature: 'sig' }],
          anthropic_content: [{ type: 'text', text: 'Paris.', citations: [] }],
        },
        { stop_sequence: 'END' },
      ),
    );
    expect(out.choices[0]).toEqual({ index: 0, message: { role: 'assistant', content: 'Paris.', reasoning_content: 'Capital.', refusal: null }, finish_reason: 'stop', logprobs: null });
  });

  it('returns an answer that needs nothing as it is, and adds refusal: null to one without it', () => {
    const clean = result({ role: 'assistant', content: 'hi', refusal: null });
    expect(openAiResult(clean)).toBe(clean);
    expect(openAiResult(result({ role: 'assistant', content: 'hi' })).choices[0]?.message.refusal).toBeNull();
  });
});

describe('openAiChunk', () => {
  it('leaves out thinking blocks, native blocks and the stop sequence; a plain chunk goes as it is', () => {
    const chunk: ChatChunk = {
      id: 'c',
      object: 'chat.completion.chunk',
      created: 1,
      model: 'm',
      choices: [{ index: 0, delta: { reasoning_content: 'x', thinking_blocks: [{ index: 0, thinking: 'x' }], anthropic_content: [{ index: 0, type: 'text' }] }, finish_reason: null, stop_sequence: 'END' }],
    } as unknown as ChatChunk;
    expect(openAiChunk(chunk).choices[0]).toEqual({ index: 0, delta: { reasoning_content: 'x' }, finish_reason: null });
    const plain: ChatChunk = { id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: 'a' }, finish_reason: null }] };
    expect(openAiChunk(plain)).toBe(plain);
  });
});
