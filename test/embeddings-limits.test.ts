// Embeddings count against a key's token limit (TPM) and budget by what they read, also from an
// upstream that reports no usage (some OpenAI-compatible servers leave it out): the gateway counts
// the input itself, as it does for a chat answer without usage, so nothing is refunded.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countTextTokens } from '../src/providers/tokens.js';
import { startTestGateway } from './helpers/gateway.js';
import { startJsonUpstream, type JsonUpstream } from './helpers/recording-upstream.js';
import { call, createKey } from './helpers/http.js';

const ADMIN = 'admin-token-for-tests-0123456789';
const INPUT = 'The quick brown fox jumps over the lazy dog, again and again, until the dog finally wakes up.';
let upstream: JsonUpstream;
let server: Awaited<ReturnType<typeof startTestGateway>>;

beforeAll(async () => {
  upstream = await startJsonUpstream((_req, _body, res) => {
    res.setHeader('content-type', 'application/json');
    // No `usage` field at all.
    res.end(JSON.stringify({ object: 'list', data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2] }], model: 'silent' }));
  });
  const url = upstream.url;
  server = await startTestGateway({
    config: {
      auth: { admin_token: ADMIN },
      providers: { up: { type: 'openai', base_url: url, api_key: 'upstream-key' } },
      models: [{ name: 'silent', deployments: [{ provider: 'up', model: 'silent' }] }],
    },
  });
});

afterAll(async () => {
  await server?.close();
  await upstream?.close();
});

describe('embeddings from an upstream that reports no usage', () => {
  it('are counted by their input: the answer says so, and a key\'s TPM fills up', async () => {
    const tokens = countTextTokens(INPUT);
    // Room for one such input a minute, not two.
    const { key } = await createKey(server.url, ADMIN, { tpm: Math.ceil(tokens * 1.5) });
    const first = await call(server.url, '/v1/embeddings', { key, body: { model: 'silent', input: INPUT } });
    expect(first.status).toBe(200);
    expect(first.json.usage).toEqual({ prompt_tokens: tokens, total_tokens: tokens });
    const second = await call(server.url, '/v1/embeddings', { key, body: { model: 'silent', input: INPUT } });
    expect([second.status, second.json.error?.code]).toEqual([429, 'rate_limit_exceeded']);
  });
});
