// OpenAI's Responses API (POST /v1/responses) over the canonical chat model: the request's input
// items become chat messages (instructions first, function calls and their outputs as tool turns),
// and the answer becomes a Response object or Responses' streamed event sequence (response.created …
// output_text.delta … response.completed) from canonical chunks. Stored responses (response-store.ts)
// let `previous_response_id` continue a conversation; `conversation` objects are not kept.
import { z } from 'zod';
import { contentText, narrowToAllowedTools, type ChatChunk, type ChatMessage, type ChatRequest, type ChatResult, type ContentPart, type ResponseFormat, type TokenLogprob, type ToolChoice, type ToolDefinition, type Usage } from '../canonical/chat.js';
import { randomHex } from '../gateway/ids.js';
import { parseDataUrl } from '../providers/data-url.js';
import { GatewayError } from './errors.js';
import { extensionFields } from './routes/openai-schema.js';
import type { SseEvent } from './sse.js';
import { validationError } from './validation.js';

const inputText = z.object({ type: z.literal('input_text'), text: z.string() });
const inputImage = z.object({
  type: z.literal('input_image'),
  image_url: z.string().nullish(),
  file_id: z.string().nullish(),
  detail: z.enum(['auto', 'low', 'high']).nullish(),
});
const inputFile = z.object({
  type: z.literal('input_file'),
  file_data: z.string().nullish(),
  file_id: z.string().nullish(),
  file_url: z.string().nullish(),
  filename: z.string().nullish(),
});
/** Assistant turns sent back as history carry output parts. */
const outputText = z.object({ type: z.literal('output_text'), text: z.string() }).passthrough();
const refusalPart = z.object({ type: z.literal('refusal'), refusal: z.string() });
const contentPart = z.discriminatedUnion('type', [inputText, inputImage, inputFile, outputText, refusalPart]);

const messageItem = z
  .object({
    type: z.literal('message').optional(),
    id: z.string().nullish(),
    role: z.enum(['user', 'assistant', 'system', 'developer']),
    content: z.union([z.string(), z.array(contentPart)]),
    status: z.string().nullish(),
    phase: z.string().nullish(),
  })
  .strict();
const functionCallItem = z
  .object({
    type: z.literal('function_call'),
    id: z.string().nullish(),
    call_id: z.string().min(1),
    name: z.string().min(1),
    arguments: z.string(),
    status: z.string().nullish(),
  })
  .strict();
const functionCallOutputItem = z
  .object({
    type: z.literal('function_call_output'),
    id: z.string().nullish(),
    call_id: z.string().min(1),
    output: z.union([z.string(), z.array(contentPart)]),
    status: z.string().nullish(),
  })
  .strict();
/** Reasoning from an earlier answer: it cannot be replayed to another model, so it is dropped. */
const reasoningItem = z.object({ type: z.literal('reasoning') }).passthrough();
const itemReference = z.object({ type: z.literal('item_reference'), id: z.string() }).strict();
const inputItem = z.union([messageItem, functionCallItem, functionCallOutputItem, reasoningItem, itemReference]);

const functionTool = z
  .object({
    type: z.literal('function'),
    name: z.string().min(1).max(64),
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
    strict: z.boolean().nullish(),
    // In OpenAI's schema, and ignored here: `defer_loading` is for its hosted tool search (every
    // function is loaded up front), `output_schema` describes string outputs, `allowed_callers` is for
    // its programmatic tool calling.
    defer_loading: z.boolean().optional(),
    output_schema: z.record(z.string(), z.unknown()).nullish(),
    allowed_callers: z.array(z.enum(['direct', 'programmatic'])).nullish(),
  })
  .strict();
/**
 * Any type but "function": a function tool must pass `functionTool` (or fail with that schema's
 * precise path), never slip through as a hosted tool.
 */
const notFunction = z.string().refine((t) => t !== 'function', { message: 'a function tool must match the function tool schema', abort: true });
/** Any choice type but those of function tools (`function`, `allowed_tools`), which must pass their own schemas. */
const notChoiceOfFunctions = z.string().refine((t) => t !== 'function' && t !== 'allowed_tools', { message: 'a function or allowed_tools choice must match its schema', abort: true });
/** Hosted tools (web search, file search, code interpreter, MCP, …) are accepted by shape and refused with a clear message. */
const hostedTool = z.object({ type: notFunction }).passthrough();

/** Some of the request's function tools, `mode` as the choice (toolsAndChoice narrows the tools). */
const allowedToolsChoice = z
  .object({
    type: z.literal('allowed_tools'),
    mode: z.enum(['auto', 'required']),
    tools: z.array(z.object({ type: z.literal('function'), name: z.string().min(1) }).strict()).min(1),
  })
  .strict();

// The objects first: a malformed function choice is reported at its own path (tool_choice.name), not
// as "expected none, auto or required".
const toolChoice = z.union([
  z.object({ type: z.literal('function'), name: z.string().min(1) }).strict(),
  allowedToolsChoice,
  // Hosted tool choices, refused by toToolChoice; a malformed function or allowed_tools choice fails the ones above.
  z.object({ type: notChoiceOfFunctions }).passthrough(),
  z.enum(['none', 'auto', 'required']),
]);

const textFormat = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }).strict(),
  z.object({ type: z.literal('json_object') }).strict(),
  z
    .object({
      type: z.literal('json_schema'),
      name: z.string().min(1).max(64),
      schema: z.record(z.string(), z.unknown()),
      description: z.string().nullish(),
      strict: z.boolean().nullish(),
    })
    .strict(),
]);

