// Anthropic Messages wire shapes and the conversions shared by the `anthropic` provider adapter
// (canonical -> Messages request, Messages response -> canonical) and the gateway's own
// `POST /v1/messages` route (Messages request -> canonical, canonical -> Messages response), so the
// stop-reason tables and content-block rules exist once.
import type { CacheControl, ChatMessage, ContentPart, FinishReason, ThinkingBlock, ToolCall, ToolChoice, ToolDefinition } from '../canonical/chat.js';
import { parseToolInput } from '../canonical/convert.js';
import { messageText } from '../canonical/chat.js';
import { documentData, parseDataUrl } from './data-url.js';

export type AnthropicStopReason =
  | 'end_turn'
  | 'max_tokens'
  | 'stop_sequence'
  | 'tool_use'
  | 'pause_turn'
  | 'refusal'
  | 'model_context_window_exceeded';

/** Every content block, system block and tool may carry a prompt-cache breakpoint. */
interface Cacheable {
  cache_control?: CacheControl;
}
export interface AnthropicTextBlock extends Cacheable {
  type: 'text';
  text: string;
}
export interface AnthropicImageBlock extends Cacheable {
  type: 'image';
  source: { type: 'base64'; media_type: string; data: string } | { type: 'url'; url: string };
}
export interface AnthropicToolUseBlock extends Cacheable {
  type: 'tool_use';
  id: string;
  name: string;
  input: unknown;
}
export interface AnthropicToolResultBlock extends Cacheable {
  type: 'tool_result';
  tool_use_id: string;
  content?: string | (AnthropicTextBlock | AnthropicImageBlock | AnthropicDocumentBlock)[];
  is_error?: boolean;
}
/** A PDF (base64) or plain-text document. */
export interface AnthropicDocumentBlock extends Cacheable {
  type: 'document';
  source: { type: 'base64'; media_type: 'application/pdf'; data: string } | { type: 'text'; media_type: 'text/plain'; data: string };
  title?: string;
}
/** Thinking sent back in an assistant turn: signed text or a redacted (encrypted) block, as Claude returned it. */
export type AnthropicThinkingBlock = ThinkingBlock & Cacheable;
export type AnthropicContentBlock = AnthropicTextBlock | AnthropicImageBlock | AnthropicDocumentBlock | AnthropicToolUseBlock | AnthropicToolResultBlock | AnthropicThinkingBlock;

export interface AnthropicMessage {
  role: 'user' | 'assistant';
  content: AnthropicContentBlock[];
}

export interface AnthropicTool extends Cacheable {
  name: string;
  description?: string;
  input_schema: Record<string, unknown>;
}

export type AnthropicToolChoice =
  | { type: 'auto' | 'any'; disable_parallel_tool_use?: boolean }
  | { type: 'tool'; name: string; disable_parallel_tool_use?: boolean }
  | { type: 'none' };

/** Anthropic's error `type` for each HTTP status it documents. */
export function anthropicErrorType(status: number): string {
  switch (status) {
    case 400:
      return 'invalid_request_error';
    case 401:
      return 'authentication_error';
    case 402:
      return 'billing_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 503:
    case 529:
      return 'overloaded_error';
    case 504:
      return 'timeout_error';
    default:
      return status >= 500 ? 'api_error' : 'invalid_request_error';
  }
}

/** The HTTP status Anthropic would have sent with an error `type` (for errors that arrive mid-stream). */
export function statusForAnthropicErrorType(type: string): number {
  switch (type) {
    case 'invalid_request_error':
      return 400;
    case 'authentication_error':
      return 401;
    case 'billing_error':
      return 402;
    case 'permission_error':
      return 403;
    case 'not_found_error':
      return 404;
    case 'request_too_large':
      return 413;
    case 'rate_limit_error':
      return 429;
    case 'overloaded_error':
      return 529;
    case 'timeout_error':
      return 504;
    default:
      return 500;
  }
}

export function finishReasonFromAnthropic(reason: string | null | undefined): FinishReason | null {
  switch (reason) {
    case 'end_turn':
    case 'stop_sequence':
    case 'pause_turn':
      return 'stop';
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'refusal':
      return 'content_filter';
    case null:
    case undefined:
      return null;
    default:
      return 'stop';
  }
}

