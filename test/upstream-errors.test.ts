// What a client gets when the upstream refuses: an OpenAI-compatible stand-in upstream answers each
// model name with a scripted error body, behind the passthrough provider (OPENAI_BASE_URL) and a
// configured group. The status, `code` and `param` a client (and its SDK's retry logic) relies on
// must survive the gateway.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

type Reply = { status: number; json: unknown };

const answer = (model: string): Reply => ({
  status: 200,
  json: {
    id: 'chatcmpl-up',
    object: 'chat.completion',
    created: 1,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: `hello from ${model}` }, finish_reason: 'stop', logprobs: null }],
    usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
  },
});

const openAiError = (status: number, message: string, type: string, code: string | null, param: string | null = null): Reply => ({ status, json: { error: { message, type, param, code } } });

/** Upstream replies by model name; anything else answers. */
const REPLIES: Record<string, Reply> = {
  'gpt-9': openAiError(404, 'The model `gpt-9` does not exist or you do not have access to it.', 'invalid_request_error', 'model_not_found'),
  'bad-param': openAiError(400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.", 'invalid_request_error', 'unsupported_parameter', 'response_format'),
  'too-long': openAiError(400, "This model's maximum context length is 128000 tokens. However, your messages resulted in 200000 tokens.", 'invalid_request_error', 'context_length_exceeded', 'messages'),
  'bare-422': { status: 422, json: { detail: 'bad' } },
  'no-credit': openAiError(429, 'You exceeded your current quota, please check your plan and billing details.', 'insufficient_quota', 'insufficient_quota'),
  'region-blocked': openAiError(403, 'Country, region, or territory not supported', 'request_forbidden', 'unsupported_country_region_territory'),
  'bad-key': openAiError(401, 'Incorrect API key provided: sk-…', 'invalid_request_error', 'invalid_api_key'),
  'cfg-missing': openAiError(404, 'The model `cfg-missing` does not exist or you do not have access to it.', 'invalid_request_error', 'model_not_found'),
};

describe('upstream errors reach the client with their meaning', () => {
  let upstream: Server;
  let server: RunningServer;
  let client: OpenAI;
  const calls: string[] = [];

  beforeAll(async () => {
    upstream = createServer((req, res) => {
      let raw = '';
      req.on('data', (d: Buffer) => (raw += d));
      req.on('end', () => {
        if (req.method !== 'POST') {
          res.writeHead(200, { 'content-type': 'application/json' }).end('{"object":"list","data":[]}');
          return;
        }
        const model = (JSON.parse(raw) as { model: string }).model;
        calls.push(model);
        const r = REPLIES[model] ?? answer(model);
        res.writeHead(r.status, { 'content-type': 'application/json' }).end(JSON.stringify(r.json));
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
    server = await startTestGateway({
      env: { OPENAI_BASE_URL: base },
      config: {
        providers: { cfg: { type: 'openai', base_url: base } },
        models: [
          { name: 'configured', deployments: [{ provider: 'cfg', model: 'cfg-missing' }] },
          // Two deployments: the first's account is out of credit.
          { name: 'billed', deployments: [{ provider: 'cfg', model: 'no-credit' }, { provider: 'cfg', model: 'paid', priority: 1 }] },
          { name: 'billed-only', deployments: [{ provider: 'cfg', model: 'no-credit', id: 'only/no-credit' }] },
        ],
      },
    });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });

  afterAll(async () => {
    await server?.close();
    await new Promise<void>((resolve) => upstream?.close(() => resolve()));
  });

  beforeEach(() => {
    calls.length = 0;
  });

  const post = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    return { status: res.status, headers: res.headers, body: (await res.json()) as { error: Record<string, unknown>; type?: string } };
  };
  const hi = [{ role: 'user' as const, content: 'hi' }];

  describe('400 from the upstream', () => {
    it('keeps the upstream\'s param, and its code as upstream_code beside the gateway\'s stable code', async () => {
      const res = await post('/v1/chat/completions', { model: 'bad-param', messages: hi });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'upstream_rejected_request', upstream_code: 'unsupported_parameter', param: 'response_format', type: 'invalid_request_error' });
      const err = (await client.chat.completions.create({ model: 'bad-param', messages: hi }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
      expect([err.code, err.param]).toEqual(['upstream_rejected_request', 'response_format']);
      expect((err.error as { upstream_code?: string }).upstream_code).toBe('unsupported_parameter');
    });

    it('does the same for a stream refused before it began', async () => {
      const res = await post('/v1/chat/completions', { model: 'bad-param', messages: hi, stream: true });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'upstream_rejected_request', upstream_code: 'unsupported_parameter', param: 'response_format' });
    });

    it('keeps param on a context-length refusal, whose gateway code is OpenAI\'s', async () => {
      const res = await post('/v1/chat/completions', { model: 'too-long', messages: hi });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'context_length_exceeded', upstream_code: 'context_length_exceeded', param: 'messages' });
    });

    it('adds nothing when the upstream gave no code or param', async () => {
      const res = await post('/v1/chat/completions', { model: 'bare-422', messages: hi });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'upstream_rejected_request', param: null });
      expect(res.body.error).not.toHaveProperty('upstream_code');
    });

    it('renders on /v1/messages in Anthropic\'s body with the gateway\'s code', async () => {
      const res = await post('/v1/messages', { model: 'bad-param', max_tokens: 16, messages: hi }, { 'anthropic-version': '2023-06-01' });
      expect(res.status).toBe(400);
      expect(res.body.type).toBe('error');
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', code: 'upstream_rejected_request' });
    });
  });

  describe('429 insufficient_quota (billing, not a rate limit)', () => {
    it('moves on to the next deployment at once, without asking the exhausted one again', async () => {
      const r = await client.chat.completions.create({ model: 'billed', messages: hi });
      expect(r.choices[0]?.message.content).toBe('hello from paid');
      expect(calls).toEqual(['no-credit', 'paid']);
    });

    it('with no other deployment, is 429 upstream_quota_exceeded, asked once, no Retry-After, marked not to be retried', async () => {
      const res = await post('/v1/chat/completions', { model: 'billed-only', messages: hi });
      expect(res.status).toBe(429);
      expect(res.body.error).toMatchObject({ code: 'upstream_quota_exceeded', type: 'insufficient_quota', upstream_code: 'insufficient_quota' });
      expect(res.headers.get('retry-after')).toBeNull();
      expect(res.headers.get('x-should-retry')).toBe('false');
      expect(calls).toEqual(['no-credit']);

      // The SDK with its default retries does not retry it either.
      calls.length = 0;
      const sdk = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused' });
      const err = (await sdk.chat.completions.create({ model: 'billed-only', messages: hi }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
      expect(err).toBeInstanceOf(OpenAI.RateLimitError);
      expect(err.code).toBe('upstream_quota_exceeded');
      expect(calls).toEqual(['no-credit']);
    });

    it('is Anthropic\'s rate_limit_error on /v1/messages', async () => {
      const res = await post('/v1/messages', { model: 'billed-only', max_tokens: 16, messages: hi }, { 'anthropic-version': '2023-06-01' });
      expect(res.status).toBe(429);
      expect(res.body.error).toMatchObject({ type: 'rate_limit_error', code: 'upstream_quota_exceeded' });
    });
  });

  describe('404 for a passthrough model name', () => {
    it('is 404 model_not_found (param model), asked once, not a 502 the SDK retries', async () => {
      const res = await post('/v1/chat/completions', { model: 'gpt-9', messages: hi });
      expect(res.status).toBe(404);
      expect(res.body.error).toMatchObject({ code: 'model_not_found', type: 'invalid_request_error', param: 'model', provider: 'openai' });
      expect(res.body.error.message).toContain('gpt-9');
      expect(calls).toEqual(['gpt-9']);

      // The SDK with its default retries: a NotFoundError, no retry.
      calls.length = 0;
      const sdk = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused' });
      const err = await sdk.chat.completions.create({ model: 'gpt-9', messages: hi }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.NotFoundError);
      expect(calls).toEqual(['gpt-9']);
    });

    it('is Anthropic\'s not_found_error on /v1/messages', async () => {
      const res = await post('/v1/messages', { model: 'gpt-9', max_tokens: 16, messages: hi }, { 'anthropic-version': '2023-06-01' });
      expect(res.status).toBe(404);
      expect(res.body.type).toBe('error');
      expect(res.body.error).toMatchObject({ type: 'not_found_error', code: 'model_not_found' });
    });

    it('is still 502 upstream_error for a configured group: the gateway\'s deployment is misconfigured, the client\'s model exists', async () => {
      const err = (await client.chat.completions.create({ model: 'configured', messages: hi }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
      expect(err.status).toBe(502);
      expect(err.code).toBe('upstream_error');
    });

    it('that 502 is marked not to be retried (x-should-retry: false): the SDK with its default retries asks once', async () => {
      const res = await post('/v1/chat/completions', { model: 'configured', messages: hi });
      expect(res.headers.get('x-should-retry')).toBe('false');
      calls.length = 0;
      const sdk = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused' });
      const err = (await sdk.chat.completions.create({ model: 'configured', messages: hi }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
      expect(err).toBeInstanceOf(OpenAI.InternalServerError);
      expect(calls).toEqual(['cfg-missing']);
    });
  });

  describe('401/403: the upstream refused the gateway\'s own credentials', () => {
    it.each([
      ['region-blocked', 'unsupported_country_region_territory'],
      ['bad-key', 'invalid_api_key'],
    ])('%s is 502 upstream_auth_failed, marked not to be retried: the SDK with its default retries asks once', async (model, upstreamCode) => {
      const res = await post('/v1/chat/completions', { model, messages: hi });
      expect(res.status).toBe(502);
      expect(res.body.error).toMatchObject({ code: 'upstream_auth_failed', upstream_code: upstreamCode });
      expect(res.headers.get('x-should-retry')).toBe('false');
      expect(res.headers.get('retry-after')).toBeNull();
      expect(calls).toEqual([model]);

      calls.length = 0;
      const sdk = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused' });
      const err = (await sdk.chat.completions.create({ model, messages: hi }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
      expect(err).toBeInstanceOf(OpenAI.InternalServerError);
      expect(err.status).toBe(502);
      expect(err.code).toBe('upstream_auth_failed');
      expect(calls).toEqual([model]);
    });
  });
});
