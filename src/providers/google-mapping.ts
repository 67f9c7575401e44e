// Canonical chat <-> Gemini generateContent wire shapes: the request body (contents, systemInstruction,
// tools, toolConfig, generationConfig), the response schema we read, and the finish-reason and usage
// mapping shared by the plain and the streamed call. No HTTP here; google.ts does the calls.
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import {
  messageText,
  promptCacheDetails,
  requestedMaxTokens,
  stopList,
  type ChatMessage,
  type ChatRequest,
  type ChoiceLogprobs,
  type FinishReason,
  type ToolCall,
  type Usage,
} from '../canonical/chat.js';
import { documentData, parseDataUrl } from './data-url.js';
import { requestedThinkingBudget } from './thinking.js';

export interface GeminiPart {
  text?: string;
  thought?: boolean;
  thoughtSignature?: string;
  inlineData?: { mimeType: string; data: string };
  fileData?: { mimeType?: string; fileUri: string };
  functionCall?: { id?: string; name: string; args?: Record<string, unknown> };
  functionResponse?: { name: string; response: Record<string, unknown> };
}

export interface GeminiContent {
  role: 'user' | 'model';
  parts: GeminiPart[];
}

export interface GeminiRequest {
  contents: GeminiContent[];
  systemInstruction?: { parts: { text: string }[] };
  tools?: { functionDeclarations: { name: string; description?: string; parameters?: Record<string, unknown> }[] }[];
  toolConfig?: { functionCallingConfig: { mode: 'AUTO' | 'ANY' | 'NONE'; allowedFunctionNames?: string[] } };
  generationConfig?: Record<string, unknown>;
}

/** A request the client built wrongly for this upstream (e.g. a tool result naming no known call). */
export class GeminiMappingError extends Error {}

/**
 * Gemini 3 rejects a replayed functionCall without the thoughtSignature it was issued with. Clients
 * echo only the tool-call id, so signatures are remembered here by id (bounded, oldest dropped).
 */
export class ThoughtSignatureCache {
  private readonly map = new Map<string, string>();
  constructor(private readonly max = 10_000) {}
  set(id: string, signature: string): void {
    if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value as string);
    this.map.set(id, signature);
  }
  get(id: string): string | undefined {
    return this.map.get(id);
  }
}

/** Google's documented placeholder for a replayed call whose real signature is unknown. */
export const SKIP_SIGNATURE = 'skip_thought_signature_validator';

function needsSignature(model: string): boolean {
  const m = /^(?:models\/)?gemini-(\d+)/.exec(model);
  return m !== null && Number(m[1]) >= 3;
}

export function newToolCallId(): string {
  return `call_${randomBytes(12).toString('base64url')}`;
}

export function toGeminiRequest(req: ChatRequest, signatures: ThoughtSignatureCache): GeminiRequest {
  const system: { text: string }[] = [];
  const contents: GeminiContent[] = [];
  const toolNames = new Map<string, string>();
  const push = (role: GeminiContent['role'], parts: GeminiPart[]) => {
    if (parts.length === 0) return;
    const last = contents[contents.length - 1];
    // Gemini wants turns to alternate; consecutive same-role messages (several tool results) merge.
    if (last && last.role === role) last.parts.push(...parts);
    else contents.push({ role, parts });
  };

  for (const m of req.messages) {
    switch (m.role) {
      case 'system':
      case 'developer': {
        const text = messageText(m.content);
        if (text) system.push({ text });
        break;
      }
      case 'user':
        push('user', userParts(m));
        break;
      case 'assistant': {
        const parts: GeminiPart[] = [];
        const text = messageText(m.content);
        if (text) parts.push({ text });
        for (const [i, call] of (m.tool_calls ?? []).entries()) {
          toolNames.set(call.id, call.function.name);
          const part: GeminiPart = { functionCall: { name: call.function.name, args: parseArgs(call.function.arguments) } };
          // Only the first call of a parallel set carries a signature (Gemini's own convention).
          const signature = signatures.get(call.id) ?? (i === 0 && needsSignature(req.model) ? SKIP_SIGNATURE : undefined);
          if (signature) part.thoughtSignature = signature;
          parts.push(part);
        }
        push('model', parts);
        break;
      }
      case 'tool': {
        const name = (m.tool_call_id && toolNames.get(m.tool_call_id)) || m.name;
        if (!name) {
          throw new GeminiMappingError(
            `tool message ${m.tool_call_id ?? ''} answers no earlier assistant tool call; Gemini needs the function name`,
          );
        }
        push('user', [{ functionResponse: { name, response: toolResponse(messageText(m.content)) } }]);
        break;
      }
    }
  }

  const body: GeminiRequest = { contents };
  if (system.length > 0) body.systemInstruction = { parts: system };
  if (req.tools && req.tools.length > 0) {
    body.tools = [
      {
        functionDeclarations: req.tools.map((t) => {
          const parameters = t.function.parameters ? toGeminiSchema(t.function.parameters) : undefined;
          return {
            name: t.function.name,
            ...(t.function.description ? { description: t.function.description } : {}),
            ...(parameters && !isEmptyObjectSchema(parameters) ? { parameters } : {}),
          };
        }),
      },
    ];
    const choice = req.tool_choice;
    if (choice === 'none') body.toolConfig = { functionCallingConfig: { mode: 'NONE' } };
    else if (choice === 'required') body.toolConfig = { functionCallingConfig: { mode: 'ANY' } };
    else if (choice === 'auto') body.toolConfig = { functionCallingConfig: { mode: 'AUTO' } };
    else if (choice && typeof choice === 'object') {
      body.toolConfig = { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: [choice.function.name] } };
    }
  }
  const generationConfig = toGenerationConfig(req);
  if (Object.keys(generationConfig).length > 0) body.generationConfig = generationConfig;
  return body;
}