export const createResponseSchema = z
  .object({
    model: z.string().min(1),
    input: z.union([z.string(), z.array(inputItem).min(1)]),
    instructions: z.string().nullish(),
    tools: z.array(z.union([functionTool, hostedTool])).max(128).nullish(),
    tool_choice: toolChoice.nullish(),
    parallel_tool_calls: z.boolean().nullish(),
    text: z.object({ format: textFormat.nullish(), verbosity: z.enum(['low', 'medium', 'high']).nullish() }).strict().nullish(),
    max_output_tokens: z.number().int().min(1).nullish(),
    temperature: z.number().min(0).max(2).nullish(),
    top_p: z.number().min(0).max(1).nullish(),
    top_logprobs: z.number().int().min(0).max(20).nullish(),
    include: z.array(z.string()).nullish(),
    reasoning: z
      .object({
        effort: z.enum(['none', 'minimal', 'low', 'medium', 'high', 'xhigh', 'max']).nullish(),
        summary: z.string().nullish(),
        generate_summary: z.string().nullish(),
        // No chat equivalent: accepted and ignored (reasoning items are not replayed to the model anyway).
        mode: z.string().nullish(),
        context: z.enum(['auto', 'current_turn', 'all_turns']).nullish(),
      })
      .strict()
      .nullish(),
    stream: z.boolean().nullish(),
    stream_options: z.object({ include_obfuscation: z.boolean().optional() }).strict().nullish(),
    store: z.boolean().nullish(),
    metadata: z.record(z.string(), z.string()).nullish(),
    user: z.string().nullish(),
    safety_identifier: z.string().nullish(),
    prompt_cache_key: z.string().nullish(),
    prompt_cache_retention: z.string().nullish(),
    // Forwarded as the chat route forwards them (OpenAI-compatible upstreams get them, others ignore them).
    prompt_cache_options: z.record(z.string(), z.unknown()).nullish(),
    moderation: z.unknown().optional(),
    service_tier: z.string().nullish(),
    truncation: z.enum(['auto', 'disabled']).nullish(),
    // Limits calls to built-in (hosted) tools, which this gateway refuses: accepted and ignored.
    max_tool_calls: z.number().int().min(1).nullish(),
    // Server-side compaction of a stored conversation: not done here (truncation: "auto" is the
    // gateway's way to fit a window); accepted and ignored.
    context_management: z
      .array(z.object({ type: z.string(), compact_threshold: z.number().int().min(1000).nullish() }).strict())
      .min(1)
      .nullish(),
    // Continues a stored response (routes/responses.ts); the rest is server-side state this gateway
    // does not keep, refused below when set.
    previous_response_id: z.string().nullish(),
    conversation: z.unknown().optional(),
    background: z.boolean().nullish(),
    prompt: z.unknown().optional(),
    ...extensionFields,
  })
  .strict();

type CreateResponseBody = z.infer<typeof createResponseSchema>;

/** The request's settings a Response object reports back (OpenAI echoes them). */
export interface ResponseEcho {
  model: string;
  instructions: string | null;
  tools: unknown[];
  tool_choice: unknown;
  parallel_tool_calls: boolean;
  text: { format: Record<string, unknown>; verbosity?: string };
  max_output_tokens: number | null;
  temperature: number;
  top_p: number;
  top_logprobs: number;
  metadata: Record<string, string>;
  user: string | null;
  truncation: 'auto' | 'disabled';
  reasoning: { effort: string | null; summary: string | null };
  store: boolean;
  previous_response_id: string | null;
  /** `include` asked for the output text's log-probabilities. */
  logprobs: boolean;
}

const refuse = (param: string, message: string) => new GatewayError('invalid_value', { param, message });

/**
 * A Responses body as a canonical chat request, with what the Response object echoes back. The request as canonical: `req` (instructions first, then the input), plus the instructions and
 * the input apart, so a stored conversation can go between them.
 */
