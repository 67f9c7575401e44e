// `client.messages.countTokens` through the official SDK: an image counts by its pixels, as
// Anthropic's API counts it, so a client sizing a prompt before sending it sees the image.
import { readFileSync } from 'node:fs';
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningServer } from '../src/cli/serve.js';
import { startTestGateway } from './helpers/gateway.js';

let server: RunningServer;
let client: Anthropic;

beforeAll(async () => {
  server = await startTestGateway({});
  client = new Anthropic({ baseURL: server.url, apiKey: 'unused', maxRetries: 0 });
});
afterAll(() => server?.close());

it('counts a 1000 × 1000 PNG as about 1,334 tokens beside its text', async () => {
  const png = readFileSync(new URL('../src/providers/__fixtures__/images/wide.png', import.meta.url)).toString('base64');
  const text = await client.messages.countTokens({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'Describe this' }] });
  const withImage = await client.messages.countTokens({
    model: 'claude-sonnet-4-5',
    messages: [
      {
        role: 'user',
        content: [
          { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png } },
          { type: 'text', text: 'Describe this' },
        ],
      },
    ],
  });
  expect(withImage.input_tokens - text.input_tokens).toBe(1334);
  const byUrl = await client.messages.countTokens({
    model: 'claude-sonnet-4-5',
    messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } }, { type: 'text', text: 'Describe this' }] }],
  });
  expect(byUrl.input_tokens - text.input_tokens).toBeGreaterThan(1000);
});

it('accepts a conversation carrying megabytes of images at the default body limit (32 MiB, as Anthropic)', async () => {
  // ~4.3 MB of base64: over the old 4 MiB default, well under Anthropic's 32 MB request limit.
  const png = readFileSync(new URL('../src/providers/__fixtures__/images/wide.png', import.meta.url));
  const big = Buffer.concat([png, Buffer.alloc(3_200_000)]).toString('base64');
  expect(big.length).toBeGreaterThan(4 * 1024 * 1024);
  const counted = await client.messages.countTokens({
    model: 'claude-sonnet-4-5',
    messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: big } }, { type: 'text', text: 'Describe this' }] }],
  });
  expect(counted.input_tokens).toBeGreaterThan(1334);
  // Megabytes through JSON parsing and validation: generous on a machine busy with the whole suite.
}, 30_000);