function toGenerationConfig(req: ChatRequest): Record<string, unknown> {
  const g: Record<string, unknown> = {};
  if (req.temperature !== undefined) g.temperature = req.temperature;
  if (req.top_p !== undefined) g.topP = req.top_p;
  // top_k 0 means "no top-k" to the clients that send it (Hugging Face's convention): not sent.
  if (req.top_k !== undefined && req.top_k >= 1) g.topK = req.top_k;
  const max = requestedMaxTokens(req);
  if (max !== undefined) g.maxOutputTokens = max;
  const stop = stopList(req.stop);
  if (stop.length > 0) g.stopSequences = stop;
  if (req.n !== undefined && req.n !== 1) g.candidateCount = req.n;
  if (req.seed !== undefined) g.seed = req.seed;
  if (req.logprobs) {
    g.responseLogprobs = true;
    if (req.top_logprobs) g.logprobs = req.top_logprobs;
  }
  // presence_penalty / frequency_penalty are not sent: Gemini 2.5 and later answer any non-zero
  // penalty with 400 "Penalty is not enabled for models/…", a refusal no retry or fallback gets past,
  // for what is only a sampling hint.
  // Gemini refuses a JSON response MIME type beside function declarations ("Function calling with a
  // response mime type: 'application/json' is unsupported"): with the client's own tools the format
  // is not applied, as the Anthropic adapter does.
  const format = req.tools?.length ? undefined : req.response_format;
  if (format?.type === 'json_object' || format?.type === 'json_schema') g.responseMimeType = 'application/json';
  if (format?.type === 'json_schema' && format.json_schema.schema) {
    g.responseSchema = toGeminiSchema(format.json_schema.schema);
  }
  const thinking = toThinkingConfig(req);
  if (thinking) g.thinkingConfig = thinking;
  return g;
}

/**
 * `generationConfig.thinkingConfig` from what the client asked for: Anthropic's `thinking` (its
 * budget, and the thoughts returned, as Claude returns its thinking), else OpenAI's
 * `reasoning_effort` (a budget only: OpenAI's API returns no reasoning text). Nothing asked: the
 * model's own default.
 */
export function toThinkingConfig(req: ChatRequest): Record<string, unknown> | undefined {
  const budget = requestedThinkingBudget(req);
  if (budget === undefined) return undefined;
  return req.thinking?.type === 'enabled' ? { thinkingBudget: budget, includeThoughts: true } : { thinkingBudget: budget };
}