export function responsesToCanonical(body: unknown): { body: CreateResponseBody; req: ChatRequest; echo: ResponseEcho; instructions?: ChatMessage; input: ChatMessage[] } {
  const parsed = createResponseSchema.safeParse(body);
  if (!parsed.success) throw validationError(parsed.error, body);
  const b = parsed.data;
  if (b.conversation !== undefined && b.conversation !== null) throw refuse('conversation', 'This gateway does not store conversations: send the whole conversation in `input`.');
  if (b.background) throw refuse('background', 'Background responses are not supported by this gateway.');
  if (b.prompt !== undefined && b.prompt !== null) throw refuse('prompt', 'Stored prompt templates are not supported by this gateway.');

  const input = inputMessages(b.input);
  const instructions: ChatMessage | undefined = b.instructions ? { role: 'system', content: b.instructions } : undefined;
  const messages = instructions ? [instructions, ...input] : [...input];
  const { tools, choice } = toolsAndChoice(functionTools(b.tools), b.tool_choice);

  const req: ChatRequest = { model: b.model, messages };
  if (tools.length) req.tools = tools;
  // Chat completions refuse a tool_choice without tools ("only allowed when 'tools' are specified").
  if (choice && tools.length) req.tool_choice = choice;
  if (b.parallel_tool_calls !== undefined && b.parallel_tool_calls !== null && tools.length) req.parallel_tool_calls = b.parallel_tool_calls;
  const format = b.text?.format ? toResponseFormat(b.text.format) : undefined;
  if (format) req.response_format = format;
  if (b.text?.verbosity) req.verbosity = b.text.verbosity;
  // max_completion_tokens: reasoning models refuse max_tokens, and Responses clients cannot choose.
  if (b.max_output_tokens) req.max_completion_tokens = b.max_output_tokens;
  if (b.temperature !== undefined && b.temperature !== null) req.temperature = b.temperature;
  if (b.top_p !== undefined && b.top_p !== null) req.top_p = b.top_p;
  const logprobs = b.include?.includes('message.output_text.logprobs') === true;
  if (logprobs) {
    req.logprobs = true;
    if (b.top_logprobs) req.top_logprobs = b.top_logprobs;
  }
  if (b.reasoning?.effort) req.reasoning_effort = b.reasoning.effort;
  if (b.user) req.user = b.user;
  // metadata is the request context's and the echo's: OpenAI refuses it upstream without store.
  if (b.safety_identifier) req.safety_identifier = b.safety_identifier;
  if (b.prompt_cache_key) req.prompt_cache_key = b.prompt_cache_key;
  if (b.prompt_cache_retention) req.prompt_cache_retention = b.prompt_cache_retention;
  if (b.prompt_cache_options) req.prompt_cache_options = b.prompt_cache_options;
  if (b.moderation !== undefined && b.moderation !== null) req.moderation = b.moderation;
  if (b.service_tier) req.service_tier = b.service_tier;
  if (b.stream) req.stream = true;

  const echo: ResponseEcho = {
    model: b.model,
    instructions: b.instructions ?? null,
    tools: (b.tools ?? []).map((t) => ({ ...t, strict: (t as { strict?: boolean | null }).strict ?? true })),
    tool_choice: b.tool_choice ?? 'auto',
    parallel_tool_calls: b.parallel_tool_calls ?? true,
    text: { format: (b.text?.format as Record<string, unknown> | undefined) ?? { type: 'text' }, ...(b.text?.verbosity ? { verbosity: b.text.verbosity } : {}) },
    max_output_tokens: b.max_output_tokens ?? null,
    temperature: b.temperature ?? 1,
    top_p: b.top_p ?? 1,
    top_logprobs: b.top_logprobs ?? 0,
    metadata: b.metadata ?? {},
    user: b.user ?? null,
    truncation: b.truncation ?? 'disabled',
    reasoning: { effort: b.reasoning?.effort ?? null, summary: b.reasoning?.summary ?? null },
    store: b.store ?? true,
    previous_response_id: b.previous_response_id ?? null,
    logprobs,
  };
  return { body: b, req, echo, ...(instructions ? { instructions } : {}), input };
}

/** The request's input as chat messages (without instructions). */
function inputMessages(input: CreateResponseBody['input'] | null | undefined): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (typeof input === 'string') messages.push({ role: 'user', content: input });
  else input?.forEach((item, i) => addItem(messages, item, `input.${i}`));
  return messages;
}

/** Function tools in the chat form; a hosted tool is refused. */
function functionTools(tools: CreateResponseBody['tools']): ToolDefinition[] {
  return (tools ?? []).map((f, i) => {
    if (!isFunctionTool(f)) throw refuse(`tools.${i}.type`, `The built-in tool "${f.type}" is not supported by this gateway; only function tools are.`);
    return {
      type: 'function' as const,
      function: {
        name: f.name,
        ...(f.description ? { description: f.description } : {}),
        ...(f.parameters ? { parameters: f.parameters } : {}),
        ...(f.strict !== undefined && f.strict !== null ? { strict: f.strict } : {}),
      },
    };
  });
}

/**
 * POST /v1/responses/input_tokens (`client.responses.inputTokens.count`): OpenAI's TokenCountsBody —
 * the create request's input-side fields, every one optional.
 */
export const tokenCountsSchema = createResponseSchema
  .pick({ input: true, previous_response_id: true, tools: true, text: true, reasoning: true, truncation: true, instructions: true, conversation: true, tool_choice: true, parallel_tool_calls: true })
  .extend({
    model: z.string().nullish(),
    input: z.union([z.string(), z.array(inputItem)]).nullish(),
    personality: z.string().max(64).nullish(),
  })
  .strict();

/** A token-count body as what the model would be sent: its instructions, input messages and tools. */
export function tokenCountsToCanonical(body: unknown): { previous_response_id?: string; instructions?: ChatMessage; input: ChatMessage[]; tools: ToolDefinition[] } {
  const parsed = tokenCountsSchema.safeParse(body ?? {});
  if (!parsed.success) throw validationError(parsed.error, body);
  const b = parsed.data;
  if (b.conversation !== undefined && b.conversation !== null) throw refuse('conversation', 'This gateway does not store conversations: send the whole conversation in `input`.');
  // As create makes them: a hosted tool choice refused, allowed_tools narrowing the tools counted.
  const { tools } = toolsAndChoice(functionTools(b.tools), b.tool_choice);
  return {
    ...(b.previous_response_id ? { previous_response_id: b.previous_response_id } : {}),
    ...(b.instructions ? { instructions: { role: 'system' as const, content: b.instructions } } : {}),
    input: inputMessages(b.input),
    tools,
  };
}

/**
 * `truncation: "auto"`: the longest tail of `conversation` that `fits`, dropping whole turns from the
 * start — each cut falls just before a user message, so a function call never loses its output. The
 * last user turn onwards is always kept (when even that does not fit, routing answers
 * context_length_exceeded); a conversation without a user message after its first is kept whole.
 * `fits` is monotone in the tail's length, so the cut is found by binary search.
 */
