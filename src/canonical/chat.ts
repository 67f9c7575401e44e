// The canonical request and response model: OpenAI Chat Completions shapes are the lingua franca.
// Route adapters (OpenAI, Anthropic, seed endpoints) convert into these; provider adapters convert
// out of them. Nothing here knows about HTTP, tenants or providers.

export type Role = 'system' | 'developer' | 'user' | 'assistant' | 'tool';

/**
 * A prompt-cache breakpoint (Anthropic's `cache_control`): the provider caches the prompt up to and
 * including what carries it. Only the anthropic adapter sends it on; every other upstream caches by
 * itself (OpenAI, Gemini) or not at all, and never sees it.
 */
export interface CacheControl {
  type: 'ephemeral';
  ttl?: '5m' | '1h';
}

export interface TextPart {
  type: 'text';
  text: string;
  cache_control?: CacheControl;
}
export interface ImagePart {
  type: 'image_url';
  image_url: { url: string; detail?: 'auto' | 'low' | 'high' };
  cache_control?: CacheControl;
}
/**
 * A document given inline (OpenAI's `file` content part): `file_data` is a data URL,
 * `data:application/pdf;base64,…`. Served by providers that read documents (ProviderAdapter.files).
 */
export interface FilePart {
  type: 'file';
  file: { file_data: string; filename?: string };
  cache_control?: CacheControl;
}
export type ContentPart = TextPart | ImagePart | FilePart;

/** The media types of the documents (`file` parts) the messages carry; empty for none. */
export function fileMediaTypes(messages: readonly ChatMessage[]): string[] {
  const out: string[] = [];
  for (const m of messages) {
    if (!Array.isArray(m.content)) continue;
    for (const p of m.content) if (p.type === 'file') out.push(fileMediaType(p.file.file_data));
  }
  return out;
}

/** A file part's media type from its data URL (`application/pdf` when it carries none). */
function fileMediaType(fileData: string): string {
  const m = /^data:([^;,]+)/i.exec(fileData);
  return m ? (m[1] as string).toLowerCase() : 'application/pdf';
}

/**
 * Extended thinking as the client asked for it (Anthropic's `thinking`). Only the anthropic adapter
 * sends it; other upstreams ignore it (docs/providers.md).
 */
export type ThinkingConfig = { type: 'enabled'; budget_tokens: number } | { type: 'disabled' };

/**
 * One block of a model's thinking as Anthropic returns it: the text with the signature that lets it be
 * sent back, or an encrypted (redacted) block. Claude requires them back, unchanged and in order, in
 * the assistant turn that produced them (before its tool calls) while thinking is on. Only the anthropic
 * adapter sends them upstream; the portable form of the text is `reasoning_content`.
 */
export type ThinkingBlock = { type: 'thinking'; thinking: string; signature: string } | { type: 'redacted_thinking'; data: string };

/**
 * A streamed piece of a thinking block: `index` numbers the answer's thinking blocks (0, 1, …, apart
 * from text and tool calls); the first piece of a block gives its `type`, later ones add to
 * `thinking` / `signature` (a redacted block comes whole, `data` set).
 */
export interface ThinkingBlockDelta {
  index: number;
  type: ThinkingBlock['type'];
  thinking?: string;
  signature?: string;
  data?: string;
}

/**
 * A streamed piece of an answer's `anthropic_content`: `index` is the block's place in Claude's
 * answer. A block's first piece gives it (`block`: as Anthropic's content_block_start had it, or
 * whole when a stored answer is replayed); later pieces add to it, as Anthropic's deltas do: text,
 * input JSON (`partial_json`, joined and parsed into `input` at the end), a citation, thinking, a
 * signature.
 */
