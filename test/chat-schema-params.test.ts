// Chat Completions parameters of OpenAI's published schema (and SDK 6.49's types) the gateway
// refused: a content part's `prompt_cache_breakpoint` (accepted and removed before any upstream sees
// it) and a `seed` anywhere in the spec's int64 range (beyond 2^53 JSON numbers arrive rounded to a
// double, which goes upstream in its shortest decimal form; int64's limits, ±2^63 as doubles, as the
// double next to them inside int64). Through the
// official `openai` client, against a fake OpenAI-compatible upstream whose raw bodies are kept.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { chatCompletionSchema } from '../src/server/routes/openai-schema.js';
import { startTestGateway } from './helpers/gateway.js';
import { startRecordingUpstream, type RecordingUpstream } from './helpers/recording-upstream.js';

let upstream: RecordingUpstream;
let server: RunningServer;
let client: OpenAI;
let raw: string[] = [];

beforeAll(async () => {
  upstream = await startRecordingUpstream('gpt-4o-mini');
  raw = upstream.raw;
  server = await startTestGateway({ env: { OPENAI_BASE_URL: upstream.url } });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await server?.close();
  await upstream?.close();
});

/** The raw upstream body one create call sent. */
async function sent(params: OpenAI.Chat.ChatCompletionCreateParamsNonStreaming): Promise<string> {
  raw.length = 0;
  await client.chat.completions.create(params);
  expect(raw).toHaveLength(1);
  return raw[0] as string;
}

/** A body sent as raw JSON text (integers beyond 2^53 as a client in a language with int64 writes them). */
async function post(json: string): Promise<void> {
  const res = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: json });
  expect(res.status).toBe(200);
}

async function refused(params: Record<string, unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  const err = (await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], ...params } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
  expect(err).toBeInstanceOf(OpenAI.BadRequestError);
  return err;
}

describe('prompt_cache_breakpoint on a content part', () => {
  it('is accepted on text and image parts (any role) and removed before the upstream', async () => {
    const body = await sent({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: [{ type: 'text', text: 'You are terse.', prompt_cache_breakpoint: { mode: 'explicit' } }] },
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: 'https://example.com/a.png' }, prompt_cache_breakpoint: { mode: 'explicit' } },
            { type: 'text', text: 'What is this?', prompt_cache_breakpoint: { mode: 'explicit' } },
          ],
        },
      ],
    });
    expect(body).not.toContain('prompt_cache_breakpoint');
    const messages = (JSON.parse(body) as { messages: unknown[] }).messages;
    expect(messages).toEqual([
      { role: 'system', content: [{ type: 'text', text: 'You are terse.' }] },
      { role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }, { type: 'text', text: 'What is this?' }] },
    ]);
  });

  it('is accepted on a file part too, and gone from the parsed request', () => {
    const parsed = chatCompletionSchema.parse({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0=', filename: 'a.pdf' }, prompt_cache_breakpoint: { mode: 'explicit' } }] }],
    });
    expect(parsed.messages[0]?.content).toEqual([{ type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0=', filename: 'a.pdf' } }]);
  });

  it('must be the spec\'s {mode: "explicit"}', async () => {
    const withBreakpoint = (b: unknown) => ({ messages: [{ role: 'user', content: [{ type: 'text', text: 'hi', prompt_cache_breakpoint: b }] }] });
    expect((await refused(withBreakpoint({ mode: 'implicit' }))).code).toBe('invalid_value');
    expect((await refused(withBreakpoint({}))).code).toBe('invalid_value');
    expect((await refused(withBreakpoint({ mode: 'explicit', ttl: '1h' }))).code).toBe('unknown_parameter');
  });
});

describe('seed in the int64 range', () => {
  it('forwards a seed above 2^53 as its JSON number parsed', async () => {
    expect(await sent({ model: 'gpt-4o-mini', seed: 2 ** 53 + 2, messages: [{ role: 'user', content: 'hi' }] })).toContain('"seed":9007199254740994');
    // 2^60 + 1 is 2^60 as a double, written in its shortest form: an integer within int64, the same every time.
    raw.length = 0;
    await post('{"model":"gpt-4o-mini","seed":1152921504606846977,"messages":[{"role":"user","content":"hi"}]}');
    expect(raw[0]).toContain('"seed":1152921504606847000');
  });

  it("int64's limits (±2^63 as doubles) go upstream as the doubles next to them inside int64", async () => {
    expect(await sent({ model: 'gpt-4o-mini', seed: -(2 ** 63), messages: [{ role: 'user', content: 'hi' }] })).toContain('"seed":-9223372036854775000');
    // 9223372036854775807 as JSON text: what a client in a language with int64 sends.
    raw.length = 0;
    await post('{"model":"gpt-4o-mini","seed":9223372036854775807,"messages":[{"role":"user","content":"hi"}]}');
    expect(raw[0]).toContain('"seed":9223372036854775000');
    // The JS SDK sends the same number (2^63 is what it holds for int64's maximum).
    expect(await sent({ model: 'gpt-4o-mini', seed: 2 ** 63, messages: [{ role: 'user', content: 'hi' }] })).toContain('"seed":9223372036854775000');
  });

  it('refuses a seed outside int64 or not an integer', async () => {
    expect((await refused({ seed: 2 ** 64 })).code).toBe('invalid_value');
    expect((await refused({ seed: -(2 ** 64) })).code).toBe('invalid_value');
    expect((await refused({ seed: 1.5 })).code).toBe('invalid_type');
  });
});

describe('tool_choice allowed_tools', () => {
  const tool = (name: string): OpenAI.Chat.ChatCompletionTool => ({ type: 'function', function: { name, description: `the ${name} tool`, parameters: { type: 'object', properties: {} } } });
  const tools = [tool('get_weather'), tool('get_time'), tool('send_email')];

  it('narrows the tools to the allowed ones and sends the mode as the choice, so any provider honours it', async () => {
    const body = JSON.parse(
      await sent({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'Weather and time in Oslo?' }],
        tools,
        tool_choice: { type: 'allowed_tools', allowed_tools: { mode: 'required', tools: [{ type: 'function', function: { name: 'get_time' } }, { type: 'function', function: { name: 'get_weather' } }] } },
      }),
    ) as { tools: OpenAI.Chat.ChatCompletionTool[]; tool_choice: unknown };
    expect(body.tools.map((t) => (t as { function: { name: string } }).function.name)).toEqual(['get_weather', 'get_time']);
    expect(body.tool_choice).toBe('required');
  });

  it('refuses a tool the request does not define, naming it', async () => {
    const err = await refused({ tools, tool_choice: { type: 'allowed_tools', allowed_tools: { mode: 'auto', tools: [{ type: 'function', function: { name: 'delete_files' } }] } } });
    expect(err.code).toBe('invalid_value');
    expect(err.param).toBe('tool_choice');
    expect(err.message).toMatch(/delete_files/);
  });
});