function userParts(m: ChatMessage): GeminiPart[] {
  if (m.content == null) return [];
  if (typeof m.content === 'string') return m.content ? [{ text: m.content }] : [];
  const parts: GeminiPart[] = [];
  for (const p of m.content) {
    if (p.type === 'text') {
      if (p.text) parts.push({ text: p.text });
      continue;
    }
    if (p.type === 'file') {
      parts.push({ inlineData: documentData(p.file.file_data) });
      continue;
    }
    const inline = parseDataUrl(p.image_url.url);
    if (inline) parts.push({ inlineData: inline });
    else parts.push({ fileData: { mimeType: guessImageType(p.image_url.url), fileUri: p.image_url.url } });
  }
  return parts;
}

function guessImageType(url: string): string {
  const ext = /\.(png|jpe?g|webp|gif|heic|heif)(?:[?#]|$)/i.exec(url)?.[1]?.toLowerCase();
  if (!ext) return 'image/jpeg';
  return ext === 'jpg' ? 'image/jpeg' : `image/${ext}`;
}

function parseArgs(args: string): Record<string, unknown> {
  if (!args) return {};
  try {
    const v: unknown = JSON.parse(args);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : { value: v };
  } catch {
    // The model itself produced arguments that are not JSON; replaying them must not fail the turn.
    return {};
  }
}

/** functionResponse.response must be an object; Gemini's docs name `output` for a plain result. */
function toolResponse(text: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(text);
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
    return { output: v };
  } catch {
    return { output: text };
  }
}

// Gemini's Schema is an OpenAPI 3.0 subset; it rejects additionalProperties, $schema, $ref and the
// like with a 400, so schemas keep only the keys it knows. Local `$ref`s are resolved inline first
// (responseJsonSchema would take them as they are, but only newer models read it).
const SCHEMA_KEYS = new Set([
  'type', 'format', 'title', 'description', 'nullable', 'enum', 'maxItems', 'minItems', 'properties',
  'required', 'minProperties', 'maxProperties', 'minLength', 'maxLength', 'pattern', 'example',
  'anyOf', 'propertyOrdering', 'default', 'items', 'minimum', 'maximum',
]);

/** How many times one `$ref` is expanded inside itself before a recursive schema is cut off there. */
const REF_UNROLL = 3;

type Schema = Record<string, unknown>;

function isSchema(v: unknown): v is Schema {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function toGeminiSchema(schema: unknown): Schema {
  return cleanSchema(schema, isSchema(schema) ? schema : {}, []) ?? {};
}

/**
 * One schema node in Gemini's subset, with local `$ref`s (`#/$defs/…`, `#/definitions/…`, `#`)
 * replaced by what they point at. A recursive `$ref` is unrolled REF_UNROLL times and then cut off:
 * the node is undefined and its parent leaves it out (the property and its `required` entry, the
 * array whose items it is, the anyOf branch), since Gemini rejects an object schema without properties.
 */
function cleanSchema(schema: unknown, root: Schema, open: readonly string[]): Schema | undefined {
  if (!isSchema(schema)) return {};
  let s = schema;
  // `allOf: [{$ref}]` beside a description is how Pydantic v1 writes a described nested model.
  if (Array.isArray(s.allOf) && s.allOf.length === 1 && isSchema(s.allOf[0])) {
    const { allOf, ...rest } = s;
    s = { ...(allOf as Schema[])[0], ...rest };
  }
  if (typeof s.$ref === 'string') {
    const ref = s.$ref;
    const { $ref: _, ...siblings } = s;
    const target = localRef(root, ref);
    if (target) {
      if (open.filter((r) => r === ref).length >= REF_UNROLL) return undefined;
      // Keywords beside the $ref (a field's description) win over the definition's own.
      return cleanSchema({ ...target, ...siblings }, root, [...open, ref]);
    }
    s = siblings;
  }
  const out: Schema = {};
  const cut = new Set<string>();
  for (const [key, value] of Object.entries(s)) {
    if (!SCHEMA_KEYS.has(key)) continue;
    if (key === 'properties' && isSchema(value)) {
      const props: Schema = {};
      for (const [k, v] of Object.entries(value)) {
        const clean = cleanSchema(v, root, open);
        if (clean) props[k] = clean;
        else cut.add(k);
      }
      if (cut.size > 0 && Object.keys(props).length === 0) return undefined;
      out.properties = props;
    } else if (key === 'items') {
      const items = cleanSchema(value, root, open);
      if (!items) return undefined;
      out.items = items;
    } else if (key === 'anyOf' && Array.isArray(value)) {
      const branches = value.map((v) => cleanSchema(v, root, open)).filter((b) => b !== undefined);
      if (branches.length === 0) return undefined;
      out.anyOf = branches;
    } else if (key === 'type' && Array.isArray(value)) {
      // JSON Schema's ["string", "null"] is OpenAPI's type + nullable.
      const types = value.filter((t) => t !== 'null');
      if (types.length > 0) out.type = types[0];
      if (types.length < value.length) out.nullable = true;
    } else {
      out[key] = value;
    }
  }
  if (cut.size > 0 && Array.isArray(out.required)) out.required = out.required.filter((name) => !cut.has(name as string));
  geminiEnum(out, Array.isArray(out.enum) ? out.enum : 'const' in s ? [s.const] : undefined);
  return out;
}

/**
 * Gemini's `enum` is a list of strings, for STRING types only ("enum: only allowed for STRING type";
 * a number in it is "Invalid value … (TYPE_STRING)"). Strings stay an enum, typed `string`; a null
 * among them makes the node nullable; values of any other kind (numbers, booleans) cannot be said in
 * Gemini's schema: the enum goes, and a node without a type gets the one its values share.
 */
function geminiEnum(out: Schema, values: unknown[] | undefined): void {
  delete out.enum;
  if (!values) return;
  const present = values.filter((v) => v !== null);
  if (present.length < values.length) out.nullable = true;
  if (present.length === 0) return;
  if (present.every((v) => typeof v === 'string') && (out.type === undefined || out.type === 'string')) {
    out.type = 'string';
    out.enum = present;
    return;
  }
  if (out.type !== undefined) return;
  if (present.every((v) => typeof v === 'number')) out.type = present.every((v) => Number.isInteger(v)) ? 'integer' : 'number';
  else if (present.every((v) => typeof v === 'boolean')) out.type = 'boolean';
}

/** The schema a local `$ref` (a JSON pointer into the root schema) names; undefined for any other ref. */
function localRef(root: Schema, ref: string): Schema | undefined {
  if (ref === '#') return root;
  if (!ref.startsWith('#/')) return undefined;
  let node: unknown = root;
  for (const token of ref.slice(2).split('/')) {
    let key: string;
    try {
      key = decodeURIComponent(token).replace(/~1/g, '/').replace(/~0/g, '~');
    } catch {
      return undefined;
    }
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return isSchema(node) ? node : undefined;
}

function isEmptyObjectSchema(s: Record<string, unknown>): boolean {
  const props = s.properties as Record<string, unknown> | undefined;
  return s.type === 'object' && (!props || Object.keys(props).length === 0);
}

// --- response -----------------------------------------------------------------------------------

const partSchema = z.object({
  text: z.string().optional(),
  thought: z.boolean().optional(),
  thoughtSignature: z.string().optional(),
  functionCall: z
    .object({ id: z.string().optional(), name: z.string(), args: z.record(z.string(), z.unknown()).optional() })
    .optional(),
});

const usageSchema = z.object({
  promptTokenCount: z.number().optional(),
  candidatesTokenCount: z.number().optional(),
  thoughtsTokenCount: z.number().optional(),
  // Of promptTokenCount, the tokens served from Gemini's context cache (implicit or explicit).
  cachedContentTokenCount: z.number().optional(),
  totalTokenCount: z.number().optional(),
});

const logprobCandidateSchema = z.object({ token: z.string().optional(), tokenId: z.number().optional(), logProbability: z.number().optional() });
/** A candidate's `logprobsResult` (asked for with generationConfig.responseLogprobs): per decoding step. */
const logprobsResultSchema = z.object({
  topCandidates: z.array(z.object({ candidates: z.array(logprobCandidateSchema).optional() })).optional(),
  chosenCandidates: z.array(logprobCandidateSchema).optional(),
});

export const geminiResponseSchema = z.object({
  candidates: z
    .array(
      z.object({
        index: z.number().optional(),
        content: z.object({ parts: z.array(partSchema).optional() }).optional(),
        finishReason: z.string().optional(),
        logprobsResult: logprobsResultSchema.optional(),
      }),
    )
    .optional(),
  promptFeedback: z.object({ blockReason: z.string().optional() }).optional(),
  usageMetadata: usageSchema.optional(),
  modelVersion: z.string().optional(),
  responseId: z.string().optional(),
});
export type GeminiResponse = z.infer<typeof geminiResponseSchema>;
export type GeminiCandidate = NonNullable<GeminiResponse['candidates']>[number];

const FILTERED = new Set(['SAFETY', 'RECITATION', 'BLOCKLIST', 'PROHIBITED_CONTENT', 'SPII', 'IMAGE_SAFETY', 'LANGUAGE']);

/**
 * Finish reasons of a candidate whose function call broke: Gemini ends it with no text and no call
 * (MALFORMED_FUNCTION_CALL: the model wrote a call that does not parse; UNEXPECTED_TOOL_CALL: it
 * called a tool it was not offered). Such an answer is a failure — usually a passing one — not an
 * empty "stop".
 */
const BROKEN_CALL_FINISHES: ReadonlySet<string> = new Set(['MALFORMED_FUNCTION_CALL', 'UNEXPECTED_TOOL_CALL']);

/**
 * A candidate whose function call broke and that said nothing the client can use: no text and no
 * tool call (thoughts do not count — reasoning then an empty "stop" would be taken as the answer).
 * The JSON and the streamed call both decide with this.
 */
export function saidNothing(read: { text: string; toolCalls: readonly unknown[] }, finishReason: string | undefined): boolean {
  return !read.text && read.toolCalls.length === 0 && finishReason !== undefined && BROKEN_CALL_FINISHES.has(finishReason);
}

export function mapGeminiFinish(reason: string | undefined, calledTools: boolean): FinishReason | null {
  if (!reason || reason === 'FINISH_REASON_UNSPECIFIED') return null;
  if (reason === 'MAX_TOKENS') return 'length';
  if (FILTERED.has(reason)) return 'content_filter';
  return calledTools ? 'tool_calls' : 'stop';
}

/** A candidate's log-probabilities in OpenAI's shape: the chosen token per step, with that step's top candidates. */
export function mapGeminiLogprobs(r: z.infer<typeof logprobsResultSchema> | undefined): ChoiceLogprobs | null {
  if (!r?.chosenCandidates) return null;
  const entry = (c: z.infer<typeof logprobCandidateSchema>) => {
    const token = c.token ?? '';
    return { token, logprob: c.logProbability ?? 0, bytes: [...Buffer.from(token, 'utf8')] };
  };
  return {
    content: r.chosenCandidates.map((c, step) => ({ ...entry(c), top_logprobs: (r.topCandidates?.[step]?.candidates ?? []).map(entry) })),
  };
}

export function mapGeminiUsage(u: GeminiResponse['usageMetadata']): Usage {
  const prompt = u?.promptTokenCount ?? 0;
  // Thinking tokens are billed as output, so they count as completion tokens.
  const completion = (u?.candidatesTokenCount ?? 0) + (u?.thoughtsTokenCount ?? 0);
  const usage: Usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: u?.totalTokenCount ?? prompt + completion };
  const cache = promptCacheDetails(u?.cachedContentTokenCount);
  if (cache) usage.prompt_tokens_details = cache;
  if (u?.thoughtsTokenCount !== undefined) usage.completion_tokens_details = { reasoning_tokens: u.thoughtsTokenCount };
  return usage;
}

/**
 * Visible text, thought summaries (parts marked `thought`, returned when thinkingConfig asks for
 * them: the canonical `reasoning_content`) and tool calls of one candidate's parts.
 */
export function readParts(
  parts: z.infer<typeof partSchema>[] | undefined,
  signatures: ThoughtSignatureCache,
): { text: string; reasoning: string; toolCalls: ToolCall[] } {
  let text = '';
  let reasoning = '';
  const toolCalls: ToolCall[] = [];
  for (const part of parts ?? []) {
    if (part.functionCall) {
      const id = part.functionCall.id || newToolCallId();
      if (part.thoughtSignature) signatures.set(id, part.thoughtSignature);
      toolCalls.push({
        id,
        type: 'function',
        function: { name: part.functionCall.name, arguments: JSON.stringify(part.functionCall.args ?? {}) },
      });
    } else if (part.text && part.thought) {
      reasoning += part.text;
    } else if (part.text) {
      text += part.text;
    }
  }
  return { text, reasoning, toolCalls };
}
