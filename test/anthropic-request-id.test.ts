// The Anthropic SDK reads a response's `request-id` header (`_request_id` on results, `requestID` on
// errors), as Anthropic's API sends on every answer: the gateway's request id goes there too on the
// Anthropic routes, so an SDK user's logs carry the id the gateway's logs and ledger use.
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

let server: RunningServer;
let client: Anthropic;

beforeAll(async () => {
  server = await startTestGateway({ env: { TRUTHGPT_API_TOKEN: 'anthropic-rid-token' } });
  client = new Anthropic({ baseURL: server.url, apiKey: 'anthropic-rid-token', maxRetries: 0 });
});
afterAll(() => server?.close());

describe('request-id on the Anthropic routes', () => {
  it('is the gateway request id on a message, streamed or not', async () => {
    const { data, response } = await client.messages
      .create({ model: 'claude-3-5-haiku-latest', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    const id = (data as { _request_id?: string | null })._request_id;
    expect(id).toBeTruthy();
    expect(id).toBe(response.headers.get('x-request-id'));

    const stream = client.messages.stream({ model: 'claude-3-5-haiku-latest', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] });
    const final = await stream.finalMessage();
    expect(stream.request_id).toBeTruthy();
    expect(final.content.length).toBeGreaterThan(0);
    const { response: streamed } = await client.messages
      .create({ model: 'claude-3-5-haiku-latest', max_tokens: 50, stream: true, messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    expect(streamed.headers.get('request-id')).toBe(streamed.headers.get('x-request-id'));
    await streamed.body?.cancel();
  });

  it('is on errors, where the SDK reports it as requestID', async () => {
    const bad = new Anthropic({ baseURL: server.url, apiKey: 'wrong-key', maxRetries: 0 });
    const err = await bad.messages.create({ model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((err as InstanceType<typeof Anthropic.APIError>).requestID).toBeTruthy();
    const invalid = await client.messages.create({ model: 'm', max_tokens: 5, messages: [] }).catch((e: unknown) => e);
    expect(invalid).toBeInstanceOf(Anthropic.BadRequestError);
    expect((invalid as InstanceType<typeof Anthropic.APIError>).requestID).toBeTruthy();
  });

  it('is honoured from the caller and not added on the OpenAI routes', async () => {
    const res = await fetch(`${server.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': 'anthropic-rid-token', 'x-request-id': 'caller-id-123' },
      body: JSON.stringify({ model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('request-id')).toBe('caller-id-123');
    const openai = await fetch(`${server.url}/v1/models`, { headers: { authorization: 'Bearer anthropic-rid-token' } });
    expect(openai.headers.get('request-id')).toBeNull();
    // The model list both APIs share: the header for the Anthropic SDK's caller.
    const anthropic = await fetch(`${server.url}/v1/models`, { headers: { authorization: 'Bearer anthropic-rid-token', 'anthropic-version': '2023-06-01' } });
    expect(anthropic.headers.get('request-id')).toBe(anthropic.headers.get('x-request-id'));
  });
});
