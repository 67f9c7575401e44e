// zod schemas of the OpenAI-compatible request bodies the gateway accepts: OpenAI's own parameters
// with OpenAI's ranges (unknown ones are rejected, as OpenAI does) plus the gateway's extension
// fields (difficulty, priority, session_id, …) which the route strips before the canonical request.
import { z } from 'zod';

const text = z.string();
/**
 * A prompt-cache breakpoint on a part or a tool (Anthropic's `cache_control`, as LiteLLM and
 * OpenRouter clients send it in OpenAI-shaped requests): kept for Anthropic upstreams, removed
 * before any other upstream sees the request.
 */
const cacheControl = z.object({ type: z.literal('ephemeral'), ttl: z.enum(['5m', '1h']).optional() }).strict().optional();

/**
 * OpenAI's explicit prompt-cache breakpoint on a content part (`{mode: "explicit"}`, the spec's
 * PromptCacheBreakpointParam): accepted and removed by `withoutBreakpoint`, so no upstream sees it.
 * The canonical part has no field for it, and it is not turned into `cache_control`: OpenAI reads up
 * to 80 breakpoints in a conversation, Anthropic refuses more than 4.
 */
const promptCacheBreakpoint = z.object({ mode: z.literal('explicit') }).strict().optional();

/** The part without its `prompt_cache_breakpoint` (the same object when it has none). */
function withoutBreakpoint<T extends { prompt_cache_breakpoint?: unknown }>(part: T): Omit<T, 'prompt_cache_breakpoint'> {
  if (!('prompt_cache_breakpoint' in part)) return part;
  const { prompt_cache_breakpoint: _breakpoint, ...rest } = part;
  return rest;
}

/** A document inline: `file_data` a base64 data URL (`data:application/pdf;base64,…`). Files by id are refused. */
const filePart = z
  .object({
    type: z.literal('file'),
    file: z
      .object({
        file_data: z.string().regex(/^data:[\w.+-]+\/[\w.+-]+(;[^;,]+)*;base64,/, 'must be a base64 data: URL (data:application/pdf;base64,…)').optional(),
        filename: z.string().optional(),
        file_id: z.string().optional(),
      })
      .strict()
      .refine((f) => f.file_data !== undefined, { message: 'send the document as `file_data` (files by `file_id` are not supported by this gateway)' }),
    cache_control: cacheControl,
    prompt_cache_breakpoint: promptCacheBreakpoint,
  })
  .strict()
  .transform(withoutBreakpoint);

const contentPart = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text'), text, cache_control: cacheControl, prompt_cache_breakpoint: promptCacheBreakpoint }).strict().transform(withoutBreakpoint),
  z
    .object({
      type: z.literal('image_url'),
      image_url: z.object({ url: z.string().min(1), detail: z.enum(['auto', 'low', 'high']).optional() }).strict(),
      cache_control: cacheControl,
      prompt_cache_breakpoint: promptCacheBreakpoint,
    })
    .strict()
    .transform(withoutBreakpoint),
]);
/** User turns may also carry documents (as in OpenAI's API). */
const userContentPart = z.discriminatedUnion('type', [...contentPart.options, filePart]);
/** An assistant turn sent back as history may hold its refusal as a part (OpenAI's `refusal` content part). */
const assistantContentPart = z.discriminatedUnion('type', [...contentPart.options, z.object({ type: z.literal('refusal'), refusal: text }).strict()]);

const toolCall = z
  .object({
    id: z.string().min(1),
    type: z.literal('function'),
    function: z.object({ name: z.string().min(1), arguments: z.string() }).strict(),
  })
  .strict();

const message = z.discriminatedUnion('role', [
  z.object({ role: z.literal('system'), content: z.union([text, z.array(contentPart)]), name: z.string().optional() }).strict(),
  z.object({ role: z.literal('developer'), content: z.union([text, z.array(contentPart)]), name: z.string().optional() }).strict(),
  z.object({ role: z.literal('user'), content: z.union([text, z.array(userContentPart)]), name: z.string().optional() }).strict(),
  z
    .object({
      role: z.literal('assistant'),
      content: z.union([text, z.array(assistantContentPart)]).nullable().optional(),
      // Nullable as in the spec: a previous answer sent back as it came (Python's `message.model_dump()`)
      // carries `tool_calls: null`, `name: null`, `audio: null`, `function_call: null`, `annotations: []`.
      name: z.string().nullable().optional(),
      tool_calls: z.array(toolCall).nullable().optional(),
      refusal: z.string().nullable().optional(),
      audio: z.object({ id: z.string().min(1) }).strict().nullable().optional(),
      function_call: z.object({ name: z.string(), arguments: z.string() }).strict().nullable().optional(),
      annotations: z.array(z.unknown()).nullable().optional(),
      // The gateway's own answers carry the thinking's text (as LiteLLM and vLLM answer); dropped.
      reasoning_content: z.string().nullable().optional(),
    })
    .strict(),
  z
    .object({
      role: z.literal('tool'),
      content: z.union([text, z.array(contentPart)]),
      tool_call_id: z.string().min(1),
      // Not in the spec, but OpenAI accepts it and ignores it, and LangChain.js (every message's
      // `name`) and LangGraph's ToolNode send it; dropped before any upstream sees it.
      name: z.string().nullable().optional(),
    })
    .strict(),
  // The deprecated function-calling API's result turn (see legacy-functions.ts).
  z.object({ role: z.literal('function'), name: z.string().min(1), content: text.nullable() }).strict(),
]);

