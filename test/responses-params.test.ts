// Parameters the official `openai` SDK (6.49) sends on `client.responses.create` that OpenAI's
// published schema allows: accepted, and forwarded where the canonical request has a place for them
// (as the chat route forwards `reasoning_effort`, `prompt_cache_options` and `moderation`); the rest
// accepted and ignored (docs/providers.md, the Responses section). The upstream is a fake
// OpenAI-compatible server, so what reaches it is seen on the wire.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { specForTests } from '../src/providers/__fixtures__/openai-spec.js';
import { startTestGateway } from './helpers/gateway.js';
import { startRecordingUpstream, type RecordingUpstream } from './helpers/recording-upstream.js';

const spec = specForTests('responses-params.test');

let upstream: RecordingUpstream;
let server: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  upstream = await startRecordingUpstream('gpt-5');
  server = await startTestGateway({ env: { OPENAI_BASE_URL: upstream.url } });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await server?.close();
  await upstream?.close();
});

/** The one upstream body a create call sent. */
async function sent(params: OpenAI.Responses.ResponseCreateParamsNonStreaming): Promise<{ response: OpenAI.Responses.Response; upstream: Record<string, unknown> }> {
  upstream.raw.length = 0;
  const response = await client.responses.create(params);
  expect(upstream.raw).toHaveLength(1);
  if (spec) expect(spec.errors('Response', JSON.parse(JSON.stringify(response)))).toEqual([]);
  return { response, upstream: JSON.parse(upstream.raw[0] as string) as Record<string, unknown> };
}

describe('POST /v1/responses takes what SDK 6.49 sends', () => {
  it("forwards reasoning.effort 'max' as reasoning_effort, as the chat route does, and echoes it", async () => {
    const { response, upstream } = await sent({ model: 'gpt-5', input: 'hi', reasoning: { effort: 'max' } });
    expect(upstream.reasoning_effort).toBe('max');
    expect(response.reasoning?.effort).toBe('max');
  });

  it('accepts reasoning.mode and reasoning.context and ignores them (no chat equivalent)', async () => {
    const { upstream } = await sent({ model: 'gpt-5', input: 'hi', reasoning: { effort: 'low', mode: 'standard', context: 'auto' } } as OpenAI.Responses.ResponseCreateParamsNonStreaming);
    expect(upstream.reasoning_effort).toBe('low');
    expect(upstream).not.toHaveProperty('mode');
    expect(upstream).not.toHaveProperty('context');
    expect(upstream).not.toHaveProperty('reasoning');
  });

  it('forwards prompt_cache_options and moderation, as the chat route does', async () => {
    const { upstream } = await sent({
      model: 'gpt-5',
      input: 'hi',
      prompt_cache_options: { ttl: '30m', mode: 'explicit' },
      moderation: { model: 'omni-moderation-latest' },
    } as OpenAI.Responses.ResponseCreateParamsNonStreaming);
    expect(upstream.prompt_cache_options).toEqual({ ttl: '30m', mode: 'explicit' });
    expect(upstream.moderation).toEqual({ model: 'omni-moderation-latest' });
  });

  it('a null moderation is accepted and not forwarded', async () => {
    const { upstream } = await sent({ model: 'gpt-5', input: 'hi', moderation: null } as OpenAI.Responses.ResponseCreateParamsNonStreaming);
    expect(upstream).not.toHaveProperty('moderation');
  });

  it('accepts context_management and a function tool with defer_loading (ignored), and max_tool_calls (ignored: it limits built-in tools)', async () => {
    const { upstream } = await sent({
      model: 'gpt-5',
      input: 'hi',
      context_management: [{ type: 'compaction', compact_threshold: 1000 }],
      max_tool_calls: 2,
      tools: [{ type: 'function', name: 'f', parameters: { type: 'object', properties: {} }, strict: true, defer_loading: false }],
    } as OpenAI.Responses.ResponseCreateParamsNonStreaming);
    expect(upstream).not.toHaveProperty('context_management');
    expect(upstream).not.toHaveProperty('max_tool_calls');
    expect(upstream.tools).toEqual([{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: {} }, strict: true } }]);
  });

  it('still refuses what the spec does not allow', async () => {
    const bad = async (params: Record<string, unknown>) => {
      const err = (await client.responses.create({ model: 'gpt-5', input: 'hi', ...params } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
      return err;
    };
    expect((await bad({ reasoning: { effort: 'maximum' } })).code).toBe('invalid_value');
    expect((await bad({ reasoning: { context: 'everything' } })).code).toBe('invalid_value');
    expect((await bad({ context_management: [{ type: 'compaction', compact_threshold: 10 }] })).code).toBe('invalid_value');
    expect((await bad({ tools: [{ type: 'function', name: 'f', parameters: {}, strict: true, defer_loading: 'yes' }] })).code).toBe('invalid_type');
  });
});

describe('tool_choice allowed_tools on /v1/responses', () => {
  const tool = (name: string) => ({ type: 'function' as const, name, parameters: { type: 'object', properties: {} }, strict: true });
  const tools = [tool('get_weather'), tool('get_time'), tool('send_email')];

  it('narrows the tools to the allowed ones and sends the mode as the choice, and input_tokens counts those tools only', async () => {
    const tool_choice = { type: 'allowed_tools' as const, mode: 'required' as const, tools: [{ type: 'function', name: 'get_time' }] };
    const { upstream } = await sent({ model: 'gpt-5', input: 'What time is it in Oslo?', tools, tool_choice });
    expect((upstream.tools as { function: { name: string } }[]).map((t) => t.function.name)).toEqual(['get_time']);
    expect(upstream.tool_choice).toBe('required');
    const count = async (body: Record<string, unknown>) => ((await client.responses.inputTokens.count({ model: 'gpt-5', input: 'What time is it in Oslo?', tools, ...body } as never)) as { input_tokens: number }).input_tokens;
    expect(await count({ tool_choice })).toBeLessThan(await count({}));
  });

  it('refuses a tool the request does not define, naming it', async () => {
    const err = (await client.responses.create({ model: 'gpt-5', input: 'hi', tools, tool_choice: { type: 'allowed_tools', mode: 'auto', tools: [{ type: 'function', name: 'delete_files' }] } }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect([err.code, err.param]).toEqual(['invalid_value', 'tool_choice.tools.0.name']);
    expect(err.message).toMatch(/delete_files/);
    // A malformed choice is a 400 at its field, never taken for a hosted tool's choice.
    for (const tool_choice of [
      { type: 'allowed_tools', mode: 'sometimes', tools: [{ type: 'function', name: 'get_time' }] },
      { type: 'allowed_tools', mode: 'auto', tools: [] },
      { type: 'allowed_tools', mode: 'auto', tools: [{ type: 'web_search' }] },
    ]) {
      const bad = (await client.responses.create({ model: 'gpt-5', input: 'hi', tools, tool_choice } as never).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
      expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
      expect(bad.param).toMatch(/^tool_choice/);
    }
  });
});