export interface AnthropicContentDelta {
  index: number;
  block?: Record<string, unknown>;
  text?: string;
  partial_json?: string;
  citation?: unknown;
  thinking?: string;
  signature?: string;
}

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface ChatMessage {
  role: Role;
  content: string | ContentPart[] | null;
  name?: string;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
  /** An assistant turn's refusal, sent back as history (OpenAI's `refusal` field or content part). */
  refusal?: string;
  /**
   * A tool message's result as the tool gave it, where text alone does not say it all (an error, or
   * images and documents): for providers whose tool results carry them (Anthropic's `tool_result`
   * with `is_error` and its content blocks). `content` stays the text every other provider reads
   * (`Error: `-prefixed for an error), and the result's images and documents, for those providers,
   * are the first `moved_parts` parts of the next user message; a provider that sends `parts` leaves
   * those out.
   */
  tool_result?: { parts: ContentPart[]; is_error?: boolean; moved_parts: number };
  /** An assistant turn's thinking sent back as history (Anthropic's signed blocks, in order); only the anthropic adapter sends it. */
  thinking_blocks?: ThinkingBlock[];
  /** An assistant turn's spoken answer, sent back by reference (OpenAI's `audio: {id}`); OpenAI-compatible upstreams get it. */
  audio?: { id: string };
  /**
   * A prompt-cache breakpoint after the whole message: on its last block when it goes to Anthropic
   * (a tool result, a tool call, text given as a string). Parts carry their own.
   */
  cache_control?: CacheControl;
}

export interface ToolDefinition {
  type: 'function';
  function: {
    name: string;
    description?: string;
    parameters?: Record<string, unknown>;
    strict?: boolean;
  };
  /** A prompt-cache breakpoint after the tool definitions up to this one (Anthropic). */
  cache_control?: CacheControl;
}

/**
 * `tool_choice: allowed_tools` made canonical, for the chat and Responses routes alike: `tools`
 * narrowed to the `allowed` names, in the request's order (the route then sends the mode as the
 * choice), or the position in `allowed` of the first name the request does not define.
 */
export function narrowToAllowedTools<T extends { function: { name: string } }>(tools: readonly T[], allowed: readonly string[]): { tools: T[] } | { undefinedAt: number } {
  const defined = new Set(tools.map((t) => t.function.name));
  const undefinedAt = allowed.findIndex((name) => !defined.has(name));
  if (undefinedAt >= 0) return { undefinedAt };
  const keep = new Set(allowed);
  return { tools: tools.filter((t) => keep.has(t.function.name)) };
}

export type ToolChoice =
  | 'none'
  | 'auto'
  | 'required'
  | { type: 'function'; function: { name: string } };

export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | {
      type: 'json_schema';
      json_schema: { name: string; description?: string; schema?: Record<string, unknown>; strict?: boolean };
    };

/**
 * A legacy text completion (`POST /v1/completions`) as the client sent it, set by that route only:
 * the prompt as raw text, for deployments that complete raw text (an OpenAI-compatible server's
 * `/completions`, Ollama's `/api/generate` with `raw: true`, `local`). `messages` holds the same
 * prompt as one user message, so routing, token counts, limits, guards, the cache and chat-only
 * providers work as for chat; an adapter serving it through chat refuses what chat cannot do
 * (`refuseRawOnly`, src/providers/text-completion.ts).
 */
export interface TextCompletion {
  /** The prompt as text; '' when it came as token ids. */
  prompt: string;
  /**
   * The prompt as token ids of the deployment's own tokenizer (OpenAI's `prompt: number[]`, what
   * evaluation harnesses send): passed through to deployments that complete raw text over the
   * OpenAI API, refused by every other (no text is known for it).
   */
  prompt_ids?: number[];
  /** Text after the completion (fill-in-the-middle): native deployments only. */
  suffix?: string;
  /** The prompt in front of the answer: the route puts it there, unless the upstream echoed it (with `logprobs` only: ChatResult.prompt_echoed). */
  echo?: boolean;
  /** The legacy integer `logprobs` (alternatives per position, 0–5); the canonical `logprobs`/`top_logprobs` say the same for routing. */
  logprobs?: number;
  /** Candidates generated server-side, the best returned (OpenAI's legacy `best_of`); above 1, native deployments only. */
  best_of?: number;
}