export function anthropicStopReason(reason: FinishReason | null | undefined): AnthropicStopReason {
  switch (reason) {
    case 'length':
      return 'max_tokens';
    case 'tool_calls':
      return 'tool_use';
    case 'content_filter':
      return 'refusal';
    default:
      return 'end_turn';
  }
}

// ---- canonical -> Anthropic (the provider adapter's request) ----

/**
 * Splits canonical messages into Anthropic's `system` text and alternating user/assistant turns:
 * system/developer messages are lifted out, `tool` messages become tool_result blocks at the head of
 * the next user turn, and consecutive same-role turns are merged (the API requires alternation).
 * Prompt-cache breakpoints (`cache_control`) stay where the client put them: on a part's block, on
 * a message's last block, on a system text (the system is then sent as blocks, else as one string).
 */
export function toAnthropicMessages(messages: readonly ChatMessage[]): { system?: string | AnthropicTextBlock[]; messages: AnthropicMessage[] } {
  const system: AnthropicTextBlock[] = [];
  const out: AnthropicMessage[] = [];
  /** Parts at the head of the next user message that the tool results just sent already carry. */
  let carried = 0;
  const push = (role: AnthropicMessage['role'], blocks: AnthropicContentBlock[], cache?: CacheControl) => {
    if (blocks.length === 0) return;
    if (cache) (blocks[blocks.length - 1] as AnthropicContentBlock).cache_control = cache;
    const last = out[out.length - 1];
    if (last && last.role === role) last.content.push(...blocks);
    else out.push({ role, content: blocks });
  };
  for (const m of messages) {
    const skip = m.role === 'user' ? carried : 0;
    if (m.role !== 'tool') carried = 0;
    switch (m.role) {
      case 'system':
      case 'developer':
        system.push(...systemBlocks(m));
        break;
      case 'user':
        push('user', contentBlocks(skip > 0 ? withoutCarriedParts(m.content, skip) : m.content), m.cache_control);
        break;
      case 'assistant': {
        // Thinking first, as Claude produced it: with thinking on, a turn that used tools must start
        // with its signed thinking block.
        const blocks: AnthropicContentBlock[] = m.thinking_blocks?.map((b) => ({ ...b })) ?? [];
        blocks.push(...contentBlocks(m.content));
        for (const call of m.tool_calls ?? []) {
          blocks.push({ type: 'tool_use', id: call.id, name: call.function.name, input: parseToolInput(call.function.arguments) });
        }
        push('assistant', blocks, m.cache_control);
        break;
      }
      case 'tool': {
        // The result as the tool gave it when the route kept it (an error flag, images, documents):
        // inside the tool_result, where Claude reads them; else the text.
        const native = m.tool_result;
        const block: AnthropicToolResultBlock = { type: 'tool_result', tool_use_id: m.tool_call_id ?? '', content: native ? toolResultContent(native.parts) : messageText(m.content) };
        if (native?.is_error) block.is_error = true;
        carried += native?.moved_parts ?? 0;
        push('user', [block], m.cache_control ?? partsCacheControl(m.content));
        break;
      }
    }
  }
  // A final assistant turn is a prefill the answer continues, which Anthropic refuses ending in
  // whitespace ("final assistant content cannot end with trailing whitespace").
  const final = out[out.length - 1];
  const tail = final?.role === 'assistant' ? final.content[final.content.length - 1] : undefined;
  if (tail?.type === 'text') tail.text = tail.text.trimEnd();
  if (system.length === 0) return { messages: out };
  // Without a breakpoint the system goes as one string, joined as it always was.
  return { system: system.some((b) => b.cache_control) ? system : system.map((b) => b.text).join('\n\n'), messages: out };
}

/** A tool result's parts as its content: one string when they are all text (joined one per line), else blocks. */
function toolResultContent(parts: ContentPart[]): AnthropicToolResultBlock['content'] {
  if (parts.every((p) => p.type === 'text')) return parts.map((p) => (p as { text: string }).text).join('\n');
  return contentBlocks(parts) as Exclude<AnthropicToolResultBlock['content'], string | undefined>;
}