export function truncateConversation(conversation: ChatMessage[], fits: (tail: ChatMessage[]) => boolean): ChatMessage[] {
  if (fits(conversation)) return conversation;
  const cuts: number[] = [];
  conversation.forEach((m, i) => {
    if (i > 0 && m.role === 'user') cuts.push(i);
  });
  if (cuts.length === 0) return conversation;
  // The first cut whose tail fits; the last cut when none does.
  let lo = 0;
  let hi = cuts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (fits(conversation.slice(cuts[mid]))) hi = mid;
    else lo = mid + 1;
  }
  return conversation.slice(cuts[lo]);
}

function addItem(messages: ChatMessage[], item: z.infer<typeof inputItem>, path: string): void {
  if (!('type' in item) || item.type === undefined || item.type === 'message') {
    const m = item as z.infer<typeof messageItem>;
    if (m.role === 'assistant') {
      const text = typeof m.content === 'string' ? m.content : m.content.map((p, k) => assistantText(p, `${path}.content.${k}`)).join('');
      messages.push({ role: 'assistant', content: text });
      return;
    }
    const content = typeof m.content === 'string' ? m.content : m.content.map((p, k) => inputPart(p, `${path}.content.${k}`));
    // As in Chat Completions, documents belong to user turns (providers read system prompts as text).
    if (m.role !== 'user' && Array.isArray(content) && content.some((p) => p.type === 'file')) {
      throw refuse(`${path}.content`, `A ${m.role} message cannot carry input_file; put documents in a user message.`);
    }
    messages.push({ role: m.role, content });
    return;
  }
  switch (item.type) {
    case 'function_call': {
      const call = { id: item.call_id, type: 'function' as const, function: { name: item.name, arguments: item.arguments } };
      // Parallel calls arrive as consecutive items: one assistant turn carries them all.
      const last = messages[messages.length - 1];
      if (last?.role === 'assistant') last.tool_calls = [...(last.tool_calls ?? []), call];
      else messages.push({ role: 'assistant', content: null, tool_calls: [call] });
      return;
    }
    case 'function_call_output': {
      const content = typeof item.output === 'string' ? item.output : item.output.map((p, k) => outputPartText(p, `${path}.output.${k}`)).join('');
      messages.push({ role: 'tool', tool_call_id: item.call_id, content });
      return;
    }
    case 'reasoning':
      return;
    case 'item_reference':
      throw refuse(`${path}.id`, 'Items cannot be referenced by id here: send the item itself (or continue with previous_response_id).');
  }
}

function inputPart(p: z.infer<typeof contentPart>, path: string): ContentPart {
  switch (p.type) {
    case 'input_text':
    case 'output_text':
      return { type: 'text', text: p.text };
    case 'input_image':
      if (!p.image_url) {
        if (p.file_id) throw refuse(`${path}.file_id`, 'Images by file_id are not supported by this gateway: send `image_url` (a URL or a data: URL).');
        throw refuse(`${path}.image_url`, '`image_url` must be a URL or a data: URL.');
      }
      return { type: 'image_url', image_url: { url: p.image_url, ...(p.detail ? { detail: p.detail } : {}) } };
    case 'input_file': {
      // Inline documents only: by id or URL they would have to be fetched from elsewhere.
      if (!p.file_data) throw refuse(`${path}.file_data`, 'Send the document inline as `file_data` (a base64 data: URL); files by id or URL are not supported by this gateway.');
      // A data: URL must be a base64 one (what every adapter sends on); bare base64 is taken as a PDF.
      if (p.file_data.startsWith('data:') && !parseDataUrl(p.file_data)) throw refuse(`${path}.file_data`, 'must be a base64 data: URL (data:application/pdf;base64,…) or bare base64.');
      const data = p.file_data.startsWith('data:') ? p.file_data : `data:application/pdf;base64,${p.file_data}`;
      return { type: 'file', file: { file_data: data, filename: p.filename || 'document.pdf' } };
    }
    case 'refusal':
      return { type: 'text', text: p.refusal };
  }
}

function assistantText(p: z.infer<typeof contentPart>, path: string): string {
  if (p.type === 'output_text' || p.type === 'input_text') return p.text;
  if (p.type === 'refusal') return p.refusal;
  throw refuse(`${path}.type`, `An assistant message cannot contain "${p.type}".`);
}

function outputPartText(p: z.infer<typeof contentPart>, path: string): string {
  const part = inputPart(p, path);
  if (part.type === 'text') return part.text;
  throw refuse(`${path}.type`, 'A function call output may carry text only here.');
}

/** Only a tool that passed `functionTool` has type "function" (`hostedTool` excludes it). */
function isFunctionTool(t: z.infer<typeof functionTool> | z.infer<typeof hostedTool>): t is z.infer<typeof functionTool> {
  return t.type === 'function';
}

/**
 * The request's tools and its canonical choice. `{type: "allowed_tools", mode, tools: [{type:
 * "function", name}]}` narrows the tools to the allowed ones and becomes `mode`, as on chat
 * completions (every provider honours it); naming a tool the request does not define, or a hosted
 * one, is a 400.
 */
