// The Anthropic SDK's `models.list()` and `models.retrieve()` against the gateway's /v1/models: a
// caller sending `anthropic-version` gets Anthropic's shapes (ModelInfo, a page with has_more and
// cursors) and Anthropic's error body; the OpenAI SDK on the same paths keeps OpenAI's.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

let server: RunningServer;
let anthropic: Anthropic;
const names = ['claude-fast', 'claude-smart', 'vendor/claude-long', 'helper'];

beforeAll(async () => {
  server = await startTestGateway({
    env: { TRUTHGPT_API_TOKEN: 'models-token' },
    config: {
      providers: { sim: { type: 'simulator' } },
      models: names.map((name) => ({ name, deployments: [{ provider: 'sim', model: 'sim-1' }] })),
    },
  });
  anthropic = new Anthropic({ baseURL: server.url, apiKey: 'models-token', maxRetries: 0 });
});
afterAll(() => server?.close());

describe('/v1/models for the Anthropic SDK', () => {
  it('lists every model as ModelInfo, page by page', async () => {
    const seen: Anthropic.ModelInfo[] = [];
    for await (const m of anthropic.models.list({ limit: 1 })) seen.push(m);
    const ids = seen.map((m) => m.id);
    for (const name of names) expect(ids).toContain(name);
    expect(new Set(ids).size).toBe(ids.length);
    for (const m of seen) {
      expect(m.type).toBe('model');
      expect(m.display_name).toBe(m.id);
      expect(Number.isNaN(Date.parse(m.created_at))).toBe(false);
    }
    const page = await anthropic.models.list({ limit: 2 });
    expect(page.data).toHaveLength(2);
    expect(page.has_more).toBe(true);
    expect(page.last_id).toBe(page.data[1]?.id);
  });

  it('retrieves one, ids with slashes too, and answers an unknown one with NotFoundError', async () => {
    expect(await anthropic.models.retrieve('claude-smart')).toMatchObject({ type: 'model', id: 'claude-smart', display_name: 'claude-smart' });
    expect((await anthropic.models.retrieve('vendor/claude-long')).id).toBe('vendor/claude-long');
    const err = await anthropic.models.retrieve('no-such-model').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.NotFoundError);
    expect((err as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
    const bad = await new Anthropic({ baseURL: server.url, apiKey: 'wrong', maxRetries: 0 }).models.list().catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((bad as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
  });

  it('refuses a limit out of range in the Anthropic body', async () => {
    const err = await anthropic.models.list({ limit: 5000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    expect((err as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
  });

  it('keeps the OpenAI shapes for the OpenAI SDK', async () => {
    const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'models-token', maxRetries: 0 });
    const list = await openai.models.list();
    expect(list.data.map((m) => m.id)).toEqual(expect.arrayContaining(names));
    expect(list.data[0]).toMatchObject({ object: 'model' });
    const err = await openai.models.retrieve('no-such-model').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('model_not_found');
  });
});