const functionName = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, underscores or dashes');

const toolDefinition = z
  .object({
    type: z.literal('function'),
    function: z
      .object({
        name: functionName,
        description: z.string().optional(),
        parameters: z.record(z.string(), z.unknown()).optional(),
        strict: z.boolean().nullable().optional(),
      })
      .strict(),
    cache_control: cacheControl,
  })
  .strict();

/** The deprecated `functions` / `function_call` parameters (OpenAI still accepts them); see legacy-functions.ts. */
const legacyFunction = z
  .object({ name: functionName, description: z.string().optional(), parameters: z.record(z.string(), z.unknown()).optional() })
  .strict();
const legacyFunctionCall = z.union([z.enum(['none', 'auto']), z.object({ name: z.string().min(1) }).strict()]);

const toolChoice = z.union([
  z.enum(['none', 'auto', 'required']),
  z.object({ type: z.literal('function'), function: z.object({ name: z.string().min(1) }).strict() }).strict(),
  // Constrains the model to some of `tools` (OpenAI's ChatCompletionAllowedToolsChoice); made
  // canonical by the route (allowedToolsChoice in openai.ts): those tools, and `mode` as the choice.
  z
    .object({
      type: z.literal('allowed_tools'),
      allowed_tools: z
        .object({
          mode: z.enum(['auto', 'required']),
          tools: z.array(z.object({ type: z.literal('function'), function: z.object({ name: z.string().min(1) }).strict() }).strict()).min(1),
        })
        .strict(),
    })
    .strict(),
]);

const responseFormat = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }).strict(),
  z.object({ type: z.literal('json_object') }).strict(),
  z
    .object({
      type: z.literal('json_schema'),
      json_schema: z
        .object({
          name: z.string().min(1),
          description: z.string().optional(),
          schema: z.record(z.string(), z.unknown()).optional(),
          strict: z.boolean().nullable().optional(),
        })
        .strict(),
    })
    .strict(),
]);

const stop = z.union([z.string(), z.array(z.string()).max(4)]).nullable();

/**
 * A test-time scaling level as docs/compute.md promises it: `easy`, `medium`, `hard`, `expert` or
 * `auto` in any case, or 1-4; the header `x-inferenceflow-difficulty` takes the same.
 */
export const difficultyField = z.union([
  z.string().regex(/^\s*(?:easy|medium|hard|expert|auto|[1-4])\s*$/i, { message: 'expected one of easy, medium, hard, expert, auto (any case) or 1-4' }),
  z.number().int().min(1).max(4),
]);

/** Gateway extension fields, accepted on every inference route. */
export const extensionFields = {
  difficulty: difficultyField.optional(),
  priority: z.enum(['low', 'normal', 'high']).optional(),
  session_id: z.string().max(256).optional(),
};

/**
 * The spec's int64 range. A JSON number beyond ±2^53 reaches the gateway already rounded to a double
 * (JSON.parse), and goes upstream as JavaScript writes that double — its shortest decimal form
 * (2^60 + 1 arrives as 2^60 and leaves as 1152921504606847000): an integer within int64, and the same
 * for the same body, so a seed still repeats an answer, though it is not the digits the client sent.
 * int64's limits parse to ±2^63, which would leave as ±9223372036854776000 — outside int64, refused
 * by an upstream — so they go as the double next to them inside it, written ±9223372036854775000.
 */
const INT64_LIMIT = 2 ** 63;
const LARGEST_INT64_DOUBLE = 2 ** 63 - 1024;
const seed = z
  .number()
  .min(-INT64_LIMIT)
  .max(INT64_LIMIT)
  .superRefine((v, ctx) => {
    if (!Number.isInteger(v)) ctx.addIssue({ code: 'invalid_type', expected: 'int', received: 'number', input: v, message: 'expected int, received number' });
  })
  .transform((v) => (v >= INT64_LIMIT ? LARGEST_INT64_DOUBLE : v <= -INT64_LIMIT ? -LARGEST_INT64_DOUBLE : v));