function toolsAndChoice(tools: ToolDefinition[], c: z.infer<typeof toolChoice> | null | undefined): { tools: ToolDefinition[]; choice?: ToolChoice } {
  if (!c) return { tools };
  // The hosted-choice variant refuses the type, so this is the allowed_tools variant.
  if (typeof c !== 'string' && c.type === 'allowed_tools') {
    const { mode, tools: allowed } = c as z.infer<typeof allowedToolsChoice>;
    const names = allowed.map((t) => t.name);
    const narrowed = narrowToAllowedTools(tools, names);
    if ('undefinedAt' in narrowed) throw refuse(`tool_choice.tools.${narrowed.undefinedAt}.name`, `tool_choice allows "${names[narrowed.undefinedAt]}", which is not among the request's tools.`);
    return { tools: narrowed.tools, choice: mode };
  }
  return { tools, choice: toToolChoice(c) };
}

function toToolChoice(c: z.infer<typeof toolChoice>): ToolChoice {
  if (typeof c === 'string') return c;
  if (c.type === 'function' && typeof c.name === 'string') return { type: 'function', function: { name: c.name } };
  throw refuse('tool_choice', `tool_choice of type "${c.type}" is not supported by this gateway; use none, auto, required or a function.`);
}

function toResponseFormat(f: z.infer<typeof textFormat>): ResponseFormat | undefined {
  if (f.type === 'text') return undefined;
  if (f.type === 'json_object') return { type: 'json_object' };
  return {
    type: 'json_schema',
    json_schema: { name: f.name, schema: f.schema, ...(f.description ? { description: f.description } : {}), ...(f.strict !== undefined && f.strict !== null ? { strict: f.strict } : {}) },
  };
}

// ---------------------------------------------------------------------------------------------
// Out: the Response object and the event stream.

type OutputText = { type: 'output_text'; text: string; annotations: never[]; logprobs: TokenLogprob[] };
type RefusalContent = { type: 'refusal'; refusal: string };
type MessageOutput = { type: 'message'; id: string; status: 'in_progress' | 'completed' | 'incomplete'; role: 'assistant'; content: (OutputText | RefusalContent)[] };
type FunctionCallOutput = { type: 'function_call'; id: string; call_id: string; name: string; arguments: string; status: 'in_progress' | 'completed' | 'incomplete' };
type ReasoningText = { type: 'reasoning_text'; text: string };
/**
 * The model's reasoning where the upstream gives it as text (the canonical `reasoning_content`:
 * vLLM, DeepSeek, Ollama, Gemini's and Cohere's thoughts, Claude's thinking): a `reasoning` item with
 * `reasoning_text` content, as OpenAI's open-weight models answer. No summary, nothing encrypted.
 */
type ReasoningOutput = { type: 'reasoning'; id: string; summary: never[]; content: ReasoningText[]; status: 'in_progress' | 'completed' | 'incomplete' };
type OutputItem = MessageOutput | FunctionCallOutput | ReasoningOutput;

const newId = (prefix: string) => `${prefix}_${randomHex(12)}`;

/**
 * A new `resp_…` id for every answer: stored responses are looked up by it, and an upstream's own id
 * need not be unique (a cache hit, the simulator's per-prompt ids, servers that send none).
 */
function responseId(): string {
  return `resp_${randomHex(16)}`; // longer than newId's: a stored response's id is its only key
}

function usageOf(u: Usage | undefined) {
  const input = u?.prompt_tokens ?? 0;
  const output = u?.completion_tokens ?? 0;
  // The Responses API always carries the details: zero where the upstream reported none.
  const cache = u?.prompt_tokens_details;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: cache?.cached_tokens ?? 0, cache_write_tokens: cache?.cache_write_tokens ?? 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: u?.completion_tokens_details?.reasoning_tokens ?? 0 },
    total_tokens: u?.total_tokens ?? input + output,
  };
}

function statusOf(finish: string | null | undefined): { status: 'completed' | 'incomplete'; incomplete_details: { reason: string } | null } {
  if (finish === 'length') return { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } };
  if (finish === 'content_filter') return { status: 'incomplete', incomplete_details: { reason: 'content_filter' } };
  return { status: 'completed', incomplete_details: null };
}

function responseObject(
  id: string,
  createdAt: number,
  model: string,
  echo: ResponseEcho,
  state: { status: 'in_progress' | 'completed' | 'incomplete' | 'failed'; incomplete_details: { reason: string } | null; output: OutputItem[]; usage: ReturnType<typeof usageOf> | null; error?: { code: string; message: string } | null },
) {
  const { logprobs: _logprobs, model: _model, user, ...echoed } = echo;
  return {
    id,
    object: 'response' as const,
    created_at: createdAt,
    status: state.status,
    completed_at: state.status === 'completed' ? Math.floor(Date.now() / 1000) : null,
    error: state.error ?? null,
    incomplete_details: state.incomplete_details,
    model,
    output: state.output,
    // Absent while in progress (the published schema has no null usage).
    ...(state.usage ? { usage: state.usage } : {}),
    ...(user ? { user } : {}),
    ...echoed,
  };
}

export type ResponseObject = ReturnType<typeof responseObject>;

/** A Response's output as the assistant turn of a stored conversation (text and function calls). */
export function assistantTurn(output: readonly OutputItem[]): ChatMessage | undefined {
  let text = '';
  const calls: NonNullable<ChatMessage['tool_calls']> = [];
  for (const item of output) {
    if (item.type === 'message') for (const c of item.content) text += c.type === 'output_text' ? c.text : c.refusal;
    else if (item.type === 'reasoning') continue; // not replayed to the model, as input reasoning items are not
    else calls.push({ id: item.call_id, type: 'function', function: { name: item.name, arguments: item.arguments } });
  }
  if (!text && calls.length === 0) return undefined;
  return { role: 'assistant', content: text || null, ...(calls.length ? { tool_calls: calls } : {}) };
}