/**
 * A user message without its first `count` parts: the images and documents of the tool results
 * before it, which went inside those results. Only when they are there as the route put them (the
 * first is its `… returned by tool call …` line); otherwise nothing is left out.
 */
function withoutCarriedParts(content: ChatMessage['content'], count: number): ChatMessage['content'] {
  if (!Array.isArray(content) || content.length < count) return content;
  const first = content[0];
  if (first?.type !== 'text' || !TOOL_MEDIA_LINE.test(first.text)) return content;
  return content.slice(count);
}

/** The line that introduces a tool result's images or documents in the user turn after it. */
const TOOL_MEDIA_LINE = /^(Images|Documents) returned by tool call \S+:$/;

/**
 * A system or developer message as system text blocks: one per message, or, when one of its parts
 * carries a breakpoint, one per text part (the breakpoint must sit after exactly that text).
 */
function systemBlocks(m: ChatMessage): AnthropicTextBlock[] {
  if (Array.isArray(m.content) && m.content.some((p) => p.cache_control)) {
    const blocks: AnthropicTextBlock[] = [];
    for (const p of m.content) if (p.type === 'text' && p.text.trim()) blocks.push(p.cache_control ? { type: 'text', text: p.text, cache_control: p.cache_control } : { type: 'text', text: p.text });
    if (m.cache_control && blocks.length > 0) (blocks[blocks.length - 1] as AnthropicTextBlock).cache_control = m.cache_control;
    return blocks;
  }
  const text = messageText(m.content);
  if (!text.trim()) return [];
  return [m.cache_control ? { type: 'text', text, cache_control: m.cache_control } : { type: 'text', text }];
}

/** The last breakpoint among a message's parts (a tool result is one block, so it takes that one). */
function partsCacheControl(content: ChatMessage['content']): CacheControl | undefined {
  if (!Array.isArray(content)) return undefined;
  let found: CacheControl | undefined;
  for (const p of content) if (p.cache_control) found = p.cache_control;
  return found;
}

function contentBlocks(content: ChatMessage['content']): AnthropicContentBlock[] {
  if (content == null) return [];
  // Anthropic refuses a text block that is empty or only whitespace ("text content blocks must
  // contain non-whitespace text"): Claude itself answers "\n\n" before a tool call at times, and
  // that turn sent back as history would fail every later request of the conversation.
  if (typeof content === 'string') return content.trim() ? [{ type: 'text', text: content }] : [];
  const blocks: AnthropicContentBlock[] = [];
  for (const part of content) {
    let block: AnthropicContentBlock;
    if (part.type === 'text') {
      if (!part.text.trim()) continue;
      block = { type: 'text', text: part.text };
    } else if (part.type === 'file') {
      block = documentBlock(part.file.file_data, part.file.filename);
    } else {
      block = imageBlock(part.image_url.url);
    }
    if (part.cache_control) block.cache_control = part.cache_control;
    blocks.push(block);
  }
  return blocks;
}

/** A file part as a document block: PDFs as they are, plain text decoded; other types are refused. */
function documentBlock(fileData: string, filename?: string): AnthropicDocumentBlock {
  const inline = documentData(fileData);
  const title = filename ? { title: filename } : {};
  if (inline.mimeType === 'application/pdf') return { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: inline.data }, ...title };
  if (inline.mimeType === 'text/plain') return { type: 'document', source: { type: 'text', media_type: 'text/plain', data: Buffer.from(inline.data, 'base64').toString('utf8') }, ...title };
  throw new DocumentTypeError(inline.mimeType);
}

/** A document of a media type the upstream cannot read. */
export class DocumentTypeError extends Error {
  constructor(readonly mediaType: string) {
    super(`documents of type ${mediaType} cannot be sent to Anthropic (PDF and plain text can)`);
  }
}

function imageBlock(url: string): AnthropicImageBlock {
  const inline = parseDataUrl(url);
  if (inline) return { type: 'image', source: { type: 'base64', media_type: inline.mimeType, data: inline.data } };
  return { type: 'image', source: { type: 'url', url } };
}