/**
 * The legacy completions shape of log-probabilities, as a raw-text upstream sends it: parallel arrays,
 * alternatives as token → logprob maps. `token_logprobs` holds null for a position with none (the first
 * token of an echoed prompt).
 */
export interface TextLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[] | null;
  text_offset: number[];
}

export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  /** The /v1/completions route's raw prompt (TextCompletion); absent on every other request. */
  text_completion?: TextCompletion;
  temperature?: number;
  top_p?: number;
  /**
   * Sample from the k likeliest tokens only (Anthropic's `top_k`). Not in OpenAI's API: the Anthropic
   * route sets it; Anthropic, Gemini (`topK`), Cohere (`k`), Ollama (`options.top_k`) and `local` get
   * it, OpenAI-compatible upstreams do not (OpenAI refuses unknown parameters).
   */
  top_k?: number;
  n?: number;
  max_tokens?: number;
  max_completion_tokens?: number;
  /**
   * Which of the two fields the client's own token limit came in (the OpenAI chat route sets it; a
   * limit the gateway set — the Anthropic and Responses routes' — has none). The openai adapter sends
   * the limit in that field to compatible servers unless the provider fixes one.
   */
  token_limit_field?: 'max_tokens' | 'max_completion_tokens';
  stop?: string | string[];
  seed?: number;
  user?: string;
  tools?: ToolDefinition[];
  tool_choice?: ToolChoice;
  parallel_tool_calls?: boolean;
  response_format?: ResponseFormat;
  /** Extended thinking (the Anthropic route's `thinking`): sent to Anthropic upstreams only. */
  thinking?: ThinkingConfig;
  /**
   * Anthropic beta features the client turned on (its `anthropic-beta` header, where the SDK's
   * `betas` go): sent in that header to Anthropic upstreams only, beside the provider's own.
   */
  anthropic_beta?: string[];
  /**
   * Anthropic-defined tools (`bash_20250124`, `text_editor_*`, `web_search_20250305`, …) as the
   * client gave them, each with its position among the request's tools (`tools` holds the function
   * tools). Only Anthropic deployments can take them: such a request is routed to those alone
   * (needsAnthropic), and 400 `unsupported_capability` when the model has none.
   */
  anthropic_tools?: { position: number; tool: Record<string, unknown> }[];
  /**
   * The client's Messages API turns as it sent them, when they hold what the canonical messages
   * cannot carry (server-tool blocks such as `server_tool_use` / `web_search_tool_result`, a document
   * by URL): sent to Anthropic unchanged in place of the conversion of `messages`, which stays the
   * gateway's own view (token counts, cache keys; those blocks as JSON text). Routed as
   * `anthropic_tools` are.
   */
  anthropic_messages?: unknown[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  presence_penalty?: number;
  frequency_penalty?: number;
  logit_bias?: Record<string, number>;
  logprobs?: boolean;
  top_logprobs?: number;
  metadata?: Record<string, string>;
  store?: boolean;
  reasoning_effort?: 'none' | 'minimal' | 'low' | 'medium' | 'high' | 'xhigh' | 'max';
  service_tier?: string;
  /** OpenAI parameters passed through to OpenAI-compatible upstreams, uninterpreted. */
  verbosity?: 'low' | 'medium' | 'high';
  modalities?: ('text' | 'audio')[];
  audio?: Record<string, unknown>;
  prediction?: Record<string, unknown>;
  web_search_options?: Record<string, unknown>;
  moderation?: unknown;
  prompt_cache_key?: string;
  prompt_cache_retention?: string;
  prompt_cache_options?: Record<string, unknown>;
  safety_identifier?: string;
}

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /**
   * Of `prompt_tokens`, those the provider read from its prompt cache (`cached_tokens`: OpenAI's
   * `cached_tokens`, Anthropic's `cache_read_input_tokens`, Gemini's `cachedContentTokenCount`) and
   * those it wrote to it (`cache_write_tokens`: Anthropic's `cache_creation_input_tokens`). Present
   * only when the provider said; priced at the deployment's `cached_input` / `cache_write` prices.
   */
  prompt_tokens_details?: PromptTokensDetails;
  /**
   * Of `completion_tokens`, the model's hidden reasoning (OpenAI's `reasoning_tokens`, Gemini's
   * thoughts), when the provider said; OpenAI's other counts beside it when it sent them.
   */
  completion_tokens_details?: CompletionTokensDetails;
}