const sampling = {
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().min(0).max(1).nullable().optional(),
  n: z.number().int().min(1).max(128).nullable().optional(),
  stop: stop.optional(),
  seed: seed.nullable().optional(),
  user: z.string().optional(),
  presence_penalty: z.number().min(-2).max(2).nullable().optional(),
  frequency_penalty: z.number().min(-2).max(2).nullable().optional(),
  logit_bias: z.record(z.string(), z.number().min(-100).max(100)).nullable().optional(),
  stream: z.boolean().nullable().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional(), include_obfuscation: z.boolean().optional() }).strict().nullable().optional(),
};

export const chatCompletionSchema = z
  .object({
    model: z.string().min(1),
    messages: z.array(message).min(1),
    ...sampling,
    max_tokens: z.number().int().min(1).nullable().optional(),
    max_completion_tokens: z.number().int().min(1).nullable().optional(),
    tools: z.array(toolDefinition).max(128).optional(),
    tool_choice: toolChoice.optional(),
    parallel_tool_calls: z.boolean().optional(),
    functions: z.array(legacyFunction).min(1).max(128).optional(),
    function_call: legacyFunctionCall.optional(),
    response_format: responseFormat.optional(),
    logprobs: z.boolean().nullable().optional(),
    top_logprobs: z.number().int().min(0).max(20).nullable().optional(),
    metadata: z.record(z.string(), z.string()).nullable().optional(),
    store: z.boolean().nullable().optional(),
    reasoning_effort: z.enum(['none', 'minimal', 'low', 'medium', 'high', 'xhigh', 'max']).nullable().optional(),
    service_tier: z.string().nullable().optional(),
    // Current OpenAI parameters the gateway does not interpret: accepted and passed to OpenAI-compatible
    // upstreams as they are (other providers ignore them); the ones that change the answer are in the cache key.
    verbosity: z.enum(['low', 'medium', 'high']).nullable().optional(),
    modalities: z.array(z.enum(['text', 'audio'])).nullable().optional(),
    audio: z.record(z.string(), z.unknown()).nullable().optional(),
    prediction: z.record(z.string(), z.unknown()).nullable().optional(),
    web_search_options: z.record(z.string(), z.unknown()).nullable().optional(),
    moderation: z.unknown().optional(),
    prompt_cache_key: z.string().nullable().optional(),
    prompt_cache_retention: z.string().nullable().optional(),
    prompt_cache_options: z.record(z.string(), z.unknown()).nullable().optional(),
    safety_identifier: z.string().nullable().optional(),
    ...extensionFields,
  })
  .strict();

export type ChatCompletionBody = z.infer<typeof chatCompletionSchema>;

/** A token id of the deployment's tokenizer, as OpenAI's legacy `prompt` takes them. */
const tokenId = z.number().int().min(0).max(2 ** 31 - 1);

export const completionSchema = z
  .object({
    model: z.string().min(1),
    // Text, several texts, token ids, or several prompts of token ids (OpenAI's four forms).
    prompt: z.union([z.string(), z.array(z.string()).min(1), z.array(tokenId).min(1), z.array(z.array(tokenId).min(1)).min(1)]),
    max_tokens: z.number().int().min(0).nullable().optional(),  // 0 with echo: the prompt scored, nothing generated (OpenAI's minimum; vLLM serves it)
    ...sampling,
    suffix: z.string().nullable().optional(),
    echo: z.boolean().nullable().optional(),
    best_of: z.number().int().min(1).max(20).nullable().optional(),
    logprobs: z.number().int().min(0).max(5).nullable().optional(),
    ...extensionFields,
  })
  .strict();

export type CompletionBody = z.infer<typeof completionSchema>;

export const embeddingSchema = z
  .object({
    model: z.string().min(1),
    input: z.union([
      z.string(),
      z.array(z.string()).min(1).max(2048),
      z.array(z.number().int()).min(1),
      z.array(z.array(z.number().int()).min(1)).min(1).max(2048),
    ]),
    encoding_format: z.enum(['float', 'base64']).optional(),
    // No embedding model has more (the largest common ones: 3,072 to 4,096); bounded so a client cannot name endless sizes.
    dimensions: z.number().int().min(1).max(8192).optional(),
    user: z.string().optional(),
  })
  .strict();

export type EmbeddingBody = z.infer<typeof embeddingSchema>;