export function toAnthropicTools(tools: readonly ToolDefinition[]): AnthropicTool[] {
  return tools.map((t) => ({
    name: t.function.name,
    ...(t.function.description ? { description: t.function.description } : {}),
    input_schema: t.function.parameters ?? { type: 'object', properties: {} },
    ...(t.cache_control ? { cache_control: t.cache_control } : {}),
  }));
}

export function toAnthropicToolChoice(choice: ToolChoice | undefined, parallel: boolean | undefined): AnthropicToolChoice | undefined {
  const noParallel = parallel === false ? { disable_parallel_tool_use: true } : {};
  if (choice === undefined) return parallel === false ? { type: 'auto', ...noParallel } : undefined;
  if (choice === 'none') return { type: 'none' };
  if (choice === 'auto') return { type: 'auto', ...noParallel };
  if (choice === 'required') return { type: 'any', ...noParallel };
  return { type: 'tool', name: choice.function.name, ...noParallel };
}

/**
 * Joined text, tool calls and thinking of an Anthropic response's content: thinking and
 * redacted_thinking blocks in order (signatures kept) and their text joined as `reasoning` (none
 * when there is no thinking text; server-tool blocks are skipped).
 */
export function fromAnthropicContent(
  content: readonly { type: string; text?: string; id?: string; name?: string; input?: unknown; thinking?: string; signature?: string; data?: string }[],
): {
  text: string | null;
  toolCalls: ToolCall[];
  thinking: ThinkingBlock[];
  reasoning: string | undefined;
} {
  let text: string | null = null;
  const toolCalls: ToolCall[] = [];
  const thinking: ThinkingBlock[] = [];
  const texts: string[] = [];
  for (const block of content) {
    if (block.type === 'text' && typeof block.text === 'string') text = (text ?? '') + block.text;
    else if (block.type === 'thinking') {
      thinking.push({ type: 'thinking', thinking: block.thinking ?? '', signature: block.signature ?? '' });
      if (block.thinking) texts.push(block.thinking);
    } else if (block.type === 'redacted_thinking') thinking.push({ type: 'redacted_thinking', data: block.data ?? '' });
    else if (block.type === 'tool_use' && block.id && block.name) {
      toolCalls.push({ id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } });
    }
  }
  return { text, toolCalls, thinking, reasoning: texts.length > 0 ? texts.join(THINKING_SEPARATOR) : undefined };
}

/** Between two thinking blocks' texts in `reasoning_content` (JSON and streamed alike). */
export const THINKING_SEPARATOR = '\n\n';

// ---- Anthropic -> canonical (the gateway's /v1/messages route) ----

/** A Messages API content block as the route accepts it (already validated). */
export type InboundBlock = (
  | { type: 'text'; text: string }
  | { type: 'image'; source: { type: 'base64'; media_type: string; data: string } | { type: 'url'; url: string } }
  | { type: 'tool_use'; id: string; name: string; input: unknown }
  | {
      type: 'document';
      source:
        | { type: 'base64'; media_type: 'application/pdf'; data: string }
        | { type: 'text'; data: string }
        | { type: 'content'; content: string | { type: 'text'; text: string }[] }
        | { type: 'url'; url: string };
      title?: string | null;
      context?: string | null;
    }
  | { type: 'tool_result'; tool_use_id: string; content?: string | InboundBlock[]; is_error?: boolean }
  | { type: 'thinking'; thinking?: string; signature?: string }
  | { type: 'redacted_thinking'; data?: string }
  /** A server tool's block (web search and the like): only Anthropic reads it; the route sends such turns as they came. */
  | { type: 'server_tool_use' | 'web_search_tool_result' | 'web_fetch_tool_result' | 'code_execution_tool_result' }
) & { cache_control?: CacheControl | null };

/**
 * One Messages API turn as canonical messages. A user turn's tool_result blocks become `tool`
 * messages placed before its remaining content (OpenAI wants tool answers right after the assistant
 * turn that asked); an assistant turn's tool_use blocks become `tool_calls`, its thinking blocks
 * `thinking_blocks` (in order; a thinking block without its signature, which Claude would refuse, is
 * dropped), which only the anthropic adapter sends back.
 * A tool message holds text only, so a tool result's images and documents follow in the user turn
 * after all the tool messages (introduced by a line naming the call), and `is_error` becomes an
 * `Error:` prefix: neither is lost on the way to any provider. The result as given goes with the tool
 * message too (`tool_result`), which the anthropic adapter sends instead: `is_error` and the media
 * inside the tool_result, as Claude takes them.
 */