export interface PromptTokensDetails {
  cached_tokens: number;
  cache_write_tokens?: number;
  /** OpenAI's audio input tokens, when the upstream sent the count. */
  audio_tokens?: number;
}

export interface CompletionTokensDetails {
  reasoning_tokens: number;
  /** OpenAI's Predicted Outputs: prediction tokens that appeared in the answer, and those that did not (billed all the same). */
  accepted_prediction_tokens?: number;
  rejected_prediction_tokens?: number;
  /** OpenAI's audio output tokens. Each of these three only when the upstream sent it. */
  audio_tokens?: number;
}

/** The optional counts of two usage details, summed where either side has one. */
function addOptionalCounts<T extends object>(out: T, a: T | undefined, b: T | undefined, keys: readonly (keyof T)[]): void {
  for (const k of keys) {
    const x = a?.[k] as number | undefined;
    const y = b?.[k] as number | undefined;
    if (x !== undefined || y !== undefined) (out[k] as number) = (x ?? 0) + (y ?? 0);
  }
}

export interface AssistantMessage {
  role: 'assistant';
  content: string | null;
  tool_calls?: ToolCall[];
  refusal?: string | null;
  /**
   * OpenAI's spoken answer (a request with `modalities: ["audio"]`): `{id, data, expires_at,
   * transcript}` as the upstream sent it. Only OpenAI-compatible upstreams give one; the OpenAI
   * route passes it on.
   */
  audio?: Record<string, unknown>;
  /** OpenAI's annotations (`url_citation`s of a web-search model), as the upstream sent them. */
  annotations?: unknown[];
  /**
   * The model's thinking as text (Claude's thinking blocks joined), the field OpenAI-compatible
   * gateways (LiteLLM, vLLM, DeepSeek) use; the OpenAI route passes it on.
   */
  reasoning_content?: string;
  /** The thinking blocks themselves, signatures included, in order (Anthropic); the Anthropic route renders them. */
  thinking_blocks?: ThinkingBlock[];
  /**
   * Claude's answer content as it sent it, every block in order — server-tool blocks
   * (`server_tool_use`, `web_search_tool_result`, …) and text blocks' `citations`, which the fields
   * above cannot carry, included. Set by the anthropic adapter only for a request that needsAnthropic
   * (the Anthropic route's Anthropic-defined tools or native turns); only the Anthropic route renders
   * it (in place of content, tool_calls and thinking_blocks), the OpenAI routes leave it out.
   */
  anthropic_content?: Record<string, unknown>[];
}

/** One alternative at a token position (OpenAI's `top_logprobs` entry). */
export interface TopLogprob {
  token: string;
  logprob: number;
  /** The token's UTF-8 bytes (a token may be part of a character), or null. */
  bytes: number[] | null;
}

/** The sampled token at one position, with the most likely alternatives (`top_logprobs` of them). */
export interface TokenLogprob extends TopLogprob {
  top_logprobs: TopLogprob[];
}

/**
 * OpenAI's `choice.logprobs` when the request set `logprobs: true`: per output token, in order. On a
 * stream chunk it covers that chunk's tokens only.
 */
export interface ChoiceLogprobs {
  content: TokenLogprob[] | null;
  refusal?: TokenLogprob[] | null;
}