/** The Response object of a finished answer (its first choice: Responses has no `n`). */
export function canonicalToResponse(result: ChatResult, echo: ResponseEcho) {
  const choice = result.choices[0];
  const output: OutputItem[] = [];
  const { status, incomplete_details } = statusOf(choice?.finish_reason);
  if (choice) {
    if (choice.message.reasoning_content) {
      output.push({ type: 'reasoning', id: newId('rs'), summary: [], content: [{ type: 'reasoning_text', text: choice.message.reasoning_content }], status: 'completed' });
    }
    const content: (OutputText | RefusalContent)[] = [];
    if (choice.message.content) content.push({ type: 'output_text', text: choice.message.content, annotations: [], logprobs: echo.logprobs ? (choice.logprobs?.content ?? []) : [] });
    if (choice.message.refusal) content.push({ type: 'refusal', refusal: choice.message.refusal });
    if (content.length) output.push({ type: 'message', id: newId('msg'), status: status === 'completed' ? 'completed' : 'incomplete', role: 'assistant', content });
    for (const call of choice.message.tool_calls ?? []) {
      output.push({ type: 'function_call', id: newId('fc'), call_id: call.id, name: call.function.name, arguments: call.function.arguments, status: 'completed' });
    }
  }
  return responseObject(responseId(), result.created, result.model, echo, { status, incomplete_details, output, usage: usageOf(result.usage) });
}

/** The Responses event sequence for a chunk stream; `error()` renders a failure after it started. */
export class ResponseEventWriter {
  private seq = 0;
  private readonly id = responseId();
  private createdAt = Math.floor(Date.now() / 1000);
  private model: string;
  private readonly output: OutputItem[] = [];
  private message?: { item: MessageOutput; index: number; part?: { content: number; kind: 'text' | 'refusal'; value: string; logprobs: TokenLogprob[] } };
  private readonly calls = new Map<number, { item: FunctionCallOutput; index: number; open: boolean }>();
  private reasoningItem?: { item: ReasoningOutput; index: number; text: string };
  private usage: Usage | undefined;
  private finish: string | null = null;

  constructor(
    private readonly echo: ResponseEcho,
    /** Called with the finished Response (to store it), awaited before response.completed goes out. */
    private readonly onDone?: (response: ResponseObject) => Promise<void>,
  ) {
    this.model = echo.model;
  }

  async *events(chunks: AsyncIterable<ChatChunk>): AsyncGenerator<SseEvent> {
    let started = false;
    for await (const chunk of chunks) {
      if (!started) {
        started = true;
        this.createdAt = chunk.created || this.createdAt;
        this.model = chunk.model || this.model;
        yield* this.start();
      }
      if (chunk.usage) this.usage = chunk.usage;
      const c = chunk.choices.find((x) => x.index === 0);
      if (!c) continue;
      if (c.delta.reasoning_content) yield* this.reasoning(c.delta.reasoning_content);
      if (c.delta.content) yield* this.text('text', c.delta.content, c.logprobs?.content ?? []);
      if (c.delta.refusal) yield* this.text('refusal', c.delta.refusal, []);
      for (const t of c.delta.tool_calls ?? []) yield* this.toolCall(t.index, t.id, t.function?.name, t.function?.arguments);
      if (c.finish_reason) this.finish = c.finish_reason;
    }
    if (!started) yield* this.start();
    const { status, incomplete_details } = statusOf(this.finish);
    yield* this.closeReasoning(status === 'completed' ? 'completed' : 'incomplete');
    yield* this.closeMessage(status === 'completed' ? 'completed' : 'incomplete');
    yield* this.closeCalls();
    const response = responseObject(this.id, this.createdAt, this.model, this.echo, { status, incomplete_details, output: this.output, usage: usageOf(this.usage) });
    await this.onDone?.(response);
    yield* this.emit(status === 'completed' ? 'response.completed' : 'response.incomplete', { response });
  }

  private *start(): Generator<SseEvent> {
    yield* this.emit('response.created', { response: this.snapshot('in_progress') });
    yield* this.emit('response.in_progress', { response: this.snapshot('in_progress') });
  }

  /** A failure after the stream started: Responses' `error` event (the SDK raises it). */
  error(err: GatewayError): SseEvent {
    return { event: 'error', data: JSON.stringify({ type: 'error', code: err.code, message: err.message, param: err.param ?? null, sequence_number: this.seq++ }) };
  }

  /** Reasoning text: one `reasoning` item, open until the answer's text or a call begins. */
  private *reasoning(delta: string): Generator<SseEvent> {
    if (!this.reasoningItem) {
      yield* this.closeMessage('completed');
      yield* this.closeCalls();
      const item: ReasoningOutput = { type: 'reasoning', id: newId('rs'), summary: [], content: [], status: 'in_progress' };
      this.reasoningItem = { item, index: this.output.length, text: '' };
      this.output.push(item);
      yield* this.emit('response.output_item.added', { output_index: this.reasoningItem.index, item: { ...item, content: [] } });
      yield* this.emit('response.content_part.added', { item_id: item.id, output_index: this.reasoningItem.index, content_index: 0, part: { type: 'reasoning_text', text: '' } });
    }
    const r = this.reasoningItem;
    r.text += delta;
    yield* this.emit('response.reasoning_text.delta', { item_id: r.item.id, output_index: r.index, content_index: 0, delta });
  }