export function fromAnthropicTurn(role: 'user' | 'assistant', content: string | readonly InboundBlock[]): ChatMessage[] {
  if (typeof content === 'string') return [{ role, content }];
  const out: ChatMessage[] = [];
  const parts: ContentPart[] = [];
  const toolCalls: ToolCall[] = [];
  const toolMedia: ContentPart[] = [];
  const thinking: ThinkingBlock[] = [];
  // A breakpoint on a tool call: the assistant message's last block when it goes back to Anthropic.
  let callsCache: CacheControl | undefined;
  for (const block of content) {
    const cache = block.cache_control ?? undefined;
    switch (block.type) {
      case 'text':
        parts.push(cache ? { type: 'text', text: block.text, cache_control: cache } : { type: 'text', text: block.text });
        break;
      case 'image':
      case 'document': {
        const media = mediaParts(block);
        if (cache && media.length > 0) (media[media.length - 1] as ContentPart).cache_control = cache;
        parts.push(...media);
        break;
      }
      case 'thinking':
        // An unsigned block (signature '': the gateway's rendering of another provider's reasoning
        // text) is dropped: Claude refuses a thinking block it did not sign.
        if (role === 'assistant' && typeof block.thinking === 'string' && typeof block.signature === 'string' && block.signature !== '') {
          thinking.push({ type: 'thinking', thinking: block.thinking, signature: block.signature });
        }
        break;
      case 'redacted_thinking':
        if (role === 'assistant' && typeof block.data === 'string') thinking.push({ type: 'redacted_thinking', data: block.data });
        break;
      case 'server_tool_use':
      case 'web_search_tool_result':
      case 'web_fetch_tool_result':
      case 'code_execution_tool_result':
        // Only Anthropic deployments get this request, with the turn as sent; the gateway's own view
        // (token counts, cache keys) keeps the block as JSON text.
        parts.push({ type: 'text', text: JSON.stringify(block) });
        break;
      case 'tool_use':
        toolCalls.push({ id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } });
        if (cache) callsCache = cache;
        break;
      case 'tool_result': {
        const text = toolResultText(block.content);
        const msg: ChatMessage = { role: 'tool', tool_call_id: block.tool_use_id, content: block.is_error ? `Error: ${text}` : text };
        if (cache) msg.cache_control = cache;
        out.push(msg);
        // Images and documents a tool returned follow the tool messages in the user turn (a tool
        // message carries text only), each kind under a line naming the call.
        // One walk, each block's parts made once (an inline body can be tens of MiB): the same
        // objects go to the user turn and into the tool_result kept for Anthropic upstreams.
        const blocks = typeof block.content === 'string' || !block.content ? [] : block.content;
        const resultParts: ContentPart[] = typeof block.content === 'string' ? [{ type: 'text', text: block.content }] : [];
        const images: ContentPart[] = [];
        const documents: ContentPart[] = [];
        for (const b of blocks) {
          if (b.type === 'text') resultParts.push({ type: 'text', text: b.text });
          else if (b.type === 'image' || b.type === 'document') {
            const media = mediaParts(b);
            resultParts.push(...media);
            (b.type === 'image' ? images : documents).push(...media);
          }
        }
        const before = toolMedia.length;
        for (const [media, label] of [[images, 'Images'], [documents, 'Documents']] as const) {
          if (media.length === 0) continue;
          toolMedia.push({ type: 'text', text: `${label} returned by tool call ${block.tool_use_id}:` }, ...media);
        }
        // The result as given, for Anthropic upstreams, which take the error flag and the media
        // inside the tool_result (and leave out the parts moved into the user turn).
        const moved = toolMedia.length - before;
        if (block.is_error || moved > 0) msg.tool_result = { parts: resultParts, ...(block.is_error ? { is_error: true } : {}), moved_parts: moved };
        break;
      }
      default:
        break;
    }
  }
  // Parts join into one string only when no breakpoint sits among them (a string cannot carry one).
  const marked = parts.some((p) => p.cache_control);
  if (role === 'assistant') {
    const text = !marked && parts.every((p) => p.type === 'text') ? parts.map((p) => (p as { text: string }).text).join('') : null;
    const msg: ChatMessage = { role, content: text === '' && toolCalls.length > 0 ? null : (text ?? parts) };
    if (toolCalls.length > 0) msg.tool_calls = toolCalls;
    if (thinking.length > 0) msg.thinking_blocks = thinking;
    if (callsCache) msg.cache_control = callsCache;
    out.push(msg);
  } else {
    const all = [...toolMedia, ...parts];
    if (all.length > 0) out.push({ role, content: !marked && all.length === 1 && all[0]?.type === 'text' ? all[0].text : all });
  }
  return out;
}