export interface ChatChoice {
  index: number;
  message: AssistantMessage;
  finish_reason: FinishReason | null;
  /** Token log-probabilities, when the request asked (`logprobs: true`) and the provider can say. */
  logprobs: ChoiceLogprobs | null;
  /**
   * Log-probabilities in the legacy completions shape, as a raw-text upstream sent them (a
   * TextCompletion request answered natively); the /v1/completions route passes them on as they are.
   */
  text_logprobs?: TextLogprobs;
  /**
   * The stop sequence that ended the answer, when the provider says which (Anthropic, the simulator).
   * Anthropic's `stop_reason: "stop_sequence"` and `stop_sequence`; not part of OpenAI's answer (the
   * OpenAI route leaves it out).
   */
  stop_sequence?: string;
  /**
   * Anthropic's `stop_reason: "pause_turn"`: a server-tool loop (web search, web fetch) stopped at
   * its limit and the answer is unfinished — the client sends the turn back to continue it. The
   * finish reason is `stop`; only the Anthropic route reports it, and the answer is not cached.
   */
  paused?: true;
}

export interface ChatResult {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: ChatChoice[];
  usage: Usage;
  system_fingerprint?: string;
  /** The tier that served the answer (OpenAI's `service_tier`: default, flex, priority, …), when the upstream said. */
  service_tier?: string;
  /** A TextCompletion with `echo` answered natively: each choice's text already begins with the prompt. */
  prompt_echoed?: boolean;
}

export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
}

export interface ChunkChoice {
  index: number;
  delta: {
    role?: 'assistant';
    content?: string | null;
    tool_calls?: ToolCallDelta[];
    refusal?: string | null;
    audio?: Record<string, unknown>;
    annotations?: unknown[];
    /** Thinking text, as AssistantMessage.reasoning_content. */
    reasoning_content?: string;
    /** The thinking blocks' pieces (the same text, with signatures and redacted blocks). */
    thinking_blocks?: ThinkingBlockDelta[];
    /** Pieces of AssistantMessage.anthropic_content (beside the portable fields, which carry the same text). */
    anthropic_content?: AnthropicContentDelta[];
  };
  finish_reason: FinishReason | null;
  /** This chunk's tokens' log-probabilities (as ChatChoice.logprobs). */
  logprobs?: ChoiceLogprobs | null;
  /** This chunk's tokens' log-probabilities in the legacy shape (as ChatChoice.text_logprobs). */
  text_logprobs?: TextLogprobs;
  /** On the finishing chunk: as ChatChoice.stop_sequence. */
  stop_sequence?: string;
  /** On the finishing chunk: as ChatChoice.paused. */
  paused?: true;
}

/**
 * One streamed chunk. Provider adapters always end a stream with a usage chunk
 * (`choices: []`, `usage` set), whatever the client asked; the route adapter drops it
 * unless the client set `stream_options.include_usage`.
 */
export interface ChatChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: ChunkChoice[];
  usage?: Usage | null;
  system_fingerprint?: string;
  /** As ChatResult.service_tier. */
  service_tier?: string;
  /** As ChatResult.prompt_echoed: each choice's first text piece begins with the prompt. */
  prompt_echoed?: boolean;
}

