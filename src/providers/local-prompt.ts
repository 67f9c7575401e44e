// Turns canonical chat messages into what a local GGUF model reads. A model whose file carries a
// chat template gets node-llama-cpp's chat wrapper for it (rendered by the caller from the history
// built here); a model without one (base or story models) reads plain text and continues it.
import type { ChatHistoryItem } from 'node-llama-cpp';
import { contentText, type ChatMessage } from '../canonical/chat.js';

/**
 * How a model without a usable chat template reads a conversation.
 * - `plain`: every message's text in order, a blank line between; the model continues the last
 *   one. Right for base and story models ("Once upon a time" -> the story goes on).
 * - `transcript`: `System:` / `User:` / `Assistant:` turns ending in `Assistant:`, stopping at the
 *   next `User:`. For instruction-tuned models whose file lacks template metadata.
 */
export type PlainPromptFormat = 'plain' | 'transcript';

export interface PlainPrompt {
  text: string;
  /** Stop sequences the format needs on top of the client's. */
  stops: string[];
}

export function renderPlainPrompt(messages: readonly ChatMessage[], format: PlainPromptFormat): PlainPrompt {
  if (format === 'plain') {
    const parts = messages.map((m) => contentText(m.content)).filter((t) => t.length > 0);
    return { text: parts.join('\n\n'), stops: [] };
  }
  let text = '';
  for (const m of messages) text += `${TRANSCRIPT_LABEL[m.role]}: ${contentText(m.content)}\n\n`;
  return { text: `${text}Assistant:`, stops: ['\nUser:'] };
}

const TRANSCRIPT_LABEL: Record<ChatMessage['role'], string> = {
  system: 'System',
  developer: 'System',
  user: 'User',
  assistant: 'Assistant',
  tool: 'Tool',
};

/**
 * The conversation as node-llama-cpp chat history, ending with an empty model turn for the wrapper
 * to open. Tool results become user turns (this adapter does not offer tool calling), and an
 * assistant message that carried only tool calls is rendered as their JSON so the turn is not lost.
 */
export function toChatHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  for (const m of messages) {
    const text = contentText(m.content);
    switch (m.role) {
      case 'system':
      case 'developer':
        history.push({ type: 'system', text });
        break;
      case 'user':
        history.push({ type: 'user', text });
        break;
      case 'tool':
        history.push({ type: 'user', text: `Tool result${m.tool_call_id ? ` (${m.tool_call_id})` : ''}: ${text}` });
        break;
      case 'assistant': {
        const calls = m.tool_calls?.length ? JSON.stringify(m.tool_calls.map((c) => c.function)) : '';
        history.push({ type: 'model', response: [text || calls] });
        break;
      }
    }
  }
  history.push({ type: 'model', response: [] });
  return history;
}