/**
 * A document block as canonical parts: a PDF as a `file` part (read by providers that take
 * documents), text and content documents as text (every model reads it), titled and with context.
 */
type MediaBlock = Extract<InboundBlock, { type: 'image' | 'document' }>;

/** An image or document block as canonical content parts. */
function mediaParts(block: MediaBlock): ContentPart[] {
  return block.type === 'image' ? [{ type: 'image_url', image_url: { url: imageUrl(block.source) } }] : documentParts(block);
}

function documentParts(block: Extract<InboundBlock, { type: 'document' }>): ContentPart[] {
  const s = block.source;
  if (s.type === 'base64') {
    // OpenAI needs a filename for inline files; the title is one, with the extension its type implies.
    const filename = block.title ? (/\.pdf$/i.test(block.title) ? block.title : `${block.title}.pdf`) : 'document.pdf';
    const file: ContentPart = { type: 'file', file: { file_data: `data:application/pdf;base64,${s.data}`, filename } };
    return block.context ? [{ type: 'text', text: `Context for ${filename}: ${block.context}` }, file] : [file];
  }
  // A document by URL goes to Anthropic as sent (the route passes such turns through); here, its address.
  const body = s.type === 'url' ? s.url : s.type === 'text' ? s.data : typeof s.content === 'string' ? s.content : s.content.map((b) => b.text).join('\n');
  const head = [block.title ? `Document: ${block.title}` : 'Document:', block.context ?? ''].filter(Boolean).join('\n');
  return [{ type: 'text', text: `${head}\n\n${body}` }];
}

function imageUrl(source: { type: 'base64'; media_type: string; data: string } | { type: 'url'; url: string }): string {
  return source.type === 'base64' ? `data:${source.media_type};base64,${source.data}` : source.url;
}

/**
 * A tool result's text. The canonical tool message holds one string, so several text blocks (an MCP
 * tool's result often has more than one) are joined one per line, not run together.
 */
function toolResultText(content: string | readonly InboundBlock[] | undefined): string {
  if (content === undefined) return '';
  if (typeof content === 'string') return content;
  const texts: string[] = [];
  for (const block of content) if (block.type === 'text') texts.push(block.text);
  return texts.join('\n');
}

export function fromAnthropicToolChoice(
  choice: { type: 'auto' | 'any' | 'none' | 'tool'; name?: string; disable_parallel_tool_use?: boolean } | undefined,
): { tool_choice?: ToolChoice; parallel_tool_calls?: boolean } {
  if (!choice) return {};
  const parallel = choice.disable_parallel_tool_use ? { parallel_tool_calls: false } : {};
  switch (choice.type) {
    case 'auto':
      return { tool_choice: 'auto', ...parallel };
    case 'any':
      return { tool_choice: 'required', ...parallel };
    case 'none':
      return { tool_choice: 'none' };
    case 'tool':
      return { tool_choice: { type: 'function', function: { name: choice.name ?? '' } }, ...parallel };
  }
}

/**
 * The beta features an `anthropic-beta` header turns on (comma-separated, possibly repeated; the SDK's
 * `betas` parameter arrives as this header), each once, added to `into` after those it holds.
 */
export function anthropicBetas(header: string | readonly string[] | undefined, into: string[] = []): string[] {
  if (header === undefined) return into;
  for (const value of typeof header === 'string' ? [header] : header) {
    for (const beta of value.split(',')) {
      const b = beta.trim();
      if (b && !into.includes(b)) into.push(b);
    }
  }
  return into;
}
