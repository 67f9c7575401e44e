// Token counts from a real tokenizer (o200k via gpt-tokenizer) for budgeting, context-window checks
// and usage estimates where an upstream reports none. Exact for OpenAI's current models, an estimate
// for others.
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { contentText, type ChatMessage } from '../canonical/chat.js';
import { imageTokens } from './image-tokens.js';

export function countTextTokens(text: string): number {
  if (text.length === 0) return 0;
  return countTokens(text);
}

/** Prompt tokens of a chat: content plus OpenAI's per-message framing overhead (3 + 3 priming). */
export function countPromptTokens(messages: readonly ChatMessage[], tools?: unknown): number {
  let total = 3;
  for (const m of messages) total += countMessageTokens(m);
  if (tools) total += countTextTokens(JSON.stringify(tools));
  return total;
}

/** One message's share of countPromptTokens: its content and its framing, without the priming. */
export function countMessageTokens(m: ChatMessage): number {
  let total = 3 + countTextTokens(contentText(m.content));
  if (Array.isArray(m.content)) {
    for (const p of m.content) {
      // A document (`file` part) as about one token per four bytes: a rough size, so context windows
      // and token limits see it at all; an image by its pixels (image-tokens.ts).
      if (p.type === 'file') total += Math.ceil((p.file.file_data.length * 3) / 16);
      else if (p.type === 'image_url') total += imageTokens(p.image_url.url, p.image_url.detail);
    }
  }
  if (m.name) total += 1 + countTextTokens(m.name);
  if (m.tool_calls) total += countTextTokens(JSON.stringify(m.tool_calls));
  return total;
}