  private *closeReasoning(status: 'completed' | 'incomplete'): Generator<SseEvent> {
    const r = this.reasoningItem;
    if (!r) return;
    this.reasoningItem = undefined;
    const where = { item_id: r.item.id, output_index: r.index, content_index: 0 };
    const part: ReasoningText = { type: 'reasoning_text', text: r.text };
    yield* this.emit('response.reasoning_text.done', { ...where, text: r.text });
    yield* this.emit('response.content_part.done', { ...where, part });
    r.item.content.push(part);
    r.item.status = status;
    yield* this.emit('response.output_item.done', { output_index: r.index, item: r.item });
  }

  private *text(kind: 'text' | 'refusal', delta: string, logprobs: TokenLogprob[]): Generator<SseEvent> {
    yield* this.closeReasoning('completed');
    yield* this.closeCalls();
    if (!this.message) {
      const item: MessageOutput = { type: 'message', id: newId('msg'), status: 'in_progress', role: 'assistant', content: [] };
      this.message = { item, index: this.output.length };
      this.output.push(item);
      yield* this.emit('response.output_item.added', { output_index: this.message.index, item: { ...item, content: [] } });
    }
    const m = this.message;
    if (m.part && m.part.kind !== kind) yield* this.closePart();
    if (!m.part) {
      m.part = { content: m.item.content.length, kind, value: '', logprobs: [] };
      const part = kind === 'text' ? { type: 'output_text', text: '', annotations: [], logprobs: [] } : { type: 'refusal', refusal: '' };
      yield* this.emit('response.content_part.added', { item_id: m.item.id, output_index: m.index, content_index: m.part.content, part });
    }
    m.part.value += delta;
    const where = { item_id: m.item.id, output_index: m.index, content_index: m.part.content };
    if (kind === 'text') {
      const lp = this.echo.logprobs ? logprobs : [];
      m.part.logprobs.push(...lp);
      yield* this.emit('response.output_text.delta', { ...where, delta, logprobs: lp });
    } else {
      yield* this.emit('response.refusal.delta', { ...where, delta });
    }
  }

  private *closePart(): Generator<SseEvent> {
    const m = this.message;
    if (!m?.part) return;
    const where = { item_id: m.item.id, output_index: m.index, content_index: m.part.content };
    let part: OutputText | RefusalContent;
    if (m.part.kind === 'text') {
      part = { type: 'output_text', text: m.part.value, annotations: [], logprobs: m.part.logprobs };
      yield* this.emit('response.output_text.done', { ...where, text: m.part.value, logprobs: m.part.logprobs });
    } else {
      part = { type: 'refusal', refusal: m.part.value };
      yield* this.emit('response.refusal.done', { ...where, refusal: m.part.value });
    }
    m.item.content.push(part);
    yield* this.emit('response.content_part.done', { ...where, part });
    m.part = undefined;
  }

  private *closeMessage(status: 'completed' | 'incomplete'): Generator<SseEvent> {
    if (!this.message) return;
    yield* this.closePart();
    this.message.item.status = status;
    yield* this.emit('response.output_item.done', { output_index: this.message.index, item: this.message.item });
    this.message = undefined;
  }

  private *toolCall(index: number, callId: string | undefined, name: string | undefined, args: string | undefined): Generator<SseEvent> {
    let call = this.calls.get(index);
    if (!call) {
      yield* this.closeReasoning('completed');
      yield* this.closeMessage('completed');
      // Earlier calls stay open until the answer ends: an upstream may still send their arguments.
      const item: FunctionCallOutput = { type: 'function_call', id: newId('fc'), call_id: callId ?? newId('call'), name: name ?? '', arguments: '', status: 'in_progress' };
      call = { item, index: this.output.length, open: true };
      this.calls.set(index, call);
      this.output.push(item);
      yield* this.emit('response.output_item.added', { output_index: call.index, item: { ...item } });
    } else if (name) {
      call.item.name += name;
    }
    if (args) {
      call.item.arguments += args;
      yield* this.emit('response.function_call_arguments.delta', { item_id: call.item.id, output_index: call.index, delta: args });
    }
  }

  private *closeCalls(): Generator<SseEvent> {
    for (const call of this.calls.values()) {
      if (!call.open) continue;
      call.open = false;
      call.item.status = 'completed';
      yield* this.emit('response.function_call_arguments.done', { item_id: call.item.id, output_index: call.index, name: call.item.name, arguments: call.item.arguments });
      yield* this.emit('response.output_item.done', { output_index: call.index, item: call.item });
    }
  }

  private snapshot(status: 'in_progress') {
    return responseObject(this.id, this.createdAt, this.model, this.echo, { status, incomplete_details: null, output: [], usage: null });
  }

  private *emit(type: string, fields: Record<string, unknown>): Generator<SseEvent> {
    yield { event: type, data: JSON.stringify({ type, ...fields, sequence_number: this.seq++ }) };
  }
}

// ---------------------------------------------------------------------------------------------
// Stored responses read back: their input items, and their event stream replayed.

/** An input item as OpenAI lists it (`ItemResource`): with its id and a status. */
export type InputItemResource = { id: string; type: string } & Record<string, unknown>;

/**
 * The ids of a request's input items as GET /v1/responses/{id}/input_items lists them: the id each
 * came with, or a new one. Reasoning items are not listed (they are not given to the model); item
 * references are refused.
 */