export function emptyUsage(): Usage {
  return { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
}

export function addUsage(a: Usage, b: Usage): Usage {
  const out: Usage = {
    prompt_tokens: a.prompt_tokens + b.prompt_tokens,
    completion_tokens: a.completion_tokens + b.completion_tokens,
    total_tokens: a.total_tokens + b.total_tokens,
  };
  // The details only when either side has them: a provider that reports none stays without.
  const pa = a.prompt_tokens_details;
  const pb = b.prompt_tokens_details;
  if (pa || pb) {
    out.prompt_tokens_details = { cached_tokens: (pa?.cached_tokens ?? 0) + (pb?.cached_tokens ?? 0) };
    addOptionalCounts(out.prompt_tokens_details, pa, pb, ['cache_write_tokens', 'audio_tokens']);
  }
  const ca = a.completion_tokens_details;
  const cb = b.completion_tokens_details;
  if (ca || cb) {
    out.completion_tokens_details = { reasoning_tokens: (ca?.reasoning_tokens ?? 0) + (cb?.reasoning_tokens ?? 0) };
    addOptionalCounts(out.completion_tokens_details, ca, cb, ['accepted_prediction_tokens', 'rejected_prediction_tokens', 'audio_tokens']);
  }
  return out;
}

/**
 * Usage's prompt-cache details from a provider's counts (read, written), or none when the provider
 * reported neither; `cache_write_tokens` only where the provider reports writes.
 */
export function promptCacheDetails(read: number | null | undefined, written?: number | null): PromptTokensDetails | undefined {
  if (read == null && written == null) return undefined;
  const d: PromptTokensDetails = { cached_tokens: read ?? 0 };
  if (written != null) d.cache_write_tokens = written;
  return d;
}

/**
 * Parts or tools without their prompt-cache breakpoints: the same array when none carries one (the
 * common case allocates nothing). For upstreams that refuse the field, and for cache keys.
 */
export function withoutCacheControl<T extends { cache_control?: CacheControl }>(items: T[]): Omit<T, 'cache_control'>[] {
  if (!items.some((i) => i.cache_control)) return items;
  return items.map(({ cache_control: _, ...rest }) => rest);
}

/**
 * The `k`-th seed derived from a client's `seed` (passes of a scaled request, choices of one call):
 * `seed + k` while that is exact, else a 31-bit mix of both. Past 2^53 (OpenAI's schema takes 64-bit
 * seeds; clients send random ones) `seed + k` is `seed` again, and every pass sampled the same answer.
 */
export function seedFor(seed: number, k: number): number {
  if (k === 0) return seed;
  const next = seed + k;
  if (Number.isSafeInteger(next) && next !== seed) return next;
  let h = 0x811c9dc5;
  for (const ch of `${seed}:${k}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return (h >>> 1) & 0x7fffffff;
}

/**
 * A message's text as a model reads it, for an upstream that takes one string: its text parts one
 * per line (as vLLM joins them), images dropped. contentText runs them together, which keeps the
 * gateway's own counts and keys as they were but would run two parts' words into one.
 */
export function messageText(content: ChatMessage['content']): string {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  let out = '';
  let first = true;
  for (const part of content) {
    if (part.type !== 'text') continue;
    out += first ? part.text : `\n${part.text}`;
    first = false;
  }
  return out;
}

/** Plain text of a message's content (text parts joined; images dropped). */
export function contentText(content: ChatMessage['content']): string {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  let out = '';
  for (const part of content) if (part.type === 'text') out += part.text;
  return out;
}

/** Whether the request carries what only an Anthropic deployment can take (Anthropic-defined tools, native history blocks). */
export function needsAnthropic(req: ChatRequest): boolean {
  return Boolean(req.anthropic_tools?.length || req.anthropic_messages);
}

/** Two stretches of legacy log-probabilities as one (a stream's pieces folded; the second's offsets are kept as sent). */
export function joinTextLogprobs(a: TextLogprobs | undefined, b: TextLogprobs): TextLogprobs {
  if (!a) return b;
  const top = a.top_logprobs || b.top_logprobs ? [...(a.top_logprobs ?? a.tokens.map(() => null)), ...(b.top_logprobs ?? b.tokens.map(() => null))] : null;
  return {
    tokens: [...a.tokens, ...b.tokens],
    token_logprobs: [...a.token_logprobs, ...b.token_logprobs],
    top_logprobs: top,
    text_offset: [...a.text_offset, ...b.text_offset],
  };
}

/** The token budget the client asked for, whichever field it used. */
export function requestedMaxTokens(req: ChatRequest): number | undefined {
  return req.max_completion_tokens ?? req.max_tokens;
}

export function stopList(stop: ChatRequest['stop']): string[] {
  if (stop == null) return [];
  return Array.isArray(stop) ? stop : [stop];
}