export function inputItemIds(input: CreateResponseBody['input']): string[] {
  if (typeof input === 'string') return [newId('msg')];
  const ids: string[] = [];
  for (const item of input) {
    if (!('type' in item) || item.type === undefined || item.type === 'message') ids.push((item as z.infer<typeof messageItem>).id ?? newId('msg'));
    else if (item.type === 'function_call') ids.push(item.id ?? newId('fc'));
    else if (item.type === 'function_call_output') ids.push(item.id ?? newId('fco'));
  }
  return ids;
}


function inputContent(content: ChatMessage['content']): Record<string, unknown>[] {
  if (typeof content === 'string') return [{ type: 'input_text', text: content }];
  return (content ?? []).map((p) => {
    if (p.type === 'text') return { type: 'input_text', text: p.text };
    if (p.type === 'image_url') return { type: 'input_image', image_url: p.image_url.url, file_id: null, detail: p.image_url.detail ?? 'auto' };
    return { type: 'input_file', file_data: p.file.file_data, ...(p.file.filename ? { filename: p.file.filename } : {}) };
  });
}

/**
 * A request's input as listed items (`ItemResource`s), from the chat messages it became — the stored
 * conversation holds them once, so an entry does not carry inline images and documents twice. Each
 * input item became one message or one tool call of a turn, in order, so the items come back in
 * the order they were given, with `ids` (inputItemIds) matched from the end: a conversation that
 * `truncation: "auto"` cut keeps the input's tail. As the model saw them: an assistant message's
 * parts as one text, a function output's parts as one text, a bare base64 document as a data URL.
 */
export function inputItemsOf(messages: readonly ChatMessage[], ids: readonly string[]): InputItemResource[] {
  const items: ({ type: string } & Record<string, unknown>)[] = [];
  for (const m of messages) {
    if (m.role === 'assistant') {
      if (m.content !== null && m.content !== undefined) {
        items.push({ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: contentText(m.content), annotations: [], logprobs: [] }] });
      }
      for (const call of m.tool_calls ?? []) items.push({ type: 'function_call', call_id: call.id, name: call.function.name, arguments: call.function.arguments, status: 'completed' });
    } else if (m.role === 'tool') {
      items.push({ type: 'function_call_output', call_id: m.tool_call_id ?? '', output: contentText(m.content), status: 'completed' });
    } else {
      items.push({ type: 'message', role: m.role, status: 'completed', content: inputContent(m.content) });
    }
  }
  const skip = ids.length - items.length;
  return items.map((item, i) => ({ id: ids[skip + i] ?? newId('item'), ...item }));
}

/**
 * GET /v1/responses/{id}?stream=true: a stored response replayed as the event sequence a streamed
 * create sends — each part's text and each call's arguments as one delta — numbered from 0; with
 * `startingAfter`, only the events after that sequence number.
 */
export function* replayEvents(response: Record<string, unknown>, startingAfter = -1): Generator<SseEvent> {
  let seq = 0;
  function* emit(type: string, fields: Record<string, unknown>): Generator<SseEvent> {
    const n = seq++;
    if (n > startingAfter) yield { event: type, data: JSON.stringify({ type, ...fields, sequence_number: n }) };
  }
  const { usage: _usage, ...rest } = response;
  const start = { ...rest, status: 'in_progress', completed_at: null, output: [] };
  yield* emit('response.created', { response: start });
  yield* emit('response.in_progress', { response: start });
  const output = Array.isArray(response.output) ? (response.output as OutputItem[]) : [];
  for (const [index, item] of output.entries()) {
    if (item.type === 'function_call') {
      yield* emit('response.output_item.added', { output_index: index, item: { ...item, arguments: '', status: 'in_progress' } });
      const where = { item_id: item.id, output_index: index };
      if (item.arguments) yield* emit('response.function_call_arguments.delta', { ...where, delta: item.arguments });
      yield* emit('response.function_call_arguments.done', { ...where, name: item.name, arguments: item.arguments });
    } else if (item.type === 'reasoning') {
      yield* emit('response.output_item.added', { output_index: index, item: { ...item, status: 'in_progress', content: [] } });
      for (const [content, part] of (item.content ?? []).entries()) {
        const where = { item_id: item.id, output_index: index, content_index: content };
        yield* emit('response.content_part.added', { ...where, part: { type: 'reasoning_text', text: '' } });
        yield* emit('response.reasoning_text.delta', { ...where, delta: part.text });
        yield* emit('response.reasoning_text.done', { ...where, text: part.text });
        yield* emit('response.content_part.done', { ...where, part });
      }
    } else {
      yield* emit('response.output_item.added', { output_index: index, item: { ...item, status: 'in_progress', content: [] } });
      for (const [content, part] of item.content.entries()) {
        const where = { item_id: item.id, output_index: index, content_index: content };
        if (part.type === 'output_text') {
          yield* emit('response.content_part.added', { ...where, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } });
          yield* emit('response.output_text.delta', { ...where, delta: part.text, logprobs: part.logprobs ?? [] });
          yield* emit('response.output_text.done', { ...where, text: part.text, logprobs: part.logprobs ?? [] });
        } else {
          yield* emit('response.content_part.added', { ...where, part: { type: 'refusal', refusal: '' } });
          yield* emit('response.refusal.delta', { ...where, delta: part.refusal });
          yield* emit('response.refusal.done', { ...where, refusal: part.refusal });
        }
        yield* emit('response.content_part.done', { ...where, part });
      }
    }
    yield* emit('response.output_item.done', { output_index: index, item });
  }
  yield* emit(response.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response });
}
